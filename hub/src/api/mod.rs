//! The HTTP interface: REST `/api/v1`, operations (`/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`) and admin (`/admin`).

pub mod admin;
pub mod connectors;
pub mod dispatch;
pub mod notices;
pub mod ops;
pub mod records;
pub mod sms;
pub mod warning;

use axum::routing::{delete, get, post};
use axum::Router;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::mobile::AppSecurity;

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
        .route(
            "/api/v1/excel/templates/{kind}",
            get(crate::excel::api::template),
        )
        // The upload's size is bounded by authentication (`[excel] max_upload_bytes`).
        .route(
            "/api/v1/imports",
            post(crate::excel::api::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/v1/imports/{id}", get(crate::excel::api::job))
        .route(
            "/api/v1/imports/{id}/errors.xlsx",
            get(crate::excel::api::error_report),
        )
        .route("/api/v1/exports", get(crate::excel::api::export))
        // SMS, smart warning and joint dispatch (issue 8).
        .route("/api/v1/sms", get(sms::log))
        .route("/api/v1/sms/{id}", get(sms::get_sms))
        .route("/api/v1/sms/delivery-reports", post(sms::delivery_reports))
        .route(
            "/api/v1/sms/templates",
            get(sms::list_templates).post(sms::create_template),
        )
        .route(
            "/api/v1/sms/templates/{code}",
            get(sms::get_template)
                .put(sms::update_template)
                .delete(sms::delete_template),
        )
        .route(
            "/api/v1/word-lists",
            get(warning::list_words).post(warning::add_words),
        )
        .route(
            "/api/v1/word-lists/{list}/{word}",
            delete(warning::delete_word),
        )
        .route("/api/v1/tags/{record_id}", get(warning::tags))
        .route(
            "/api/v1/alerts",
            get(warning::list_alerts).post(warning::draft_alert),
        )
        .route("/api/v1/alerts/{id}", get(warning::get_alert))
        .route("/api/v1/alerts/{id}/flow", post(warning::flow))
        .route(
            "/api/v1/role-holders",
            get(dispatch::list_holders).post(dispatch::create_holder),
        )
        .route(
            "/api/v1/role-holders/{id}",
            axum::routing::put(dispatch::update_holder).delete(dispatch::delete_holder),
        )
        .route(
            "/api/v1/assignment-rules",
            get(dispatch::list_rules).post(dispatch::create_rule),
        )
        .route(
            "/api/v1/assignment-rules/{id}",
            axum::routing::put(dispatch::update_rule).delete(dispatch::delete_rule),
        )
        .route("/api/v1/duplicates", get(dispatch::duplicates))
        // Staff notices of the Xiangyiban app (issue 9).
        .route("/api/v1/notices", get(notices::list).post(notices::create))
        .route(
            "/api/v1/notices/{id}",
            get(notices::get)
                .put(notices::update)
                .delete(notices::withdraw),
        )
        .route("/admin/messages/{id}/trail", get(admin::trail))
        .route("/admin/dead-letters", get(admin::dead_letters))
        .route("/admin/dead-letters/{id}/replay", post(admin::replay))
        .route("/admin/import-errors", get(admin::import_errors))
        .route("/admin/routes", get(admin::routes))
        .route("/admin/connectors", get(connectors::list))
        .route(
            "/admin/import-errors/reprocess",
            post(connectors::reprocess),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi_json))
        // SOAP WebService, XML interface and exchange packages (issue 6).
        .merge(crate::soap::routes())
        .merge(crate::xmlapi::routes())
        .merge(crate::exchange::routes())
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
        admin::routes,
        connectors::list,
        connectors::reprocess,
        sms::log,
        sms::get_sms,
        sms::delivery_reports,
        sms::list_templates,
        sms::get_template,
        sms::create_template,
        sms::update_template,
        sms::delete_template,
        warning::list_words,
        warning::add_words,
        warning::delete_word,
        warning::tags,
        warning::list_alerts,
        warning::get_alert,
        warning::draft_alert,
        warning::flow,
        dispatch::list_holders,
        dispatch::create_holder,
        dispatch::update_holder,
        dispatch::delete_holder,
        dispatch::list_rules,
        dispatch::create_rule,
        dispatch::update_rule,
        dispatch::delete_rule,
        dispatch::duplicates,
        notices::list,
        notices::get,
        notices::create,
        notices::update,
        notices::withdraw,
        crate::excel::api::template,
        crate::excel::api::upload,
        crate::excel::api::job,
        crate::excel::api::error_report,
        crate::excel::api::export,
        crate::exchange::pull,
        crate::exchange::push,
        crate::mobile::staff::profile,
        crate::mobile::staff::tracking,
        crate::mobile::staff::petition,
        crate::mobile::staff::approve,
        crate::mobile::staff::my_approvals,
        crate::mobile::staff::follow,
        crate::mobile::staff::unfollow,
        crate::mobile::staff::my_follows,
        crate::mobile::staff::messages,
        crate::mobile::staff::alerts,
        crate::mobile::staff::notices,
        crate::mobile::staff::notice,
        crate::mobile::public::regions,
        crate::mobile::public::send_code,
        crate::mobile::public::register,
        crate::mobile::public::login,
        crate::mobile::public::reset_password,
        crate::mobile::public::submit,
        crate::mobile::public::query,
        crate::mobile::public::download,
        crate::mobile::public::evaluate,
        crate::mobile::qr::code,
        crate::mobile::qr::entry,
    ),
    modifiers(&SignedRequests, &AppSecurity),
    tags(
        (name = "records", description = "Petitions and 12345 work orders"),
        (name = "reference", description = "Code tables"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "admin", description = "Message trail, dead letters, import errors, routing table"),
        (name = "sms", description = "SMS log and status, templates, the gateway's delivery-report callback (scope `write_back`)"),
        (name = "warning", description = "Word lists, record tags, alerts and their graded flow"),
        (name = "notices", description = "Staff notices (通知公告) of the Xiangyiban app: create, update, withdraw, list (scope `admin`)"),
        (name = "dispatch", description = "Role holders, auto-assignment rules, duplicate candidates"),
        (name = "exchange", description = "Standard exchange packages: zip of header, data files, manifest (SM3 and SHA-256 of each file, next cursor) and HMAC-SM3 signature (scopes `export`, `import`)"),
        (name = "excel", description = "Excel templates, imports with error reports, exports (scopes `import`, `export`)"),
        (name = "app", description = "Xiangyiban app: staff mobile API (staff JWT bearer) and public complaint channel (session bearer); not partner-signed"),
    )
)]
pub struct ApiDoc;

