//! The staff mobile API (spec 5.1.5.3.2-1): profile, tracking lists of acceptance, handling and
//! resolution (in progress, near deadline, overdue, reflowed) with drill-down to the petition,
//! its process events and its materials; approvals (approve, comment), follows, alerts and
//! notices (通知公告, written by the bureau over the admin API, see [`super::notices`]).
//!
//! Every call carries a staff JWT; a user sees only records whose division lies in the
//! jurisdiction of their organisation (`org_division`). A record outside it answers
//! `not_found`, like one that does not exist. Personal data is always masked here.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;
use xfhub_schemas::Petition;
use xfhub_security::pii::{self, DocKind};
use xfhub_store::{now_ms, AuditDraft, RecordKind, Stmt, Txn};

use super::jwt::{scope_prefix, StaffClaims};
use super::notices;
use crate::app::AppState;
use crate::error::ApiError;

/// Days before a deadline from which a case is "near deadline".
const NEAR_DAYS: i64 = 3;

fn store_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("staff api", &e)
}

async fn claims(s: &AppState, headers: &HeaderMap) -> Result<StaffClaims, ApiError> {
    let c = s.app.jwks.verify_headers(headers).await?;
    // The notice push needs to know who uses the app (first sight or a changed org or role).
    notices::note_staff(&s.store, &s.app.staff_seen, &c).await;
    Ok(c)
}

fn today() -> NaiveDate {
    Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
        .date_naive()
}

/// How a column of a list row is read into JSON.
#[derive(Debug, Clone, Copy)]
enum Col {
    Text,
    OptText,
    Int,
    OptInt,
}

