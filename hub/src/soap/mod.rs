//! The SOAP WebService `PetitionService` at `/ws/PetitionService` (spec 5.1.7.2, 5.1.7.5):
//! document/literal, SOAP 1.1 (`text/xml`) and 1.2 (`application/soap+xml`) at one address,
//! WSDL at `?wsdl`, schemas at `/ws/xsd/{name}`.
//!
//! Every operation runs the same code as its REST route (`api::records`): validation,
//! idempotency, scopes, divisions, masking and error codes are shared; only the envelope
//! differs. An error is a fault: soap:Client / soap:Server (1.2: Sender / Receiver) with the
//! REST error body as detail. Errors made before the handler runs (signature, rate limit) are
//! JSON answers of the middleware; [`fault_edge`] turns them into faults on this path.

pub mod writeback;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use xfhub_contracts::NS_XFHUB;
use xfhub_schemas::{CodeTable, Petition, Record, WorkOrder};
use xfhub_store::{Receipt, RecordKind};
use xfhub_transforms::xml_guard::{Element, Limits};
use xfhub_transforms::xml_soap::{self, SoapVersion};

use crate::api::records::{self, ConnectInfoOpt, PetitionFilter};
use crate::app::AppState;
use crate::auth::{nonce_reused, scope_denied, Caller, PendingNonce};
use crate::error::{ApiError, ErrorCode};

/// Path of the service.
pub const SERVICE_PATH: &str = "/ws/PetitionService";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SERVICE_PATH, get(wsdl).post(call))
        .route("/ws/xsd/{name}", get(xsd))
}

/// XML limits of a request: the body limit, 32 levels, 50,000 elements.
pub fn limits(s: &AppState) -> Limits {
    Limits {
        max_bytes: s.auth.body_limit,
        ..Limits::default()
    }
}

/// `scheme://host` of the request, for the addresses in the WSDL.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// `GET /ws/PetitionService?wsdl`: the checked-in WSDL with this hub's address and schema
/// locations.
async fn wsdl(headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    if !q.iter().any(|(k, _)| k.eq_ignore_ascii_case("wsdl")) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "SOAP calls are POSTed to this address; GET ?wsdl for the service description",
            "SOAP 调用请使用 POST；获取服务描述请访问 ?wsdl",
        )
        .into_response();
    }
    let base = base_url(&headers);
    let text = xfhub_contracts::PETITION_SERVICE_WSDL
        .replace(
            "http://localhost:8080/ws/PetitionService",
            &format!("{base}{SERVICE_PATH}"),
        )
        .replace("../xsd/", &format!("{base}/ws/xsd/"));
    xml_response(StatusCode::OK, "text/xml; charset=utf-8", text)
}

/// `GET /ws/xsd/{name}`: the schemas the WSDL imports.
async fn xsd(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match xfhub_contracts::xsd(&name) {
        Some(text) => xml_response(StatusCode::OK, "text/xml; charset=utf-8", text.to_owned()),
        None => ApiError::not_found("schema").into_response(),
    }
}

fn xml_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// An error as a SOAP fault of `version`, with the error's code kept for the audit middleware.
pub fn fault_response(version: SoapVersion, err: &ApiError) -> Response {
    metrics::counter!("xfhub_http_errors_total", "code" => err.body.code.clone()).increment(1);
    let sender = err.status.is_client_error();
    let detail = xml_soap::encode("error", NS_XFHUB, &err.body).unwrap_or_default();
    let reason = format!("{}: {}", err.body.code, err.body.message);
    let text = xml_soap::fault(version, sender, &reason, &err.body.message_zh, &detail);
    // SOAP 1.1 answers every fault with 500; SOAP 1.2 tells Sender (400) from Receiver (500).
    let status = match (version, sender) {
        (SoapVersion::V12, true) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut resp = xml_response(status, content_type_of(version), text);
    resp.extensions_mut()
        .insert(ErrorCode(err.body.code.clone()));
    resp
}

fn content_type_of(v: SoapVersion) -> &'static str {
    v.content_type()
}

/// The SOAP version a request announces; SOAP 1.1 when it announces none.
fn version_of(headers: &HeaderMap) -> Option<SoapVersion> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(SoapVersion::from_content_type)
}

