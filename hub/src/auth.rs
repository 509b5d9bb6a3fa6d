//! Who is calling, and what they may do.
//!
//! Partner systems sign every request (HMAC-SM3, see `xfhub_security::sign`); the gateway
//! verifies the signature, the timestamp window and the nonce, then attaches a [`Caller`] to the
//! request. Handlers check operation scopes, info sets and divisions against it.

use serde::{Deserialize, Serialize};

/// Operation scopes a client can hold.
pub const OPERATION_SCOPES: &[&str] = &[
    "submit",
    "read",
    "write_back",
    "export",
    "import",
    "admin",
    "pii:read",
];

/// Info sets (kinds of data) a client can be allowed.
pub const INFO_SETS: &[&str] = &["petition", "workorder", "process_event"];

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub app_key: String,
    pub name: String,
    /// Operation scopes: `submit`, `read`, `write_back`, `export`, `import`, `admin`, `pii:read`.
    pub scopes: Vec<String>,
    /// Info sets: `petition`, `workorder`, `process_event`.
    pub info_sets: Vec<String>,
    /// Division codes the caller's data may concern; `*` = all.
    pub divisions: Vec<String>,
}

impl Caller {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn has_info_set(&self, set: &str) -> bool {
        self.info_sets.iter().any(|s| s == set || s == "*")
    }

    pub fn all_divisions(&self) -> bool {
        self.divisions.iter().any(|d| d == "*")
    }

    pub fn may_see_division(&self, division: &str) -> bool {
        self.all_divisions() || self.divisions.iter().any(|d| d == division)
    }
}

/// Groups of routes that share a scope and a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroup {
    /// Health, readiness, the OpenAPI document: open to everyone.
    Open,
    /// Submissions (`POST /api/v1/petitions`, `/workorders`).
    Submit,
    /// Reads of records and code tables, and the echo route.
    Read,
    /// `/admin/*` and `/metrics`.
    Admin,
    /// Excel uploads, import jobs and templates (`/api/v1/imports*`, `/api/v1/excel/*`).
    Import,
    /// Excel exports (`/api/v1/exports`).
    Export,
}

impl RouteGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteGroup::Open => "open",
            RouteGroup::Submit => "submit",
            RouteGroup::Read => "read",
            RouteGroup::Admin => "admin",
            RouteGroup::Import => "import",
            RouteGroup::Export => "export",
        }
    }

    /// The operation scope the group requires (None for open routes).
    pub fn required_scope(self) -> Option<&'static str> {
        match self {
            RouteGroup::Open => None,
            RouteGroup::Submit => Some("submit"),
            RouteGroup::Read => Some("read"),
            RouteGroup::Admin => Some("admin"),
            RouteGroup::Import => Some("import"),
            RouteGroup::Export => Some("export"),
        }
    }
}

/// The group of a request, by method and path.
pub fn group_of(method: &axum::http::Method, path: &str) -> RouteGroup {
    match path {
        "/healthz" | "/readyz" | "/openapi.json" => RouteGroup::Open,
        // The Xiangyiban app channel is not signed by partners: staff present JWTs of the
        // identity service, citizens public sessions; `crate::mobile` checks them and applies
        // its own per-IP and per-account limits.
        p if p.starts_with("/api/v1/app/") => RouteGroup::Open,
        "/metrics" => RouteGroup::Admin,
        p if p.starts_with("/admin/") || p == "/admin" => RouteGroup::Admin,
        p if p.starts_with("/api/v1/imports") || p.starts_with("/api/v1/excel/") => {
            RouteGroup::Import
        }
        "/api/v1/exports" => RouteGroup::Export,
        "/api/v1/petitions" | "/api/v1/workorders" if method == axum::http::Method::POST => {
            RouteGroup::Submit
        }
        // The WSDL and its schemas are public contracts, like the OpenAPI document.
        p if p.starts_with("/ws/") && method == axum::http::Method::GET => RouteGroup::Open,
        // SOAP calls and XML submissions are submissions: they record their nonce with what
        // they store; each SOAP operation checks its own scope as well.
        "/xml/v1/petitions" | "/xml/v1/workorders" if method == axum::http::Method::POST => {
            RouteGroup::Submit
        }
        p if p.starts_with("/ws/") => RouteGroup::Submit,
        "/exchange/packages" if method == axum::http::Method::POST => RouteGroup::Import,
        "/exchange/packages" => RouteGroup::Export,
        _ => RouteGroup::Read,
    }
}

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use xfhub_security::sign::{
    self, HEADER_APP_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use xfhub_store::{AuditDraft, ClientRecord, Store};

use crate::app::AppState;
use crate::error::{ApiError, ErrorCode};

/// How long a client's record is reused before it is read again: a disabled client or a
/// rotated secret takes effect within this time on every instance.
const CLIENT_CACHE_TTL: Duration = Duration::from_secs(5);

/// Settings of request authentication.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    /// Largest allowed difference between a request's timestamp and the hub's clock.
    pub window_ms: i64,
    /// Largest body read to check a signature (the route's own limit still applies).
    pub body_limit: usize,
    /// The same for Excel uploads (`[excel] max_upload_bytes` plus the multipart framing).
    pub upload_limit: usize,
}

