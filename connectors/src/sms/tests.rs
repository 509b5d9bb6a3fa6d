//! The SMS connector against the mock gateway (`xfhub_mocks::sms`): dedup on redelivery and
//! after a lost answer, transient and permanent errors, per-number limits, batching, delivery
//! reports (twice, out of order, unmatched). SQLite; the dedup case also on PostgreSQL.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{Connection, Executor};
use xfhub_mocks::sms::{MockSmsGateway, SmsMockConfig};

use super::*;

struct Env {
    store: Store,
    ring: Arc<KeyRing>,
    mock: MockSmsGateway,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/x.db", dir.path().display());
    let store = Store::open(xfhub_store::StoreOptions::new(url))
        .await
        .unwrap();
    env_with(store, Some(dir)).await
}

async fn postgres_env() -> Env {
    let admin = std::env::var("XFHUB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!("xfhub_t_{}", Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL tests need a server at {admin}: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let store = Store::open(xfhub_store::StoreOptions::new(format!("{base}/{name}")))
        .await
        .unwrap();
    env_with(store, None).await
}

async fn env_with(store: Store, dir: Option<tempfile::TempDir>) -> Env {
    // The gateway's own per-number limits out of the way: the hub's are under test.
    let mock_config = SmsMockConfig {
        per_number: (1000, 1000, 1000),
        ..SmsMockConfig::default()
    };
    let mock = MockSmsGateway::start(([127, 0, 0, 1], 0).into(), mock_config)
        .await
        .unwrap();
    Env {
        store,
        ring: Arc::new(KeyRing::generate()),
        mock,
        _dir: dir,
    }
}

fn config(env: &Env) -> SmsConfig {
    SmsConfig {
        gateway_url: Some(env.mock.url()),
        access_key: "sms-mock-key".into(),
        access_secret: "sms-mock-secret".into(),
        phone_per_minute: 100,
        phone_per_hour: 100,
        phone_per_day: 100,
        gateway_per_sec: 1000,
        gateway_burst: 1000,
        ..SmsConfig::default()
    }
}

fn gateway(env: &Env, cfg: &SmsConfig) -> HttpGateway {
    HttpGateway::new(
        &env.mock.url(),
        &cfg.access_key,
        &cfg.access_secret,
        &cfg.sign_name,
        cfg.max_numbers_per_call,
        Duration::from_secs(5),
    )
    .unwrap()
}

fn connector_with(env: &Env, cfg: &SmsConfig, transport: Arc<dyn SmsTransport>) -> SmsConnector {
    let ring = env.ring.clone();
    SmsConnector::new(
        env.store.clone(),
        transport,
        Arc::new(move || ring.clone()),
        cfg,
    )
}

fn connector(env: &Env, cfg: &SmsConfig) -> SmsConnector {
    connector_with(env, cfg, Arc::new(gateway(env, cfg)))
}

fn request(env: &Env, phones: &[&str]) -> Envelope<Value> {
    let req = SmsRequest {
        request_id: Uuid::now_v7(),
        template: "instant_push_handler".into(),
        params: [("case_no", "XF2026-0001"), ("summary", "拖欠工资")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        recipients: phones
            .iter()
            .map(|p| SmsRecipient {
                phone: env.ring.seal(p),
                role: Some("handler".into()),
            })
            .collect(),
        reason: Some("test".into()),
    };
    Envelope::new(
        SMS_REQUESTED,
        "xfhub",
        "430102",
        serde_json::to_value(req).unwrap(),
    )
}

fn id_of(env: &Envelope<Value>) -> String {
    env.payload["request_id"].as_str().unwrap().to_owned()
}

/// Applies the effects as the runtime would at ack time.
async fn ack(store: &Store, effects: Vec<Effect>) {
    let statements = effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Sql(s) => Some(s),
            _ => None,
        })
        .collect();
    store
        .transact(Txn {
            statements,
            ..Txn::default()
        })
        .await
        .unwrap();
}

fn statuses(v: &SmsView) -> Vec<(String, String, Option<String>)> {
    v.recipients
        .iter()
        .map(|r| (r.phone.clone(), r.status.clone(), r.error_code.clone()))
        .collect()
}

async fn redelivery_sends_no_second_text(env: Env) {
    let cfg = config(&env);
    let c = connector(&env, &cfg);
    let msg = request(&env, &["13800000001", "13800000002"]);
    // Delivered, handled, but the consumer dies before its ack: the effects never commit.
    let _lost = c.handle(&msg, 1).await.unwrap();
    let effects = c.handle(&msg, 2).await.unwrap();
    ack(&env.store, effects).await;
    assert_eq!(env.mock.texts_to("13800000001"), 1);
    assert_eq!(env.mock.texts_to("13800000002"), 1);
    assert_eq!(env.mock.calls(), 1, "the redelivery made no call");
    let v = get_sms(&env.store, &id_of(&msg)).await.unwrap().unwrap();
    assert_eq!(v.status, "sent");
    assert_eq!(v.attempts, 1);
    assert!(v
        .recipients
        .iter()
        .all(|r| r.status == "accepted" && r.biz_id.is_some()));
    assert_eq!(v.recipients[0].phone, "138****0001", "numbers are masked");
    // A third delivery after the ack (a replayed dead letter, say) sends nothing either.
    c.handle(&msg, 1).await.unwrap();
    assert_eq!(env.mock.texts().len(), 2);
}

