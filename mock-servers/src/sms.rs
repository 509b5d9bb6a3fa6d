//! Mock SMS gateway (DOMAIN.md §6, "SMS over HTTP"), with fault injection.
//!
//! The API has the shape of the common cloud SMS gateways:
//!
//! - `POST /sms/send` `{phone_numbers: [..] (at most 1,000), sign_name, template_code,
//!   template_param (JSON object), out_id}` answers `{code: "OK", biz_id, results: [{phone,
//!   code}]}`; each number has its own result code: `OK`, `isv.MOBILE_NUMBER_ILLEGAL`,
//!   `isv.BUSINESS_LIMIT_CONTROL` (over the per-number limit), `isv.BLACK_KEY_CONTROL_LIMIT`
//!   (blacklisted). A call-level failure is `{code: <error>}` with HTTP 400, or a 5xx.
//! - `POST /sms/query` `{out_id}` answers `{code: "OK", records: [{phone, biz_id}]}`: every
//!   number the gateway accepted under that out id (what the hub asks after a crash).
//! - Delivery reports are pushed to the configured callback as a JSON array `[{phone,
//!   send_time, report_time, success, err_code, biz_id, out_id}]`, signed with the hub's
//!   request signature (the gateway is a client of the hub); anything but `{"code":0}` is
//!   retried after 1, 5 and 10 units (a unit is a minute in production, configurable here).
//!
//! Like the real gateways, the mock does **not** de-duplicate: every accepted call is a text
//! sent, and [`MockSmsGateway::texts`] lists them all, so tests count texts per number.
//!
//! Requests must carry the hub's signature headers made with the gateway access key and secret
//! (`xfhub_security::sign`); a bad signature is answered 401 `isv.SIGNATURE_INVALID`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use xfhub_security::sign;

/// Result code of an accepted number.
pub const CODE_OK: &str = "OK";
/// The number is not a valid mobile number (permanent).
pub const CODE_INVALID_NUMBER: &str = "isv.MOBILE_NUMBER_ILLEGAL";
/// The number is over its per-minute, per-hour or per-day limit (permanent for this text).
pub const CODE_BUSINESS_LIMIT: &str = "isv.BUSINESS_LIMIT_CONTROL";
/// The number is blacklisted (permanent).
pub const CODE_BLACKLISTED: &str = "isv.BLACK_KEY_CONTROL_LIMIT";

/// How delivery reports are pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMode {
    /// One report per number, `report_delay` after the send.
    Normal,
    /// No report at all.
    Never,
    /// Each report pushed twice.
    Twice,
    /// The reports of one call pushed in reverse order, and each number's final report
    /// followed by a stale, older failure report for the same text.
    OutOfOrder,
}

/// Settings of the mock; the faults can also be changed while it runs ([`MockSmsGateway::faults`]).
#[derive(Debug, Clone)]
pub struct SmsMockConfig {
    /// Access key the hub signs its calls with.
    pub access_key: String,
    /// Its secret.
    pub access_secret: String,
    /// Where delivery reports go (`http://host:port/api/v1/sms/delivery-reports`); None: none.
    pub callback_url: Option<String>,
    /// The hub client the gateway signs its callbacks as (app key, secret).
    pub callback_client: Option<(String, String)>,
    /// Per-number limits of the gateway: per minute, hour, day.
    pub per_number: (u32, u32, u32),
    /// The retry unit of the callback (1, 5, 10 units): a minute in production.
    pub retry_unit: Duration,
}

impl Default for SmsMockConfig {
    fn default() -> Self {
        SmsMockConfig {
            access_key: "sms-mock-key".to_owned(),
            access_secret: "sms-mock-secret".to_owned(),
            callback_url: None,
            callback_client: None,
            per_number: (1, 5, 10),
            retry_unit: Duration::from_secs(60),
        }
    }
}