/// Client records by app key, with the time each was read.
type ClientMap = HashMap<String, (Arc<ClientRecord>, Instant)>;

/// Recently read client records.
#[derive(Clone, Default)]
pub struct ClientCache {
    inner: Arc<Mutex<ClientMap>>,
}

impl ClientCache {
    async fn get(
        &self,
        store: &Store,
        app_key: &str,
    ) -> Result<Option<Arc<ClientRecord>>, ApiError> {
        if let Some((c, at)) = self.inner.lock().expect("client cache").get(app_key) {
            if at.elapsed() < CLIENT_CACHE_TTL {
                return Ok(Some(c.clone()));
            }
        }
        let found = store
            .get_client(app_key)
            .await
            .map_err(|e| ApiError::internal("read client", &e))?
            .map(Arc::new);
        let mut map = self.inner.lock().expect("client cache");
        match &found {
            Some(c) => {
                if map.len() > 10_000 {
                    map.clear();
                }
                map.insert(app_key.to_owned(), (c.clone(), Instant::now()));
            }
            None => {
                map.remove(app_key);
            }
        }
        Ok(found)
    }

    /// Forgets a client (after the CLI or an admin call changed it in this process).
    pub fn forget(&self, app_key: &str) {
        self.inner.lock().expect("client cache").remove(app_key);
    }
}

