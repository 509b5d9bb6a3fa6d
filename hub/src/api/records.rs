//! REST for petitions, 12345 work orders and code tables.
//!
//! A submission is normalized and validated (every field error at once), then handed to the
//! store, which commits the record, its change-log entry and its outbox message together; the
//! answer is sent only after that commit is on disk.

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use xfhub_schemas::{
    validate_petition, validate_workorder, CodeTable, Petition, PetitionStatus, Record, WorkOrder,
};
use xfhub_security::pii::{self, DocKind};
use xfhub_store::{
    intake, AuditDraft, IngestItem, IngestOutcome, ListQuery, Receipt, RecordKind, StoredRecord,
};

use crate::app::AppState;
use crate::auth::{
    division_denied, info_set_denied, nonce_reused, remote_of, Caller, PendingNonce,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, PathParam, Query};

/// Submits a petition. Idempotent by source system, source id and version: a repeat returns the
/// first receipt; other content under the same version is a 409.
#[utoipa::path(post, path = "/api/v1/petitions", tag = "records",
    request_body = Petition,
    params(("x-correlation-id" = Option<String>, Header, description = "UUID carried by every message this request causes")),
    responses(
        (status = 201, description = "stored; its message is queued", body = Receipt),
        (status = 200, description = "a newer version stored, or a repeat: the first receipt", body = Receipt),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 409, description = "same version with other content, or an older version", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "schema or validation errors, every field listed", body = ErrorBody),
        (status = 503, description = "not stored; retry", body = ErrorBody),
    ))]
pub async fn submit_petition(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    nonce: Option<Extension<PendingNonce>>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    headers: HeaderMap,
    JsonBody(p): JsonBody<Petition>,
) -> Result<Response, ApiError> {
    let nonce = nonce.map(|Extension(n)| n);
    let answer = store_petition(&s, &caller, nonce, remote, correlation_id(&headers), p).await?;
    Ok(with_location(answer, "/api/v1/petitions"))
}

/// The submission path every surface shares (REST, SOAP, XML): info set, validation, division,
/// sealing, idempotent ingest with the request's nonce and audit entry.
pub async fn store_petition(
    s: &AppState,
    caller: &Caller,
    nonce: Option<PendingNonce>,
    remote: String,
    correlation: Option<Uuid>,
    p: Petition,
) -> Result<(StatusCode, Receipt), ApiError> {
    if !caller.has_info_set("petition") {
        return Err(info_set_denied("petition"));
    }
    let p = validate_petition(p, s.tables, Utc::now()).map_err(ApiError::validation)?;
    if !caller.may_see_division(&p.appeal.division) {
        return Err(division_denied(&p.appeal.division));
    }
    let mut item = intake::petition_item(&p, &s.keys.current())
        .map_err(|e| ApiError::internal("encode petition", &e))?;
    item.correlation_id = correlation;
    item.audit = Some(audit_draft(caller, "petition.submit", remote));
    item.nonce = nonce.map(PendingNonce::into_tuple);
    ingest(s, item).await
}

/// Submits a 12345 work order; same idempotency rules as petitions.
#[utoipa::path(post, path = "/api/v1/workorders", tag = "records",
    request_body = WorkOrder,
    params(("x-correlation-id" = Option<String>, Header, description = "UUID carried by every message this request causes")),
    responses(
        (status = 201, description = "stored; its message is queued", body = Receipt),
        (status = 200, description = "a newer version stored, or a repeat: the first receipt", body = Receipt),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 409, description = "same version with other content, or an older version", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "schema or validation errors, every field listed", body = ErrorBody),
        (status = 503, description = "not stored; retry", body = ErrorBody),
    ))]
pub async fn submit_workorder(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    nonce: Option<Extension<PendingNonce>>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    headers: HeaderMap,
    JsonBody(w): JsonBody<WorkOrder>,
) -> Result<Response, ApiError> {
    let nonce = nonce.map(|Extension(n)| n);
    let answer = store_workorder(&s, &caller, nonce, remote, correlation_id(&headers), w).await?;
    Ok(with_location(answer, "/api/v1/workorders"))
}

