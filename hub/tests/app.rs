//! The Xiangyiban app channel (issue 9), in process against the mock identity provider and the
//! mock SMS gateway: registration to evaluation end to end; an app complaint reaches the
//! business modules as `petition.received` (source `app`); staff tokens (expiry, bad signature,
//! unknown key, key rotation) and jurisdiction; attachment types checked by content; a second
//! evaluation refused; lockout after failed logins, SMS code limits and rate limits, with
//! answers that do not tell whether an account or a case exists.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use xfhub::app::Hub;
use xfhub::config::Config;
use xfhub_mocks::idp::{self, IdpConfig, MockIdp, TokenRequest};
use xfhub_mocks::sms::{MockSmsGateway, SmsMockConfig};
use xfhub_schemas::samples::{sample_id_number, sample_mobile, sample_petition};
use xfhub_schemas::Petition;
use xfhub_security::pii::{self, DocKind};
use xfhub_store::{RecordKind, Stmt};

use common::{assert_error_body, Reply};

struct T {
    hub: Hub,
    app: axum::Router,
    idp: MockIdp,
    sms: MockSmsGateway,
    _dir: tempfile::TempDir,
}

impl T {
    async fn start(tune: impl FnOnce(&mut Config)) -> T {
        let idp = MockIdp::start(IdpConfig::default()).await.unwrap();
        let sms = MockSmsGateway::start(
            ([127, 0, 0, 1], 0).into(),
            SmsMockConfig {
                per_number: (100, 100, 100),
                ..SmsMockConfig::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        config.bus.retry_base_ms = 50;
        config.bus.retry_max_ms = 500;
        config.sms.gateway_url = Some(sms.url());
        config.sms.access_key = "sms-mock-key".into();
        config.sms.access_secret = "sms-mock-secret".into();
        config.sms.phone_per_minute = 100;
        config.sms.phone_per_hour = 100;
        config.app.jwks_url = Some(idp.jwks_url());
        config.app.issuer = idp.issuer().to_owned();
        config.app.audience = idp.audience().to_owned();
        config.app.jwks_min_refresh_secs = 0;
        config.app.sms_code_interval_secs = 0;
        config.app.sms_codes_per_hour = 50;
        config.app.per_ip_per_minute = 1000;
        config.app.per_account_per_minute = 1000;
        tune(&mut config);
        let hub = Hub::start(config).await.expect("the hub starts");
        let app = hub.router();
        T {
            hub,
            app,
            idp,
            sms,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        common::send(&self.app, b.body(body).unwrap()).await
    }

    async fn post(&self, uri: &str, bearer: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, uri, bearer, Some(body)).await
    }

    fn staff(&self, sub: &str, org_division: &str, ttl: Option<i64>) -> String {
        self.idp.issue(&TokenRequest {
            sub: sub.into(),
            name: "王科长".into(),
            org: format!("XFJ-{org_division}"),
            org_division: org_division.into(),
            roles: vec!["handler".into()],
            ttl_secs: ttl,
        })
    }

    /// Asks for an SMS code and reads it from the mock gateway.
    async fn code(&self, mobile: &str, purpose: &str) -> String {
        let before = self.sms.texts_to(mobile);
        let r = self
            .post(
                "/api/v1/app/public/sms-codes",
                None,
                json!({"mobile": mobile, "purpose": purpose}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let texts: Vec<_> = self
                .sms
                .texts()
                .into_iter()
                .filter(|t| t.phone == mobile)
                .collect();
            if texts.len() > before {
                let t = texts.last().unwrap();
                assert_eq!(t.template_code, "app_verify_code");
                return t.template_param["code"].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no SMS code reached the mock gateway"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn register(&self, i: u64, name: &str, password: &str) -> (String, String) {
        let mobile = sample_mobile(i);
        let code = self.code(&mobile, "register").await;
        let r = self
            .post(
                "/api/v1/app/public/register",
                None,
                json!({
                    "name": name, "id_number": sample_id_number(i, "430102"),
                    "address": "湖南省长沙市芙蓉区五一大道1号", "mobile": mobile, "sms_code": code,
                    "password": password, "recovery_question": "小学名称", "recovery_answer": "育才小学",
                }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        (mobile, r.json()["user_id"].as_str().unwrap().to_owned())
    }

    async fn login(&self, mobile: &str, password: &str) -> Reply {
        self.post(
            "/api/v1/app/public/login",
            None,
            json!({"mobile": mobile, "password": password}),
        )
        .await
    }

    async fn session(&self, mobile: &str, password: &str) -> String {
        let r = self.login(mobile, password).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_owned()
    }

    async fn submit(&self, session: &str, form: Value, files: &[(&str, &[u8])]) -> Reply {
        let boundary = "xfhub-app-test-boundary";
        let mut body = Vec::new();
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"complaint\"\r\nContent-Type: application/json\r\n\r\n").unwrap();
        body.extend(serde_json::to_vec(&form).unwrap());
        body.extend(b"\r\n");
        for (name, data) in files {
            write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").unwrap();
            body.extend_from_slice(data);
            body.extend(b"\r\n");
        }
        write!(body, "--{boundary}--\r\n").unwrap();
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/app/public/complaints")
            .header("authorization", format!("Bearer {session}"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        common::send(&self.app, req).await
    }

    /// A responsible unit replies (as a partner system would write a new version).
    async fn reply(&self, record_id: &str) {
        let store = &self.hub.state.store;
        let ring = self.hub.state.keys.current();
        let rec = store
            .get_record(RecordKind::Petition, record_id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let mut data = rec.data;
        pii::open_document(&ring, DocKind::Petition, &mut data).unwrap();
        let mut p: Petition = serde_json::from_value(data).unwrap();
        let now =
            chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
        p.handling.accepted_at = Some(now);
        p.handling.replied_at = Some(now);
        p.handling.deadline = Some(now.date_naive() + chrono::Duration::days(2));
        p.source.version += 1;
        let p =
            xfhub_schemas::validate_petition(p, self.hub.state.tables, chrono::Utc::now()).unwrap();
        let item = xfhub_store::intake::petition_item(&p, &ring).unwrap();
        store.ingest(item).await.unwrap();
    }
}

fn form(division: &str) -> Value {
    let s = sample_petition(3);
    json!({
        "division": division,
        "content_class": s.appeal.content_class,
        "purpose": s.appeal.purpose,
        "summary": "小区旁工地夜间施工噪音扰民，多次反映未解决",
    })
}

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

fn docx() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("[Content_Types].xml", o).unwrap();
        z.write_all(b"<Types/>").unwrap();
        z.start_file("word/document.xml", o).unwrap();
        z.write_all(b"<w:document/>").unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// Waits until `message_id` was acked by a consumer of `queue`.
async fn wait_acked(t: &T, message_id: &str, queue: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hops = t.hub.state.store.trail(message_id).await.unwrap();
        if hops
            .iter()
            .any(|h| h.hop == "acked" && h.queue.as_deref() == Some(queue))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{message_id} not acked by {queue}: {hops:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh PostgreSQL database (`XFHUB_TEST_PG_URL`, default the local `test` database's
/// server); fails when there is none.
async fn pg_database() -> (String, String) {
    use sqlx::{Connection, Executor};
    let admin = std::env::var("XFHUB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!("xfhub_app_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL at {admin}: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create the database");
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    (name.clone(), format!("{base}/{name}"))
}

async fn drop_pg_database(name: &str) {
    use sqlx::{Connection, Executor};
    let admin = std::env::var("XFHUB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}

#[tokio::test]
async fn registration_to_evaluation_end_to_end() {
    end_to_end(T::start(|_| {}).await).await;
}

#[tokio::test]
async fn registration_to_evaluation_end_to_end_on_postgresql() {
    let (name, url) = pg_database().await;
    end_to_end(T::start(move |c| c.database_url = Some(url)).await).await;
    drop_pg_database(&name).await;
}

async fn end_to_end(t: T) {
    let regions = t
        .call(Method::GET, "/api/v1/app/public/regions", None, None)
        .await;
    assert_eq!(regions.status, StatusCode::OK);
    assert!(regions.json()["regions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["division"] == "430102" && r["unit"] == "芙蓉区信访局"));

    let (mobile, _user) = t.register(1, "张三", "Secret123").await;
    let session = t.session(&mobile, "Secret123").await;
    // Personal data is sealed at rest.
    let row = Stmt::new("SELECT id_number_sealed, mobile_sealed FROM app_users")
        .query()
        .fetch_one(t.hub.state.store.reader())
        .await
        .unwrap();
    let sealed: String = row.try_get("id_number_sealed").unwrap();
    assert!(sealed.starts_with("enc:v1:") && !sealed.contains(&sample_id_number(1, "430102")));
    assert!(row
        .try_get::<String, _>("mobile_sealed")
        .unwrap()
        .starts_with("enc:v1:"));

    let doc = docx();
    let r = t
        .submit(
            &session,
            form("430102"),
            &[("证明材料.pdf", PDF), ("情况说明.docx", &doc)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let receipt = r.json();
    let code = receipt["query_code"].as_str().unwrap().to_owned();
    let record_id = receipt["record_id"].as_str().unwrap().to_owned();
    assert_eq!(
        receipt["unit"], "芙蓉区信访局",
        "routed to the region's handling unit"
    );
    assert_eq!(code.len(), 12);

    // It entered the bus as petition.received from source app, and the dispatch module took it.
    let rows = Stmt::new(
        "SELECT message_id, envelope FROM outbox_messages WHERE message_type = 'petition.received'",
    )
    .query()
    .fetch_all(t.hub.state.store.reader())
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let env: Value =
        serde_json::from_str(&rows[0].try_get::<String, _>("envelope").unwrap()).unwrap();
    assert_eq!(env["source_system"], "app");
    assert_eq!(env["payload"]["data"]["source"]["system"], "app", "{env:#}");
    assert_eq!(
        env["payload"]["data"]["handling"]["responsible_unit"],
        "芙蓉区信访局"
    );
    let raw = env.to_string();
    assert!(
        !raw.contains(&sample_id_number(1, "430102")) && !raw.contains(&mobile),
        "no clear personal data on the bus"
    );
    wait_acked(
        &t,
        &rows[0].try_get::<String, _>("message_id").unwrap(),
        "dispatch",
    )
    .await;

    // Query by code and name; a wrong name and a wrong code answer the same.
    let q = t
        .post(
            "/api/v1/app/public/complaints/query",
            None,
            json!({"query_code": code, "name": "张三"}),
        )
        .await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.text());
    let q = q.json();
    assert_eq!(q["status"], "registered");
    assert_eq!(q["documents"].as_array().unwrap().len(), 2);
    assert_eq!(q["process"][0]["kind"], "registered");
    let wrong_name = t
        .post(
            "/api/v1/app/public/complaints/query",
            None,
            json!({"query_code": code, "name": "李四"}),
        )
        .await;
    let wrong_code = t
        .post(
            "/api/v1/app/public/complaints/query",
            None,
            json!({"query_code": "ZZZZZZZZZZZZ", "name": "张三"}),
        )
        .await;
    assert_eq!(wrong_name.status, StatusCode::NOT_FOUND);
    assert_eq!(
        wrong_name.body, wrong_code.body,
        "no hint whether the case exists"
    );
    let file = t
        .post(
            "/api/v1/app/public/complaints/materials",
            None,
            json!({"query_code": code, "name": "张三", "index": 1}),
        )
        .await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(
        file.body.as_ref(),
        doc.as_slice(),
        "the document downloads as uploaded"
    );

    // Staff of the district see it (masked); staff of another district do not.
    let staff = t.staff("u-1001", "430102", None);
    let list = t
        .call(
            Method::GET,
            "/api/v1/app/staff/tracking?list=in_progress&stage=acceptance",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    assert!(list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == record_id.as_str()));
    let detail = t
        .call(
            Method::GET,
            &format!("/api/v1/app/staff/petitions/{record_id}"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text());
    let d = detail.json();
    let shown_id = d["petition"]["complainants"][0]["id_number"]
        .as_str()
        .unwrap();
    assert!(
        shown_id.contains('*') && shown_id != sample_id_number(1, "430102"),
        "{shown_id}"
    );
    assert_eq!(d["materials"].as_array().unwrap().len(), 2);
    let other = t.staff("u-2002", "430103", None);
    let hidden = t
        .call(
            Method::GET,
            &format!("/api/v1/app/staff/petitions/{record_id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let city = t.staff("u-3003", "430100", None);
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/api/v1/app/staff/petitions/{record_id}"),
            Some(&city),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        t.call(
            Method::PUT,
            &format!("/api/v1/app/staff/follows/{record_id}"),
            Some(&staff),
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let follows = t
        .call(Method::GET, "/api/v1/app/staff/follows", Some(&staff), None)
        .await
        .json();
    assert_eq!(follows["items"][0]["id"], record_id.as_str());
    let a = t
        .post(
            &format!("/api/v1/app/staff/petitions/{record_id}/approvals"),
            Some(&staff),
            json!({"action": "comment", "comment": "请尽快核实"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert_eq!(
        t.call(
            Method::GET,
            "/api/v1/app/staff/approvals",
            Some(&staff),
            None
        )
        .await
        .json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Evaluation: not before the reply; once; with the rules.
    let eval = json!({"query_code": code, "name": "张三", "result": "3", "reasons": ["答复不及时", "未解决问题"], "responsible_department": "芙蓉区住建局", "unsatisfied_departments": ["芙蓉区城管局"]});
    let early = t
        .post(
            "/api/v1/app/public/complaints/evaluation",
            Some(&session),
            eval.clone(),
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert_eq!(early.json()["code"], "not_ready_for_evaluation");
    t.reply(&record_id).await;
    let near = t
        .call(
            Method::GET,
            "/api/v1/app/staff/tracking?list=near_deadline",
            Some(&staff),
            None,
        )
        .await
        .json();
    assert!(
        near["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == record_id.as_str()),
        "{near:#}"
    );
    let four = t.post("/api/v1/app/public/complaints/evaluation", Some(&session), json!({"query_code": code, "name": "张三", "result": "3", "reasons": ["a", "b", "c", "d"], "responsible_department": "x"})).await;
    assert_error_body(
        "four reasons",
        &four.json(),
        "validation_failed",
        &[("reasons", "evaluation_reasons")],
    );
    let no_reason = t.post("/api/v1/app/public/complaints/evaluation", Some(&session), json!({"query_code": code, "name": "张三", "result": "3", "responsible_department": "x"})).await;
    assert_error_body(
        "no reason",
        &no_reason.json(),
        "validation_failed",
        &[("reasons", "required")],
    );
    let ok = t
        .post(
            "/api/v1/app/public/complaints/evaluation",
            Some(&session),
            eval.clone(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text());
    let again = t.post("/api/v1/app/public/complaints/evaluation", Some(&session), json!({"query_code": code, "name": "张三", "result": "1", "responsible_department": "芙蓉区住建局"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        again.json()["code"],
        "already_evaluated",
        "the second evaluation is refused"
    );
    let q = t
        .post(
            "/api/v1/app/public/complaints/query",
            None,
            json!({"query_code": code, "name": "张三"}),
        )
        .await
        .json();
    assert_eq!(q["status"], "replied");
    assert_eq!(q["evaluation"]["result"], "3");
    assert_eq!(
        q["evaluation"]["unsatisfied_departments"],
        json!(["芙蓉区城管局"])
    );
    let updated =
        Stmt::new("SELECT COUNT(*) AS n FROM outbox WHERE message_type = 'petition.updated'")
            .query()
            .fetch_one(t.hub.state.store.reader())
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap();
    assert_eq!(
        updated, 2,
        "the reply and the evaluation, each a new version"
    );

    // Password reset with name, identity number and an SMS code.
    let reset_code = t.code(&mobile, "reset").await;
    let bad = t.post("/api/v1/app/public/password-reset", None, json!({"name": "李四", "id_number": sample_id_number(1, "430102"), "mobile": mobile, "sms_code": reset_code, "new_password": "Newpass456"})).await;
    assert_eq!(bad.json()["code"], "reset_refused");
    let good = t.post("/api/v1/app/public/password-reset", None, json!({"name": "张三", "id_number": sample_id_number(1, "430102"), "mobile": mobile, "sms_code": reset_code, "new_password": "Newpass456"})).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.text());
    assert_eq!(
        t.login(&mobile, "Secret123").await.status,
        StatusCode::UNAUTHORIZED
    );
    t.session(&mobile, "Newpass456").await;
    let old = t
        .post(
            "/api/v1/app/public/complaints/evaluation",
            Some(&session),
            eval,
        )
        .await;
    assert_eq!(
        old.json()["code"],
        "auth_session_invalid",
        "a reset ends the old sessions"
    );

    // QR codes: PNG and SVG of a signed entry URL; a tampered or foreign URL is refused.
    let png = t
        .call(
            Method::GET,
            "/api/v1/app/public/qr/430102?format=png",
            None,
            None,
        )
        .await;
    assert_eq!(png.status, StatusCode::OK);
    assert!(png.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    let decoded = png::Decoder::new(std::io::Cursor::new(png.body.to_vec()))
        .read_info()
        .unwrap();
    assert!(decoded.info().width >= 200);
    let svg = t
        .call(
            Method::GET,
            "/api/v1/app/public/qr/430102?format=svg",
            None,
            None,
        )
        .await;
    assert!(svg.text().contains("<svg"));
    assert_eq!(
        t.call(Method::GET, "/api/v1/app/public/qr/999999", None, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let exp = chrono::Utc::now().timestamp() + 3600;
    let url = xfhub::mobile::qr::signed_url(&t.hub.state.keys.current(), "", "430102", exp);
    let entry = t
        .call(
            Method::GET,
            &format!("/api/v1/app/public/entry{url}"),
            None,
            None,
        )
        .await;
    assert_eq!(entry.status, StatusCode::OK, "{}", entry.text());
    assert_eq!(entry.json()["unit"], "芙蓉区信访局");
    let forged = url.replace("430102", "430103");
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/api/v1/app/public/entry{forged}"),
            None,
            None
        )
        .await
        .json()["code"],
        "qr_invalid"
    );
    let expired =
        xfhub::mobile::qr::signed_url(&t.hub.state.keys.current(), "", "430102", exp - 7200);
    assert_eq!(
        t.call(
            Method::GET,
            &format!("/api/v1/app/public/entry{expired}"),
            None,
            None
        )
        .await
        .json()["code"],
        "qr_invalid"
    );
    t.hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn staff_tokens_expiry_bad_signature_and_key_rotation() {
    let t = T::start(|_| {}).await;
    let profile = "/api/v1/app/staff/profile";
    let get = |tok: Option<String>| {
        let t = &t;
        async move { t.call(Method::GET, profile, tok.as_deref(), None).await }
    };
    let r = get(None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "auth_token_missing");
    let good = t.staff("u-1", "430102", None);
    let r = get(Some(good.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["org_division"], "430102");
    assert_eq!(r.json()["jurisdiction"], "芙蓉区");
    // A partner signature is not what these routes take, and a staff token does not open partner routes.
    assert_eq!(
        t.call(Method::GET, "/api/v1/petitions", Some(&good), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let expired = t.staff("u-1", "430102", Some(-120));
    let r = get(Some(expired)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "auth_token_expired");

    // Signed by a key the provider never published, under the provider's current kid.
    let claims = json!({"iss": t.idp.issuer(), "aud": t.idp.audience(), "sub": "u-1", "name": "x", "org": "o", "org_division": "430100", "roles": [], "iat": 0, "exp": chrono::Utc::now().timestamp() + 600});
    let forged = idp::sign_claims(&claims, &t.idp.current_kid(), &idp::generate_pkcs8());
    assert_eq!(get(Some(forged)).await.json()["code"], "auth_token_invalid");
    let unknown_kid = idp::sign_claims(&claims, "nobody", &idp::generate_pkcs8());
    assert_eq!(
        get(Some(unknown_kid)).await.json()["code"],
        "auth_token_invalid"
    );
    // A payload changed after signing.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
    payload["org_division"] = json!("430000");
    parts[1] = b64.encode(serde_json::to_vec(&payload).unwrap());
    assert_eq!(
        get(Some(parts.join("."))).await.json()["code"],
        "auth_token_invalid"
    );
    // `alg: none` is never accepted.
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","kid":"x"}"#),
        parts[1]
    );
    assert_eq!(get(Some(none)).await.json()["code"], "auth_token_invalid");

    // Rotation: a token of the new key is accepted (the hub fetches the JWKS again), a token of
    // the previous key still is while the provider publishes it, and not after it is retired.
    let fetches = t.hub.state.app.jwks.fetches();
    t.idp.rotate();
    let fresh = t.staff("u-1", "430102", None);
    assert_eq!(get(Some(fresh.clone())).await.status, StatusCode::OK);
    assert_eq!(
        t.hub.state.app.jwks.fetches(),
        fetches + 1,
        "one fetch for the new kid"
    );
    assert_eq!(
        get(Some(good.clone())).await.status,
        StatusCode::OK,
        "the previous key is still published"
    );
    assert_eq!(get(Some(fresh.clone())).await.status, StatusCode::OK);
    assert_eq!(
        t.hub.state.app.jwks.fetches(),
        fetches + 1,
        "known kids need no fetch"
    );
    t.idp.rotate();
    let newest = t.staff("u-1", "430102", None);
    assert_eq!(get(Some(newest)).await.status, StatusCode::OK);
    let r = get(Some(good)).await;
    assert_eq!(
        r.json()["code"],
        "auth_token_invalid",
        "a retired key no longer verifies"
    );
    t.hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn attachment_types_are_checked_by_content() {
    let t = T::start(|c| c.app.max_attachment_bytes = 64 * 1024).await;
    let (mobile, _) = t.register(2, "王五", "Secret123").await;
    let s = t.session(&mobile, "Secret123").await;
    let exe: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00 this is a program";
    let r = t.submit(&s, form("430103"), &[("材料.pdf", exe)]).await;
    assert_error_body(
        "exe named pdf",
        &r.json(),
        "validation_failed",
        &[("file[0]", "attachment_type")],
    );
    let r = t
        .submit(&s, form("430103"), &[("ok.pdf", PDF), ("材料.docx", PDF)])
        .await;
    assert_error_body(
        "pdf named docx",
        &r.json(),
        "validation_failed",
        &[("file[1]", "attachment_type_mismatch")],
    );
    let zip_not_office = {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        z.start_file("evil.sh", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"rm -rf /").unwrap();
        z.finish().unwrap();
        buf.into_inner()
    };
    let r = t
        .submit(&s, form("430103"), &[("材料.docx", &zip_not_office)])
        .await;
    assert_error_body(
        "zip named docx",
        &r.json(),
        "validation_failed",
        &[("file[0]", "attachment_type")],
    );
    let six: Vec<(&str, &[u8])> = (0..6).map(|_| ("a.pdf", PDF)).collect();
    let r = t.submit(&s, form("430103"), &six).await;
    assert_error_body(
        "six files",
        &r.json(),
        "validation_failed",
        &[("file", "attachments_too_many")],
    );
    let mut big = PDF.to_vec();
    big.resize(64 * 1024 + 1, b' ');
    let r = t.submit(&s, form("430103"), &[("big.pdf", &big)]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(r.json()["code"], "attachment_too_large");
    let r = t.submit(&s, form("999999"), &[]).await;
    assert_error_body(
        "unknown region",
        &r.json(),
        "validation_failed",
        &[("division", "region_unknown")],
    );
    let n = Stmt::new("SELECT COUNT(*) AS n FROM records")
        .query()
        .fetch_one(t.hub.state.store.reader())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap();
    assert_eq!(n, 0, "nothing refused was stored");
    let xlsx_named_right = t.submit(&s, form("430103"), &[("ok.pdf", PDF)]).await;
    assert_eq!(
        xlsx_named_right.status,
        StatusCode::CREATED,
        "{}",
        xlsx_named_right.text()
    );
    // Without a session nothing is accepted.
    let r = t.submit("not-a-session", form("430103"), &[]).await;
    assert_eq!(r.json()["code"], "auth_session_invalid");
    t.hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn lockout_sms_code_limits_and_rate_limits() {
    limits(None).await;
}

#[tokio::test]
async fn lockout_sms_code_limits_and_rate_limits_on_postgresql() {
    let (name, url) = pg_database().await;
    limits(Some(url)).await;
    drop_pg_database(&name).await;
}

async fn limits(database_url: Option<String>) {
    let t = T::start(|c| {
        c.database_url = database_url;
        c.app.max_failed_logins = 3;
        c.app.per_account_per_minute = 4;
        c.app.sms_code_interval_secs = 60;
        c.app.sms_code_max_attempts = 3;
    })
    .await;
    let (mobile, _) = t.register(4, "赵六", "Secret123").await;
    // Failed logins lock the login name; an unknown one answers exactly the same way.
    let unknown = sample_mobile(99);
    for i in 0..3 {
        let a = t.login(&mobile, "wrong-pass1").await;
        let b = t.login(&unknown, "wrong-pass1").await;
        assert_eq!(a.status, b.status, "attempt {i}");
        assert_eq!(a.json()["code"], b.json()["code"], "attempt {i}");
        let want = if i < 2 {
            "invalid_credentials"
        } else {
            "login_locked"
        };
        assert_eq!(a.json()["code"], want, "attempt {i}");
    }
    let locked = t.login(&mobile, "Secret123").await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        locked.json()["code"],
        "login_locked",
        "the right password is refused while locked"
    );

    // SMS codes: one per interval per number; a code entered wrong too often is void.
    let other = sample_mobile(5);
    let code = t.code(&other, "register").await;
    let again = t
        .post(
            "/api/v1/app/public/sms-codes",
            None,
            json!({"mobile": other, "purpose": "register"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(again.json()["code"], "sms_code_too_soon");
    let reg = |c: &str| json!({"name": "钱七", "id_number": sample_id_number(5, "430102"), "address": "长沙", "mobile": other, "sms_code": c, "password": "Secret123", "recovery_question": "q", "recovery_answer": "a"});
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        let r = t
            .post("/api/v1/app/public/register", None, reg(wrong))
            .await;
        assert_eq!(r.json()["code"], "sms_code_invalid");
    }
    let r = t
        .post("/api/v1/app/public/register", None, reg(&code))
        .await;
    assert_eq!(
        r.json()["code"],
        "sms_code_invalid",
        "void after too many wrong entries"
    );
    let bad_id = t.post("/api/v1/app/public/register", None, json!({"name": "钱七", "id_number": "430102199001011234", "address": "长沙", "mobile": other, "sms_code": code, "password": "short", "recovery_question": "q", "recovery_answer": "a"})).await;
    assert_error_body(
        "bad details",
        &bad_id.json(),
        "validation_failed",
        &[
            ("id_number", "id_number_checksum"),
            ("password", "password_weak"),
        ],
    );

    // Per-account limit on queries (the query code is the account of an anonymous query).
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = t
            .post(
                "/api/v1/app/public/complaints/query",
                None,
                json!({"query_code": "ABCDEFGHJKMN", "name": "x"}),
            )
            .await;
        codes.push(r.json()["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(codes[..4], ["case_not_found"; 4]);
    assert_eq!(codes[4], "rate_limited");
    t.hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn per_ip_limit_on_login() {
    let t = T::start(|c| c.app.per_ip_per_minute = 3).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        // Different login names: only the IP bucket is shared.
        statuses.push(t.login(&sample_mobile(200 + i), "whatever1").await.status);
    }
    assert_eq!(statuses[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
    t.hub.shutdown(Duration::from_secs(5)).await;
}

/// Waits until every push row of `user` says `status`; returns the rows.
async fn wait_push(t: &T, user: &str, status: &str, rows_expected: usize) -> Vec<(String, i64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = Stmt::new("SELECT status, attempts FROM app_push WHERE user_id = $1")
            .bind(user)
            .query()
            .fetch_all(t.hub.state.store.reader())
            .await
            .unwrap();
        let got: Vec<(String, i64)> = rows
            .iter()
            .map(|r| (r.try_get("status").unwrap(), r.try_get("attempts").unwrap()))
            .collect();
        if got.len() == rows_expected && got.iter().all(|(s, _)| s == status) {
            return got;
        }
        assert!(Instant::now() < deadline, "push rows of {user}: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn push_notifications_are_retried_and_delivered_once() {
    use xfhub_connectors::xiangyiban::{notification_envelope, NotificationRequest};
    use xfhub_mocks::appmsg::MockAppMsg;
    let msg = MockAppMsg::start(([127, 0, 0, 1], 0).into(), "push-token")
        .await
        .unwrap();
    // Two refusals, then one call whose answer is lost after the service kept the message.
    msg.faults(|f| {
        f.fail_next = 2;
        f.fail_after_accept = 1;
    });
    let url = msg.url();
    let t = T::start(move |c| {
        c.app.push.url = Some(url);
        c.app.push.token = "push-token".into();
        c.bus.max_attempts = 10;
    })
    .await;
    let (mobile, user) = t.register(6, "孙八", "Secret123").await;
    let s = t.session(&mobile, "Secret123").await;
    let r = t.submit(&s, form("430104"), &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let code = r.json()["query_code"].as_str().unwrap().to_owned();
    let rows = wait_push(&t, &user, "delivered", 1).await;
    assert_eq!(rows[0].1, 4, "delivered on the fourth attempt");
    let delivered = msg.delivered();
    assert_eq!(
        delivered.len(),
        1,
        "the retried message reached the user once: {delivered:?}"
    );
    assert_eq!(delivered[0].user_id, user);
    assert!(delivered[0].body.contains(&code));
    assert_eq!(msg.calls(), 4);

    // A staff notification to two users; both see it in "my messages".
    let n = NotificationRequest {
        notification_id: uuid::Uuid::now_v7(),
        recipients: vec!["u-1001".into(), "u-1002".into()],
        title: "督办提醒".into(),
        body: "您有1件信访件临近办理期限".into(),
    };
    t.hub
        .state
        .store
        .transact(xfhub_store::Txn {
            publish: vec![notification_envelope("430102", &n)],
            ..Default::default()
        })
        .await
        .unwrap();
    t.hub.state.relay.notify();
    wait_push(&t, "u-1001", "delivered", 1).await;
    wait_push(&t, "u-1002", "delivered", 1).await;
    let staff = t.staff("u-1001", "430102", None);
    let m = t
        .call(
            Method::GET,
            "/api/v1/app/staff/messages",
            Some(&staff),
            None,
        )
        .await
        .json();
    assert_eq!(m["items"][0]["title"], "督办提醒");
    assert_eq!(m["items"][0]["status"], "delivered");
    assert_eq!(msg.delivered().len(), 3);
    t.hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_push_the_service_refuses_is_recorded_failed_not_retried() {
    use xfhub_mocks::appmsg::MockAppMsg;
    let msg = MockAppMsg::start(([127, 0, 0, 1], 0).into(), "right-token")
        .await
        .unwrap();
    let url = msg.url();
    let t = T::start(move |c| {
        c.app.push.url = Some(url);
        c.app.push.token = "wrong-token".into();
    })
    .await;
    let (mobile, user) = t.register(7, "周九", "Secret123").await;
    let s = t.session(&mobile, "Secret123").await;
    assert_eq!(
        t.submit(&s, form("430105"), &[]).await.status,
        StatusCode::CREATED
    );
    let rows = wait_push(&t, &user, "failed", 1).await;
    assert_eq!(rows[0].1, 1, "a 4xx is not retried");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(msg.calls(), 1);
    assert!(msg.delivered().is_empty());
    t.hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn two_evaluations_at_once_store_one() {
    let t = T::start(|_| {}).await;
    let (mobile, _) = t.register(8, "吴十", "Secret123").await;
    let s = t.session(&mobile, "Secret123").await;
    let r = t.submit(&s, form("430111"), &[]).await.json();
    let (code, id) = (
        r["query_code"].as_str().unwrap(),
        r["record_id"].as_str().unwrap(),
    );
    t.reply(id).await;
    let body = |result: &str| json!({"query_code": code, "name": "吴十", "result": result, "responsible_department": "雨花区信访局"});
    let (a, b) = tokio::join!(
        t.post(
            "/api/v1/app/public/complaints/evaluation",
            Some(&s),
            body("1")
        ),
        t.post(
            "/api/v1/app/public/complaints/evaluation",
            Some(&s),
            body("2")
        ),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{} / {}",
        a.text(),
        b.text()
    );
    let n = Stmt::new("SELECT COUNT(*) AS n FROM app_evaluations")
        .query()
        .fetch_one(t.hub.state.store.reader())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap();
    assert_eq!(n, 1);
    let q = t
        .post(
            "/api/v1/app/public/complaints/query",
            None,
            json!({"query_code": code, "name": "吴十"}),
        )
        .await
        .json();
    let winner = if a.status == StatusCode::CREATED {
        "1"
    } else {
        "2"
    };
    assert_eq!(
        q["evaluation"]["result"], winner,
        "the stored petition has the winning evaluation"
    );
    t.hub.shutdown(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------------
// Staff notices (通知公告) and the client IP behind trusted proxies.

impl T {
    fn staff_roles(&self, sub: &str, org_division: &str, roles: &[&str]) -> String {
        self.idp.issue(&TokenRequest {
            sub: sub.into(),
            name: "李干事".into(),
            org: format!("XFJ-{org_division}"),
            org_division: org_division.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            ttl_secs: None,
        })
    }

    async fn signed(&self, client: &common::TestClient, req: Request<Body>) -> Reply {
        common::send(&self.app, client.sign(req).await).await
    }

    async fn admin(
        &self,
        client: &common::TestClient,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Reply {
        let body = body.map(|v| serde_json::to_vec(&v).unwrap());
        let ct = body.as_ref().map(|_| "application/json");
        let req = common::request(method, uri, ct, &[], body.unwrap_or_default());
        self.signed(client, req).await
    }

    /// The notices a staff token sees: (ids in order, unread flags, the whole answer).
    async fn notices_of(&self, token: &str) -> (Vec<String>, Vec<bool>, Value) {
        let r = self
            .call(Method::GET, "/api/v1/app/staff/notices", Some(token), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.json();
        let items = v["items"].as_array().unwrap();
        (
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect(),
            items
                .iter()
                .map(|i| i["unread"].as_bool().unwrap())
                .collect(),
            v,
        )
    }
}

fn notice(title: &str, division: &str) -> Value {
    json!({"title": title, "body": "各单位：\n请认真落实。", "level": "important", "audience_division": division})
}

async fn notification_recipients(t: &T, notice_id: &str) -> Vec<String> {
    let rows = Stmt::new(
        "SELECT envelope FROM outbox_messages WHERE message_type = 'notification.requested' ORDER BY seq",
    )
    .query()
    .fetch_all(t.hub.state.store.reader())
    .await
    .unwrap();
    let mut out = Vec::new();
    for r in rows {
        let env: Value =
            serde_json::from_str(&r.try_get::<String, _>("envelope").unwrap()).unwrap();
        if env["payload"]["notification_id"] == notice_id {
            for u in env["payload"]["recipients"].as_array().unwrap() {
                out.push(u.as_str().unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn staff_notices_by_audience_roles_time_and_withdrawal() {
    notices_flow(T::start(|_| {}).await).await;
}

#[tokio::test]
async fn staff_notices_on_postgresql() {
    let (name, url) = pg_database().await;
    notices_flow(T::start(move |c| c.database_url = Some(url)).await).await;
    drop_pg_database(&name).await;
}

async fn notices_flow(t: T) {
    let admin = common::TestClient::full(&t.hub, "bureau-admin").await;
    let furong = t.staff_roles("u-fr", "430102", &["handler"]);
    let tianxin = t.staff_roles("u-tx", "430103", &["handler"]);
    let leader = t.staff_roles("u-ld", "430102", &["leader", "handler_x"]);
    // Staff the hub has seen are the push recipients.
    for tok in [&furong, &tianxin, &leader] {
        let r = t
            .call(Method::GET, "/api/v1/app/staff/profile", Some(tok), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }

    // A city-wide notice: every district sees it, and it is pushed to all three.
    let r = t
        .admin(
            &admin,
            Method::POST,
            "/api/v1/notices",
            Some(notice("关于做好节日期间信访工作的通知", "430100")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let city = r.json();
    let city_id = city["id"].as_str().unwrap().to_owned();
    assert_eq!(city["audience_name"], "长沙市");
    assert_eq!(city["status"], "active");
    assert!(city["pushed_at"].is_i64());
    assert_eq!(
        notification_recipients(&t, &city_id).await,
        ["u-fr", "u-ld", "u-tx"]
    );

    // A Tianxin notice: only Tianxin's staff.
    let r = t
        .admin(
            &admin,
            Method::POST,
            "/api/v1/notices",
            Some(notice("天心区值班安排", "430103")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let tx_id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(notification_recipients(&t, &tx_id).await, ["u-tx"]);

    // For leaders only.
    let mut body = notice("领导批示事项督办", "430100");
    body["roles"] = json!(["leader"]);
    body["level"] = json!("urgent");
    let r = t
        .admin(&admin, Method::POST, "/api/v1/notices", Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let leaders_id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["roles"], json!(["leader"]));
    assert_eq!(notification_recipients(&t, &leaders_id).await, ["u-ld"]);

    let (ids, unread, v) = t.notices_of(&furong).await;
    assert_eq!(ids, std::slice::from_ref(&city_id));
    assert_eq!(unread, [true]);
    assert_eq!(
        (v["total"].as_i64(), v["unread"].as_i64()),
        (Some(1), Some(1))
    );
    let (ids, _, _) = t.notices_of(&tianxin).await;
    assert!(ids.contains(&tx_id) && ids.contains(&city_id) && !ids.contains(&leaders_id));
    let (ids, _, _) = t.notices_of(&leader).await;
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], leaders_id, "newest first");

    // Opening it reads it for that user only.
    let r = t
        .call(
            Method::GET,
            &format!("/api/v1/app/staff/notices/{city_id}"),
            Some(&furong),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["body"], "各单位：\n请认真落实。");
    assert_eq!(r.json()["unread"], false);
    let (_, unread, v) = t.notices_of(&furong).await;
    assert_eq!(unread, [false]);
    assert_eq!(v["unread"], 0);
    let (ids, unread, _) = t.notices_of(&tianxin).await;
    assert!(unread[ids.iter().position(|i| *i == city_id).unwrap()]);
    // Outside the audience or the roles answers like a missing notice.
    for (tok, id) in [
        (&furong, &tx_id),
        (&furong, &leaders_id),
        (&furong, &"no-such-notice".to_owned()),
    ] {
        let r = t
            .call(
                Method::GET,
                &format!("/api/v1/app/staff/notices/{id}"),
                Some(tok),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        assert_eq!(r.json()["code"], "not_found");
    }
    let r = t
        .call(
            Method::GET,
            "/api/v1/app/staff/notices?limit=0",
            Some(&furong),
            None,
        )
        .await;
    assert_eq!(r.json()["code"], "invalid_parameter");
    // Paging.
    let r = t
        .call(
            Method::GET,
            "/api/v1/app/staff/notices?limit=1&offset=1",
            Some(&tianxin),
            None,
        )
        .await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["total"], 2);

    // An update changes what staff see; it is not pushed again.
    let mut changed = notice("关于做好节日期间信访工作的通知（修订）", "430100");
    changed["level"] = json!("normal");
    let r = t
        .admin(
            &admin,
            Method::PUT,
            &format!("/api/v1/notices/{city_id}"),
            Some(changed),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["publish_at"],
        city["publish_at"],
        "publication time kept"
    );
    assert_eq!(r.json()["reads"], 1);
    let r = t
        .call(
            Method::GET,
            "/api/v1/app/staff/notices",
            Some(&furong),
            None,
        )
        .await;
    assert_eq!(
        r.json()["items"][0]["title"],
        "关于做好节日期间信访工作的通知（修订）"
    );
    assert_eq!(notification_recipients(&t, &city_id).await.len(), 3);

    // Scheduled: invisible and not pushed until its time; the sweep pushes it then.
    let later = common::now_ms() + 3_600_000;
    let mut body = notice("下周系统维护通知", "430100");
    body["publish_at"] = json!(later);
    let r = t
        .admin(&admin, Method::POST, "/api/v1/notices", Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let scheduled_id = r.json()["id"].as_str().unwrap().to_owned();
    assert!(r.json()["pushed_at"].is_null());
    assert!(!t.notices_of(&furong).await.0.contains(&scheduled_id));
    let store = &t.hub.state.store;
    assert_eq!(
        xfhub::mobile::notices::push_due(store, later - 1)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        xfhub::mobile::notices::push_due(store, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(notification_recipients(&t, &scheduled_id).await.len(), 3);
    assert_eq!(
        xfhub::mobile::notices::push_due(store, later)
            .await
            .unwrap(),
        0
    );

    // Expired: invisible (the expiry is moved into the past directly; the API refuses that).
    store
        .transact(xfhub_store::Txn {
            statements: vec![
                Stmt::new("UPDATE app_notices SET expires_at = $1 WHERE id = $2")
                    .bind(common::now_ms() - 1)
                    .bind(&tx_id),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!t.notices_of(&tianxin).await.0.contains(&tx_id));

    // Withdrawn: gone for staff, kept for the admin, final.
    let uri = format!("/api/v1/notices/{city_id}");
    let r = t.admin(&admin, Method::DELETE, &uri, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(t.notices_of(&furong).await.0.is_empty());
    let r = t
        .call(
            Method::GET,
            &format!("/api/v1/app/staff/notices/{city_id}"),
            Some(&furong),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        t.admin(&admin, Method::DELETE, &uri, None).await.json()["code"],
        "notice_withdrawn"
    );
    let r = t
        .admin(&admin, Method::PUT, &uri, Some(notice("再改", "430100")))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["code"], "notice_withdrawn");
    let r = t
        .admin(
            &admin,
            Method::GET,
            "/api/v1/notices?status=withdrawn",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], city_id.as_str());
    assert!(list[0]["withdrawn_at"].is_i64());
    assert_eq!(
        t.admin(&admin, Method::GET, "/api/v1/notices/nope", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Every change is audited with its caller.
    let rows = Stmt::new(
        "SELECT action FROM audit_log WHERE actor = $1 AND action LIKE 'notice.%' ORDER BY seq",
    )
    .bind(&admin.app_key)
    .query()
    .fetch_all(store.reader())
    .await
    .unwrap();
    let actions: Vec<String> = rows.iter().map(|r| r.try_get("action").unwrap()).collect();
    assert_eq!(
        actions,
        [
            "notice.create",
            "notice.create",
            "notice.create",
            "notice.update",
            "notice.create",
            "notice.withdraw"
        ]
    );
    t.hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn notice_input_is_checked_and_needs_admin() {
    let t = T::start(|_| {}).await;
    let admin = common::TestClient::full(&t.hub, "bureau-admin").await;
    let reader = common::TestClient::create(&t.hub, "reader", &["read"], &["*"], &["*"]).await;
    let post = |body: Value| {
        let (t, admin) = (&t, &admin);
        async move {
            t.admin(admin, Method::POST, "/api/v1/notices", Some(body))
                .await
        }
    };
    let mut bad = notice("", "999999");
    bad["level"] = json!("loud");
    let r = post(bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_error_body(
        "bad notice",
        &r.json(),
        "validation_failed",
        &[
            ("title", "required"),
            ("level", "invalid_value"),
            ("audience_division", "unknown_code"),
        ],
    );
    let r = post(notice(&"长".repeat(101), "4301")).await;
    assert_error_body(
        "too long",
        &r.json(),
        "validation_failed",
        &[
            ("title", "too_long"),
            ("audience_division", "invalid_format"),
        ],
    );
    let mut bad = notice("标题", "430100");
    bad["body"] = json!("字".repeat(5001));
    bad["roles"] = json!(["ok", "no way"]);
    bad["expires_at"] = json!(1_000);
    let r = post(bad).await;
    assert_error_body(
        "body and roles",
        &r.json(),
        "validation_failed",
        &[
            ("body", "too_long"),
            ("roles[1]", "invalid_format"),
            ("expires_at", "before_publish"),
        ],
    );
    // A missing field or an unknown one is named by the JSON extractor.
    let r = post(json!({"title": "标题", "audience_division": "430100"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    // Nothing was stored.
    let r = t.admin(&admin, Method::GET, "/api/v1/notices", None).await;
    assert_eq!(r.json(), json!([]));

    // A client without `admin` can neither write nor list; unsigned calls are refused.
    let r = t
        .admin(
            &reader,
            Method::POST,
            "/api/v1/notices",
            Some(notice("标题", "430100")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["code"], "auth_scope_denied");
    let r = t.admin(&reader, Method::GET, "/api/v1/notices", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .call(
            Method::POST,
            "/api/v1/notices",
            None,
            Some(notice("标题", "430100")),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A staff token does not open the admin routes.
    let tok = t.staff("u-1", "430100", None);
    let r = t
        .call(Method::GET, "/api/v1/notices", Some(&tok), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    t.hub.shutdown(Duration::from_secs(5)).await;
}

/// A login from `peer` carrying `forwarded` as X-Forwarded-For.
async fn login_via(t: &T, peer: &str, forwarded: Option<&str>, i: u64) -> StatusCode {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/app/public/login")
        .header("content-type", "application/json");
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    let mut req = req
        .body(Body::from(
            serde_json::to_vec(&json!({"mobile": sample_mobile(300 + i), "password": "whatever1"}))
                .unwrap(),
        ))
        .unwrap();
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    common::send(&t.app, req).await.status
}

#[tokio::test]
async fn per_ip_limit_keys_on_the_forwarded_client_behind_a_trusted_proxy() {
    let t = T::start(|c| {
        c.app.per_ip_per_minute = 2;
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let proxy = "127.0.0.1:40000";
    let mut a = Vec::new();
    for i in 0..3 {
        // The client's own (spoofed) first hop is ignored: the proxy appended the real one.
        a.push(login_via(&t, proxy, Some("6.6.6.6, 198.51.100.1"), i).await);
    }
    assert_eq!(
        a,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another client behind the same proxy has its own bucket.
    assert_eq!(
        login_via(&t, proxy, Some("198.51.100.2"), 10).await,
        StatusCode::UNAUTHORIZED
    );
    // An untrusted peer cannot pick a bucket with the header.
    let mut b = Vec::new();
    for i in 0..3 {
        let spoof = format!("203.0.113.{i}");
        b.push(login_via(&t, "192.0.2.9:5000", Some(&spoof), 20 + i).await);
    }
    assert_eq!(
        b,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );

    // The audit's remote address names the forwarded client and the proxy.
    let mut req = Request::builder()
        .uri("/api/v1/petitions")
        .header("x-forwarded-for", "198.51.100.7")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        proxy.parse::<std::net::SocketAddr>().unwrap(),
    ));
    assert_eq!(
        common::send(&t.app, req).await.status,
        StatusCode::UNAUTHORIZED
    );
    let row =
        Stmt::new("SELECT remote FROM audit_log WHERE action = 'auth.failed' ORDER BY seq DESC")
            .query()
            .fetch_one(t.hub.state.store.reader())
            .await
            .unwrap();
    assert_eq!(
        row.try_get::<String, _>("remote").unwrap(),
        "198.51.100.7 via 127.0.0.1:40000"
    );
    t.hub.shutdown(Duration::from_secs(5)).await;
}
