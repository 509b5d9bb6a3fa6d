//! XML over HTTP (spec 5.1.7.4): the REST resources with `application/xml` bodies in the
//! canonical XML of `contracts/xsd/xfhub.xsd` (namespace `urn:xfhub:v1`), under `/xml/v1`.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /xml/v1/petitions`, `/xml/v1/workorders` | `<petition>`, `<workorder>` | `<receipt>` (201 / 200), `Location` |
//! | `GET /xml/v1/petitions`, `/xml/v1/workorders` (REST filters) | | `<petition_page>`, `<workorder_page>` |
//! | `GET /xml/v1/petitions/{id}`, `/xml/v1/workorders/{id}` | | `<petition_record>`, `<workorder_record>` |
//! | `GET /xml/v1/code-tables/{name}` | | `<code_table>` |
//!
//! Handlers call the functions of `api::records` the REST routes call; an error is the REST
//! error body as `<error>` with the same status and code ([`crate::soap::fault_edge`] converts
//! the JSON answers of extractors and middleware on this path).

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use xfhub_contracts::NS_XFHUB;
use xfhub_schemas::{Petition, Record, WorkOrder};
use xfhub_store::RecordKind;
use xfhub_transforms::xml_guard;
use xfhub_transforms::xml_soap;

use crate::api::records::{self, ConnectInfoOpt, PetitionFilter, WorkOrderFilter};
use crate::app::AppState;
use crate::auth::{Caller, PendingNonce};
use crate::error::ApiError;
use crate::extract::{PathParam, Query};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/xml/v1/petitions",
            get(list_petitions).post(submit_petition),
        )
        .route("/xml/v1/petitions/{id}", get(get_petition))
        .route(
            "/xml/v1/workorders",
            get(list_workorders).post(submit_workorder),
        )
        .route("/xml/v1/workorders/{id}", get(get_workorder))
        .route("/xml/v1/code-tables/{name}", get(get_code_table))
}

/// An XML document answer.
pub fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        )],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"),
    )
        .into_response()
}

fn document<T: Serialize>(status: StatusCode, root: &str, value: &T) -> Result<Response, ApiError> {
    let body =
        xml_soap::encode(root, NS_XFHUB, value).map_err(|e| ApiError::internal("write XML", &e))?;
    Ok(xml(status, body))
}

/// The body as the canonical document `root`: media type, hardening limits, namespace, shape.
fn read_document<T: serde::de::DeserializeOwned>(
    s: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    root: &str,
) -> Result<T, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/xml" && mime != "text/xml" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the document as application/xml",
            "请以 application/xml 格式发送文档",
        ));
    }
    let el = xml_guard::parse(body, &crate::soap::limits(s))
        .map_err(|e| crate::soap::read_error(&xml_soap::ReadError::Guard(e)))?;
    if el.name != root {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema_mismatch",
            format!("the root element must be <{root}>, not <{}>", el.name),
            format!("根元素应为 <{root}>"),
        )
        .with_field("", "schema_mismatch", "wrong root element", "根元素错误"));
    }
    xml_soap::check_namespace(&el, NS_XFHUB).map_err(|e| crate::soap::read_error(&e))?;
    crate::soap::decode(&el, "")
}

fn receipt(
    (status, receipt): (StatusCode, xfhub_store::Receipt),
    base: &str,
) -> Result<Response, ApiError> {
    let mut resp = document(status, "receipt", &receipt)?;
    let location = format!("{base}/{}", receipt.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn submit_petition(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    nonce: Option<Extension<PendingNonce>>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p: Petition = read_document(&s, &headers, &body, "petition")?;
    let nonce = nonce.map(|Extension(n)| n);
    let answer = records::store_petition(
        &s,
        &caller,
        nonce,
        remote,
        records::correlation_id(&headers),
        p,
    )
    .await?;
    receipt(answer, "/xml/v1/petitions")
}

async fn submit_workorder(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    nonce: Option<Extension<PendingNonce>>,
    ConnectInfoOpt(remote): ConnectInfoOpt,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let w: WorkOrder = read_document(&s, &headers, &body, "workorder")?;
    let nonce = nonce.map(|Extension(n)| n);
    let answer = records::store_workorder(
        &s,
        &caller,
        nonce,
        remote,
        records::correlation_id(&headers),
        w,
    )
    .await?;
    receipt(answer, "/xml/v1/workorders")
}

#[derive(Serialize)]
struct Page<T> {
    items: Vec<Record<T>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

async fn list_petitions(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<PetitionFilter>,
) -> Result<Response, ApiError> {
    let page = records::query_petitions(&s, &caller, f).await?;
    let page = Page {
        items: page.items,
        next_cursor: page.next_cursor,
    };
    document(StatusCode::OK, "petition_page", &page)
}

async fn list_workorders(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<WorkOrderFilter>,
) -> Result<Response, ApiError> {
    let page = records::query_workorders(&s, &caller, f).await?;
    let page = Page {
        items: page.items,
        next_cursor: page.next_cursor,
    };
    document(StatusCode::OK, "workorder_page", &page)
}

async fn get_petition(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let r: Record<Petition> = records::get_one(&s, &caller, RecordKind::Petition, &id).await?;
    document(StatusCode::OK, "petition_record", &r)
}

async fn get_workorder(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let r: Record<WorkOrder> = records::get_one(&s, &caller, RecordKind::Workorder, &id).await?;
    document(StatusCode::OK, "workorder_record", &r)
}

async fn get_code_table(
    State(s): State<AppState>,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    let t = records::code_table(&s, &name)?;
    document(StatusCode::OK, "code_table", &t)
}
