//! Joint dispatch: role holders (every one with a valid mobile), auto-assignment rules and the
//! duplicate candidates the dispatch module found. Reads need `read`, changes `admin`. Mobiles
//! are sealed at rest and masked in every answer.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use xfhub_modules::alerts::{self, RoleHolder, RoleHolderInput};
use xfhub_modules::dispatch::{self, AssignmentRule, DuplicateCandidate};

use super::sms::{commit, delete_one, invalid, limit_of, require, store_error};
use super::warning::parse_id;
use crate::api::records::ConnectInfoOpt;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParam, Query};
use xfhub_store::Stmt;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HolderQuery {
    /// Holders of one organisation.
    pub org: Option<String>,
}

/// Role holders (mobiles masked).
#[utoipa::path(get, path = "/api/v1/role-holders", tag = "dispatch", params(HolderQuery),
    responses((status = 200, body = Vec<RoleHolder>)))]
pub async fn list_holders(
    State(s): State<AppState>,
    Query(q): Query<HolderQuery>,
) -> Result<Json<Vec<RoleHolder>>, ApiError> {
    Ok(Json(
        alerts::list_role_holders(&s.store, q.org.as_deref())
            .await
            .map_err(store_error("role_holders"))?,
    ))
}

async fn put_holder(
    s: &AppState,
    caller: &Caller,
    remote: String,
    id: &str,
    input: &RoleHolderInput,
) -> Result<RoleHolder, ApiError> {
    require(caller, "admin")?;
    let mobile = alerts::check_role_holder(input).map_err(invalid)?;
    let stmt = alerts::put_role_holder_stmt(id, input, &mobile, &s.keys.current());
    commit(
        s,
        caller,
        remote,
        "role_holder.put",
        id,
        vec![stmt],
        Vec::new(),
    )
    .await?;
    alerts::get_role_holder(&s.store, id)
        .await
        .map_err(store_error("role_holders"))?
        .ok_or_else(|| ApiError::not_found("role holder"))
}

/// Registers a role holder (scope `admin`). A holder without a valid mainland mobile is
/// rejected (422 `invalid_mobile`): every role holder must be reachable by SMS.
#[utoipa::path(post, path = "/api/v1/role-holders", tag = "dispatch", request_body = RoleHolderInput,
    responses((status = 201, body = RoleHolder), (status = 422, body = ErrorBody)))]
pub async fn create_holder(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    JsonBody(input): JsonBody<RoleHolderInput>,
) -> Result<(StatusCode, Json<RoleHolder>), ApiError> {
    let id = uuid::Uuid::now_v7().to_string();
    let h = put_holder(&s, &caller, remote, &id, &input).await?;
    Ok((StatusCode::CREATED, Json(h)))
}

/// Replaces a role holder (scope `admin`).
#[utoipa::path(put, path = "/api/v1/role-holders/{id}", tag = "dispatch", request_body = RoleHolderInput,
    params(("id" = String, Path, description = "role holder id")),
    responses((status = 200, body = RoleHolder), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_holder(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(id): PathParam<String>,
    JsonBody(input): JsonBody<RoleHolderInput>,
) -> Result<Json<RoleHolder>, ApiError> {
    require(&caller, "admin")?;
    let id = parse_id(&id)?;
    if alerts::get_role_holder(&s.store, &id)
        .await
        .map_err(store_error("role_holders"))?
        .is_none()
    {
        return Err(ApiError::not_found("role holder"));
    }
    put_holder(&s, &caller, remote, &id, &input).await.map(Json)
}

/// Removes a role holder (scope `admin`).
#[utoipa::path(delete, path = "/api/v1/role-holders/{id}", tag = "dispatch",
    params(("id" = String, Path, description = "role holder id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_holder(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    require(&caller, "admin")?;
    let id = parse_id(&id)?;
    let delete = Stmt::new("DELETE FROM role_holders WHERE id = $1").bind(&id);
    delete_one(
        &s,
        &caller,
        remote,
        "role_holder.delete",
        &id,
        delete,
        "role holder",
    )
    .await
}

/// Auto-assignment rules.
#[utoipa::path(get, path = "/api/v1/assignment-rules", tag = "dispatch",
    responses((status = 200, body = Vec<AssignmentRule>)))]
