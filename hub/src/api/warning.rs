//! Smart warning: the word lists (sensitive 敏感词 / hot 热点词) the warning module matches, the
//! tags it put on records, and alerts with their graded flow (5.1.5.2.4). Reads need `read`,
//! changes `admin`.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use xfhub_modules::alerts::{self, Alert, AlertDraft, AlertFilter, FlowError, FlowStep};
use xfhub_modules::warning::{self, Tag, WordEntry, LISTS};

use super::sms::{commit, invalid, limit_of, require, store_error};
use crate::api::records::ConnectInfoOpt;
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParam, Query};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WordQuery {
    /// `sensitive` or `hot`; default both.
    pub list: Option<String>,
}

fn check_list(list: &str, field: &str) -> Result<(), xfhub_modules::alerts::Invalid> {
    if LISTS.contains(&list) {
        Ok(())
    } else {
        Err(xfhub_modules::alerts::Invalid {
            field: field.to_owned(),
            code: "unknown_list",
            message: "`sensitive` or `hot`".into(),
            message_zh: "词库须为 sensitive（敏感词）或 hot（热点词）".into(),
        })
    }
}

/// The words of the lists.
#[utoipa::path(get, path = "/api/v1/word-lists", tag = "warning", params(WordQuery),
    responses((status = 200, body = Vec<WordEntry>), (status = 422, body = ErrorBody)))]
pub async fn list_words(
    State(s): State<AppState>,
    Query(q): Query<WordQuery>,
) -> Result<Json<Vec<WordEntry>>, ApiError> {
    if let Some(l) = &q.list {
        check_list(l, "list").map_err(|e| invalid(vec![e]))?;
    }
    Ok(Json(
        warning::list_words(&s.store, q.list.as_deref())
            .await
            .map_err(store_error("words"))?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WordsInput {
    /// 1 to 10,000 words; an existing word gets the new category.
    pub words: Vec<WordEntry>,
}

/// Adds words (scope `admin`); all or none. The warning module matches them at once.
#[utoipa::path(post, path = "/api/v1/word-lists", tag = "warning", request_body = WordsInput,
    responses((status = 200, body = Vec<WordEntry>), (status = 422, body = ErrorBody)))]
pub async fn add_words(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    JsonBody(input): JsonBody<WordsInput>,
) -> Result<Json<Vec<WordEntry>>, ApiError> {
    require(&caller, "admin")?;
    let mut errors = Vec::new();
    if input.words.is_empty() || input.words.len() > 10_000 {
        errors.push(xfhub_modules::alerts::Invalid {
            field: "words".into(),
            code: "invalid",
            message: "1 to 10,000 words".into(),
            message_zh: "每次 1 到 10000 个词".into(),
        });
    }
    for (i, w) in input.words.iter().enumerate() {
        if let Err(e) = check_list(&w.list, &format!("words[{i}].list")) {
            errors.push(e);
        }
        let n = xfhub_modules::text::normalize(&w.word).chars().count();
        if n == 0 || w.word.chars().count() > 50 {
            errors.push(xfhub_modules::alerts::Invalid {
                field: format!("words[{i}].word"),
                code: "invalid",
                message: "1 to 50 characters, not only spaces".into(),
                message_zh: "词语须为 1 到 50 个字符且不能全为空白".into(),
            });
        }
        if w.category.as_ref().is_some_and(|c| c.chars().count() > 20) {
            errors.push(xfhub_modules::alerts::Invalid {
                field: format!("words[{i}].category"),
                code: "invalid",
                message: "at most 20 characters".into(),
                message_zh: "分类不能超过 20 个字符".into(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let statements = input.words.iter().map(warning::put_word_stmt).collect();
    let target = format!("{} words", input.words.len());
    commit(
        &s,
        &caller,
        remote,
        "words.add",
        &target,
        statements,
        Vec::new(),
    )
    .await?;
    s.words.invalidate();
    Ok(Json(
        warning::list_words(&s.store, None)
            .await
            .map_err(store_error("words"))?,
    ))
}

/// Removes a word (scope `admin`).
#[utoipa::path(delete, path = "/api/v1/word-lists/{list}/{word}", tag = "warning",
    params(("list" = String, Path, description = "sensitive or hot"), ("word" = String, Path, description = "the word")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_word(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    PathParam((list, word)): PathParam<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require(&caller, "admin")?;
    let out = commit(
        &s,
        &caller,
        remote,
        "words.delete",
        &format!("{list}/{word}"),
        vec![warning::delete_word_stmt(&list, &word)],
        Vec::new(),
    )
    .await?;
    s.words.invalidate();
    if out.rows_affected.first() != Some(&1) {
        return Err(ApiError::not_found("word"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The tags (matched words, `risk/key_risk_item`) of a petition or work order.
#[utoipa::path(get, path = "/api/v1/tags/{record_id}", tag = "warning",
    params(("record_id" = String, Path, description = "hub id of the record")),
    responses((status = 200, body = Vec<Tag>), (status = 400, body = ErrorBody)))]
pub async fn tags(
    State(s): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Vec<Tag>>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(
        warning::tags_of(&s.store, &id)
            .await
            .map_err(store_error("tags"))?,
    ))
}

pub(crate) fn parse_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                "the id is not a UUID",
                "编号格式错误",
            )
        })
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Alerts of one record.
    pub record_id: Option<String>,
    /// `received`, `drafted`, `submitted`, `returned`, `dispatched`.
    pub status: Option<String>,
    /// `surge`, `key_risk_group`, `key_risk_item`, `sensitive_word`, ...
    pub kind: Option<String>,
    /// 1 to 1000, default 100.
    pub limit: Option<u32>,
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "warning", params(AlertQuery),
    responses((status = 200, body = Vec<Alert>), (status = 400, body = ErrorBody)))]
pub async fn list_alerts(
    State(s): State<AppState>,
    Query(q): Query<AlertQuery>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let record_id = q.record_id.as_deref().map(parse_id).transpose()?;
    let f = AlertFilter {
        record_id,
        status: q.status,
        kind: q.kind,
        limit: limit_of(q.limit)?,
    };
    Ok(Json(
        alerts::list_alerts(&s.store, &f)
            .await
            .map_err(store_error("alerts"))?,
    ))
}

/// One alert with its history.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "warning",
    params(("id" = String, Path, description = "alert id")),
    responses((status = 200, body = Alert), (status = 404, body = ErrorBody)))]
pub async fn get_alert(
    State(s): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Alert>, ApiError> {
    let id = parse_id(&id)?;
    alerts::get_alert(&s.store, &id)
        .await
        .map_err(store_error("alerts"))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("alert"))
}

fn flow_error(e: FlowError) -> ApiError {
    match e {
        FlowError::NotFound => ApiError::not_found("alert"),
        FlowError::Invalid(errors) => invalid(errors),
        FlowError::WrongState(status) => ApiError::new(
            StatusCode::CONFLICT,
            "wrong_state",
            format!("the alert is {status}: this step does not apply"),
            format!("预警当前状态为 {status}，不能执行此操作"),
        ),
        FlowError::Store(e) => ApiError::internal("alerts.flow", &e),
    }
}

/// A liaison drafts an alert (scope `admin`); it enters the flow when submitted.
#[utoipa::path(post, path = "/api/v1/alerts", tag = "warning", request_body = AlertDraft,
    responses((status = 201, body = Alert), (status = 422, body = ErrorBody)))]
