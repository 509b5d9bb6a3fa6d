//! Mock of the Changsha data resource management platform's 12345 work order interface: REST
//! JSON, paged by update time, signed requests, Chinese values.
//!
//! `GET /api/v1/workorders/changed?updatedAfter=yyyy-MM-dd HH:mm:ss.SSS&pageSize=100` answers
//! the orders updated strictly after `updatedAfter` (from the start when it is absent), oldest
//! first, at most 100 (see `xfhub_transforms::hotline12345` for the shapes). Every change has
//! its own update time (one second apart), so "updated after the last one seen" never skips
//! nor repeats a change. Errors: `401 {"code": 40100 | 40101, ...}` for a bad or expired
//! signature, `429 {"code": 42900}` with `Retry-After`, `400 {"code": 40000}` for bad
//! parameters, `503` for an unavailable platform.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::json;
use xfhub_transforms::hotline12345::{self as th, MAX_PAGE_SIZE};

use crate::core::Core;
use crate::faults::{check_signature, reset_body, Action, Credentials, Faults, SignatureError};
use crate::feed::Feed;
use crate::generator::{Generator, MAX_VERSION};
use crate::render::hotline_json;

/// Path of the changed-orders query.
pub const CHANGED_PATH: &str = "/api/v1/workorders/changed";
/// Format of update times.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// Settings of the 12345 mock.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotlineConfig {
    /// Address to listen on (`127.0.0.1:0`: any free port).
    pub listen: SocketAddr,
    /// Generator seed.
    pub seed: u64,
    /// Work orders in the backlog.
    pub records: u64,
    /// The credentials the hub signs with.
    pub credentials: Credentials,
    /// Move `advance_batch` orders one stage on every this many milliseconds (0: never).
    pub advance_every_ms: u64,
    pub advance_batch: usize,
    /// Keep a ledger of what was served (`GET /mock/ledger`).
    pub ledger: bool,
    pub faults: Faults,
}

impl Default for HotlineConfig {
    fn default() -> Self {
        HotlineConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 1,
            records: 1000,
            credentials: Credentials {
                app_key: "xfhub-12345".to_owned(),
                secret: "hotline-demo-secret".to_owned(),
            },
            advance_every_ms: 0,
            advance_batch: 10,
            ledger: false,
            faults: Faults::default(),
        }
    }
}

struct Mock {
    core: Arc<Core>,
    generator: Generator,
}

/// A running 12345 mock.
#[derive(Clone)]
pub struct HotlineMock {
    pub addr: SocketAddr,
    pub core: Arc<Core>,
    generator: Generator,
}

impl std::fmt::Debug for HotlineMock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotlineMock")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

fn base() -> DateTime<FixedOffset> {
    china()
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time")
}

/// Update time of feed position `seq`.
pub fn update_time(seq: u64) -> String {
    (base() + chrono::Duration::seconds(seq as i64))
        .format(TIME_FORMAT)
        .to_string()
}

/// The last position at or before `t` (0 before the first change).
fn seq_at(t: &str) -> Option<u64> {
    let naive = NaiveDateTime::parse_from_str(t, TIME_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S"))
        .ok()?;
    let t = china().from_local_datetime(&naive).single()?;
    let ms = (t - base()).num_milliseconds();
    Some(if ms < 0 { 0 } else { (ms / 1000) as u64 })
}

impl HotlineMock {
    /// Starts the mock in the background (inside a tokio runtime).
    pub async fn start(cfg: HotlineConfig) -> std::io::Result<HotlineMock> {
        cfg.faults
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.join("; ")))?;
        let generator = Generator::new(cfg.seed);
        let g = generator.clone();
        let feed = Feed::new(
            cfg.records,
            cfg.seed.wrapping_add(1),
            move |i| g.initial_version(i),
            |_| MAX_VERSION,
            cfg.ledger,
        );
        let core = Arc::new(Core::new(
            cfg.seed,
            cfg.credentials.clone(),
            feed,
            cfg.faults.clone(),
            Generator::order_no,
        ));
        let mock = Arc::new(Mock {
            core: core.clone(),
            generator: generator.clone(),
        });
        let app = Router::new()
            .route(CHANGED_PATH, get(changed))
            .with_state(mock)
            .merge(crate::core::admin_routes(core.clone()));
        let addr = crate::faults::spawn(cfg.listen, app).await?;
        crate::core::spawn_advance(
            core.clone(),
            Duration::from_millis(cfg.advance_every_ms),
            cfg.advance_batch,
        );
        tracing::info!(%addr, records = cfg.records, "HotlineMockStarted");
        Ok(HotlineMock {
            addr,
            core,
            generator,
        })
    }

    /// `http://addr` (the connector appends the query path).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn generator(&self) -> &Generator {
        &self.generator
    }
}