/// Faults injected into the next calls.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Delay before each answer.
    pub latency: Duration,
    /// Delay after a send call was accepted (its texts sent) and before it is answered: a
    /// caller that dies in this window has sent texts without knowing it.
    pub answer_delay: Duration,
    /// The next this-many send calls answer 503.
    pub fail_next: u32,
    /// Numbers answered `isv.BUSINESS_LIMIT_CONTROL` whatever their count.
    pub business_limited: HashSet<String>,
    /// Numbers answered `isv.BLACK_KEY_CONTROL_LIMIT`.
    pub blacklisted: HashSet<String>,
    /// How delivery reports are pushed.
    pub reports: ReportMode,
    /// Delay between a send and its report (a late report: make it long).
    pub report_delay: Duration,
    /// Numbers whose report says undelivered (`MK:0001`).
    pub undeliverable: HashSet<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            answer_delay: Duration::ZERO,
            fail_next: 0,
            business_limited: HashSet::new(),
            blacklisted: HashSet::new(),
            reports: ReportMode::Normal,
            report_delay: Duration::from_millis(20),
            undeliverable: HashSet::new(),
        }
    }
}

/// One text the gateway sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentText {
    pub phone: String,
    pub out_id: String,
    pub biz_id: String,
    pub template_code: String,
    pub template_param: Value,
    pub sent_at_ms: i64,
}

#[derive(Default)]
struct Shared {
    texts: Vec<SentText>,
    /// Calls received (also the failed ones), for tests that wait for a call to arrive.
    calls: u64,
    /// Accepted send times per number, for the per-number limits.
    history: HashMap<String, Vec<i64>>,
    callbacks_ok: u64,
    callbacks_failed: u64,
}

/// Callback URL and the (app key, secret) the pushes are signed with.
type Callback = (Option<String>, Option<(String, String)>);

struct Inner {
    config: SmsMockConfig,
    /// Callback URL and client, changeable while the mock runs.
    callback: Mutex<Callback>,
    faults: Mutex<Faults>,
    shared: Mutex<Shared>,
    http: reqwest::Client,
}

/// A running mock gateway; stops when dropped.
pub struct MockSmsGateway {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MockSmsGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockSmsGateway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MockSmsGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    phone_numbers: Vec<String>,
    sign_name: String,
    template_code: String,
    template_param: Value,
    out_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    out_id: String,
}

/// Most numbers in one send call.
pub const MAX_NUMBERS_PER_CALL: usize = 1000;