pub async fn draft_alert(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(d): JsonBody<AlertDraft>,
) -> Result<(StatusCode, Json<Alert>), ApiError> {
    require(&caller, "admin")?;
    let a = alerts::draft(&s.store, &d).await.map_err(flow_error)?;
    audit(&s, &caller, "alert.draft", &a.id).await;
    Ok((StatusCode::CREATED, Json(a)))
}

/// One step of the graded flow (scope `admin`): `{"action":"submit","actor":<liaison>,
/// "level":"normal"|"urgent","org":<unit>}`, `{"action":"approve","actor":<director>}` or
/// `{"action":"return","actor":<director>,"note":..}`. Approval sends the alert to its
/// responsible unit; an urgent one is also texted to the unit's director and bureau leader.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/flow", tag = "warning", request_body = FlowStep,
    params(("id" = String, Path, description = "alert id")),
    responses((status = 200, body = Alert), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn flow(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
    JsonBody(step): JsonBody<FlowStep>,
) -> Result<Json<Alert>, ApiError> {
    require(&caller, "admin")?;
    let id = parse_id(&id)?;
    let a = alerts::step(&s.store, &id, &step)
        .await
        .map_err(flow_error)?;
    audit(&s, &caller, "alert.flow", &format!("{id}:{}", a.status)).await;
    Ok(Json(a))
}

async fn audit(s: &AppState, caller: &Caller, action: &str, target: &str) {
    let draft = xfhub_store::AuditDraft {
        actor: caller.app_key.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: "ok".to_owned(),
        remote: String::new(),
        detail: String::new(),
    };
    if let Err(e) = s.store.audit(draft).await {
        tracing::warn!(error = %e, action, "AuditWriteError");
    }
}
