//! REST routes of the Excel feature: templates, imports (jobs, progress, error reports) and
//! exports. Imports need the `import` scope, exports the `export` scope; petition and work
//! order data also need the info set, and rows and exports stay inside the caller's divisions.

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use xfhub_security::pii;
use xfhub_store::{AuditDraft, RecordKind};
use xfhub_transforms::excel::{find_layout, Cell, ColType, SheetKind};

use super::book::BookError;
use super::export::{self, ExportError, ExportSpec};
use super::jobs::{self, ImportContext, JobMeta, JobView};
use super::templates::{self, ReportRow};
use crate::api::records::ConnectInfoOpt;
use crate::app::AppState;
use crate::auth::{division_denied, info_set_denied, Caller};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{PathParam, Query};

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The import context of the running hub.
pub fn context(s: &AppState) -> ImportContext {
    ImportContext {
        store: s.store.clone(),
        ring: s.keys.current(),
        tables: s.tables,
        relay: Some(s.relay.clone()),
        config: s.excel.config.clone(),
        live: s.excel.live.clone(),
    }
}

fn kind_of(s: &str, param: &str) -> Result<SheetKind, ApiError> {
    SheetKind::parse(s).ok_or_else(|| {
        let all: Vec<&str> = SheetKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::bad_param(
            param,
            &format!("one of {}", all.join(", ")),
            &format!("应为 {} 之一", all.join("、")),
        )
    })
}

/// An .xlsx download; the file name is given in UTF-8 (RFC 5987) and in ASCII.
fn xlsx_response(body: Body, ascii_name: &str, name: &str) -> Response {
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let disposition = format!("attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}");
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(XLSX));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// Downloads the template of a kind: `petition` (诉求事项登记), `workorder` (12345工单),
/// `key_person` (重点人员) or `word_list` (敏感词热点词库).
#[utoipa::path(get, path = "/api/v1/excel/templates/{kind}", tag = "excel",
    params(("kind" = String, Path, description = "petition | workorder | key_person | word_list")),
    responses(
        (status = 200, description = "the template (.xlsx)", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = Vec<u8>),
        (status = 400, description = "unknown kind", body = ErrorBody),
    ))]
pub async fn template(PathParam(kind): PathParam<String>) -> Result<Response, ApiError> {
    let kind = kind_of(kind.trim_end_matches(".xlsx"), "kind")?;
    let bytes = xfhub_contracts::excel_template(kind.as_str())
        .ok_or_else(|| ApiError::not_found("template"))?;
    Ok(xlsx_response(
        Body::from(Bytes::from_static(bytes)),
        &format!("{}-template.xlsx", kind.as_str()),
        &format!("{}导入模板.xlsx", kind.title_zh()),
    ))
}

/// The multipart form of an upload.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads the fields from the stream
pub struct ImportUpload {
    /// `petition` | `workorder` | `key_person` | `word_list`
    kind: String,
    /// The workbook: .xlsx or .xls, at most `[excel] max_upload_bytes` (10 MiB by default).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

fn multipart_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_multipart",
        format!("the upload is not a valid multipart form: {e}"),
        "上传内容不是有效的 multipart 表单",
    )
}

pub(crate) fn book_error(e: &BookError) -> ApiError {
    let status = match e {
        BookError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BookError::NotSpreadsheet | BookError::Empty => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let mut err = ApiError::new(status, e.code(), e.to_string(), e.message_zh());
    if let BookError::Layout(xfhub_transforms::excel::LayoutError::MissingColumns(cols)) = e {
        for c in cols {
            err = err.with_field(c, "required", "required column missing", "缺少必填列");
        }
    }
    err
}

/// Uploads a workbook and starts an import job. The file is checked first (type, password,
/// zip bomb, header row, row count): a bad file is refused whole and nothing is imported.
/// Then the rows are imported in the background: poll the job for progress.
#[utoipa::path(post, path = "/api/v1/imports", tag = "excel",
    request_body(content = ImportUpload, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "job started; see Location", body = JobView),
        (status = 400, description = "malformed form, missing or unknown kind", body = ErrorBody),
        (status = 413, description = "file too large (excel_too_large)", body = ErrorBody),
        (status = 415, description = "not a spreadsheet (excel_not_spreadsheet), or not a multipart form (unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "excel_encrypted, excel_zip_bomb, excel_corrupt, excel_no_sheet, excel_no_header_row, excel_missing_columns, excel_duplicate_column, excel_too_many_rows, excel_no_rows", body = ErrorBody),
        (status = 503, description = "not stored; retry", body = ErrorBody),
    ))]
