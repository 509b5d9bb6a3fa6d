//! The Xiangyiban (湘易办) app channel (spec 5.1.5.3.2):
//!
//! - `/api/v1/app/staff/...`: the staff mobile API, authenticated by JWT bearer tokens of the
//!   unified identity service, verified against its JWKS ([`jwt`]); a user sees what the
//!   jurisdiction of their organisation covers ([`staff`]);
//! - `/api/v1/app/public/...`: the public complaint channel: accounts confirmed by SMS codes,
//!   complaints with attachments checked by content, query by query code and name, one
//!   evaluation per case, QR codes of a region's complaint entry ([`public`], [`files`], [`qr`]);
//! - abuse protection: rate limits per IP and per account, lockout after failed logins, SMS
//!   code limits, answers that do not tell whether an account or a case exists ([`guard`]).
//!
//! None of these paths is signed by partners: `auth::group_of` puts `/api/v1/app/` in the open
//! group and each handler authenticates its caller itself.

pub mod files;
pub mod guard;
pub mod jwt;
pub mod notices;
pub mod public;
pub mod qr;
pub mod staff;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::Deserialize;

use crate::app::AppState;

/// `[app]`: the Xiangyiban app channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// JWKS address of the unified identity service. Without it every staff request is
    /// refused with `auth_token_invalid` (no key to verify with).
    pub jwks_url: Option<String>,
    /// Expected `iss` of staff tokens.
    pub issuer: String,
    /// Expected `aud` of staff tokens.
    pub audience: String,
    /// Seconds a fetched JWKS is used before it is fetched again; a token with an unknown
    /// `kid` triggers a fetch at once (at most one per `jwks_min_refresh_secs`).
    pub jwks_ttl_secs: u64,
    /// Least seconds between two JWKS fetches caused by unknown `kid`s.
    pub jwks_min_refresh_secs: u64,
    /// Clock skew allowed on `exp`, seconds.
    pub leeway_secs: u64,
    /// Public base URL of the complaint entry page encoded in QR codes.
    pub public_base_url: String,
    /// Lifetime of a signed QR URL, days.
    pub qr_valid_days: u32,
    /// Lifetime of a public session, minutes.
    pub session_minutes: u32,
    /// Lifetime of an SMS code, seconds.
    pub sms_code_ttl_secs: u32,
    /// Least seconds between two SMS codes to one mobile number.
    pub sms_code_interval_secs: u32,
    /// Most SMS codes to one mobile number per hour.
    pub sms_codes_per_hour: u32,
    /// Wrong entries of a code before it is void.
    pub sms_code_max_attempts: u32,
    /// Failed logins of one login name before it is locked.
    pub max_failed_logins: u32,
    /// Minutes a locked login name stays locked.
    pub lockout_minutes: u32,
    /// Requests per minute per client IP on each of register, login, submit, query and SMS.
    pub per_ip_per_minute: u32,
    /// Requests per minute per account (login name or signed-in user) on the same routes.
    pub per_account_per_minute: u32,
    /// Most attachments of one complaint.
    pub max_attachments: usize,
    /// Largest attachment, bytes.
    pub max_attachment_bytes: usize,
    /// `[app.push]`: the app message service receiving `notification.requested`.
    pub push: xfhub_connectors::xiangyiban::PushConfig,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            jwks_url: None,
            issuer: "https://idp.xiangyiban.example".to_owned(),
            audience: "xfhub".to_owned(),
            jwks_ttl_secs: 300,
            jwks_min_refresh_secs: 10,
            leeway_secs: 30,
            public_base_url: "https://xfhub.example/app/complaint".to_owned(),
            qr_valid_days: 365,
            session_minutes: 60,
            sms_code_ttl_secs: 300,
            sms_code_interval_secs: 60,
            sms_codes_per_hour: 5,
            sms_code_max_attempts: 5,
            max_failed_logins: 5,
            lockout_minutes: 15,
            per_ip_per_minute: 30,
            per_account_per_minute: 10,
            max_attachments: 5,
            max_attachment_bytes: 10 * 1024 * 1024,
            push: Default::default(),
        }
    }
}

impl AppConfig {
    /// Every problem of the section.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_attachments == 0 || self.max_attachments > 5 {
            p.push("app.max_attachments: must be 1 to 5".to_owned());
        }
        if self.max_attachment_bytes == 0 || self.max_attachment_bytes > 10 * 1024 * 1024 {
            p.push("app.max_attachment_bytes: must be 1 to 10485760".to_owned());
        }
        if self.per_ip_per_minute == 0 || self.per_account_per_minute == 0 {
            p.push("app.per_ip_per_minute, app.per_account_per_minute: at least 1".to_owned());
        }
        if self.max_failed_logins == 0 {
            p.push("app.max_failed_logins: at least 1".to_owned());
        }
        p
    }
}