/// `{"items": [...]}` of a list query's rows, each an object of `(key, column, kind)`.
async fn list(
    s: &AppState,
    stmt: Stmt,
    cols: &[(&str, &str, Col)],
) -> Result<Json<Value>, ApiError> {
    let rows = stmt
        .query()
        .fetch_all(s.store.reader())
        .await
        .map_err(store_err)?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let mut item = serde_json::Map::new();
        for (key, column, kind) in cols {
            let v = match kind {
                Col::Text => json!(r.try_get::<String, _>(*column).map_err(store_err)?),
                Col::OptText => {
                    json!(r.try_get::<Option<String>, _>(*column).map_err(store_err)?)
                }
                Col::Int => json!(r.try_get::<i64, _>(*column).map_err(store_err)?),
                Col::OptInt => json!(r.try_get::<Option<i64>, _>(*column).map_err(store_err)?),
            };
            item.insert((*key).to_owned(), v);
        }
        items.push(Value::Object(item));
    }
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/v1/app/staff/profile`.
#[utoipa::path(get, path = "/api/v1/app/staff/profile", tag = "app", security(("staff_jwt" = [])), responses((status = 200, description = "the user, org, jurisdiction, roles"), (status = 401, description = "auth_token_missing, auth_token_invalid or auth_token_expired", body = crate::error::ErrorBody)))]
pub async fn profile(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let name = s
        .tables
        .lookup("divisions", &c.org_division)
        .map(|e| e.name_zh.clone());
    Ok(Json(json!({
        "user_id": c.sub,
        "name": c.name,
        "org": c.org,
        "org_division": c.org_division,
        "jurisdiction": name,
        "roles": c.roles,
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrackingParams {
    /// `in_progress` (default), `near_deadline`, `overdue`, `reflowed`.
    #[serde(default)]
    pub list: Option<String>,
    /// `acceptance` (registered, not yet accepted), `handling` (accepted, not replied),
    /// `resolution` (replied, not concluded); all three when absent.
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A list item: what the phone shows, no personal data.
fn item(id: &str, p: &Petition, today: NaiveDate) -> Value {
    json!({
        "id": id,
        "source": p.source,
        "division": p.appeal.division,
        "summary": p.appeal.summary,
        "status": p.status().as_str(),
        "responsible_unit": p.handling.responsible_unit,
        "deadline": p.handling.deadline,
        "days_left": p.handling.deadline.map(|d| (d - today).num_days()),
        "registered_at": p.acceptance.registered_at,
    })
}

/// `GET /api/v1/app/staff/tracking?list&stage&limit`.
#[utoipa::path(get, path = "/api/v1/app/staff/tracking", tag = "app", security(("staff_jwt" = [])), params(TrackingParams), responses((status = 200, description = "petitions of the list in my jurisdiction"), (status = 400, description = "invalid_parameter", body = crate::error::ErrorBody), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody)))]
pub async fn tracking(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TrackingParams>,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let list = q.list.as_deref().unwrap_or("in_progress");
    if !["in_progress", "near_deadline", "overdue", "reflowed"].contains(&list) {
        return Err(ApiError::bad_param(
            "list",
            "in_progress, near_deadline, overdue or reflowed",
            "应为 in_progress、near_deadline、overdue 或 reflowed",
        ));
    }
    let statuses: &[&str] = match q.stage.as_deref() {
        None => &["registered", "accepted", "replied"],
        Some("acceptance") => &["registered"],
        Some("handling") => &["accepted"],
        Some("resolution") => &["replied"],
        Some(_) => {
            return Err(ApiError::bad_param(
                "stage",
                "acceptance, handling or resolution",
                "应为 acceptance、handling 或 resolution",
            ))
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 200) as usize;
    let mut sql = String::from(
        "SELECT id, body FROM records WHERE kind = 'petition' AND division LIKE $1 AND status IN ('registered', 'accepted', 'replied')",
    );
    if list == "reflowed" {
        sql.push_str(" AND id IN (SELECT petition_id FROM process_events WHERE kind = 'reflowed')");
    }
    sql.push_str(" ORDER BY updated_at DESC LIMIT 2000");
    let rows = Stmt::new(sql)
        .bind(format!("{}%", scope_prefix(&c.org_division)))
        .query()
        .fetch_all(s.store.reader())
        .await
        .map_err(store_err)?;
    let today = today();
    let mut items = Vec::new();
    for r in rows {
        let id: String = r.try_get("id").map_err(store_err)?;
        let body: String = r.try_get("body").map_err(store_err)?;
        let Ok(p) = serde_json::from_str::<Petition>(&body) else {
            continue;
        };
        if !statuses.contains(&p.status().as_str()) || !c.covers(&p.appeal.division) {
            continue;
        }
        let keep = match (list, p.handling.deadline) {
            ("near_deadline", Some(d)) => d >= today && d <= today + Duration::days(NEAR_DAYS),
            ("overdue", Some(d)) => d < today,
            ("near_deadline" | "overdue", None) => false,
            _ => true,
        };
        if keep {
            items.push(item(&id, &p, today));
            if items.len() >= limit {
                break;
            }
        }
    }
    Ok(Json(
        json!({ "list": list, "count": items.len(), "items": items }),
    ))
}

/// The petition `id` when it lies in the caller's jurisdiction (else `not_found`).
async fn petition_in_scope(
    s: &AppState,
    c: &StaffClaims,
    id: &str,
) -> Result<(Uuid, Value), ApiError> {
    let Ok(uuid) = Uuid::parse_str(id) else {
        return Err(ApiError::not_found("petition"));
    };
    let rec = s
        .store
        .get_record(RecordKind::Petition, uuid)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found("petition"))?;
    let division = rec.data["appeal"]["division"].as_str().unwrap_or_default();
    if !c.covers(division) {
        return Err(ApiError::not_found("petition"));
    }
    Ok((uuid, rec.data))
}

/// `GET /api/v1/app/staff/petitions/{id}`: the petition (personal data masked), its process
/// events and its materials.
#[utoipa::path(get, path = "/api/v1/app/staff/petitions/{id}", tag = "app", security(("staff_jwt" = [])), params(("id" = String, Path)), responses((status = 200, description = "petition (masked), events, materials"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody), (status = 404, description = "not_found (also outside my jurisdiction)", body = crate::error::ErrorBody)))]
pub async fn petition(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let (uuid, mut data) = petition_in_scope(&s, &c, &id).await?;
    pii::open_document(&s.keys.current(), DocKind::Petition, &mut data).map_err(store_err)?;
    pii::mask_document(DocKind::Petition, &mut data);
    let rows = Stmt::new(
        "SELECT kind, occurred_at, actor, body FROM process_events WHERE petition_id = $1 ORDER BY occurred_at, seq",
    )
    .bind(uuid.to_string())
    .query()
    .fetch_all(s.store.reader())
    .await
    .map_err(store_err)?;
    let mut events = Vec::new();
    for r in rows {
        let body: String = r.try_get("body").map_err(store_err)?;
        events.push(json!({
            "kind": r.try_get::<String, _>("kind").map_err(store_err)?,
            "occurred_at": r.try_get::<String, _>("occurred_at").map_err(store_err)?,
            "actor": r.try_get::<String, _>("actor").map_err(store_err)?,
            "event": serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        }));
    }
    let followed =
        Stmt::new("SELECT 1 AS x FROM app_follows WHERE user_id = $1 AND record_id = $2")
            .bind(&c.sub)
            .bind(uuid.to_string())
            .query()
            .fetch_optional(s.store.reader())
            .await
            .map_err(store_err)?
            .is_some();
    let materials = data["appeal"]["materials"].clone();
    Ok(Json(json!({
        "id": uuid,
        "petition": data,
        "events": events,
        "materials": materials,
        "followed": followed,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// `approve` or `comment`.
    pub action: String,
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/app/staff/petitions/{id}/approvals`: approve or comment (audited).
#[utoipa::path(post, path = "/api/v1/app/staff/petitions/{id}/approvals", tag = "app", security(("staff_jwt" = [])), params(("id" = String, Path)), request_body = ApprovalRequest, responses((status = 201, description = "recorded"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody), (status = 404, description = "not_found", body = crate::error::ErrorBody), (status = 422, description = "validation_failed", body = crate::error::ErrorBody)))]
pub async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let c = claims(&s, &headers).await?;
    let r: ApprovalRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not the expected JSON: {e}"),
            "请求内容格式错误",
        )
    })?;
    let comment = r.comment.trim().to_owned();
    let bad = match r.action.as_str() {
        "approve" => comment.chars().count() > 500,
        "comment" => comment.is_empty() || comment.chars().count() > 500,
        _ => true,
    };
    if bad {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "action must be approve or comment; a comment needs 1 to 500 characters",
            "操作应为审批或批示；批示内容1至500字",
        )
        .with_field(
            "action",
            "invalid_value",
            "approve or comment",
            "应为 approve 或 comment",
        ));
    }
    let (uuid, _) = petition_in_scope(&s, &c, &id).await?;
    let approval_id = Uuid::now_v7().to_string();
    let now = now_ms();
    s.store
        .transact(Txn {
            statements: vec![Stmt::new(
                "INSERT INTO app_approvals (id, record_id, user_id, org, action, comment, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&approval_id)
            .bind(uuid.to_string())
            .bind(&c.sub)
            .bind(&c.org)
            .bind(&r.action)
            .bind(&comment)
            .bind(now)],
            audit: vec![AuditDraft {
                actor: format!("staff:{}", c.sub),
                action: format!("app.{}", r.action),
                target: format!("petition {uuid}"),
                outcome: "ok".to_owned(),
                remote: String::new(),
                detail: String::new(),
            }],
            ..Default::default()
        })
        .await
        .map_err(store_err)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": approval_id, "record_id": uuid, "action": r.action})),
    )
        .into_response())
}