/// The work-order submission path every surface shares (see [`store_petition`]).
pub async fn store_workorder(
    s: &AppState,
    caller: &Caller,
    nonce: Option<PendingNonce>,
    remote: String,
    correlation: Option<Uuid>,
    w: WorkOrder,
) -> Result<(StatusCode, Receipt), ApiError> {
    if !caller.has_info_set("workorder") {
        return Err(info_set_denied("workorder"));
    }
    let w = validate_workorder(w, s.tables, Utc::now()).map_err(ApiError::validation)?;
    if !caller.may_see_division(&w.division) {
        return Err(division_denied(&w.division));
    }
    let mut item = intake::workorder_item(&w, &s.keys.current())
        .map_err(|e| ApiError::internal("encode work order", &e))?;
    item.correlation_id = correlation;
    item.audit = Some(audit_draft(caller, "workorder.submit", remote));
    item.nonce = nonce.map(PendingNonce::into_tuple);
    ingest(s, item).await
}

/// The REST answer of a stored submission: the receipt as JSON with its `Location`.
fn with_location((status, receipt): (StatusCode, Receipt), base: &str) -> Response {
    let location = format!("{base}/{}", receipt.id);
    (status, [(header::LOCATION, location)], Json(receipt)).into_response()
}

/// The `x-correlation-id` header, when it is a UUID.
pub fn correlation_id(headers: &HeaderMap) -> Option<Uuid> {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
}

pub fn audit_draft(caller: &Caller, action: &str, remote: String) -> AuditDraft {
    AuditDraft {
        actor: caller.app_key.clone(),
        action: action.to_owned(),
        target: String::new(),
        outcome: String::new(),
        remote,
        detail: String::new(),
    }
}

/// The peer address if the server recorded it (it does; in-process tests may not).
pub struct ConnectInfoOpt(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConnectInfoOpt {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ConnectInfoOpt(remote_of(&parts.extensions)))
    }
}

async fn ingest(s: &AppState, item: IngestItem) -> Result<(StatusCode, Receipt), ApiError> {
    let (source_id, version) = (item.source_id.clone(), item.version);
    let outcome = s
        .store
        .ingest(item)
        .await
        .map_err(|e| ApiError::internal("ingest", &e))?;
    let (status, receipt) = match outcome {
        IngestOutcome::Created(r) => {
            s.relay.notify();
            metrics::counter!("xfhub_records_ingested_total", "kind" => r.kind.clone(), "outcome" => "created").increment(1);
            (StatusCode::CREATED, r)
        }
        IngestOutcome::Updated(r) => {
            s.relay.notify();
            metrics::counter!("xfhub_records_ingested_total", "kind" => r.kind.clone(), "outcome" => "updated").increment(1);
            (StatusCode::OK, r)
        }
        IngestOutcome::Duplicate(r) => (StatusCode::OK, r),
        IngestOutcome::Replayed => return Err(nonce_reused()),
        IngestOutcome::Conflict { version } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!("source record {source_id} version {version} was already received with different content; send a higher version to update it"),
                format!("来源记录 {source_id} 的版本 {version} 已以不同内容提交；如需更新请提高版本号"),
            )
            .with_field("source.version", "version_conflict", "same version, different content", "同一版本内容不一致"));
        }
        IngestOutcome::Stale { current_version } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "version_stale",
                format!("source record {source_id} is already at version {current_version}; version {version} is older"),
                format!("来源记录 {source_id} 已是版本 {current_version}，提交的版本 {version} 较旧"),
            )
            .with_field("source.version", "version_stale", "older than the stored version", "低于已保存的版本"));
        }
    };
    Ok((status, receipt))
}

/// Filters of `GET /api/v1/petitions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PetitionFilter {
    /// Problem location division code (a historical code is mapped to the current one).
    pub division: Option<String>,
    /// Exact complainant identity number (looked up through the blind index; the number is
    /// never stored in clear).
    pub id_number: Option<String>,
    /// Exact complainant mobile number (blind index).
    pub mobile: Option<String>,
    /// Petition form code (`forms` table).
    pub form: Option<String>,
    /// Purpose code (`purposes` table).
    pub purpose: Option<String>,
    /// Content class code prefix: 2, 4 or 6 digits.
    pub content_class: Option<String>,
    /// Complaint date from (inclusive), `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Complaint date to (inclusive), `YYYY-MM-DD`.
    pub to: Option<String>,
    /// `registered` | `accepted` | `replied` | `concluded`
    pub status: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