/// Middleware outside authentication and rate limiting: on `/ws/` POSTs, turns JSON error
/// answers (401, 403, 413, 429, ...) into SOAP faults with the same code and fields; on `/xml/`
/// routes, into the same body as an `<error>` document with the same status.
pub async fn fault_edge(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let soap = req.method() == Method::POST && path.starts_with("/ws/");
    if !soap && !path.starts_with("/xml/") {
        return next.run(req).await;
    }
    let version = version_of(req.headers()).unwrap_or(SoapVersion::V11);
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status().is_success() || !is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(body) = serde_json::from_slice::<ErrorJson>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mut err = ApiError::new(parts.status, &body.code, body.message, body.message_zh);
    for f in body.fields {
        err = err.with_field(&f.path, &f.code, f.message, f.message_zh);
    }
    let mut out = if soap {
        fault_response(version, &err)
    } else {
        let detail = xml_soap::encode("error", NS_XFHUB, &err.body).unwrap_or_default();
        let mut r = crate::xmlapi::xml(err.status, detail);
        r.extensions_mut().insert(ErrorCode(err.body.code.clone()));
        r
    };
    // Keep what a client needs to retry (Retry-After of a 429).
    if let Some(v) = parts.headers.get(header::RETRY_AFTER) {
        out.headers_mut().insert(header::RETRY_AFTER, v.clone());
    }
    out
}

#[derive(Deserialize)]
struct ErrorJson {
    code: String,
    message: String,
    message_zh: String,
    #[serde(default)]
    fields: Vec<FieldJson>,
}

#[derive(Deserialize)]
struct FieldJson {
    path: String,
    code: String,
    message: String,
    message_zh: String,
}

/// What a handler needs of the request besides its operation.
pub struct CallContext {
    pub caller: Caller,
    pub nonce: Option<PendingNonce>,
    pub remote: String,
    pub headers: HeaderMap,
}

/// `POST /ws/PetitionService`: one operation per request.
async fn call(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    nonce: Option<Extension<PendingNonce>>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(version) = version_of(&headers) else {
        let err = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send SOAP 1.1 as text/xml or SOAP 1.2 as application/soap+xml",
            "SOAP 1.1 请使用 text/xml，SOAP 1.2 请使用 application/soap+xml",
        );
        return fault_response(SoapVersion::V11, &err);
    };
    let cx = CallContext {
        caller,
        nonce: nonce.map(|Extension(n)| n),
        remote,
        headers,
    };
    let op = match xml_soap::read_request(&body, version, NS_XFHUB, &limits(&s)) {
        Ok(op) => op,
        Err(e) => return fault_response(version, &read_error(&e)),
    };
    let name = op.name.clone();
    metrics::counter!("xfhub_soap_calls_total", "operation" => operation_label(&name)).increment(1);
    match dispatch(&s, cx, &op).await {
        Ok(body) => xml_response(
            StatusCode::OK,
            content_type_of(version),
            xml_soap::envelope(version, &body),
        ),
        Err(e) => fault_response(version, &e),
    }
}

/// Bounded label values for the metric.
fn operation_label(name: &str) -> &'static str {
    match name {
        "SubmitPetition" => "SubmitPetition",
        "GetPetition" => "GetPetition",
        "QueryPetitions" => "QueryPetitions",
        "WriteBackHandling" => "WriteBackHandling",
        "SubmitWorkOrder" => "SubmitWorkOrder",
        "GetCodeTable" => "GetCodeTable",
        _ => "unknown",
    }
}

/// A request that could not be read, as an error answer (a 400 with the reader's code).
pub fn read_error(e: &xml_soap::ReadError) -> ApiError {
    let status = match e {
        xml_soap::ReadError::Guard(xfhub_transforms::xml_guard::GuardError::TooLarge {
            ..
        }) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.code(), e.to_string(), e.message_zh())
}

/// The canonical value in child `name` of `op`, or a 422 naming the field.
pub fn decode_child<T: serde::de::DeserializeOwned>(
    op: &Element,
    name: &str,
) -> Result<T, ApiError> {
    let el = op.child(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_mismatch",
            format!("{} needs a {name} element", op.name),
            format!("{} 缺少 {name} 元素", op.name),
        )
        .with_field(name, "schema_mismatch", "missing element", "缺少元素")
    })?;
    decode(el, name)
}

/// A canonical value from an element, or a 422 `schema_mismatch` naming the field.
pub fn decode<T: serde::de::DeserializeOwned>(el: &Element, prefix: &str) -> Result<T, ApiError> {
    xml_soap::decode(el).map_err(|e| {
        let path = if e.path.is_empty() {
            prefix.to_owned()
        } else if prefix.is_empty() {
            e.path.clone()
        } else {
            format!("{prefix}.{}", e.path)
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_mismatch",
            format!(
                "the document does not match the schema at {path}: {}",
                e.reason
            ),
            format!("文档字段 {path} 格式不符合接口规范"),
        )
        .with_field(
            &path,
            "schema_mismatch",
            e.reason,
            "字段类型或名称不符合规范",
        )
    })
}

