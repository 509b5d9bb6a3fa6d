//! Admin of the pull connectors: their state (`GET /admin/connectors`) and the reprocessing of
//! their import errors after a code map fix (`POST /admin/import-errors/reprocess`).

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xfhub_connectors::pull::{ConnectorStatus, Reprocessed};
use xfhub_connectors::registry::ReprocessError;
use xfhub_store::AuditDraft;

use crate::api::records::ConnectInfoOpt;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonBody;

/// Each pull connector: state, cursor, last success, last error, breaker, counts.
#[utoipa::path(get, path = "/admin/connectors", tag = "admin",
    responses((status = 200, body = Vec<ConnectorStatus>)))]
pub async fn list(State(s): State<AppState>) -> Json<Vec<ConnectorStatus>> {
    Json(s.connectors.statuses(&s.store).await)
}

/// What to reprocess: the import errors `ids`, else the oldest `limit` of `source` (or of
/// every pull connector).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReprocessRequest {
    /// `provincial` | `hotline12345`; absent: both.
    pub source: Option<String>,
    /// Import error ids (at most 1000).
    pub ids: Option<Vec<i64>>,
    /// At most this many (1 to 1000, default 1000).
    pub limit: Option<u32>,
}

/// The outcome of a reprocessing run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReprocessReport {
    /// Import errors that now mapped and validated; stored and resolved.
    pub stored: usize,
    /// Import errors that still fail; their reasons are updated.
    pub failed: usize,
    pub results: Vec<Reprocessed>,
}

/// Maps the pull connectors' unresolved import errors again, with their code map files read
/// anew: a record that now passes is stored (and published) and its import error resolved in
/// one transaction; one that still fails keeps its import error with the new reasons.
#[utoipa::path(post, path = "/admin/import-errors/reprocess", tag = "admin",
    request_body = ReprocessRequest,
    responses((status = 200, body = ReprocessReport), (status = 400, body = ErrorBody),
              (status = 422, description = "a code map file does not parse", body = ErrorBody)))]
pub async fn reprocess(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    JsonBody(req): JsonBody<ReprocessRequest>,
) -> Result<Json<ReprocessReport>, ApiError> {
    let limit = req.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_param(
            "limit",
            "must be between 1 and 1000",
            "必须在 1 到 1000 之间",
        ));
    }
    if req.ids.as_ref().is_some_and(|ids| ids.len() > 1000) {
        return Err(ApiError::bad_param(
            "ids",
            "at most 1000 ids",
            "最多 1000 个编号",
        ));
    }
    let ring = s.keys.current();
    let results = s
        .connectors
        .reprocess(
            &s.store,
            &ring,
            req.source.as_deref(),
            req.ids.as_deref(),
            limit,
        )
        .await
        .map_err(|e| match e {
            ReprocessError::UnknownSource(src) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "unknown connector",
                "连接器不存在",
            )
            .with_field(
                "source",
                "unknown_code",
                format!("`{src}` is not provincial or hotline12345"),
                format!("`{src}` 不是 provincial 或 hotline12345"),
            ),
            ReprocessError::CodeMap(m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "code_map_invalid",
                format!("the code map file does not load, nothing was reprocessed: {m}"),
                "代码对照表文件无法加载，未重新处理任何记录",
            ),
            ReprocessError::Store(m) => ApiError::internal("reprocess", &m),
        })?;
    s.relay.notify();
    let stored = results.iter().filter(|r| r.outcome == "stored").count();
    let failed = results.len() - stored;
    tracing::info!(stored, failed, "ImportErrorsReprocessed");
    s.store
        .audit(AuditDraft {
            actor: caller.app_key.clone(),
            action: "import_errors.reprocess".to_owned(),
            target: req.source.clone().unwrap_or_else(|| "*".to_owned()),
            outcome: "ok".to_owned(),
            remote,
            detail: format!("stored={stored} failed={failed}"),
        })
        .await
        .map_err(|e| ApiError::internal("audit", &e))?;
    Ok(Json(ReprocessReport {
        stored,
        failed,
        results,
    }))
}