impl MockSmsGateway {
    /// Starts the mock on `addr` (port 0: any free port).
    pub async fn start(addr: SocketAddr, config: SmsMockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            callback: Mutex::new((config.callback_url.clone(), config.callback_client.clone())),
            config,
            faults: Mutex::new(Faults::default()),
            shared: Mutex::new(Shared::default()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(std::io::Error::other)?,
        });
        let app = Router::new()
            .route("/sms/send", post(send))
            .route("/sms/query", post(query))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "SmsMockServeError");
            }
        });
        Ok(MockSmsGateway { inner, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the injected faults.
    pub fn faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.inner.faults.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Where delivery reports go from now on, signed as `client` (app key, secret).
    pub fn set_callback(&self, url: &str, client: Option<(String, String)>) {
        *self
            .inner
            .callback
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (Some(url.to_owned()), client);
    }

    /// Every text sent so far, in order.
    pub fn texts(&self) -> Vec<SentText> {
        self.shared().texts.clone()
    }

    /// Texts sent to `phone`.
    pub fn texts_to(&self, phone: &str) -> usize {
        self.shared()
            .texts
            .iter()
            .filter(|t| t.phone == phone)
            .count()
    }

    /// Send calls received, failed ones included.
    pub fn calls(&self) -> u64 {
        self.shared().calls
    }

    /// Delivery-report pushes answered `{"code":0}` and the ones that were not.
    pub fn callbacks(&self) -> (u64, u64) {
        let s = self.shared();
        (s.callbacks_ok, s.callbacks_failed)
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.inner.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

fn verify(inner: &Inner, headers: &HeaderMap, path: &str, body: &[u8]) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    h(sign::HEADER_APP_KEY) == inner.config.access_key
        && sign::verify(
            inner.config.access_secret.as_bytes(),
            h(sign::HEADER_SIGNATURE),
            "POST",
            path,
            "",
            h(sign::HEADER_TIMESTAMP),
            h(sign::HEADER_NONCE),
            body,
        )
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A mainland mobile: 11 digits, `1[3-9]...`.
fn valid_mobile(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() == 11
        && b.iter().all(u8::is_ascii_digit)
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
}

async fn send(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner.shared.lock().unwrap_or_else(|e| e.into_inner()).calls += 1;
    let faults = inner
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    {
        let mut f = inner.faults.lock().unwrap_or_else(|e| e.into_inner());
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "isp.SYSTEM_ERROR",
                "injected failure",
            );
        }
    }
    if !verify(&inner, &headers, "/sms/send", &body) {
        return error(
            StatusCode::UNAUTHORIZED,
            "isv.SIGNATURE_INVALID",
            "bad signature",
        );
    }
    let req: SendBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "isv.INVALID_PARAMETERS",
                &e.to_string(),
            )
        }
    };
    if req.phone_numbers.is_empty() || req.phone_numbers.len() > MAX_NUMBERS_PER_CALL {
        return error(
            StatusCode::BAD_REQUEST,
            "isv.INVALID_PARAMETERS",
            "phone_numbers: 1 to 1000 numbers",
        );
    }
    if req.sign_name.is_empty() || req.template_code.is_empty() || req.out_id.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "isv.INVALID_PARAMETERS",
            "missing field",
        );
    }
    if !req.template_param.is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            "isv.INVALID_JSON_PARAM",
            "template_param",
        );
    }
    let biz_id = uuid::Uuid::now_v7().simple().to_string();
    let now = now_ms();
    let (per_min, per_hour, per_day) = inner.config.per_number;
    let mut results = Vec::new();
    let mut accepted = Vec::new();
    {
        let mut s = inner.shared.lock().unwrap_or_else(|e| e.into_inner());
        for phone in &req.phone_numbers {
            let code = if !valid_mobile(phone) {
                CODE_INVALID_NUMBER
            } else if faults.blacklisted.contains(phone) {
                CODE_BLACKLISTED
            } else {
                let h = s.history.entry(phone.clone()).or_default();
                let within = |ms: i64| h.iter().filter(|t| now - **t < ms).count() as u32;
                if faults.business_limited.contains(phone)
                    || within(60_000) >= per_min
                    || within(3_600_000) >= per_hour
                    || within(86_400_000) >= per_day
                {
                    CODE_BUSINESS_LIMIT
                } else {
                    h.push(now);
                    CODE_OK
                }
            };
            if code == CODE_OK {
                let text = SentText {
                    phone: phone.clone(),
                    out_id: req.out_id.clone(),
                    biz_id: biz_id.clone(),
                    template_code: req.template_code.clone(),
                    template_param: req.template_param.clone(),
                    sent_at_ms: now,
                };
                s.texts.push(text.clone());
                accepted.push(text);
            }
            results.push(json!({"phone": phone, "code": code}));
        }
    }
    if !accepted.is_empty() {
        tokio::spawn(push_reports(inner.clone(), accepted, faults.clone()));
    }
    if !faults.answer_delay.is_zero() {
        tokio::time::sleep(faults.answer_delay).await;
    }
    Json(json!({"code": CODE_OK, "message": "OK", "biz_id": biz_id, "results": results}))
        .into_response()
}

async fn query(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let latency = inner
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if !verify(&inner, &headers, "/sms/query", &body) {
        return error(
            StatusCode::UNAUTHORIZED,
            "isv.SIGNATURE_INVALID",
            "bad signature",
        );
    }
    let req: QueryBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "isv.INVALID_PARAMETERS",
                &e.to_string(),
            )
        }
    };
    let s = inner.shared.lock().unwrap_or_else(|e| e.into_inner());
    let records: Vec<Value> = s
        .texts
        .iter()
        .filter(|t| t.out_id == req.out_id)
        .map(|t| json!({"phone": t.phone, "biz_id": t.biz_id}))
        .collect();
    Json(json!({"code": CODE_OK, "records": records})).into_response()
}