/// A canonical value as an element of the service's namespace.
pub fn encode<T: Serialize>(root: &str, value: &T) -> Result<String, ApiError> {
    xml_soap::encode(root, NS_XFHUB, value).map_err(|e| ApiError::internal("write XML", &e))
}

/// Consumes the nonce of a request that stores nothing (reads), as the REST read routes do at
/// the edge; a reused nonce is refused.
pub async fn use_nonce(s: &AppState, nonce: &Option<PendingNonce>) -> Result<(), ApiError> {
    let Some(n) = nonce else { return Ok(()) };
    match s.store.use_nonce(&n.app_key, &n.nonce, n.expires_at).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(nonce_reused()),
        Err(e) => Err(ApiError::internal("nonce", &e)),
    }
}

fn require(caller: &Caller, scope: &str) -> Result<(), ApiError> {
    if caller.has_scope(scope) {
        Ok(())
    } else {
        Err(scope_denied(scope))
    }
}

#[derive(Serialize)]
struct ReceiptAnswer {
    receipt: Receipt,
}

#[derive(Serialize)]
struct RecordAnswer<T> {
    record: Record<T>,
}

#[derive(Serialize)]
struct PageAnswer<T> {
    items: Vec<Record<T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct CodeTableAnswer {
    code_table: CodeTable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetById {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetByName {
    name: String,
}

/// `QueryPetitions`: the filters of `GET /api/v1/petitions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryPetitionsOp {
    division: Option<String>,
    id_number: Option<String>,
    mobile: Option<String>,
    form: Option<String>,
    purpose: Option<String>,
    content_class: Option<String>,
    from: Option<String>,
    to: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn dispatch(s: &AppState, cx: CallContext, op: &Element) -> Result<String, ApiError> {
    let correlation = records::correlation_id(&cx.headers);
    match op.name.as_str() {
        "SubmitPetition" => {
            let p: Petition = decode_child(op, "petition")?;
            let (_, receipt) =
                records::store_petition(s, &cx.caller, cx.nonce, cx.remote, correlation, p).await?;
            encode("SubmitPetitionResponse", &ReceiptAnswer { receipt })
        }
        "SubmitWorkOrder" => {
            let w: WorkOrder = decode_child(op, "workorder")?;
            let (_, receipt) =
                records::store_workorder(s, &cx.caller, cx.nonce, cx.remote, correlation, w)
                    .await?;
            encode("SubmitWorkOrderResponse", &ReceiptAnswer { receipt })
        }
        "GetPetition" => {
            require(&cx.caller, "read")?;
            let q: GetById = decode(op, "")?;
            use_nonce(s, &cx.nonce).await?;
            let record: Record<Petition> =
                records::get_one(s, &cx.caller, RecordKind::Petition, q.id.trim()).await?;
            encode("GetPetitionResponse", &RecordAnswer { record })
        }
        "QueryPetitions" => {
            require(&cx.caller, "read")?;
            let q: QueryPetitionsOp = decode(op, "")?;
            use_nonce(s, &cx.nonce).await?;
            let f = PetitionFilter {
                division: q.division,
                id_number: q.id_number,
                mobile: q.mobile,
                form: q.form,
                purpose: q.purpose,
                content_class: q.content_class,
                from: q.from,
                to: q.to,
                status: q.status,
                cursor: q.cursor,
                limit: q.limit,
            };
            let page = records::query_petitions(s, &cx.caller, f).await?;
            encode(
                "QueryPetitionsResponse",
                &PageAnswer {
                    items: page.items,
                    next_cursor: page.next_cursor,
                },
            )
        }
        "WriteBackHandling" => {
            require(&cx.caller, "write_back")?;
            writeback::handle(s, cx, op, correlation).await
        }
        "GetCodeTable" => {
            require(&cx.caller, "read")?;
            let q: GetByName = decode(op, "")?;
            use_nonce(s, &cx.nonce).await?;
            let code_table = records::code_table(s, q.name.trim())?;
            encode("GetCodeTableResponse", &CodeTableAnswer { code_table })
        }
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "soap_unknown_operation",
            format!("PetitionService has no operation {other}"),
            format!("服务没有 {other} 操作"),
        )),
    }
}