fn answer(status: StatusCode, code: i64, msg: &str) -> Response {
    (status, axum::Json(json!({ "code": code, "msg": msg }))).into_response()
}

fn query_param(q: &str, name: &str) -> Option<String> {
    q.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` and `+` of a query value.
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn changed(
    State(m): State<Arc<Mock>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = q.unwrap_or_default();
    let (action, faults) = m.core.draw();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if let Err(e) = check_signature(
        &m.core.credentials,
        &m.core.nonces,
        &headers,
        "GET",
        CHANGED_PATH,
        &q,
        &body,
    ) {
        m.core.refused_signature();
        return match e {
            SignatureError::Expired => answer(StatusCode::UNAUTHORIZED, 40101, "签名已过期"),
            SignatureError::Replayed => answer(StatusCode::UNAUTHORIZED, 40102, "请求重复"),
            _ => answer(StatusCode::UNAUTHORIZED, 40100, "签名校验失败"),
        };
    }
    match action {
        Action::Serve | Action::Reset => {}
        Action::RateLimited => {
            let mut r = answer(
                StatusCode::TOO_MANY_REQUESTS,
                42900,
                "请求过于频繁，请稍后再试",
            );
            if let Ok(v) = faults.retry_after_secs.to_string().parse() {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Action::ExpiredSignature => return answer(StatusCode::UNAUTHORIZED, 40101, "签名已过期"),
        Action::ServerError => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "<html><body>503 Service Temporarily Unavailable</body></html>",
            )
                .into_response()
        }
        Action::Timeout => tokio::time::sleep(Duration::from_millis(faults.timeout_ms)).await,
    }
    let after = match query_param(&q, "updatedAfter") {
        None => 0,
        Some(t) if t.is_empty() => 0,
        Some(t) => match seq_at(&t) {
            Some(s) => s,
            None => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    40000,
                    "updatedAfter 格式应为 yyyy-MM-dd HH:mm:ss.SSS",
                )
            }
        },
    };
    let size = match query_param(&q, "pageSize").map(|s| s.parse::<u32>()) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n as usize,
        _ => return answer(StatusCode::BAD_REQUEST, 40000, "pageSize 须在1到100之间"),
    };
    let plan = m.core.plan(after, size, &faults);
    let map = th::embedded_map();
    let list: Vec<serde_json::Value> = plan
        .changes
        .iter()
        .map(|(c, malformed)| {
            let w = m.generator.workorder(c.index, c.version);
            hotline_json(&w, map, &update_time(c.seq), *malformed)
        })
        .collect();
    // The cursor is the update time of the last position looked at, so that positions
    // skipped as superseded are not looked at again.
    let last = (plan.next > after).then(|| update_time(plan.next));
    let doc = json!({
        "code": 0,
        "msg": "成功",
        "data": {
            "total": list.len(),
            "hasMore": plan.has_more,
            "lastUpdateTime": last,
            "list": list,
        }
    });
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8");
    let body = if action == Action::Reset {
        reset_body(bytes[..bytes.len() / 2].to_vec())
    } else {
        Body::from(bytes)
    };
    builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_times_round_trip() {
        for seq in [0, 1, 59, 86_400, 1_000_000] {
            assert_eq!(seq_at(&update_time(seq)), Some(seq));
        }
        assert_eq!(seq_at("2023-12-31 23:59:59"), Some(0));
        assert_eq!(seq_at("yesterday"), None);
        assert_eq!(
            percent_decode("2024-01-01%2000:00:01.000"),
            "2024-01-01 00:00:01.000"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }
}