fn report(t: &SentText, success: bool, err_code: &str, report_time: i64) -> Value {
    let fmt = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string()
    };
    json!({
        "phone": t.phone,
        "send_time": fmt(t.sent_at_ms),
        "report_time": fmt(report_time),
        "success": success,
        "err_code": err_code,
        "biz_id": t.biz_id,
        "out_id": t.out_id,
    })
}

/// Pushes the delivery reports of one call as the faults say.
async fn push_reports(inner: Arc<Inner>, texts: Vec<SentText>, faults: Faults) {
    let no_callback = inner
        .callback
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .is_none();
    if faults.reports == ReportMode::Never || no_callback {
        return;
    }
    tokio::time::sleep(faults.report_delay).await;
    let now = now_ms();
    let mut reports: Vec<Value> = texts
        .iter()
        .map(|t| {
            if faults.undeliverable.contains(&t.phone) {
                report(t, false, "MK:0001", now)
            } else {
                report(t, true, "DELIVERED", now)
            }
        })
        .collect();
    let mut pushes = Vec::new();
    match faults.reports {
        ReportMode::Normal => pushes.push(reports),
        ReportMode::Twice => {
            pushes.push(reports.clone());
            pushes.push(reports);
        }
        ReportMode::OutOfOrder => {
            reports.reverse();
            // A stale report (older report time) arrives after the final one.
            let stale: Vec<Value> = texts
                .iter()
                .rev()
                .map(|t| report(t, false, "MK:STALE", now - 1_000))
                .collect();
            for r in reports {
                pushes.push(vec![r]);
            }
            pushes.push(stale);
        }
        ReportMode::Never => {}
    }
    for batch in pushes {
        deliver(&inner, &batch).await;
    }
}

/// One push with the gateway's retry schedule: after 1, 5 and 10 units.
async fn deliver(inner: &Inner, batch: &[Value]) {
    let (url, client) = inner
        .callback
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(url) = url else {
        return;
    };
    let body = serde_json::to_vec(batch).expect("reports serialize");
    for wait in [0u32, 1, 5, 10] {
        if wait > 0 {
            tokio::time::sleep(inner.config.retry_unit * wait).await;
        }
        let mut req = inner
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some((key, secret)) = &client {
            let path = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                .unwrap_or("/");
            for (name, value) in sign::sign_headers(
                key,
                secret.as_bytes(),
                "POST",
                path,
                &body,
                now_ms(),
                &sign::new_nonce(),
            ) {
                req = req.header(name, value);
            }
        }
        let ok = match req.send().await {
            Ok(resp) => resp
                .json::<Value>()
                .await
                .is_ok_and(|v| v.get("code") == Some(&json!(0))),
            Err(_) => false,
        };
        let mut s = inner.shared.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            s.callbacks_ok += 1;
            return;
        }
        s.callbacks_failed += 1;
    }
}