/// Documents request signing: a security scheme for the four signature headers, required by
/// every route but `/healthz`, `/readyz` and `/openapi.json`, and the 401, 403 and 429 answers
/// those routes can give.
struct SignedRequests;

impl utoipa::Modify for SignedRequests {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
        use utoipa::openapi::{Ref, ResponseBuilder};

        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-app-key",
                "HMAC-SM3 request signature. Send x-app-key, x-timestamp (ms since the epoch, \
                 within 5 minutes of the hub's clock), x-nonce (unique per request) and \
                 x-signature = hex HMAC-SM3(secret, METHOD \\n path \\n sorted query \\n \
                 timestamp \\n nonce \\n hex SM3(body)). See security/README.md.",
            ))),
        );
        let answer = |d: &str| {
            ResponseBuilder::new()
                .description(d)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in api.paths.paths.iter_mut() {
            if matches!(path.as_str(), "/healthz" | "/readyz" | "/openapi.json")
                || crate::mobile::is_app_path(path)
            {
                continue;
            }
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                op.security = Some(vec![SecurityRequirement::new(
                    "signature",
                    Vec::<String>::new(),
                )]);
                let r = &mut op.responses.responses;
                r.entry("401".into()).or_insert_with(|| {
                    answer("not signed, unknown or disabled client, bad signature, stale timestamp or reused nonce").into()
                });
                r.entry("403".into()).or_insert_with(|| {
                    answer("the client lacks the scope, info set or division").into()
                });
                r.entry("429".into()).or_insert_with(|| {
                    answer("rate limited; retry after the Retry-After header's seconds").into()
                });
            }
        }
    }
}

/// The OpenAPI document as YAML, as checked in at `contracts/openapi.yaml`.
pub fn openapi_yaml() -> String {
    ApiDoc::openapi()
        .to_yaml()
        .expect("the OpenAPI document serializes")
}