pub async fn upload(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = form.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the workbook as multipart/form-data with the fields kind and file: {e}"),
            "请以 multipart/form-data 上传，字段为 kind 与 file",
        )
    })?;
    let limit = s.excel.config.max_upload_bytes;
    let mut kind: Option<String> = None;
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "kind" => {
                kind = Some(
                    field
                        .text()
                        .await
                        .map_err(multipart_error)?
                        .trim()
                        .to_owned(),
                )
            }
            "file" => {
                let name = field.file_name().unwrap_or("upload.xlsx").to_owned();
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        book_error(&BookError::TooLarge { limit })
                    } else {
                        multipart_error(e)
                    }
                })? {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > limit {
                        return Err(book_error(&BookError::TooLarge { limit }));
                    }
                }
                file = Some((name, bytes));
            }
            _ => {}
        }
    }
    let Some(kind) = kind else {
        return Err(ApiError::bad_param("kind", "required", "必填"));
    };
    let kind = kind_of(&kind, "kind")?;
    let Some((file_name, bytes)) = file else {
        return Err(ApiError::bad_param("file", "required", "必须上传文件"));
    };
    let info_set = match kind {
        SheetKind::Petition => Some("petition"),
        SheetKind::WorkOrder => Some("workorder"),
        _ => None,
    };
    if let Some(set) = info_set {
        if !caller.has_info_set(set) {
            return Err(info_set_denied(set));
        }
    }
    let sha = hex_sha256(&bytes);
    let config = s.excel.config.clone();
    let prepared =
        tokio::task::spawn_blocking(move || jobs::prepare(Bytes::from(bytes), kind, &config))
            .await
            .map_err(|e| ApiError::internal("excel prepare", &e))?
            .map_err(|e| {
                tracing::info!(code = e.code(), "ExcelUploadRefused");
                book_error(&e)
            })?;
    let meta = JobMeta {
        id: Uuid::now_v7(),
        kind,
        actor: caller.app_key.clone(),
        remote,
        file_name,
        file_sha256: sha,
        divisions: (!caller.all_divisions()).then(|| caller.divisions.clone()),
    };
    let ctx = context(&s);
    let id = jobs::start(ctx, meta, prepared, s.excel.slots.clone())
        .await
        .map_err(|e| ApiError::internal("excel job", &e))?;
    let view = jobs::get(&s.store, &s.excel.live, id)
        .await
        .map_err(|e| ApiError::internal("excel job", &e))?
        .ok_or_else(|| ApiError::not_found("import job"))?;
    let location = format!("/api/v1/imports/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

async fn job_of(s: &AppState, caller: &Caller, id: &str) -> Result<JobView, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("import job"))?;
    let job = jobs::get(&s.store, &s.excel.live, id)
        .await
        .map_err(|e| ApiError::internal("excel job", &e))?
        .ok_or_else(|| ApiError::not_found("import job"))?;
    // Another client's job is not shown (not even its existence), unless to an admin.
    if job.actor != caller.app_key && !caller.has_scope("admin") {
        return Err(ApiError::not_found("import job"));
    }
    Ok(job)
}

/// An import job: status, progress (rows read, imported, repeats, rejected) and the link to
/// its error report.
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "excel",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404, description = "no such job of this client", body = ErrorBody)))]
pub async fn job(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
) -> Result<Json<JobView>, ApiError> {
    job_of(&s, &caller, &id).await.map(Json)
}