/// The client's address for the audit, when the server recorded the peer: `ip:port` of the
/// peer, or `client via proxy:port` behind a trusted proxy (`crate::client_ip`).
pub fn remote_of(req_extensions: &axum::http::Extensions) -> String {
    crate::client_ip::client_of(req_extensions)
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// Verifies the signature, timestamp, nonce and scope of every request except the open
/// routes, and attaches the [`Caller`]. Every refusal is audited.
pub async fn authenticate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let group = group_of(req.method(), req.uri().path());
    let Some(scope) = group.required_scope() else {
        return next.run(req).await;
    };
    let remote = remote_of(req.extensions());
    let target = format!("{} {}", req.method(), req.uri().path());
    // A monitoring scrape reads counters only; audited, a Prometheus server polling every
    // 15 s would add thousands of entries a day that record nothing. Its refusals still are.
    let audit_success = !(req.method() == Method::GET && req.uri().path() == "/metrics");
    match verify(&s, req, scope).await {
        Ok((caller, req)) => {
            let mut req = req;
            let app_key = caller.app_key.clone();
            req.extensions_mut().insert(caller);
            let resp = next.run(req).await;
            // Denials a handler makes (info set, division) and every admin action are audited
            // here, in one place.
            let code = resp.extensions().get::<ErrorCode>().map(|c| c.0.clone());
            // (A replayed submission was audited by the transaction that refused it.)
            let denial = code
                .as_deref()
                .filter(|c| c.starts_with("auth_") && *c != "auth_nonce_reused");
            if denial.is_some() || (group == RouteGroup::Admin && audit_success) {
                let draft = AuditDraft {
                    actor: app_key,
                    action: if denial.is_some() {
                        "auth.scope_denied".to_owned()
                    } else {
                        "admin.request".to_owned()
                    },
                    target,
                    outcome: code.unwrap_or_else(|| resp.status().as_u16().to_string()),
                    remote,
                    detail: String::new(),
                };
                if let Err(e) = s.store.audit(draft).await {
                    tracing::error!(error = %e, "AuditWriteError");
                }
            }
            resp
        }
        Err((err, actor)) => {
            let draft = AuditDraft {
                actor: actor.unwrap_or_else(|| "anonymous".to_owned()),
                action: if err.status == StatusCode::FORBIDDEN {
                    "auth.scope_denied"
                } else {
                    "auth.failed"
                }
                .to_owned(),
                target,
                outcome: err.body.code.clone(),
                remote,
                detail: String::new(),
            };
            if let Err(e) = s.store.audit(draft).await {
                tracing::error!(error = %e, "AuditWriteError");
            }
            tracing::info!(code = %err.body.code, "RequestDenied");
            err.into_response()
        }
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

type Denial = (ApiError, Option<String>);

async fn verify(s: &AppState, req: Request, scope: &str) -> Result<(Caller, Request), Denial> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let names = [
        HEADER_APP_KEY,
        HEADER_TIMESTAMP,
        HEADER_NONCE,
        HEADER_SIGNATURE,
    ];
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| header(h, n).is_none())
        .collect();
    if !missing.is_empty() {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth_missing",
            "the request is not signed: x-app-key, x-timestamp, x-nonce and x-signature are required",
            "请求未签名：缺少 x-app-key、x-timestamp、x-nonce 或 x-signature 请求头",
        );
        for m in missing {
            e = e.with_field(m, "required", "header missing", "缺少请求头");
        }
        return Err((e, None));
    }
    let app_key = header(h, HEADER_APP_KEY).unwrap_or_default().to_owned();
    let actor = Some(app_key.clone());
    let fail = |e: ApiError| (e, actor.clone());
    let client = s.clients.get(&s.store, &app_key).await.map_err(&fail)?;
    let Some(client) = client else {
        return Err(fail(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth_unknown_key",
            "unknown app key",
            "应用标识不存在",
        )));
    };
    if client.disabled {
        return Err(fail(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth_client_disabled",
            "this client is disabled",
            "该接入系统已停用",
        )));
    }
    let now = xfhub_store::now_ms();
    let timestamp = header(h, HEADER_TIMESTAMP).unwrap_or_default().to_owned();
    if let Err(e) = sign::check_timestamp(&timestamp, now, s.auth.window_ms) {
        return Err(fail(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth_timestamp",
            format!("timestamp rejected: {e}; send the current time in milliseconds"),
            "时间戳无效或超出允许的时间窗口",
        )));
    }
    let limit = if group_of(&parts.method, parts.uri.path()) == RouteGroup::Import {
        s.auth.upload_limit
    } else {
        s.auth.body_limit
    };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return Err(fail(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body is larger than this route accepts",
                "请求体超过允许的大小",
            )))
        }
    };
    let nonce = header(h, HEADER_NONCE).unwrap_or_default().to_owned();
    let signature = header(h, HEADER_SIGNATURE).unwrap_or_default();
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let method = parts.method.as_str();
    let ring = s.keys.current();
    let mut secrets = vec![client.secret_sealed.as_str()];
    if let (Some(old), Some(until)) = (&client.old_secret_sealed, client.old_valid_until_ms) {
        if now <= until {
            secrets.push(old);
        }
    }
    let good = secrets.iter().any(|sealed| match ring.open(sealed) {
        Ok(secret) => sign::verify(
            secret.as_bytes(),
            signature,
            method,
            path,
            query,
            &timestamp,
            &nonce,
            &bytes,
        ),
        Err(e) => {
            tracing::error!(error = %e, "ClientSecretUnreadable");
            false
        }
    });
    if !good {
        return Err(fail(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "auth_bad_signature",
            "the signature does not match the request",
            "签名校验失败",
        )));
    }
    let expires_at = now + 2 * s.auth.window_ms;
    let pending = if scope == "submit" {
        // A submission records its nonce in the transaction that stores the record: a replay
        // is refused there, atomically, without a commit of its own.
        Some(PendingNonce {
            app_key: app_key.clone(),
            nonce: nonce.clone(),
            expires_at,
        })
    } else {
        match s.store.use_nonce(&app_key, &nonce, expires_at).await {
            Ok(true) => None,
            Ok(false) => return Err(fail(nonce_reused())),
            Err(e) => return Err(fail(ApiError::internal("nonce", &e))),
        }
    };
    let caller = Caller {
        app_key: client.app_key.clone(),
        name: client.name.clone(),
        scopes: client.scopes.clone(),
        info_sets: client.info_sets.clone(),
        divisions: client.divisions.clone(),
    };
    if !caller.has_scope(scope) {
        return Err(fail(scope_denied(scope)));
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    if let Some(p) = pending {
        req.extensions_mut().insert(p);
    }
    Ok((caller, req))
}

/// A submission's nonce, to be recorded with the record it submits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNonce {
    pub app_key: String,
    pub nonce: String,
    pub expires_at: i64,
}

impl PendingNonce {
    pub fn into_tuple(self) -> (String, String, i64) {
        (self.app_key, self.nonce, self.expires_at)
    }
}

/// 401 for a nonce seen before.
pub fn nonce_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "auth_nonce_reused",
        "this nonce was already used: the request is a replay",
        "随机数已被使用（疑似重放请求）",
    )
}

/// 403 for a missing operation scope.
pub fn scope_denied(scope: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "auth_scope_denied",
        format!("this client lacks the scope {scope:?}"),
        format!("该接入系统没有 {scope} 权限"),
    )
}

/// 403 for data of an info set the caller may not use.
pub fn info_set_denied(set: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "auth_info_set_denied",
        format!("this client may not use the info set {set:?}"),
        format!("该接入系统无权访问信息集 {set}"),
    )
}

/// 403 for data of a division outside the caller's scope.
pub fn division_denied(division: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "auth_division_denied",
        format!("this client may not use data of division {division}"),
        format!("该接入系统无权访问区划 {division} 的数据"),
    )
    .with_field(
        "division",
        "auth_division_denied",
        "outside the client's divisions",
        "超出授权区划",
    )
}