#[tokio::test]
async fn redelivery_sends_no_second_text_sqlite() {
    redelivery_sends_no_second_text(sqlite_env().await).await;
}

#[tokio::test]
async fn redelivery_sends_no_second_text_postgres() {
    redelivery_sends_no_second_text(postgres_env().await).await;
}

/// A transport whose first answer is lost after the gateway accepted the call (the hub
/// crashed, or the connection broke, between the send and recording its outcome).
struct LoseFirstAnswer {
    inner: HttpGateway,
    lost: AtomicBool,
}

#[async_trait]
impl SmsTransport for LoseFirstAnswer {
    fn max_numbers(&self) -> usize {
        self.inner.max_numbers()
    }
    async fn send(&self, call: &SendCall<'_>) -> Result<Vec<PhoneOutcome>, TransportError> {
        let r = self.inner.send(call).await;
        if !self.lost.swap(true, Ordering::SeqCst) {
            return Err(TransportError::Transient("connection reset".into()));
        }
        r
    }
    async fn accepted(&self, out_id: &str) -> Result<Vec<(String, String)>, TransportError> {
        self.inner.accepted(out_id).await
    }
}

#[tokio::test]
async fn a_lost_answer_is_recovered_from_the_gateway_not_sent_again() {
    let env = sqlite_env().await;
    let cfg = config(&env);
    let t = LoseFirstAnswer {
        inner: gateway(&env, &cfg),
        lost: AtomicBool::new(false),
    };
    let c = connector_with(&env, &cfg, Arc::new(t));
    let msg = request(&env, &["13800000011"]);
    assert!(matches!(
        c.handle(&msg, 1).await,
        Err(HandlerError::Transient(_))
    ));
    ack(&env.store, c.handle(&msg, 2).await.unwrap()).await;
    assert_eq!(env.mock.texts_to("13800000011"), 1);
    let v = get_sms(&env.store, &id_of(&msg)).await.unwrap().unwrap();
    assert_eq!(v.status, "sent");
    assert_eq!(v.recipients[0].status, "accepted");
}

#[tokio::test]
async fn gateway_5xx_is_retried_and_sends_once() {
    let env = sqlite_env().await;
    let cfg = config(&env);
    let c = connector(&env, &cfg);
    env.mock.faults(|f| f.fail_next = 2);
    let msg = request(&env, &["13800000021"]);
    assert!(matches!(
        c.handle(&msg, 1).await,
        Err(HandlerError::Transient(_))
    ));
    assert!(matches!(
        c.handle(&msg, 2).await,
        Err(HandlerError::Transient(_))
    ));
    ack(&env.store, c.handle(&msg, 3).await.unwrap()).await;
    assert_eq!(env.mock.texts_to("13800000021"), 1);
    let v = get_sms(&env.store, &id_of(&msg)).await.unwrap().unwrap();
    assert_eq!((v.status.as_str(), v.attempts), ("sent", 3));
}

#[tokio::test]
async fn permanent_errors_are_recorded_with_the_reason_and_not_retried() {
    let env = sqlite_env().await;
    let cfg = config(&env);
    let c = connector(&env, &cfg);
    env.mock.faults(|f| {
        f.blacklisted.insert("13800000032".into());
        f.business_limited.insert("13800000033".into());
    });
    let msg = request(
        &env,
        &["13800000031", "13800000032", "13800000033", "12345"],
    );
    ack(&env.store, c.handle(&msg, 1).await.unwrap()).await;
    let v = get_sms(&env.store, &id_of(&msg)).await.unwrap().unwrap();
    assert_eq!(v.status, "partial");
    let mut got = statuses(&v);
    got.sort();
    assert_eq!(
        got,
        [
            (
                "*****".into(),
                "failed".into(),
                Some("invalid_number".into())
            ),
            ("138****0031".into(), "accepted".into(), None),
            (
                "138****0032".into(),
                "failed".into(),
                Some("blacklisted".into())
            ),
            (
                "138****0033".into(),
                "failed".into(),
                Some("business_limit".into())
            ),
        ]
    );
    assert!(v
        .recipients
        .iter()
        .any(|r| r.reason.as_deref() == Some("号码在黑名单中 (isv.BLACK_KEY_CONTROL_LIMIT)")));
    // Redelivered: nothing is pending, no call is made.
    let calls = env.mock.calls();
    c.handle(&msg, 2).await.unwrap();
    assert_eq!(env.mock.calls(), calls);
}

