//! Health, readiness, metrics, the OpenAPI document and the echo baseline route.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use utoipa::OpenApi;

use crate::api::ApiDoc;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::telemetry;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers and the hub is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "not ready", body = crate::error::ErrorBody)))]
pub async fn readyz(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !s.accepting.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the hub is shutting down",
            "系统正在停止服务",
        ));
    }
    if !s.store.ping().await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store does not answer",
            "数据库无响应",
        ));
    }
    Ok(Json(json!({"status": "ready"})))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    if let Ok((queues, outbox)) = s.store.depths().await {
        for (queue, n) in queues {
            metrics::gauge!("xfhub_bus_queue_depth", "queue" => queue).set(n as f64);
        }
        metrics::gauge!("xfhub_outbox_unsent").set(outbox as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        telemetry::render(&s.metrics),
    )
}

/// The OpenAPI 3.1 document of this interface.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "this document, as JSON", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Echoes a JSON body. The baseline the load tool measures ingest against: the same server,
/// parsing and writing the same JSON, with no validation and no store.
#[utoipa::path(post, path = "/api/v1/echo", tag = "operations",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "the same JSON", body = Object),
              (status = 400, description = "malformed JSON", body = crate::error::ErrorBody)))]
pub async fn echo(JsonBody(v): JsonBody<Value>) -> Json<Value> {
    Json(v)
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept this method; the Allow header lists those it does",
        "该接口不支持此请求方法",
    )
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        "no such route",
        "接口不存在",
    )
}