/// Filters of `GET /api/v1/workorders`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkOrderFilter {
    /// Event location division code.
    pub division: Option<String>,
    /// Order type code (`order_types` table).
    pub order_type: Option<String>,
    /// Order state code (`order_states` table).
    pub state: Option<String>,
    /// Call date from (inclusive), `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Call date to (inclusive), `YYYY-MM-DD`.
    pub to: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

/// A page of records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage<T> {
    pub items: Vec<Record<T>>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

struct Filters<'a> {
    s: &'a AppState,
    q: ListQuery,
    errors: Vec<ApiError>,
}

impl<'a> Filters<'a> {
    fn new(s: &'a AppState, cursor: Option<&str>, limit: Option<u32>) -> Self {
        let mut f = Filters {
            s,
            q: ListQuery::default(),
            errors: Vec::new(),
        };
        f.q.limit = match limit {
            None => 50,
            Some(l @ 1..=500) => l,
            Some(_) => {
                f.fail("limit", "must be between 1 and 500", "必须在 1 到 500 之间");
                50
            }
        };
        if let Some(c) = cursor {
            match Uuid::parse_str(c) {
                Ok(id) => f.q.before = Some(id),
                Err(_) => f.fail(
                    "cursor",
                    "not a cursor this API issued",
                    "不是本接口返回的游标",
                ),
            }
        }
        f
    }

    fn fail(&mut self, param: &str, reason: &str, reason_zh: &str) {
        self.errors
            .push(ApiError::bad_param(param, reason, reason_zh));
    }

    fn code(&mut self, param: &str, table: &str, value: Option<&String>) -> Option<String> {
        let v = value?;
        if self.s.tables.is_known(table, v) {
            Some(v.clone())
        } else {
            self.fail(
                param,
                &format!("unknown code in table {table}"),
                &format!("代码表 {table} 中没有该代码"),
            );
            None
        }
    }

    fn division(&mut self, value: Option<&String>) -> Option<String> {
        let v = value?;
        match self.s.tables.current_division(v) {
            Some(d) => Some(d),
            None => {
                self.fail("division", "unknown division code", "行政区划代码不存在");
                None
            }
        }
    }

    fn date(&mut self, param: &str, value: Option<&String>) -> Option<String> {
        let v = value?;
        match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            Ok(d) => Some(d.to_string()),
            Err(_) => {
                self.fail(
                    param,
                    "must be a date YYYY-MM-DD",
                    "日期格式应为 YYYY-MM-DD",
                );
                None
            }
        }
    }

    fn finish(mut self) -> Result<ListQuery, ApiError> {
        if let (Some(from), Some(to)) = (&self.q.from, &self.q.to) {
            if from > to {
                self.fail("from", "must not be after `to`", "起始日期不能晚于截止日期");
            }
        }
        let mut errors = self.errors.into_iter();
        match errors.next() {
            None => Ok(self.q),
            Some(mut first) => {
                // One answer naming every bad parameter.
                for e in errors {
                    first.body.fields.extend(e.body.fields);
                }
                if first.body.fields.len() > 1 {
                    first.body.message =
                        format!("{} query parameters are invalid", first.body.fields.len());
                    first.body.message_zh = format!("{} 个查询参数无效", first.body.fields.len());
                }
                Err(first)
            }
        }
    }
}

/// Lists petitions, newest first, with filters and cursor paging.
#[utoipa::path(get, path = "/api/v1/petitions", tag = "records", params(PetitionFilter),
    responses((status = 200, body = RecordPage<Petition>), (status = 400, description = "bad filter", body = ErrorBody)))]
pub async fn list_petitions(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<PetitionFilter>,
) -> Result<Json<RecordPage<Petition>>, ApiError> {
    query_petitions(&s, &caller, f).await.map(Json)
}