#[tokio::test]
async fn an_unknown_template_or_bad_parameters_are_recorded_not_sent() {
    let env = sqlite_env().await;
    let cfg = config(&env);
    let c = connector(&env, &cfg);
    let mut msg = request(&env, &["13800000041"]);
    msg.payload["template"] = "no_such".into();
    ack(&env.store, c.handle(&msg, 1).await.unwrap()).await;
    let v = get_sms(&env.store, &id_of(&msg)).await.unwrap().unwrap();
    assert_eq!(v.status, "failed");
    assert!(v.error.unwrap().starts_with("unknown_template"));
    let mut msg = request(&env, &["13800000041"]);
    msg.payload["params"]["extra"] = "x".into();
    ack(&env.store, c.handle(&msg, 1).await.unwrap()).await;
    let v = get_sms(&env.store, &id_of(&msg)).await.unwrap().unwrap();
    assert_eq!(
        v.error.as_deref(),
        Some("bad_parameters: params.extra: unknown_parameter")
    );
    assert_eq!(env.mock.calls(), 0);
    // Not a request at all: dead-lettered.
    let bad = Envelope::new(
        SMS_REQUESTED,
        "xfhub",
        "430102",
        serde_json::json!({"x": 1}),
    );
    assert!(matches!(
        c.handle(&bad, 1).await,
        Err(HandlerError::Permanent(_))
    ));
}

#[tokio::test]
async fn the_per_number_limit_holds_texts_back() {
    let env = sqlite_env().await;
    let cfg = SmsConfig {
        phone_per_minute: 2,
        ..config(&env)
    };
    let c = connector(&env, &cfg);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let msg = request(&env, &["13800000051"]);
        ack(&env.store, c.handle(&msg, 1).await.unwrap()).await;
        ids.push(id_of(&msg));
    }
    assert_eq!(env.mock.texts_to("13800000051"), 2);
    let last = get_sms(&env.store, &ids[2]).await.unwrap().unwrap();
    assert_eq!(last.status, "failed");
    assert_eq!(
        last.recipients[0].error_code.as_deref(),
        Some("rate_limited")
    );
}

#[tokio::test]
async fn numbers_are_batched_up_to_the_gateway_maximum() {
    let env = sqlite_env().await;
    let cfg = SmsConfig {
        max_numbers_per_call: 2,
        ..config(&env)
    };
    let c = connector(&env, &cfg);
    let phones: Vec<String> = (0..5).map(|i| format!("1390000006{i}")).collect();
    let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let msg = request(&env, &refs);
    ack(&env.store, c.handle(&msg, 1).await.unwrap()).await;
    assert_eq!(env.mock.calls(), 3);
    assert_eq!(env.mock.texts().len(), 5);
    assert!(env.mock.texts().iter().all(|t| t.out_id == id_of(&msg)));
}

fn report(phone: &str, out_id: &str, success: bool, at: &str) -> DeliveryReport {
    DeliveryReport {
        phone: phone.into(),
        send_time: "2026-11-28 10:00:00".into(),
        report_time: at.into(),
        success,
        err_code: if success { "DELIVERED" } else { "MK:0001" }.into(),
        biz_id: "b1".into(),
        out_id: out_id.into(),
    }
}

#[tokio::test]
async fn delivery_reports_twice_or_out_of_order_keep_the_latest_status() {
    let env = sqlite_env().await;
    let cfg = config(&env);
    let c = connector(&env, &cfg);
    let msg = request(&env, &["13800000071"]);
    ack(&env.store, c.handle(&msg, 1).await.unwrap()).await;
    let id = id_of(&msg);
    let newer = report("13800000071", &id, true, "2026-11-28 10:00:05");
    let older = report("13800000071", &id, false, "2026-11-28 10:00:03");
    let out = apply_reports(&env.store, &env.ring, &[newer.clone(), older, newer])
        .await
        .unwrap();
    assert_eq!(
        out,
        ReportOutcome {
            applied: 1,
            ignored: 2,
            unmatched: 0
        }
    );
    let v = get_sms(&env.store, &id).await.unwrap().unwrap();
    let r = &v.recipients[0];
    assert_eq!((r.status.as_str(), r.reports), ("delivered", 3));
    assert_eq!(r.report_at, parse_report_time("2026-11-28 10:00:05"));
    let unknown = report(
        "13800000071",
        &Uuid::now_v7().to_string(),
        true,
        "2026-11-28 10:00:05",
    );
    let out = apply_reports(&env.store, &env.ring, &[unknown])
        .await
        .unwrap();
    assert_eq!(out.unmatched, 1);
    let mut bad = report("123", "x", true, "yesterday");
    bad.send_time = "2026-11-28T10:00:00".into();
    let errs = check_reports(&[bad]).unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
    assert_eq!(fields, ["out_id", "phone", "report_time", "send_time"]);
}

#[test]
fn config_errors_are_all_reported() {
    let cfg = SmsConfig {
        gateway_url: Some("ftp://x".into()),
        max_numbers_per_call: 0,
        phone_per_day: 0,
        sign_name: String::new(),
        ..SmsConfig::default()
    };
    let errors = cfg.validate().unwrap_err();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(SmsConfig::default().validate().is_ok());
}
