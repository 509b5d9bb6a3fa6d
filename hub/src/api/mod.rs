//! The HTTP interface: REST `/api/v1`, operations (`/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`) and admin (`/admin`).

pub mod admin;
pub mod ops;
pub mod records;

use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/petitions",
            post(records::submit_petition).get(records::list_petitions),
        )
        .route("/api/v1/petitions/{id}", get(records::get_petition))
        .route(
            "/api/v1/workorders",
            post(records::submit_workorder).get(records::list_workorders),
        )
        .route("/api/v1/workorders/{id}", get(records::get_workorder))
        .route("/api/v1/code-tables", get(records::list_code_tables))
        .route("/api/v1/code-tables/{name}", get(records::get_code_table))
        .route("/api/v1/echo", post(ops::echo))
        .route("/admin/messages/{id}/trail", get(admin::trail))
        .route("/admin/dead-letters", get(admin::dead_letters))
        .route("/admin/dead-letters/{id}/replay", post(admin::replay))
        .route("/admin/import-errors", get(admin::import_errors))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi_json))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xfhub",
        description = "Integration hub of the Changsha petition work information management system. \
                       Every error answer has the body `ErrorBody`: a stable `code`, English and \
                       Chinese messages, and the failing `fields`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        records::submit_petition,
        records::list_petitions,
        records::get_petition,
        records::submit_workorder,
        records::list_workorders,
        records::get_workorder,
        records::list_code_tables,
        records::get_code_table,
        ops::echo,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi_json,
        admin::trail,
        admin::dead_letters,
        admin::replay,
        admin::import_errors,
    ),
    tags(
        (name = "records", description = "Petitions and 12345 work orders"),
        (name = "reference", description = "Code tables"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "admin", description = "Message trail, dead letters, import errors"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as YAML, as checked in at `contracts/openapi.yaml`.
pub fn openapi_yaml() -> String {
    ApiDoc::openapi()
        .to_yaml()
        .expect("the OpenAPI document serializes")
}