/// Petitions for this caller under a filter: the listing every surface shares.
pub async fn query_petitions(
    s: &AppState,
    caller: &Caller,
    f: PetitionFilter,
) -> Result<RecordPage<Petition>, ApiError> {
    if !caller.has_info_set("petition") {
        return Err(info_set_denied("petition"));
    }
    let mut b = Filters::new(s, f.cursor.as_deref(), f.limit);
    b.q.division = b.division(f.division.as_ref());
    let ring = s.keys.current();
    match (&f.id_number, &f.mobile) {
        (Some(_), Some(_)) => b.fail(
            "mobile",
            "give id_number or mobile, not both",
            "证件号码与手机号码只能择一查询",
        ),
        (Some(id), None) => match xfhub_schemas::validate::check_id_number(id) {
            Ok(n) => b.q.blind = Some(("id_number".to_owned(), ring.blind_index("id_number", &n))),
            Err(_) => b.fail("id_number", "not a valid identity number", "证件号码无效"),
        },
        (None, Some(m)) => match xfhub_schemas::validate::normalize_mobile(m) {
            Some(n) => b.q.blind = Some(("mobile".to_owned(), ring.blind_index("mobile", &n))),
            None => b.fail("mobile", "not a valid mobile number", "手机号码无效"),
        },
        (None, None) => {}
    }
    b.q.form = b.code("form", "forms", f.form.as_ref());
    b.q.purpose = b.code("purpose", "purposes", f.purpose.as_ref());
    if let Some(c) = &f.content_class {
        if matches!(c.len(), 2 | 4 | 6) && c.bytes().all(|b| b.is_ascii_digit()) {
            b.q.content_class_prefix = Some(c.clone());
        } else {
            b.fail(
                "content_class",
                "must be 2, 4 or 6 digits",
                "应为 2、4 或 6 位数字",
            );
        }
    }
    b.q.from = b.date("from", f.from.as_ref());
    b.q.to = b.date("to", f.to.as_ref());
    if let Some(st) = &f.status {
        match PetitionStatus::parse(st) {
            Some(st) => b.q.status = Some(st.as_str().to_owned()),
            None => b.fail(
                "status",
                "must be registered, accepted, replied or concluded",
                "应为 registered、accepted、replied 或 concluded",
            ),
        }
    }
    let q = b.finish()?;
    list(s, caller, RecordKind::Petition, q).await
}

/// Lists 12345 work orders, newest first, with filters and cursor paging.
#[utoipa::path(get, path = "/api/v1/workorders", tag = "records", params(WorkOrderFilter),
    responses((status = 200, body = RecordPage<WorkOrder>), (status = 400, description = "bad filter", body = ErrorBody)))]
pub async fn list_workorders(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<WorkOrderFilter>,
) -> Result<Json<RecordPage<WorkOrder>>, ApiError> {
    query_workorders(&s, &caller, f).await.map(Json)
}

/// 12345 work orders for this caller under a filter (see [`query_petitions`]).
pub async fn query_workorders(
    s: &AppState,
    caller: &Caller,
    f: WorkOrderFilter,
) -> Result<RecordPage<WorkOrder>, ApiError> {
    if !caller.has_info_set("workorder") {
        return Err(info_set_denied("workorder"));
    }
    let mut b = Filters::new(s, f.cursor.as_deref(), f.limit);
    b.q.division = b.division(f.division.as_ref());
    b.q.purpose = b.code("order_type", "order_types", f.order_type.as_ref());
    b.q.status = b.code("state", "order_states", f.state.as_ref());
    b.q.from = b.date("from", f.from.as_ref());
    b.q.to = b.date("to", f.to.as_ref());
    let q = b.finish()?;
    list(s, caller, RecordKind::Workorder, q).await
}

