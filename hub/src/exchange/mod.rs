//! Standard exchange packages for the city data platform (spec 5.1.7.1; format in
//! `contracts/xsd/exchange.xsd` and `xfhub_transforms::exchange`).
//!
//! - `GET /exchange/packages?infoset=petition|workorder|process_event&since=CURSOR&limit=N`
//!   streams a zip ([`export`]): records after the cursor in change-log order, a manifest with
//!   digests and the next cursor, an HMAC-SM3 signature with the puller's secret. Memory stays
//!   flat: pages of 1,000 records are read, written and dropped.
//! - `POST /exchange/packages` ([`import`]) checks the zip's structure, limits, signature (the
//!   pusher's secret), digests and every file's schema first and refuses an invalid package
//!   whole with every reason; a valid one is applied in batches through the shared intake
//!   (validation, sealing, idempotency), complainants go to the person register with the
//!   configured precedence rules ([`persons`]), and the answer is a report.
//! - `xfhub exchange pull | verify | import` ([`cli`]) do the same from a terminal.

pub mod cli;
pub mod export;
pub mod import;
pub mod persons;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use xfhub_transforms::exchange::InfoSet;

use crate::api::records::ConnectInfoOpt;
use crate::app::AppState;
use crate::auth::{info_set_denied, Caller, PendingNonce};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;

pub use persons::Rule;

/// `[exchange]`: exchange packages.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    /// Sender name written in the header of exported packages.
    pub sender: String,
    /// How an imported complainant's name updates a person already registered under the same
    /// identity number: `incoming` (the package wins), `existing` (the register wins; an empty
    /// value is filled) or `newer` (the more recently registered petition wins).
    pub person_name: Rule,
    /// The same for the mobile number.
    pub person_mobile: Rule,
    /// The same for the address and the detailed address.
    pub person_address: Rule,
    /// Most entries a package may have (header, manifest, signature and data files).
    pub max_entries: usize,
    /// Largest uncompressed size of one entry, in bytes.
    pub max_entry_bytes: u64,
    /// Largest uncompressed size of a whole package, in bytes.
    pub max_total_bytes: u64,
    /// Largest ratio of uncompressed to compressed size of an entry over 1 MiB (zip bombs).
    pub max_ratio: u64,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            sender: "xfhub".to_owned(),
            person_name: Rule::Newer,
            person_mobile: Rule::Newer,
            person_address: Rule::Newer,
            max_entries: 1_000,
            max_entry_bytes: 256 * 1024 * 1024,
            max_total_bytes: 4 * 1024 * 1024 * 1024,
            max_ratio: 100,
        }
    }
}

impl ExchangeConfig {
    /// Values serde cannot check.
    pub fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.sender.trim().is_empty() {
            errors.push("exchange.sender: must not be empty".to_owned());
        }
        if self.max_entries < 4 {
            errors.push("exchange.max_entries: must be at least 4".to_owned());
        }
        if self.max_ratio < 2 {
            errors.push("exchange.max_ratio: must be at least 2".to_owned());
        }
        if self.max_entry_bytes < 1024 || self.max_total_bytes < self.max_entry_bytes {
            errors.push(
                "exchange.max_entry_bytes: must be at least 1024 and at most max_total_bytes"
                    .to_owned(),
            );
        }
        errors
    }

    pub fn limits(&self) -> import::PackageLimits {
        import::PackageLimits {
            max_entries: self.max_entries,
            max_entry_bytes: self.max_entry_bytes,
            max_total_bytes: self.max_total_bytes,
            max_ratio: self.max_ratio,
        }
    }
}

/// Running state: the settings and the lock that applies one import at a time (the person
/// register is read, then written).
#[derive(Debug, Clone)]
pub struct ExchangeState {
    pub config: ExchangeConfig,
    pub import_lock: Arc<tokio::sync::Mutex<()>>,
}

impl ExchangeState {
    pub fn new(config: ExchangeConfig) -> Self {
        ExchangeState {
            config,
            import_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/exchange/packages", get(pull).post(push))
}

/// Parameters of `GET /exchange/packages`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PullQuery {
    /// `petition` | `workorder` | `process_event`
    pub infoset: String,
    /// Cursor: `cursor_to` of the previous package's manifest (default 0, the beginning).
    pub since: Option<i64>,
    /// Most records in the package, 1 to 1,000,000 (default 10,000).
    pub limit: Option<u64>,
}

fn infoset_of(s: &str) -> Result<InfoSet, ApiError> {
    InfoSet::parse(s).ok_or_else(|| {
        ApiError::bad_param(
            "infoset",
            "must be petition, workorder or process_event",
            "应为 petition、workorder 或 process_event",
        )
    })
}

fn require(caller: &Caller, scope: &str) -> Result<(), ApiError> {
    if caller.has_scope(scope) {
        Ok(())
    } else {
        Err(crate::auth::scope_denied(scope))
    }
}

/// The caller's signing secret, in clear: packages are signed with it.
async fn secret_of(s: &AppState, caller: &Caller) -> Result<zeroize::Zeroizing<String>, ApiError> {
    let client = s
        .store
        .get_client(&caller.app_key)
        .await
        .map_err(|e| ApiError::internal("read client", &e))?
        .ok_or_else(|| ApiError::internal("read client", &"client vanished"))?;
    s.keys
        .current()
        .open(&client.secret_sealed)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| ApiError::internal("open client secret", &e))
}

