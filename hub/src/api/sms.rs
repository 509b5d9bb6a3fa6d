//! SMS: the log and the status of one request (`read`), templates (`admin` to change), and the
//! gateway's signed delivery-report callback (`write_back`; the gateway is a client of the
//! hub and signs like any partner). Numbers are masked in every answer and never logged.
//!
//! Also the helpers the other issue-8 API files share (scope check, commit with audit).

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use xfhub_connectors::sms::{self, template, DeliveryReport, ReportOutcome, SmsTemplate, SmsView};
use xfhub_schemas::Envelope;
use xfhub_store::{AuditDraft, Stmt, Txn, TxnOutcome};

use crate::api::records::ConnectInfoOpt;
use crate::app::AppState;
use crate::auth::{scope_denied, Caller};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParam, Query};

// ---------------------------------------------------------------------------------------------
// Shared by sms.rs, warning.rs and dispatch.rs.

/// 403 unless the caller holds `scope`.
pub(crate) fn require(caller: &Caller, scope: &str) -> Result<(), ApiError> {
    if caller.has_scope(scope) {
        Ok(())
    } else {
        Err(scope_denied(scope))
    }
}

/// Commits statements and messages with one audit entry, atomically.
pub(crate) async fn commit(
    s: &AppState,
    caller: &Caller,
    remote: String,
    action: &str,
    target: &str,
    statements: Vec<Stmt>,
    publish: Vec<Envelope<Value>>,
) -> Result<TxnOutcome, ApiError> {
    s.store
        .transact(Txn {
            statements,
            publish,
            audit: vec![AuditDraft {
                actor: caller.app_key.clone(),
                action: action.to_owned(),
                target: target.to_owned(),
                outcome: "ok".to_owned(),
                remote,
                detail: String::new(),
            }],
            ..Txn::default()
        })
        .await
        .map_err(|e| ApiError::internal(action, &e))
}

/// Deletes one row through [`commit`] (audited); 204, or 404 naming `what` when no row matched.
pub(crate) async fn delete_one(
    s: &AppState,
    caller: &Caller,
    remote: String,
    action: &str,
    target: &str,
    delete: Stmt,
    what: &str,
) -> Result<StatusCode, ApiError> {
    let out = commit(s, caller, remote, action, target, vec![delete], Vec::new()).await?;
    if out.rows_affected.first() != Some(&1) {
        return Err(ApiError::not_found(what));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// 422 with every field error.
pub(crate) fn invalid(errors: Vec<xfhub_modules::alerts::Invalid>) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        format!("{} field(s) failed validation", errors.len()),
        format!("{} 个字段校验未通过", errors.len()),
    );
    for f in errors {
        e = e.with_field(&f.field, f.code, f.message, f.message_zh);
    }
    e
}

/// `limit`: 1 to 1000, default 100.
pub(crate) fn limit_of(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(100) {
        l @ 1..=1000 => Ok(l),
        _ => Err(ApiError::bad_param(
            "limit",
            "must be between 1 and 1000",
            "必须在 1 到 1000 之间",
        )),
    }
}

pub(crate) fn store_error(context: &str) -> impl FnOnce(xfhub_store::StoreError) -> ApiError + '_ {
    move |e| ApiError::internal(context, &e)
}

// ---------------------------------------------------------------------------------------------
// The SMS log and one request.

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SmsLogQuery {
    /// Requests created before this time (ms since the epoch); default now.
    pub before: Option<i64>,
    /// At most this many, newest first (1 to 1000, default 100).
    pub limit: Option<u32>,
}

/// The SMS log, newest first; numbers masked.
#[utoipa::path(get, path = "/api/v1/sms", tag = "sms", params(SmsLogQuery),
    responses((status = 200, body = Vec<SmsView>), (status = 400, body = ErrorBody)))]
pub async fn log(
    State(s): State<AppState>,
    Query(q): Query<SmsLogQuery>,
) -> Result<Json<Vec<SmsView>>, ApiError> {
    let limit = limit_of(q.limit)?;
    let before = q.before.unwrap_or(i64::MAX);
    Ok(Json(
        sms::sms_log(&s.store, before, limit)
            .await
            .map_err(store_error("sms.log"))?,
    ))
}

/// Status of one SMS request: every recipient (masked) with its gateway and delivery status.
#[utoipa::path(get, path = "/api/v1/sms/{id}", tag = "sms",
    params(("id" = String, Path, description = "request id (the `request_id` of `sms.requested`, also the gateway's out id)")),
    responses((status = 200, body = SmsView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_sms(
    State(s): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<SmsView>, ApiError> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "the request id is not a UUID",
            "短信请求编号格式错误",
        )
    })?;
    sms::get_sms(&s.store, &id.to_string())
        .await
        .map_err(store_error("sms.get"))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("SMS request"))
}

// ---------------------------------------------------------------------------------------------
// Delivery reports.

/// What the gateway expects back: `code` 0 means received (anything else and it retries
/// after 1, 5 and 10 minutes).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportAnswer {
    pub code: i32,
    pub msg: String,
    #[serde(flatten)]
    pub outcome: ReportOutcome,
}

