//! Who is calling, and what they may do.
//!
//! Partner systems sign every request (HMAC-SM3, see `xfhub_security::sign`); the gateway
//! verifies the signature, the timestamp window and the nonce, then attaches a [`Caller`] to the
//! request. Handlers check operation scopes, info sets and divisions against it.

use serde::{Deserialize, Serialize};

/// Operation scopes a client can hold.
pub const OPERATION_SCOPES: &[&str] = &["submit", "read", "write_back", "export", "import", "admin", "pii:read"];

/// Info sets (kinds of data) a client can be allowed.
pub const INFO_SETS: &[&str] = &["petition", "workorder", "process_event"];

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub app_key: String,
    pub name: String,
    /// Operation scopes: `submit`, `read`, `write_back`, `export`, `import`, `admin`, `pii:read`.
    pub scopes: Vec<String>,
    /// Info sets: `petition`, `workorder`, `process_event`.
    pub info_sets: Vec<String>,
    /// Division codes the caller's data may concern; `*` = all.
    pub divisions: Vec<String>,
}

impl Caller {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn has_info_set(&self, set: &str) -> bool {
        self.info_sets.iter().any(|s| s == set || s == "*")
    }

    pub fn all_divisions(&self) -> bool {
        self.divisions.iter().any(|d| d == "*")
    }

    pub fn may_see_division(&self, division: &str) -> bool {
        self.all_divisions() || self.divisions.iter().any(|d| d == division)
    }
}

/// Groups of routes that share a scope and a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroup {
    /// Health, readiness, the OpenAPI document: open to everyone.
    Open,
    /// Submissions (`POST /api/v1/petitions`, `/workorders`).
    Submit,
    /// Reads of records and code tables, and the echo route.
    Read,
    /// `/admin/*` and `/metrics`.
    Admin,
}

impl RouteGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteGroup::Open => "open",
            RouteGroup::Submit => "submit",
            RouteGroup::Read => "read",
            RouteGroup::Admin => "admin",
        }
    }

    /// The operation scope the group requires (None for open routes).
    pub fn required_scope(self) -> Option<&'static str> {
        match self {
            RouteGroup::Open => None,
            RouteGroup::Submit => Some("submit"),
            RouteGroup::Read => Some("read"),
            RouteGroup::Admin => Some("admin"),
        }
    }
}

/// The group of a request, by method and path.
pub fn group_of(method: &axum::http::Method, path: &str) -> RouteGroup {
    match path {
        "/healthz" | "/readyz" | "/openapi.json" => RouteGroup::Open,
        "/metrics" => RouteGroup::Admin,
        p if p.starts_with("/admin/") || p == "/admin" => RouteGroup::Admin,
        "/api/v1/petitions" | "/api/v1/workorders" if method == axum::http::Method::POST => RouteGroup::Submit,
        _ => RouteGroup::Read,
    }
}