/// `GET /api/v1/app/staff/approvals`: my approvals and comments, newest first.
#[utoipa::path(get, path = "/api/v1/app/staff/approvals", tag = "app", security(("staff_jwt" = [])), responses((status = 200, description = "my approvals and comments"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody)))]
pub async fn my_approvals(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let stmt = Stmt::new(
        "SELECT id, record_id, action, comment, created_at FROM app_approvals WHERE user_id = $1 ORDER BY created_at DESC LIMIT 200",
    )
    .bind(&c.sub);
    list(
        &s,
        stmt,
        &[
            ("id", "id", Col::Text),
            ("record_id", "record_id", Col::Text),
            ("action", "action", Col::Text),
            ("comment", "comment", Col::Text),
            ("created_at", "created_at", Col::Int),
        ],
    )
    .await
}

/// `PUT /api/v1/app/staff/follows/{id}`.
#[utoipa::path(put, path = "/api/v1/app/staff/follows/{id}", tag = "app", security(("staff_jwt" = [])), params(("id" = String, Path)), responses((status = 204, description = "followed"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody), (status = 404, description = "not_found", body = crate::error::ErrorBody)))]
pub async fn follow(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let c = claims(&s, &headers).await?;
    let (uuid, _) = petition_in_scope(&s, &c, &id).await?;
    s.store
        .transact(Txn {
            statements: vec![Stmt::new(
                "INSERT INTO app_follows (user_id, record_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id, record_id) DO NOTHING",
            )
            .bind(&c.sub)
            .bind(uuid.to_string())
            .bind(now_ms())],
            ..Default::default()
        })
        .await
        .map_err(store_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/app/staff/follows/{id}`.
#[utoipa::path(delete, path = "/api/v1/app/staff/follows/{id}", tag = "app", security(("staff_jwt" = [])), params(("id" = String, Path)), responses((status = 204, description = "not followed any more"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody)))]
pub async fn unfollow(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let c = claims(&s, &headers).await?;
    s.store
        .transact(Txn {
            statements: vec![Stmt::new(
                "DELETE FROM app_follows WHERE user_id = $1 AND record_id = $2",
            )
            .bind(&c.sub)
            .bind(id)],
            ..Default::default()
        })
        .await
        .map_err(store_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/app/staff/follows`: the petitions I follow that are still in my jurisdiction.
#[utoipa::path(get, path = "/api/v1/app/staff/follows", tag = "app", security(("staff_jwt" = [])), responses((status = 200, description = "petitions I follow"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody)))]
pub async fn my_follows(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let rows = Stmt::new(
        "SELECT r.id, r.body FROM app_follows f JOIN records r ON r.id = f.record_id WHERE f.user_id = $1 ORDER BY f.created_at DESC LIMIT 200",
    )
    .bind(&c.sub)
    .query()
    .fetch_all(s.store.reader())
    .await
    .map_err(store_err)?;
    let today = today();
    let mut items = Vec::new();
    for r in rows {
        let id: String = r.try_get("id").map_err(store_err)?;
        let body: String = r.try_get("body").map_err(store_err)?;
        if let Ok(p) = serde_json::from_str::<Petition>(&body) {
            if c.covers(&p.appeal.division) {
                items.push(item(&id, &p, today));
            }
        }
    }
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/v1/app/staff/messages`: my push messages and their delivery status.
#[utoipa::path(get, path = "/api/v1/app/staff/messages", tag = "app", security(("staff_jwt" = [])), responses((status = 200, description = "my push messages with their delivery status"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody)))]
pub async fn messages(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let stmt = Stmt::new(
        "SELECT message_key, title, body, status, attempts, created_at, delivered_at FROM app_push WHERE user_id = $1 ORDER BY created_at DESC LIMIT 200",
    )
    .bind(&c.sub);
    list(
        &s,
        stmt,
        &[
            ("id", "message_key", Col::Text),
            ("title", "title", Col::Text),
            ("body", "body", Col::Text),
            ("status", "status", Col::Text),
            ("attempts", "attempts", Col::Int),
            ("created_at", "created_at", Col::Int),
            ("delivered_at", "delivered_at", Col::OptInt),
        ],
    )
    .await
}

/// `GET /api/v1/app/staff/alerts`: alerts of the warning module in my jurisdiction.
#[utoipa::path(get, path = "/api/v1/app/staff/alerts", tag = "app", security(("staff_jwt" = [])), responses((status = 200, description = "alerts in my jurisdiction"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody)))]
pub async fn alerts(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let stmt = Stmt::new(
        "SELECT id, kind, level, status, record_id, division, title, raised_at FROM alerts WHERE division LIKE $1 ORDER BY raised_at DESC LIMIT 100",
    )
    .bind(format!("{}%", scope_prefix(&c.org_division)));
    list(
        &s,
        stmt,
        &[
            ("id", "id", Col::Text),
            ("kind", "kind", Col::Text),
            ("level", "level", Col::Text),
            ("status", "status", Col::Text),
            ("record_id", "record_id", Col::OptText),
            ("division", "division", Col::Text),
            ("title", "title", Col::Text),
            ("raised_at", "raised_at", Col::Int),
        ],
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoticeParams {
    /// At most this many (1 to 100, default 20).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Skip this many (paging; default 0).
    #[serde(default)]
    pub offset: Option<u32>,
}

fn notice_json(r: &sqlx::any::AnyRow, full: bool) -> Result<Value, ApiError> {
    let body: String = r.try_get("body").map_err(store_err)?;
    let read_at = r.try_get::<Option<i64>, _>("read_at").map_err(store_err)?;
    let mut v = json!({
        "id": r.try_get::<String, _>("id").map_err(store_err)?,
        "title": r.try_get::<String, _>("title").map_err(store_err)?,
        "level": r.try_get::<String, _>("level").map_err(store_err)?,
        "audience_division": r.try_get::<String, _>("audience_division").map_err(store_err)?,
        "publish_at": r.try_get::<i64, _>("publish_at").map_err(store_err)?,
        "expires_at": r.try_get::<Option<i64>, _>("expires_at").map_err(store_err)?,
        "unread": read_at.is_none(),
        "read_at": read_at,
    });
    if full {
        v["body"] = json!(body);
    } else {
        v["summary"] = json!(body.chars().take(60).collect::<String>());
    }
    Ok(v)
}

const NOTICE_COLUMNS: &str =
    "n.id, n.title, n.body, n.level, n.audience_division, n.publish_at, n.expires_at, r.read_at";

/// `GET /api/v1/app/staff/notices?limit&offset`: the notices published for my organisation and
/// roles, not expired nor withdrawn, newest first, each with my unread flag.
#[utoipa::path(get, path = "/api/v1/app/staff/notices", tag = "app", security(("staff_jwt" = [])), params(NoticeParams), responses((status = 200, description = "{total, unread, items: [{id, title, summary, level, audience_division, publish_at, expires_at, unread, read_at}]}"), (status = 400, description = "invalid_parameter", body = crate::error::ErrorBody), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody)))]
pub async fn notices(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NoticeParams>,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_param(
            "limit",
            "must be between 1 and 100",
            "必须在 1 到 100 之间",
        ));
    }
    let offset = q.offset.unwrap_or(0);
    let (cond, mut args) = notices::visible_to(&c, now_ms());
    let from =
        "FROM app_notices n LEFT JOIN app_notice_reads r ON r.notice_id = n.id AND r.user_id = $1";
    let counts = notices::stmt_of(
        format!("SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN r.read_at IS NULL THEN 1 ELSE 0 END), 0) AS unread {from} WHERE {cond}"),
        &args,
    )
    .query()
    .fetch_one(s.store.reader())
    .await
    .map_err(store_err)?;
    let total: i64 = counts.try_get("total").map_err(store_err)?;
    let unread: i64 = counts.try_get("unread").map_err(store_err)?;
    let n = args.len();
    args.push(json!(i64::from(limit)));
    args.push(json!(i64::from(offset)));
    let rows = notices::stmt_of(
        format!(
            "SELECT {NOTICE_COLUMNS} {from} WHERE {cond} ORDER BY n.publish_at DESC, n.id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ),
        &args,
    )
    .query()
    .fetch_all(s.store.reader())
    .await
    .map_err(store_err)?;
    let items = rows
        .iter()
        .map(|r| notice_json(r, false))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(
        json!({ "total": total, "unread": unread, "items": items }),
    ))
}

/// `GET /api/v1/app/staff/notices/{id}`: one notice, which is then read for me. A notice not
/// meant for me (other division or roles, not yet published, expired, withdrawn) answers
/// `not_found`, like a missing one.
#[utoipa::path(get, path = "/api/v1/app/staff/notices/{id}", tag = "app", security(("staff_jwt" = [])), params(("id" = String, Path)), responses((status = 200, description = "{id, title, body, level, audience_division, publish_at, expires_at, unread: false, read_at}"), (status = 401, description = "auth_token_*", body = crate::error::ErrorBody), (status = 404, description = "not_found (also not meant for me)", body = crate::error::ErrorBody)))]
pub async fn notice(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = claims(&s, &headers).await?;
    let now = now_ms();
    let (cond, mut args) = notices::visible_to(&c, now);
    args.push(json!(id));
    let row = notices::stmt_of(
        format!(
            "SELECT {NOTICE_COLUMNS} FROM app_notices n LEFT JOIN app_notice_reads r ON r.notice_id = n.id AND r.user_id = $1 WHERE {cond} AND n.id = ${}",
            args.len()
        ),
        &args,
    )
    .query()
    .fetch_optional(s.store.reader())
    .await
    .map_err(store_err)?
    .ok_or_else(|| ApiError::not_found("notice"))?;
    let mut v = notice_json(&row, true)?;
    if v["read_at"].is_null() {
        s.store
            .transact(Txn {
                statements: vec![Stmt::new(
                    "INSERT INTO app_notice_reads (notice_id, user_id, read_at) VALUES ($1, $2, $3) ON CONFLICT (notice_id, user_id) DO NOTHING",
                )
                .bind(&id)
                .bind(&c.sub)
                .bind(now)],
                ..Default::default()
            })
            .await
            .map_err(store_err)?;
        v["read_at"] = json!(now);
        v["unread"] = json!(false);
    }
    Ok(Json(v))
}
