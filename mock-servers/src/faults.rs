//! Fault injection shared by the provincial and 12345 mocks, and what both mocks share besides:
//! signature checks and the in-process server start.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

use axum::http::HeaderMap;
use rand::Rng;
use serde::{Deserialize, Serialize};
use xfhub_security::sign;

use crate::render::Malformation;

/// Faults a mock injects; every share is a probability between 0 and 1. Settable in the mock's
/// configuration file and at run time with `PUT /mock/faults` (the whole object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Delay added to every answer, in milliseconds.
    pub latency_ms: u64,
    /// Share of requests answered with a server error (HTTP 503 / SOAP `Server` fault).
    pub error_share: f64,
    /// Share of requests left unanswered for `timeout_ms` (the client's timeout fires).
    pub timeout_share: f64,
    /// How long an unanswered request hangs, in milliseconds.
    pub timeout_ms: u64,
    /// Share of requests whose connection is dropped in the middle of the answer.
    pub reset_share: f64,
    /// Share of a page's records that are repeats of records served on earlier pages.
    pub duplicate_share: f64,
    /// After each page, this share of the page size is updated at the source (new versions
    /// appended to the feed: records updated between pages).
    pub update_share: f64,
    /// Share of records (by record and version, so a repeat is spoiled the same way) served
    /// malformed.
    pub malformed_share: f64,
    /// Which malformations to use (default: all).
    pub malformed_kinds: Vec<Malformation>,
    /// Share of requests answered "signature expired" although the signature is good.
    pub expired_signature_share: f64,
    /// Share of requests answered "rate limited" (HTTP 429 / SOAP `Server.RateLimited`).
    pub rate_limit_share: f64,
    /// The `Retry-After` of a rate-limit answer, in seconds.
    pub retry_after_secs: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            error_share: 0.0,
            timeout_share: 0.0,
            timeout_ms: 60_000,
            reset_share: 0.0,
            duplicate_share: 0.0,
            update_share: 0.0,
            malformed_share: 0.0,
            malformed_kinds: Malformation::ALL.to_vec(),
            expired_signature_share: 0.0,
            rate_limit_share: 0.0,
            retry_after_secs: 1,
        }
    }
}

impl Faults {
    /// Every problem of the settings, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (name, v) in [
            ("error_share", self.error_share),
            ("timeout_share", self.timeout_share),
            ("reset_share", self.reset_share),
            ("duplicate_share", self.duplicate_share),
            ("update_share", self.update_share),
            ("malformed_share", self.malformed_share),
            ("expired_signature_share", self.expired_signature_share),
            ("rate_limit_share", self.rate_limit_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                errors.push(format!("{name}: must be between 0 and 1, not {v}"));
            }
        }
        if self.malformed_share > 0.0 && self.malformed_kinds.is_empty() {
            errors.push("malformed_kinds: empty while malformed_share > 0".to_owned());
        }
        if self.latency_ms > 60_000 || self.timeout_ms > 600_000 {
            errors.push("latency_ms / timeout_ms: at most 60000 / 600000".to_owned());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Whether (record, version) is served malformed, and how: decided by a hash, so the same
    /// version is spoiled the same way each time it is served.
    pub fn malformation(&self, seed: u64, index: u64, version: u32) -> Option<Malformation> {
        if self.malformed_share <= 0.0 || self.malformed_kinds.is_empty() {
            return None;
        }
        let mut h = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(version) << 48;
        h = (h ^ (h >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h = (h ^ (h >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^= h >> 33;
        let x = (h >> 11) as f64 / (1u64 << 53) as f64;
        (x < self.malformed_share)
            .then(|| self.malformed_kinds[(h % self.malformed_kinds.len() as u64) as usize])
    }
}

/// What to do with one request, drawn from the faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Serve,
    ServerError,
    Timeout,
    Reset,
    ExpiredSignature,
    RateLimited,
}

/// Draws the action of one request.
pub fn draw(f: &Faults, rng: &mut impl Rng) -> Action {
    let mut x: f64 = rng.gen();
    for (share, action) in [
        (f.rate_limit_share, Action::RateLimited),
        (f.expired_signature_share, Action::ExpiredSignature),
        (f.error_share, Action::ServerError),
        (f.timeout_share, Action::Timeout),
        (f.reset_share, Action::Reset),
    ] {
        if x < share {
            return action;
        }
        x -= share;
    }
    Action::Serve
}

/// The credentials a mock partner accepts (the hub's connector signs with them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub app_key: String,
    pub secret: String,
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    UnknownKey,
    Expired,
    Replayed,
    Invalid,
}

/// How long a signed request stays valid (DOMAIN.md §6: about 10 minutes).
pub const SIGNATURE_WINDOW_MS: i64 = 600_000;

/// Nonces seen recently (the newest 200,000).
#[derive(Debug, Default)]
pub struct Nonces {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Nonces {
    fn insert(&mut self, n: &str) -> bool {
        if !self.set.insert(n.to_owned()) {
            return false;
        }
        self.order.push_back(n.to_owned());
        if self.order.len() > 200_000 {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Checks the four signature headers of `xfhub_security::sign` (HMAC-SM3 over method, path,
/// query, timestamp, nonce and the body's SM3).
pub fn check_signature(
    creds: &Credentials,
    nonces: &std::sync::Mutex<Nonces>,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<(), SignatureError> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key), Some(ts), Some(nonce), Some(sig)) = (
        h(sign::HEADER_APP_KEY),
        h(sign::HEADER_TIMESTAMP),
        h(sign::HEADER_NONCE),
        h(sign::HEADER_SIGNATURE),
    ) else {
        return Err(SignatureError::Missing);
    };
    if key != creds.app_key {
        return Err(SignatureError::UnknownKey);
    }
    let now = chrono::Utc::now().timestamp_millis();
    if sign::check_timestamp(ts, now, SIGNATURE_WINDOW_MS).is_err() {
        return Err(SignatureError::Expired);
    }
    if !sign::verify(
        creds.secret.as_bytes(),
        sig,
        method,
        path,
        query,
        ts,
        nonce,
        body,
    ) {
        return Err(SignatureError::Invalid);
    }
    let fresh = nonces.lock().map(|mut n| n.insert(nonce)).unwrap_or(false);
    if !fresh {
        return Err(SignatureError::Replayed);
    }
    Ok(())
}

/// Binds `addr` (e.g. `127.0.0.1:0`) and serves `app` in the background; returns the bound
/// address.
pub async fn spawn(addr: SocketAddr, app: axum::Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "MockServerStopped");
        }
    });
    Ok(bound)
}

/// A body that fails after `prefix`: the client sees the connection drop mid-answer.
pub fn reset_body(prefix: Vec<u8>) -> axum::body::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(prefix),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected connection reset",
        )),
    ];
    axum::body::Body::from_stream(futures::stream::iter(chunks))
}
