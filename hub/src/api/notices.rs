//! Staff notices (通知公告) for the bureau's administrators: create, update, withdraw, list.
//! Partner-signed like every `/api/v1` route; every call needs the scope `admin`, and every
//! change commits with its audit entry (`notice.create`, `notice.update`, `notice.withdraw`).
//! Staff read the notices in the app (`crate::mobile::staff::notices`); the rules of audience,
//! checks and push are in `crate::mobile::notices`.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use xfhub_store::now_ms;

use super::sms::{commit, invalid, require};
use crate::api::records::ConnectInfoOpt;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParam, Query};
use crate::mobile::notices::{self, NoticeInput, NoticeView};

fn read_err(e: sqlx::Error) -> ApiError {
    ApiError::internal("notices", &e)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoticeQuery {
    /// `active` or `withdrawn`; both when absent.
    pub status: Option<String>,
    /// Notices of exactly this audience division.
    pub audience: Option<String>,
    /// At most this many, newest publication first (1 to 1000, default 100).
    pub limit: Option<u32>,
    /// Skip this many (paging; default 0).
    pub offset: Option<u32>,
}

/// Every notice (scope `admin`), with its read count.
#[utoipa::path(get, path = "/api/v1/notices", tag = "notices", params(NoticeQuery),
    responses((status = 200, body = Vec<NoticeView>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<NoticeQuery>,
) -> Result<Json<Vec<NoticeView>>, ApiError> {
    require(&caller, "admin")?;
    if q.status
        .as_deref()
        .is_some_and(|v| !matches!(v, "active" | "withdrawn"))
    {
        return Err(ApiError::bad_param(
            "status",
            "active or withdrawn",
            "应为 active 或 withdrawn",
        ));
    }
    let limit = super::sms::limit_of(q.limit)?;
    Ok(Json(
        notices::list(
            &s.store,
            s.tables,
            q.status.as_deref(),
            q.audience.as_deref(),
            limit,
            q.offset.unwrap_or(0),
        )
        .await
        .map_err(read_err)?,
    ))
}

async fn by_id(s: &AppState, id: &str) -> Result<NoticeView, ApiError> {
    notices::get(&s.store, s.tables, id)
        .await
        .map_err(read_err)?
        .ok_or_else(|| ApiError::not_found("notice"))
}

/// One notice (scope `admin`).
#[utoipa::path(get, path = "/api/v1/notices/{id}", tag = "notices",
    params(("id" = String, Path, description = "notice id")),
    responses((status = 200, body = NoticeView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
) -> Result<Json<NoticeView>, ApiError> {
    require(&caller, "admin")?;
    by_id(&s, &id).await.map(Json)
}

/// Creates a notice (scope `admin`). Every field is checked and every problem reported. A
/// notice whose publication time has come is pushed to the app (`notification.requested`) in
/// the same commit; a scheduled one when its time comes.
#[utoipa::path(post, path = "/api/v1/notices", tag = "notices", request_body = NoticeInput,
    responses((status = 201, body = NoticeView), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    JsonBody(input): JsonBody<NoticeInput>,
) -> Result<(StatusCode, Json<NoticeView>), ApiError> {
    require(&caller, "admin")?;
    let now = now_ms();
    let n = notices::check(&input, s.tables, now, None).map_err(invalid)?;
    let id = uuid::Uuid::now_v7().to_string();
    let (publish, pushed_at) = push_if_due(&s, &id, &n, false, now).await?;
    let statements = notices::insert_stmts(&id, &n, &caller.app_key, now, pushed_at);
    commit(
        &s,
        &caller,
        remote,
        "notice.create",
        &id,
        statements,
        publish,
    )
    .await?;
    s.relay.notify();
    Ok((StatusCode::CREATED, Json(by_id(&s, &id).await?)))
}

/// The push messages of a notice not pushed yet that is due now, and the push time to store
/// with it; nothing otherwise.
async fn push_if_due(
    s: &AppState,
    id: &str,
    n: &notices::Checked,
    pushed: bool,
    now: i64,
) -> Result<(Vec<xfhub_schemas::Envelope<serde_json::Value>>, Option<i64>), ApiError> {
    if pushed || !n.due(now) {
        return Ok((Vec::new(), None));
    }
    let m = notices::push_messages(&s.store, id, n)
        .await
        .map_err(read_err)?;
    Ok((m, Some(now)))
}

fn withdrawn() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "notice_withdrawn",
        "the notice was withdrawn and cannot change",
        "该通知公告已撤回，不能修改",
    )
}

/// Replaces a notice's fields (scope `admin`); an absent `publish_at` keeps the stored one. A
/// notice already pushed is not pushed again; one not pushed yet is pushed when the change
/// makes it due. A withdrawn notice answers `409 notice_withdrawn`.
#[utoipa::path(put, path = "/api/v1/notices/{id}", tag = "notices", request_body = NoticeInput,
    params(("id" = String, Path, description = "notice id")),
    responses((status = 200, body = NoticeView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(id): PathParam<String>,
    JsonBody(input): JsonBody<NoticeInput>,
) -> Result<Json<NoticeView>, ApiError> {
    require(&caller, "admin")?;
    let old = by_id(&s, &id).await?;
    if old.status != "active" {
        return Err(withdrawn());
    }
    let now = now_ms();
    let n = notices::check(&input, s.tables, now, Some(old.publish_at)).map_err(invalid)?;
    let (publish, pushed_at) = push_if_due(&s, &id, &n, old.pushed_at.is_some(), now).await?;
    let out = commit(
        &s,
        &caller,
        remote,
        "notice.update",
        &id,
        notices::update_stmts(&id, &n, now, pushed_at),
        publish,
    )
    .await?;
    if out.rows_affected.first() != Some(&1) {
        // Withdrawn between the read and the commit: nothing changed.
        return Err(withdrawn());
    }
    s.relay.notify();
    Ok(Json(by_id(&s, &id).await?))
}

/// Withdraws a notice (scope `admin`): staff no longer see it; it stays listed here with
/// `status = withdrawn`. A second withdrawal answers `409 notice_withdrawn`.
#[utoipa::path(delete, path = "/api/v1/notices/{id}", tag = "notices",
    params(("id" = String, Path, description = "notice id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn withdraw(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    require(&caller, "admin")?;
    let old = by_id(&s, &id).await?;
    if old.status != "active" {
        return Err(withdrawn());
    }
    let out = commit(
        &s,
        &caller,
        remote,
        "notice.withdraw",
        &id,
        vec![notices::withdraw_stmt(&id, now_ms())],
        Vec::new(),
    )
    .await?;
    if out.rows_affected.first() != Some(&1) {
        return Err(withdrawn());
    }
    Ok(StatusCode::NO_CONTENT)
}