/// Pulls an exchange package: a zip streamed as it is written.
#[utoipa::path(get, path = "/exchange/packages", tag = "exchange", params(PullQuery),
    responses(
        (status = 200, description = "the package (application/zip): header.xml, data/NNNNNN.xml, manifest.xml (next cursor: cursor_to), signature.xml (HMAC-SM3 with the caller's secret)", content_type = "application/zip"),
        (status = 400, description = "bad parameter", body = ErrorBody),
    ))]
pub async fn pull(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    Query(q): Query<PullQuery>,
) -> Result<Response, ApiError> {
    let infoset = infoset_of(&q.infoset)?;
    let since = q.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::bad_param(
            "since",
            "must not be negative",
            "不能为负数",
        ));
    }
    let limit = q.limit.unwrap_or(10_000);
    if !(1..=1_000_000).contains(&limit) {
        return Err(ApiError::bad_param(
            "limit",
            "must be between 1 and 1000000",
            "必须在 1 到 1000000 之间",
        ));
    }
    require(&caller, "export")?;
    if !caller.has_info_set(infoset.as_str()) {
        return Err(info_set_denied(infoset.as_str()));
    }
    let secret = secret_of(&s, &caller).await?;
    let params = export::ExportParams {
        infoset,
        since,
        limit,
        sender: s.exchange.config.sender.clone(),
        receiver: caller.app_key.clone(),
        secret: secret.as_bytes().to_vec().into(),
        divisions: (!caller.all_divisions()).then(|| caller.divisions.clone()),
        mask: !caller.has_scope("pii:read"),
        remote,
    };
    let serial = export::new_serial();
    let body = export::stream(s.store.clone(), s.keys.current(), params, serial.clone());
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{serial}.zip\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&serial) {
        h.insert("x-package-serial", v);
    }
    Ok(resp)
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ImportReport {
    pub package_serial: String,
    pub infoset: String,
    pub records: u64,
    /// New records stored.
    pub inserted: u64,
    /// Newer versions of stored records.
    pub updated: u64,
    /// Repeats, older versions, deletions (not applied) and known process events.
    pub skipped: u64,
    /// Records that failed validation or conflict with a stored version (kept as import
    /// errors for correction).
    pub rejected: u64,
    pub persons_inserted: u64,
    pub persons_updated: u64,
    /// The first 100 rejected records with their reasons.
    pub rejects: Vec<RejectedRecord>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedRecord {
    pub seq: i64,
    pub source_id: Option<String>,
    pub reasons: Vec<crate::error::ApiFieldError>,
}

/// Pushes (imports) an exchange package.
#[utoipa::path(post, path = "/exchange/packages", tag = "exchange",
    request_body(content = Vec<u8>, content_type = "application/zip", description = "a package signed with the caller's secret"),
    responses(
        (status = 200, description = "applied; what happened to each record", body = ImportReport),
        (status = 403, description = "the caller may not import this info set", body = ErrorBody),
        (status = 415, description = "not application/zip", body = ErrorBody),
        (status = 422, description = "invalid package, nothing imported: every reason, by entry", body = ErrorBody),
        (status = 503, description = "the store failed; batches already applied stay (a repeat is safe)", body = ErrorBody),
    ))]
pub async fn push(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    nonce: Option<Extension<PendingNonce>>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    require(&caller, "import")?;
    // In a route group whose nonce waits for a stored record, record it now.
    crate::soap::use_nonce(&s, &nonce.map(|Extension(n)| n)).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime != "application/zip" && mime != "application/octet-stream" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the package as application/zip",
            "请以 application/zip 格式上传数据包",
        ));
    }
    let secret = secret_of(&s, &caller).await?;
    let limits = s.exchange.config.limits();
    let rules = persons::Rules::from_config(&s.exchange.config);
    let _one = s.exchange.import_lock.lock().await;
    let s2 = s.clone();
    let caller2 = caller.clone();
    let secret = secret.as_bytes().to_vec();
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Handle::current();
        import::import(
            &rt,
            &s2,
            &caller2,
            std::io::Cursor::new(body),
            &secret,
            &limits,
            &rules,
            &remote,
        )
    })
    .await
    .map_err(|e| ApiError::internal("import task", &e))?
    .map(Json)
}