/// The error report of a job (.xlsx): every rejected row with its original cells, then
/// 错误原因 (every reason, in Chinese, with its column), 错误代码 (stable codes) and 原行号.
/// Fix the cells and upload the file again: rows already imported are repeats. Identity and
/// phone numbers are shown to the client that uploaded them (or with `pii:read`), masked
/// otherwise.
#[utoipa::path(get, path = "/api/v1/imports/{id}/errors.xlsx", tag = "excel",
    params(("id" = String, Path, description = "job id")),
    responses(
        (status = 200, description = "the error report", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = Vec<u8>),
        (status = 404, description = "no such job of this client", body = ErrorBody)))]
pub async fn error_report(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let job = job_of(&s, &caller, &id).await?;
    let kind = SheetKind::parse(&job.kind).ok_or_else(|| ApiError::not_found("import job"))?;
    let clear = job.actor == caller.app_key || caller.has_scope("pii:read");
    let stored = jobs::rejects(&s.store, job.id)
        .await
        .map_err(|e| ApiError::internal("excel report", &e))?;
    let bytes = report_bytes(&s.keys.current(), kind, &job.headers, stored, clear)?;
    Ok(xlsx_response(
        Body::from(bytes),
        &format!("import-errors-{}.xlsx", job.id),
        &format!("{}导入错误报告-{}.xlsx", kind.title_zh(), job.id),
    ))
}

