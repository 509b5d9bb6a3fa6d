//! In-process tests of the SMS, warning and dispatch routes (issue 8): templates checked when
//! saved, word lists, role holders (a holder without a valid mobile is rejected), assignment
//! rules, the graded alert flow over REST, and the delivery-report callback: signed, scope
//! `write_back`, answered `{"code":0}`, and fed by the mock gateway with reports that arrive
//! late, twice and out of order while the hub serves on a real socket.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use xfhub::app::Hub;
use xfhub::config::Config;
use xfhub_mocks::sms::{MockSmsGateway, ReportMode, SmsMockConfig};

use common::{assert_error_body, Reply, TestClient};

struct T {
    hub: Hub,
    app: axum::Router,
    admin: TestClient,
    _dir: tempfile::TempDir,
}

impl T {
    async fn start(tune: impl FnOnce(&mut Config)) -> T {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        config.bus.retry_base_ms = 50;
        config.bus.retry_max_ms = 500;
        tune(&mut config);
        let hub = Hub::start(config).await.expect("the hub starts");
        let app = hub.router();
        let admin = TestClient::full(&hub, "sms tests").await;
        T {
            hub,
            app,
            admin,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        as_: &TestClient,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Reply {
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        common::send(&self.app, as_.signed(method, uri, bytes)).await
    }

    async fn ok(
        &self,
        method: Method,
        uri: &str,
        body: Option<&Value>,
        status: StatusCode,
    ) -> Value {
        let a = self.call(&self.admin, method.clone(), uri, body).await;
        assert_eq!(a.status, status, "{method} {uri}: {}", a.text());
        if a.text().is_empty() {
            Value::Null
        } else {
            a.json()
        }
    }

    async fn stop(self) {
        self.hub.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn templates_are_checked_and_managed() {
    let t = T::start(|_| {}).await;
    let list = t
        .ok(Method::GET, "/api/v1/sms/templates", None, StatusCode::OK)
        .await;
    let codes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    for seeded in [
        "alert_urgent",
        "instant_push_handler",
        "instant_push_leader",
    ] {
        assert!(codes.contains(&seeded), "{codes:?}");
    }
    let good = json!({"code": "reminder", "name": "提醒", "body": "【信访】请于${date}前办结${case_no}。", "params": ["date", "case_no"]});
    let created = t
        .ok(
            Method::POST,
            "/api/v1/sms/templates",
            Some(&good),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(created["params"], json!(["date", "case_no"]));
    let again = t
        .call(&t.admin, Method::POST, "/api/v1/sms/templates", Some(&good))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_error_body("duplicate", &again.json(), "already_exists", &[]);
    // Unknown parameter, missing parameter, too long: every error at once.
    let bad = json!({"code": "bad", "name": "坏", "body": format!("${{who}}{}", "长".repeat(500)), "params": ["x"]});
    let a = t
        .call(&t.admin, Method::POST, "/api/v1/sms/templates", Some(&bad))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_body(
        "bad template",
        &a.json(),
        "validation_failed",
        &[
            ("body", "too_long"),
            ("body", "unknown_parameter"),
            ("params", "missing_parameter"),
        ],
    );
    let update =
        json!({"name": "提醒", "body": "【信访】请尽快办结${case_no}。", "params": ["case_no"]});
    let u = t
        .ok(
            Method::PUT,
            "/api/v1/sms/templates/reminder",
            Some(&update),
            StatusCode::OK,
        )
        .await;
    assert_eq!(u["body"], "【信访】请尽快办结${case_no}。");
    let missing = t
        .call(
            &t.admin,
            Method::PUT,
            "/api/v1/sms/templates/nope",
            Some(&update),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    t.ok(
        Method::DELETE,
        "/api/v1/sms/templates/reminder",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let gone = t
        .call(
            &t.admin,
            Method::GET,
            "/api/v1/sms/templates/reminder",
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    // Changing templates needs `admin`.
    let reader = TestClient::create(&t.hub, "reader", &["read"], &["*"], &["*"]).await;
    let denied = t
        .call(&reader, Method::POST, "/api/v1/sms/templates", Some(&good))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad_id = t
        .call(&reader, Method::GET, "/api/v1/sms/not-a-uuid", None)
        .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    let unknown = t
        .call(
            &reader,
            Method::GET,
            &format!("/api/v1/sms/{}", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    t.stop().await;
}

#[tokio::test]
async fn role_holders_rules_words_and_the_alert_flow_over_rest() {
    let t = T::start(|_| {}).await;
    let holder = |name: &str, role: &str, org: &str, mobile: &str| json!({"name": name, "role": role, "org": org, "mobile": mobile});
    let bad = t
        .call(
            &t.admin,
            Method::POST,
            "/api/v1/role-holders",
            Some(&holder("王五", "boss", "", "12345")),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_body(
        "bad holder",
        &bad.json(),
        "validation_failed",
        &[
            ("role", "unknown_role"),
            ("org", "invalid"),
            ("mobile", "invalid_mobile"),
        ],
    );
    let mut ids = std::collections::HashMap::new();
    for (name, role, org, mobile) in [
        ("联络员甲", "liaison", "市信访局", "13900000101"),
        ("处长乙", "petition_director", "市信访局", "13900000102"),
        ("主任丙", "unit_director", "雨花区住建局", "+8613900000103"),
        ("局长丁", "bureau_leader", "雨花区住建局", "13900000104"),
    ] {
        let h = t
            .ok(
                Method::POST,
                "/api/v1/role-holders",
                Some(&holder(name, role, org, mobile)),
                StatusCode::CREATED,
            )
            .await;
        assert!(
            h["mobile"].as_str().unwrap().contains("****"),
            "masked: {h}"
        );
        ids.insert(role, h["id"].as_str().unwrap().to_owned());
    }
    let unit = t
        .ok(
            Method::GET,
            "/api/v1/role-holders?org=雨花区住建局",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(unit.as_array().unwrap().len(), 2);
    // Rules.
    let rule =
        json!({"content_class_prefix": "0301", "division": "430111", "unit": "雨花区住建局"});
    let r = t
        .ok(
            Method::POST,
            "/api/v1/assignment-rules",
            Some(&rule),
            StatusCode::CREATED,
        )
        .await;
    let bad_rule = t
        .call(
            &t.admin,
            Method::POST,
            "/api/v1/assignment-rules",
            Some(&json!({"content_class_prefix": "x", "unit": ""})),
        )
        .await;
    assert_eq!(bad_rule.status, StatusCode::UNPROCESSABLE_ENTITY);
    let path = format!("/api/v1/assignment-rules/{}", r["id"].as_str().unwrap());
    t.ok(Method::DELETE, &path, None, StatusCode::NO_CONTENT)
        .await;
    assert_eq!(
        t.call(&t.admin, Method::DELETE, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    // Words.
    let words = json!({"words": [{"list": "sensitive", "word": "扬言", "category": "threat"}, {"list": "hot", "word": "电梯"}]});
    let all = t
        .ok(
            Method::POST,
            "/api/v1/word-lists",
            Some(&words),
            StatusCode::OK,
        )
        .await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let bad_words = json!({"words": [{"list": "other", "word": "  "}]});
    let a = t
        .call(
            &t.admin,
            Method::POST,
            "/api/v1/word-lists",
            Some(&bad_words),
        )
        .await;
    assert_error_body(
        "bad words",
        &a.json(),
        "validation_failed",
        &[
            ("words[0].list", "unknown_list"),
            ("words[0].word", "invalid"),
        ],
    );
    t.ok(
        Method::DELETE,
        "/api/v1/word-lists/hot/电梯",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let left = t
        .ok(
            Method::GET,
            "/api/v1/word-lists?list=hot",
            None,
            StatusCode::OK,
        )
        .await;
    assert!(left.as_array().unwrap().is_empty());
    // The flow: draft, submit urgent, approve: an SMS request to the unit's two leaders.
    let draft = json!({"liaison": ids["liaison"], "kind": "key_risk_item", "title": "业主聚集", "division": "430111"});
    let a = t
        .ok(
            Method::POST,
            "/api/v1/alerts",
            Some(&draft),
            StatusCode::CREATED,
        )
        .await;
    let flow = format!("/api/v1/alerts/{}/flow", a["id"].as_str().unwrap());
    let approve = json!({"action": "approve", "actor": ids["petition_director"]});
    let early = t.call(&t.admin, Method::POST, &flow, Some(&approve)).await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_error_body("early approval", &early.json(), "wrong_state", &[]);
    let submit = json!({"action": "submit", "actor": ids["liaison"], "level": "urgent", "org": "雨花区住建局"});
    let s = t
        .ok(Method::POST, &flow, Some(&submit), StatusCode::OK)
        .await;
    assert_eq!(s["status"], "submitted");
    let wrong = json!({"action": "approve", "actor": ids["liaison"]});
    let w = t.call(&t.admin, Method::POST, &flow, Some(&wrong)).await;
    assert_error_body(
        "liaison approves",
        &w.json(),
        "validation_failed",
        &[("actor", "wrong_role")],
    );
    let d = t
        .ok(Method::POST, &flow, Some(&approve), StatusCode::OK)
        .await;
    assert_eq!(
        (d["status"].as_str(), d["level"].as_str()),
        (Some("dispatched"), Some("urgent"))
    );
    let one = t
        .ok(
            Method::GET,
            &format!("/api/v1/alerts/{}", a["id"].as_str().unwrap()),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(one["history"].as_array().unwrap().len(), 3);
    // An unknown step is a field error, never a server error.
    let bad_step = t
        .call(
            &t.admin,
            Method::POST,
            &flow,
            Some(&json!({"action": "fly"})),
        )
        .await;
    assert_eq!(
        bad_step.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad_step.text()
    );
    t.stop().await;
}

/// Serves the hub's router on a local socket (the mock gateway pushes reports to it).
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_reports_late_twice_and_out_of_order_end_in_the_latest_status() {
    let mock = MockSmsGateway::start(
        ([127, 0, 0, 1], 0).into(),
        SmsMockConfig {
            per_number: (100, 100, 100),
            retry_unit: Duration::from_millis(100),
            ..SmsMockConfig::default()
        },
    )
    .await
    .unwrap();
    let url = mock.url();
    let t = T::start(|c| {
        c.sms.gateway_url = Some(url);
        c.sms.access_key = "sms-mock-key".into();
        c.sms.access_secret = "sms-mock-secret".into();
    })
    .await;
    let addr = serve(t.app.clone()).await;
    let gateway =
        TestClient::create(&t.hub, "gateway", &["read", "write_back"], &["*"], &["*"]).await;
    // A client without write_back may not post reports.
    let reader = TestClient::create(&t.hub, "reader", &["read"], &["*"], &["*"]).await;
    let r = t
        .call(
            &reader,
            Method::POST,
            "/api/v1/sms/delivery-reports",
            Some(&json!([])),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let bad = t.call(&gateway, Method::POST, "/api/v1/sms/delivery-reports", Some(&json!([{"phone": "1", "send_time": "x", "report_time": "2026-11-28 10:00:00", "success": true, "err_code": "DELIVERED", "biz_id": "b", "out_id": "o"}]))).await;
    assert_error_body(
        "bad report",
        &bad.json(),
        "validation_failed",
        &[
            ("[0].out_id", "invalid"),
            ("[0].phone", "invalid"),
            ("[0].send_time", "invalid"),
        ],
    );
    mock.set_callback(
        &format!("http://{addr}/api/v1/sms/delivery-reports"),
        Some((gateway.app_key.clone(), gateway.secret.clone())),
    );
    // Role holders and a rule, so that a petition causes texts.
    let p = xfhub_schemas::sample_petition(7);
    for (role, mobile) in [
        ("responsible_leader", "13900000201"),
        ("handler", "13900000202"),
    ] {
        let h = json!({"name": "某人", "role": role, "org": "某单位", "mobile": mobile});
        t.ok(
            Method::POST,
            "/api/v1/role-holders",
            Some(&h),
            StatusCode::CREATED,
        )
        .await;
    }
    let rule = json!({"content_class_prefix": &p.appeal.content_class[..2], "unit": "某单位"});
    t.ok(
        Method::POST,
        "/api/v1/assignment-rules",
        Some(&rule),
        StatusCode::CREATED,
    )
    .await;
    for (i, mode) in [(7u64, ReportMode::Twice), (8, ReportMode::OutOfOrder)] {
        mock.faults(|f| {
            f.reports = mode;
            f.report_delay = Duration::from_millis(300); // late: after the send was recorded
        });
        let mut p = xfhub_schemas::sample_petition(i);
        p.appeal.content_class = xfhub_schemas::sample_petition(7).appeal.content_class;
        let body = serde_json::to_value(&p).unwrap();
        t.ok(
            Method::POST,
            "/api/v1/petitions",
            Some(&body),
            StatusCode::CREATED,
        )
        .await;
    }
    let app = t.app.clone();
    let admin = t.admin.clone();
    wait_for("four delivered texts", async || {
        let a = common::send(&app, admin.get("/api/v1/sms?limit=10")).await;
        let log = a.json();
        let recipients: Vec<&Value> = log
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["recipients"].as_array().unwrap().iter())
            .collect();
        recipients.len() == 4 && recipients.iter().all(|r| r["status"] == "delivered")
    })
    .await;
    // Every text once; every report (repeats and stale ones included) counted and answered.
    assert_eq!(mock.texts().len(), 4);
    wait_for("all reports pushed", async || mock.callbacks().0 >= 4 + 4).await;
    let log = t
        .ok(Method::GET, "/api/v1/sms?limit=10", None, StatusCode::OK)
        .await;
    for m in log.as_array().unwrap() {
        for r in m["recipients"].as_array().unwrap() {
            assert_eq!(r["reports"], 2, "twice, or final plus stale: {r}");
            assert_eq!(r["error_code"], "DELIVERED");
        }
    }
    assert_eq!(mock.callbacks().1, 0, "no push needed a retry");
    t.stop().await;
}