async fn list<T: DeserializeOwned>(
    s: &AppState,
    caller: &Caller,
    kind: RecordKind,
    mut q: ListQuery,
) -> Result<RecordPage<T>, ApiError> {
    // A district's system sees its district only.
    if !caller.all_divisions() {
        if let Some(d) = &q.division {
            if !caller.may_see_division(d) {
                return Err(division_denied(d));
            }
        }
        q.divisions = Some(caller.divisions.clone());
    }
    let page = s
        .store
        .list_records(kind, &q)
        .await
        .map_err(|e| ApiError::internal("list records", &e))?;
    let items = page
        .items
        .into_iter()
        .map(|r| typed(s, caller, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordPage {
        items,
        next_cursor: page.next.map(|id| id.to_string()),
    })
}

/// The stored record for this caller: personal data opened, then masked unless the caller
/// holds `pii:read`.
fn typed<T: DeserializeOwned>(
    s: &AppState,
    caller: &Caller,
    mut r: StoredRecord,
) -> Result<Record<T>, ApiError> {
    if let Some(kind) = DocKind::from_record_kind(&r.kind) {
        pii::open_document(&s.keys.current(), kind, &mut r.data)
            .map_err(|e| ApiError::internal("open sealed personal data", &e))?;
        if !caller.has_scope("pii:read") {
            pii::mask_document(kind, &mut r.data);
        }
    }
    let data = serde_json::from_value(r.data)
        .map_err(|e| ApiError::internal("decode stored record", &e))?;
    Ok(Record {
        id: r.id,
        kind: r.kind,
        version: r.version,
        status: r.status,
        received_at: r.received_at,
        updated_at: r.updated_at,
        data,
    })
}

/// One record for this caller by hub id: the read every surface shares.
pub async fn get_one<T: DeserializeOwned>(
    s: &AppState,
    caller: &Caller,
    kind: RecordKind,
    id: &str,
) -> Result<Record<T>, ApiError> {
    let set = kind.as_str();
    if !caller.has_info_set(set) {
        return Err(info_set_denied(set));
    }
    let id = Uuid::parse_str(id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "the id is not a UUID",
            "记录编号格式错误",
        )
        .with_field("id", "invalid_id", "not a UUID", "不是 UUID")
    })?;
    let rec = s
        .store
        .get_record(kind, id)
        .await
        .map_err(|e| ApiError::internal("get record", &e))?
        .ok_or_else(|| ApiError::not_found(kind.as_str()))?;
    // Outside the caller's divisions a record does not exist for it.
    let division = rec
        .data
        .get("appeal")
        .and_then(|a| a.get("division"))
        .or_else(|| rec.data.get("division"));
    if let Some(d) = division.and_then(|d| d.as_str()) {
        if !caller.may_see_division(d) {
            return Err(ApiError::not_found(kind.as_str()));
        }
    }
    typed(s, caller, rec)
}

/// One petition by hub id.
#[utoipa::path(get, path = "/api/v1/petitions/{id}", tag = "records",
    params(("id" = String, Path, description = "hub id (UUID)")),
    responses((status = 200, body = Record<Petition>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_petition(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Record<Petition>>, ApiError> {
    get_one(&s, &caller, RecordKind::Petition, &id)
        .await
        .map(Json)
}

/// One 12345 work order by hub id.
#[utoipa::path(get, path = "/api/v1/workorders/{id}", tag = "records",
    params(("id" = String, Path, description = "hub id (UUID)")),
    responses((status = 200, body = Record<WorkOrder>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_workorder(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
) -> Result<Json<Record<WorkOrder>>, ApiError> {
    get_one(&s, &caller, RecordKind::Workorder, &id)
        .await
        .map(Json)
}

/// A code table's name, version and size.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeTableSummary {
    pub name: String,
    pub version: String,
    pub description: String,
    pub entries: usize,
}

/// Every code table the hub validates against.
#[utoipa::path(get, path = "/api/v1/code-tables", tag = "reference",
    responses((status = 200, body = Vec<CodeTableSummary>)))]
pub async fn list_code_tables(State(s): State<AppState>) -> Json<Vec<CodeTableSummary>> {
    Json(
        s.tables
            .tables()
            .map(|t| CodeTableSummary {
                name: t.name.clone(),
                version: t.version.clone(),
                description: t.description.clone(),
                entries: t.entries.len(),
            })
            .collect(),
    )
}

/// One code table with every entry (historical entries carry `replaced_by`).
#[utoipa::path(get, path = "/api/v1/code-tables/{name}", tag = "reference",
    params(("name" = String, Path, description = "forms, purposes, handling_methods, content_classes, divisions, ...")),
    responses((status = 200, body = CodeTable), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_code_table(
    State(s): State<AppState>,
    PathParam(name): PathParam<String>,
) -> Result<Json<CodeTable>, ApiError> {
    code_table(&s, &name).map(Json)
}

/// A code table by name, or `unknown_code_table`.
pub fn code_table(s: &AppState, name: &str) -> Result<CodeTable, ApiError> {
    s.tables.table(name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_code_table",
            format!("no code table named {name:?}"),
            "代码表不存在",
        )
    })
}