/// What the app channel keeps while the hub runs.
#[derive(Clone)]
pub struct AppChannel {
    pub config: Arc<AppConfig>,
    pub jwks: jwt::JwksCache,
    pub guard: guard::Guard,
    /// Where sealed attachment files live.
    pub attachments_dir: PathBuf,
    /// Staff users already written to the notice recipients' directory by this process.
    pub staff_seen: notices::SeenStaff,
}

/// Where the app channel keeps its sealed attachment files under `data_dir`.
pub fn attachments_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("app").join("attachments")
}

impl AppChannel {
    pub fn new(config: &AppConfig, data_dir: &Path) -> anyhow::Result<AppChannel> {
        let problems = config.problems();
        if !problems.is_empty() {
            anyhow::bail!("invalid [app] section:\n  {}", problems.join("\n  "));
        }
        let attachments_dir = attachments_dir(data_dir);
        std::fs::create_dir_all(&attachments_dir)?;
        Ok(AppChannel {
            config: Arc::new(config.clone()),
            jwks: jwt::JwksCache::new(config),
            guard: guard::Guard::new(config),
            attachments_dir,
            staff_seen: Default::default(),
        })
    }
}

/// Starts the push connector (`notification.requested` -> app message service) when
/// `[app.push] url` is set; otherwise notifications wait in their durable queue. Starts the
/// sweeper publishing scheduled notices either way.
pub fn start_push(
    config: &crate::config::Config,
    store: &xfhub_store::Store,
    bus: &Arc<dyn xfhub_routes::Bus>,
    policy: &xfhub_routes::RetryPolicy,
    stop: &tokio_util::sync::CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    // Scheduled notices are published (queued for push) whether or not the service is set.
    tasks.spawn(notices::run_sweeper(store.clone(), stop.clone()));
    let Some(push) = xfhub_connectors::xiangyiban::PushConnector::new(
        store.clone(),
        &config.app.push,
        policy.max_attempts,
    ) else {
        tracing::info!("AppPushDisabled: no [app.push] url; notifications wait in their queue");
        return;
    };
    crate::app::spawn_consumer(tasks, bus, Arc::new(push), config, policy, stop);
}

/// The routes of the app channel.
pub fn routes(config: &AppConfig) -> Router<AppState> {
    // Multipart framing on top of the attachments and the form.
    let upload_limit = config.max_attachments * config.max_attachment_bytes + 1024 * 1024;
    Router::new()
        .route("/api/v1/app/staff/profile", get(staff::profile))
        .route("/api/v1/app/staff/tracking", get(staff::tracking))
        .route("/api/v1/app/staff/petitions/{id}", get(staff::petition))
        .route(
            "/api/v1/app/staff/petitions/{id}/approvals",
            post(staff::approve),
        )
        .route("/api/v1/app/staff/approvals", get(staff::my_approvals))
        .route("/api/v1/app/staff/follows", get(staff::my_follows))
        .route(
            "/api/v1/app/staff/follows/{id}",
            put(staff::follow).merge(delete(staff::unfollow)),
        )
        .route("/api/v1/app/staff/alerts", get(staff::alerts))
        .route("/api/v1/app/staff/messages", get(staff::messages))
        .route("/api/v1/app/staff/notices", get(staff::notices))
        .route("/api/v1/app/staff/notices/{id}", get(staff::notice))
        .route("/api/v1/app/public/regions", get(public::regions))
        .route("/api/v1/app/public/sms-codes", post(public::send_code))
        .route("/api/v1/app/public/register", post(public::register))
        .route("/api/v1/app/public/login", post(public::login))
        .route(
            "/api/v1/app/public/password-reset",
            post(public::reset_password),
        )
        .route(
            "/api/v1/app/public/complaints",
            post(public::submit).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/v1/app/public/complaints/query", post(public::query))
        .route(
            "/api/v1/app/public/complaints/materials",
            post(public::download),
        )
        .route(
            "/api/v1/app/public/complaints/evaluation",
            post(public::evaluate),
        )
        .route("/api/v1/app/public/qr/{division}", get(qr::code))
        .route("/api/v1/app/public/entry", get(qr::entry))
}

/// Documents the app channel's own authentication in the OpenAPI document: staff JWTs of the
/// identity service and public session tokens (both HTTP bearer), instead of the partner
/// signature.
#[derive(Debug)]
pub struct AppSecurity;

impl utoipa::Modify for AppSecurity {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "staff_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "JWT of the unified identity service (EdDSA, RS256 or ES256), verified \
                         against its JWKS; claims sub, name, org, org_division, roles, exp",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "public session token from POST /api/v1/app/public/login",
                    ))
                    .build(),
            ),
        );
    }
}

/// The app channel's operations, for the OpenAPI document (`crate::api::ApiDoc` lists them).
pub fn is_app_path(path: &str) -> bool {
    path.starts_with("/api/v1/app/")
}