/// `xfhub-mocks sms`: runs the mock gateway until ctrl-c. Returns the exit code.
pub fn cli(args: &[String]) -> i32 {
    use clap::Parser;

    /// Mock SMS gateway with fault injection.
    #[derive(Debug, Parser)]
    #[command(name = "xfhub-mocks sms")]
    struct Args {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7810")]
        listen: SocketAddr,
        /// Access key the hub signs its calls with.
        #[arg(long, default_value = "sms-mock-key")]
        access_key: String,
        /// Its secret (prefer the environment variable).
        #[arg(
            long,
            env = "XFHUB_MOCK_SMS_SECRET",
            default_value = "sms-mock-secret",
            hide_env_values = true
        )]
        access_secret: String,
        /// Delivery-report callback URL of the hub.
        #[arg(long)]
        callback_url: Option<String>,
        /// App key of the hub client the gateway signs callbacks as.
        #[arg(long, requires = "callback_secret")]
        callback_app_key: Option<String>,
        /// Its secret.
        #[arg(long, env = "XFHUB_MOCK_SMS_CALLBACK_SECRET", hide_env_values = true)]
        callback_secret: Option<String>,
        /// Injected latency per call, in ms.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Delay of delivery reports, in ms.
        #[arg(long, default_value_t = 200)]
        report_delay_ms: u64,
        /// Report mode: normal, never, twice, out-of-order.
        #[arg(long, default_value = "normal")]
        reports: String,
    }
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return 2;
        }
    };
    let reports = match args.reports.as_str() {
        "normal" => ReportMode::Normal,
        "never" => ReportMode::Never,
        "twice" => ReportMode::Twice,
        "out-of-order" => ReportMode::OutOfOrder,
        other => {
            eprintln!("--reports: unknown mode {other:?} (normal, never, twice, out-of-order)");
            return 2;
        }
    };
    let config = SmsMockConfig {
        access_key: args.access_key,
        access_secret: args.access_secret,
        callback_url: args.callback_url,
        callback_client: args.callback_app_key.zip(args.callback_secret),
        ..SmsMockConfig::default()
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xfhub-mocks sms: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let mock = match MockSmsGateway::start(args.listen, config).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("xfhub-mocks sms: cannot listen on {}: {e}", args.listen);
                return 1;
            }
        };
        mock.faults(|f| {
            f.latency = Duration::from_millis(args.latency_ms);
            f.report_delay = Duration::from_millis(args.report_delay_ms);
            f.reports = reports;
        });
        eprintln!("mock SMS gateway listening on {}", mock.addr());
        let _ = tokio::signal::ctrl_c().await;
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn call(m: &MockSmsGateway, path: &str, body: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", m.url()))
            .body(body.clone());
        for (n, v) in sign::sign_headers(
            "sms-mock-key",
            b"sms-mock-secret",
            "POST",
            path,
            &body,
            now_ms(),
            &sign::new_nonce(),
        ) {
            req = req.header(n, v);
        }
        let resp = req.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    fn send_body(phones: &[&str], out_id: &str) -> Value {
        json!({"phone_numbers": phones, "sign_name": "长沙信访", "template_code": "t",
               "template_param": {"a": "b"}, "out_id": out_id})
    }

    #[tokio::test]
    async fn limits_codes_faults_and_query() {
        let m = MockSmsGateway::start(([127, 0, 0, 1], 0).into(), SmsMockConfig::default())
            .await
            .unwrap();
        m.faults(|f| {
            f.blacklisted.insert("13900000002".into());
        });
        let (status, body) = call(
            &m,
            "/sms/send",
            &send_body(&["13900000001", "12345", "13900000002"], "o1"),
        )
        .await;
        assert_eq!(status, 200);
        let codes: Vec<&str> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, [CODE_OK, CODE_INVALID_NUMBER, CODE_BLACKLISTED]);
        // Second text to the same number within a minute: over the limit.
        let (_, body) = call(&m, "/sms/send", &send_body(&["13900000001"], "o2")).await;
        assert_eq!(body["results"][0]["code"], CODE_BUSINESS_LIMIT);
        assert_eq!(m.texts_to("13900000001"), 1);
        m.faults(|f| f.fail_next = 1);
        let (status, _) = call(&m, "/sms/send", &send_body(&["13900000003"], "o3")).await;
        assert_eq!(status, 503);
        let (_, q) = call(&m, "/sms/query", &json!({"out_id": "o1"})).await;
        assert_eq!(q["records"].as_array().unwrap().len(), 1);
        assert_eq!(q["records"][0]["phone"], "13900000001");
        // A bad signature is refused.
        let resp = reqwest::Client::new()
            .post(format!("{}/sms/send", m.url()))
            .body(serde_json::to_vec(&send_body(&["13900000004"], "o4")).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(m.calls(), 4, "send calls, the refused ones included");
    }
}