pub async fn list_rules(State(s): State<AppState>) -> Result<Json<Vec<AssignmentRule>>, ApiError> {
    Ok(Json(
        dispatch::list_rules(&s.store)
            .await
            .map_err(store_error("rules"))?,
    ))
}

async fn put_rule(
    s: &AppState,
    caller: &Caller,
    remote: String,
    mut rule: AssignmentRule,
    id: String,
) -> Result<AssignmentRule, ApiError> {
    require(caller, "admin")?;
    rule.id = id;
    dispatch::check_rule(&rule).map_err(invalid)?;
    commit(
        s,
        caller,
        remote,
        "assignment_rule.put",
        &rule.id,
        vec![dispatch::put_rule_stmt(&rule)],
        Vec::new(),
    )
    .await?;
    Ok(rule)
}

/// Adds an auto-assignment rule (scope `admin`): content-class prefix (and optionally a
/// division) to a responsible unit.
#[utoipa::path(post, path = "/api/v1/assignment-rules", tag = "dispatch", request_body = AssignmentRule,
    responses((status = 201, body = AssignmentRule), (status = 422, body = ErrorBody)))]
pub async fn create_rule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    JsonBody(rule): JsonBody<AssignmentRule>,
) -> Result<(StatusCode, Json<AssignmentRule>), ApiError> {
    let id = uuid::Uuid::now_v7().to_string();
    let r = put_rule(&s, &caller, remote, rule, id).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Replaces a rule (scope `admin`).
#[utoipa::path(put, path = "/api/v1/assignment-rules/{id}", tag = "dispatch", request_body = AssignmentRule,
    params(("id" = String, Path, description = "rule id")),
    responses((status = 200, body = AssignmentRule), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_rule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(id): PathParam<String>,
    JsonBody(rule): JsonBody<AssignmentRule>,
) -> Result<Json<AssignmentRule>, ApiError> {
    require(&caller, "admin")?;
    let id = parse_id(&id)?;
    let exists = dispatch::list_rules(&s.store)
        .await
        .map_err(store_error("rules"))?
        .iter()
        .any(|r| r.id == id);
    if !exists {
        return Err(ApiError::not_found("assignment rule"));
    }
    put_rule(&s, &caller, remote, rule, id).await.map(Json)
}

/// Removes a rule (scope `admin`).
#[utoipa::path(delete, path = "/api/v1/assignment-rules/{id}", tag = "dispatch",
    params(("id" = String, Path, description = "rule id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_rule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    require(&caller, "admin")?;
    let id = parse_id(&id)?;
    let delete = Stmt::new("DELETE FROM assignment_rules WHERE id = $1").bind(&id);
    delete_one(
        &s,
        &caller,
        remote,
        "assignment_rule.delete",
        &id,
        delete,
        "assignment rule",
    )
    .await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DuplicateQuery {
    /// Candidates of one petition (best first); default every recent candidate.
    pub record_id: Option<String>,
    /// 1 to 1000, default 100.
    pub limit: Option<u32>,
}

/// Duplicate candidates (判重): earlier petitions of the same person about the same matter,
/// with the summary similarity.
#[utoipa::path(get, path = "/api/v1/duplicates", tag = "dispatch", params(DuplicateQuery),
    responses((status = 200, body = Vec<DuplicateCandidate>), (status = 400, body = ErrorBody)))]
pub async fn duplicates(
    State(s): State<AppState>,
    Query(q): Query<DuplicateQuery>,
) -> Result<Json<Vec<DuplicateCandidate>>, ApiError> {
    let id = q.record_id.as_deref().map(parse_id).transpose()?;
    let limit = limit_of(q.limit)?;
    Ok(Json(
        dispatch::list_duplicates(&s.store, id.as_deref(), limit)
            .await
            .map_err(store_error("duplicates"))?,
    ))
}