/// The error report of stored rejects; personal numbers masked unless `clear`.
pub fn report_bytes(
    ring: &xfhub_security::keys::KeyRing,
    kind: SheetKind,
    headers: &[String],
    stored: Vec<jobs::StoredReject>,
    clear: bool,
) -> Result<Vec<u8>, ApiError> {
    // Which sheet columns hold personal numbers (masked unless `clear`).
    let header_cells: Vec<Cell> = headers.iter().map(|h| Cell::Text(h.clone())).collect();
    let personal: Vec<(usize, bool)> = find_layout(kind, &[header_cells])
        .map(|l| {
            kind.columns()
                .iter()
                .zip(&l.positions)
                .filter_map(|(c, p)| match (c.ty, p) {
                    (ColType::IdNumber, Some(p)) => Some((*p, true)),
                    (ColType::Mobile | ColType::Phone, Some(p)) => Some((*p, false)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::with_capacity(stored.len());
    for r in stored {
        let raw = ring
            .open_bytes(&r.raw_sealed)
            .map_err(|e| ApiError::internal("open rejected row", &e))?;
        let raw: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| ApiError::internal("rejected row", &e))?;
        let mut cells: Vec<String> = raw["cells"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !clear {
            for (p, is_id) in &personal {
                if let Some(v) = cells.get_mut(*p) {
                    *v = if *is_id {
                        pii::mask_id_number(v)
                    } else {
                        pii::mask_phone(v)
                    };
                }
            }
        }
        let reasons = r.reasons.as_array().cloned().unwrap_or_default();
        rows.push(ReportRow {
            row_no: r.row_no,
            cells,
            reasons_zh: reasons
                .iter()
                .map(|e| {
                    let msg = e["message_zh"].as_str().unwrap_or_default();
                    match e["column"].as_str() {
                        Some(c) => format!("{c}：{msg}"),
                        None => msg.to_owned(),
                    }
                })
                .collect(),
            codes: reasons
                .iter()
                .map(|e| e["code"].as_str().unwrap_or_default().to_owned())
                .collect(),
        });
    }
    templates::error_report(kind, headers, &rows)
        .map_err(|e| ApiError::internal("excel report", &e))
}

/// Filters of an export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `petition` | `workorder`
    pub kind: String,
    /// Complaint (call) date from, inclusive, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Complaint (call) date to, inclusive, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// Only this division (within the caller's divisions).
    pub division: Option<String>,
    /// Only this status (`registered`, `accepted`, `replied`, `concluded` for petitions; an
    /// `order_states` code for work orders).
    pub status: Option<String>,
}

fn date_param(name: &str, v: &Option<String>) -> Result<(), ApiError> {
    if let Some(d) = v {
        if d.len() != 10 || chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err() {
            return Err(ApiError::bad_param(
                name,
                "use YYYY-MM-DD",
                "应为 YYYY-MM-DD 格式",
            ));
        }
    }
    Ok(())
}

/// Exports petitions or 12345 work orders of a time range and scope as .xlsx (streamed).
/// Identity and phone numbers are masked unless the caller holds `pii:read`. Every export is
/// audited (who, filters, row count, masked or clear).
#[utoipa::path(get, path = "/api/v1/exports", tag = "excel", params(ExportQuery),
    responses(
        (status = 200, description = "the export (.xlsx)", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = Vec<u8>),
        (status = 400, description = "bad filter", body = ErrorBody),
        (status = 422, description = "export_too_large: more rows than `[excel] max_export_rows`", body = ErrorBody),
    ))]
pub async fn export(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let kind = match q.kind.as_str() {
        "petition" => RecordKind::Petition,
        "workorder" => RecordKind::Workorder,
        _ => {
            return Err(ApiError::bad_param(
                "kind",
                "one of petition, workorder",
                "应为 petition 或 workorder",
            ))
        }
    };
    if !caller.has_info_set(kind.as_str()) {
        return Err(info_set_denied(kind.as_str()));
    }
    date_param("from", &q.from)?;
    date_param("to", &q.to)?;
    let division = match &q.division {
        Some(d) => {
            let current = s.tables.current_division(d).ok_or_else(|| {
                ApiError::bad_param("division", "unknown division code", "区划代码不存在")
            })?;
            if !caller.may_see_division(&current) {
                return Err(division_denied(&current));
            }
            Some(current)
        }
        None => None,
    };
    let spec = ExportSpec {
        kind,
        from: q.from.clone(),
        to: q.to.clone(),
        division,
        divisions: (!caller.all_divisions()).then(|| caller.divisions.clone()),
        status: q.status.clone(),
        clear_pii: caller.has_scope("pii:read"),
    };
    let written = export::write(
        &s.store,
        s.keys.current(),
        s.tables,
        &spec,
        s.excel.config.max_export_rows,
    )
    .await;
    let (file, rows) = match written {
        Ok(w) => w,
        Err(ExportError::TooLarge { rows, limit }) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "export_too_large",
                format!("{rows} rows match; at most {limit} can be exported at once: narrow the date range or the division"),
                format!("符合条件的数据共 {rows} 行，单次最多导出 {limit} 行，请缩小时间范围或区划"),
            ))
        }
        Err(e) => return Err(ApiError::internal("excel export", &e)),
    };
    let draft = AuditDraft {
        actor: caller.app_key.clone(),
        action: "excel.export".to_owned(),
        target: kind.as_str().to_owned(),
        outcome: "ok".to_owned(),
        remote,
        detail: format!(
            "from={} to={} division={} status={} rows={rows} pii={}",
            q.from.as_deref().unwrap_or("-"),
            q.to.as_deref().unwrap_or("-"),
            spec.division.as_deref().unwrap_or("-"),
            q.status.as_deref().unwrap_or("-"),
            if spec.clear_pii { "clear" } else { "masked" }
        ),
    };
    s.store
        .audit(draft)
        .await
        .map_err(|e| ApiError::internal("audit export", &e))?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let title = match kind {
        RecordKind::Petition => SheetKind::Petition.title_zh(),
        RecordKind::Workorder => SheetKind::WorkOrder.title_zh(),
    };
    let mut resp = xlsx_response(
        Body::from_stream(stream),
        &format!("{}-export.xlsx", kind.as_str()),
        &format!("{title}导出.xlsx"),
    );
    if let Ok(v) = HeaderValue::from_str(&rows.to_string()) {
        resp.headers_mut().insert("x-export-rows", v);
    }
    Ok(resp)
}
