//! Admin: message trail, dead letters and their replay, import errors, the routing table.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use xfhub_store::{DeadLetter, ImportError, TrailHop};

use axum::extract::Extension;
use xfhub_store::AuditDraft;

use crate::api::records::ConnectInfoOpt;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{PathParam, Query};

/// `limit` of an admin listing: 1 to 1000, default 100.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_param(
            "limit",
            "must be between 1 and 1000",
            "必须在 1 到 1000 之间",
        ))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trail {
    pub message_id: String,
    /// Every hop in order: published, delivered, retry_scheduled, acked, dead_lettered, replayed,
    /// consumed.
    pub hops: Vec<TrailHop>,
}

/// Every hop of one message through the bus.
#[utoipa::path(get, path = "/admin/messages/{id}/trail", tag = "admin",
    params(("id" = String, Path, description = "message id (UUID)")),
    responses((status = 200, body = Trail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn trail(
    State(s): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Trail>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "the message id is not a UUID",
            "消息编号格式错误",
        )
    })?;
    let hops = s
        .store
        .trail(&id.to_string())
        .await
        .map_err(|e| ApiError::internal("trail", &e))?;
    if hops.is_empty() {
        return Err(ApiError::not_found("message"));
    }
    Ok(Json(Trail {
        message_id: id.to_string(),
        hops,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterFilter {
    /// Include dead letters already replayed (default false).
    pub all: Option<bool>,
    /// At most this many, newest first (1 to 1000, default 100).
    pub limit: Option<u32>,
}

/// Dead letters, newest first, with their reasons.
#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin", params(DeadLetterFilter),
    responses((status = 200, body = Vec<DeadLetter>), (status = 400, body = ErrorBody)))]
pub async fn dead_letters(
    State(s): State<AppState>,
    Query(f): Query<DeadLetterFilter>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let limit = page_limit(f.limit)?;
    let mut letters = s
        .store
        .dead_letters(!f.all.unwrap_or(false), limit)
        .await
        .map_err(|e| ApiError::internal("dead letters", &e))?;
    // Sealed personal data stays sealed here; show it as masked rather than as ciphertext.
    for d in &mut letters {
        redact_sealed(&mut d.envelope);
    }
    Ok(Json(letters))
}

/// Replaces every sealed value (`enc:v1:...`) in a JSON value with `***`.
pub fn redact_sealed(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if xfhub_security::keys::KeyRing::is_sealed(s) => {
            *s = "***".to_owned()
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_sealed),
        serde_json::Value::Object(o) => o.values_mut().for_each(redact_sealed),
        _ => {}
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub dead_letter_id: i64,
    /// The queue the message went back to.
    pub queue: String,
}

/// Puts a dead letter back on its queue; its consumer gets it again.
#[utoipa::path(post, path = "/admin/dead-letters/{id}/replay", tag = "admin",
    params(("id" = i64, Path, description = "dead letter id")),
    responses((status = 200, body = Replayed), (status = 400, body = ErrorBody),
              (status = 404, description = "no such dead letter, or replayed already", body = ErrorBody)))]
pub async fn replay(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(id): PathParam<String>,
) -> Result<Json<Replayed>, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "the dead letter id is not a number",
            "死信编号格式错误",
        )
    })?;
    match s
        .bus
        .replay(id)
        .await
        .map_err(|e| ApiError::internal("replay", &e))?
    {
        Some(queue) => {
            tracing::info!(dead_letter_id = id, queue = %queue, "DeadLetterReplayed");
            let draft = AuditDraft {
                actor: caller.app_key.clone(),
                action: "dead_letter.replay".to_owned(),
                target: id.to_string(),
                outcome: "ok".to_owned(),
                remote,
                detail: format!("queue={queue}"),
            };
            s.store
                .audit(draft)
                .await
                .map_err(|e| ApiError::internal("audit", &e))?;
            Ok(Json(Replayed {
                dead_letter_id: id,
                queue,
            }))
        }
        None => Err(ApiError::not_found("open dead letter")),
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportErrorFilter {
    /// At most this many, oldest first (1 to 1000, default 100).
    pub limit: Option<u32>,
}

/// Records that failed mapping or validation on their way in, with every reason.
#[utoipa::path(get, path = "/admin/import-errors", tag = "admin", params(ImportErrorFilter),
    responses((status = 200, body = Vec<ImportError>), (status = 400, body = ErrorBody)))]
pub async fn import_errors(
    State(s): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<crate::auth::Caller>,
    Query(f): Query<ImportErrorFilter>,
) -> Result<Json<Vec<ImportError>>, ApiError> {
    let limit = page_limit(f.limit)?;
    let mut errors = s
        .store
        .import_errors(limit)
        .await
        .map_err(|e| ApiError::internal("import errors", &e))?;
    // Raw payloads are stored sealed (they may hold personal data): opened for callers with
    // `pii:read`, masked for the others.
    let ring = s.keys.current();
    for e in &mut errors {
        if xfhub_security::keys::KeyRing::is_sealed(&e.raw) {
            e.raw = match (caller.has_scope("pii:read"), ring.open_bytes(&e.raw)) {
                (true, Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => "***".to_owned(),
            };
        }
    }
    Ok(Json(errors))
}

/// One rule of the routing table.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteRuleInfo {
    pub name: String,
    /// Routing-key patterns (AMQP topic syntax over `<type>.<division>`).
    #[serde(rename = "match")]
    pub patterns: Vec<String>,
    /// The predicate on the envelope, as written (absent: every matching key).
    #[schema(value_type = Option<Object>)]
    pub when: Option<serde_json::Value>,
    /// Destination queues.
    pub to: Vec<String>,
    /// A wire tap: receives what it matches, never counts as routing the message.
    pub tap: bool,
    pub enabled: bool,
}

/// A reload of the table file that was refused; the table in force stayed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedReload {
    pub at: chrono::DateTime<chrono::Utc>,
    /// Every error of the file.
    pub errors: Vec<String>,
}

/// The routing table in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteTableInfo {
    /// The table's `version`.
    pub version: String,
    /// `built-in`, or the path of the table file.
    pub source: String,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    pub rules: Vec<RouteRuleInfo>,
    /// The last refused reload, if the file was changed to something invalid since the last
    /// good load.
    pub last_rejected: Option<RejectedReload>,
}

fn time_of(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The routing table in force: version, source, rules, and the last refused reload.
#[utoipa::path(get, path = "/admin/routes", tag = "admin",
    responses((status = 200, body = RouteTableInfo)))]
pub async fn routes(State(s): State<AppState>) -> Json<RouteTableInfo> {
    let table = s.routes.table();
    Json(RouteTableInfo {
        version: table.version.clone(),
        source: s.routes.source().to_string(),
        loaded_at: time_of(s.routes.loaded_at_ms()),
        rules: table
            .rules
            .iter()
            .map(|r| RouteRuleInfo {
                name: r.name.clone(),
                patterns: r.patterns.clone(),
                when: r.when_source.clone(),
                to: r.to.clone(),
                tap: r.tap,
                enabled: r.enabled,
            })
            .collect(),
        last_rejected: s.routes.last_rejected().map(|r| RejectedReload {
            at: time_of(r.at_ms),
            errors: r.errors,
        }),
    })
}