/// The SMS gateway's delivery-report callback (scope `write_back`): a JSON array of reports.
/// Each is matched to its request (out id) and number; a repeat or an older report is counted
/// but never overwrites a newer status. Answers `{"code":0}` once stored, so the gateway stops
/// retrying; reports naming no request of this hub are acknowledged too (a retry could not
/// match them either) and counted as `unmatched`.
#[utoipa::path(post, path = "/api/v1/sms/delivery-reports", tag = "sms",
    request_body = Vec<DeliveryReport>,
    responses((status = 200, body = ReportAnswer), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delivery_reports(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(reports): JsonBody<Vec<DeliveryReport>>,
) -> Result<Json<ReportAnswer>, ApiError> {
    require(&caller, "write_back")?;
    if reports.is_empty() || reports.len() > 1000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "1 to 1000 reports per call",
            "每次回执 1 到 1000 条",
        ));
    }
    if let Err(errors) = sms::check_reports(&reports) {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{} field(s) failed validation", errors.len()),
            format!("{} 个字段校验未通过", errors.len()),
        );
        for f in errors {
            e = e.with_field(
                &format!("[{}].{}", f.index, f.field),
                "invalid",
                f.message,
                f.message_zh,
            );
        }
        return Err(e);
    }
    let outcome = sms::apply_reports(&s.store, &s.keys.current(), &reports)
        .await
        .map_err(store_error("sms.reports"))?;
    Ok(Json(ReportAnswer {
        code: 0,
        msg: "成功".into(),
        outcome,
    }))
}

// ---------------------------------------------------------------------------------------------
// Templates.

/// A template as entered (`code` from the path on update).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    /// Lowercase letters, digits and _ (required on create).
    #[serde(default)]
    pub code: Option<String>,
    pub name: String,
    /// Chinese text with `${param}` placeholders, at most 500 characters.
    pub body: String,
    /// Every parameter the text uses, and no other.
    pub params: Vec<String>,
}

fn checked(t: TemplateInput, code: String) -> Result<SmsTemplate, ApiError> {
    if let Err(errors) = template::check_template(&code, &t.name, &t.body, &t.params) {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{} field(s) failed validation", errors.len()),
            format!("{} 个字段校验未通过", errors.len()),
        );
        for f in errors {
            e = e.with_field(&f.field, f.code, f.message, f.message_zh);
        }
        return Err(e);
    }
    Ok(SmsTemplate {
        code,
        name: t.name.trim().to_owned(),
        body: t.body,
        params: t.params,
        updated_at: 0,
    })
}

/// Every SMS template.
#[utoipa::path(get, path = "/api/v1/sms/templates", tag = "sms",
    responses((status = 200, body = Vec<SmsTemplate>)))]
pub async fn list_templates(State(s): State<AppState>) -> Result<Json<Vec<SmsTemplate>>, ApiError> {
    Ok(Json(
        sms::list_templates(&s.store)
            .await
            .map_err(store_error("sms.templates"))?,
    ))
}

async fn template_by_code(s: &AppState, code: &str) -> Result<SmsTemplate, ApiError> {
    sms::list_templates(&s.store)
        .await
        .map_err(store_error("sms.templates"))?
        .into_iter()
        .find(|t| t.code == code)
        .ok_or_else(|| ApiError::not_found("template"))
}

/// One SMS template.
#[utoipa::path(get, path = "/api/v1/sms/templates/{code}", tag = "sms",
    params(("code" = String, Path, description = "template code")),
    responses((status = 200, body = SmsTemplate), (status = 404, body = ErrorBody)))]
pub async fn get_template(
    State(s): State<AppState>,
    PathParam(code): PathParam<String>,
) -> Result<Json<SmsTemplate>, ApiError> {
    template_by_code(&s, &code).await.map(Json)
}

/// Creates a template (scope `admin`), checked: unknown or unused parameters, length.
#[utoipa::path(post, path = "/api/v1/sms/templates", tag = "sms", request_body = TemplateInput,
    responses((status = 201, body = SmsTemplate), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_template(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    JsonBody(t): JsonBody<TemplateInput>,
) -> Result<(StatusCode, Json<SmsTemplate>), ApiError> {
    require(&caller, "admin")?;
    let code = t.code.clone().unwrap_or_default();
    let t = checked(t, code)?;
    let out = commit(
        &s,
        &caller,
        remote,
        "sms.template.create",
        &t.code,
        vec![sms::upsert_template_stmt(&t, true)],
        Vec::new(),
    )
    .await?;
    if out.rows_affected.first() != Some(&1) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            "a template with this code exists; update it with PUT",
            "该模板编码已存在，请使用 PUT 修改",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(template_by_code(&s, &t.code).await?),
    ))
}

/// Replaces a template's name, text and parameters (scope `admin`).
#[utoipa::path(put, path = "/api/v1/sms/templates/{code}", tag = "sms", request_body = TemplateInput,
    params(("code" = String, Path, description = "template code")),
    responses((status = 200, body = SmsTemplate), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_template(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(code): PathParam<String>,
    JsonBody(t): JsonBody<TemplateInput>,
) -> Result<Json<SmsTemplate>, ApiError> {
    require(&caller, "admin")?;
    if t.code.as_ref().is_some_and(|c| *c != code) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "the code in the body differs from the path",
            "请求体中的模板编码与路径不一致",
        )
        .with_field("code", "mismatch", "differs from the path", "与路径不一致"));
    }
    let t = checked(t, code)?;
    let out = commit(
        &s,
        &caller,
        remote,
        "sms.template.update",
        &t.code,
        vec![sms::upsert_template_stmt(&t, false)],
        Vec::new(),
    )
    .await?;
    if out.rows_affected.first() != Some(&1) {
        return Err(ApiError::not_found("template"));
    }
    Ok(Json(template_by_code(&s, &t.code).await?))
}

/// Deletes a template (scope `admin`). Requests already queued for it are recorded as failed
/// (`unknown_template`) when they come up.
#[utoipa::path(delete, path = "/api/v1/sms/templates/{code}", tag = "sms",
    params(("code" = String, Path, description = "template code")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_template(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam(code): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    require(&caller, "admin")?;
    let delete = Stmt::new("DELETE FROM sms_templates WHERE code = $1").bind(&code);
    delete_one(
        &s,
        &caller,
        remote,
        "sms.template.delete",
        &code,
        delete,
        "template",
    )
    .await
}
