//! Request rate limits per route group (`[rate_limits]`), with `governor` (GCRA token buckets).
//!
//! Two middleware functions, both answering `429 rate_limited` with `Retry-After` (whole
//! seconds, at least 1) and counting `xfhub_rate_limited_total{group, scope}`:
//!
//! - [`global_limit`]: one bucket per route group shared by every caller; runs before
//!   authentication, so a flood is shed before any signature is checked.
//! - [`client_limit`]: one bucket per (route group, app key) of the authenticated
//!   [`Caller`]; runs after authentication. A request without a `Caller` passes.
//!
//! Open routes (`/healthz`, `/readyz`, `/openapi.json`) are never limited. The per-client
//! buckets are swept of idle keys once a minute, so their memory stays bounded by the clients
//! active in the last minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::auth::{group_of, Caller, RouteGroup};
use crate::config::{GroupLimitConfig, RateLimitsConfig};
use crate::error::ApiError;

/// How often idle per-client buckets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The limiters of every limited route group; cheap to clone (one shared state).
#[derive(Clone)]
pub struct RateLimits {
    inner: Arc<Inner>,
}

struct Inner {
    submit: GroupLimiter,
    read: GroupLimiter,
    admin: GroupLimiter,
    clock: DefaultClock,
    started: Instant,
    /// Milliseconds after `started` of the last sweep of idle client buckets.
    last_sweep_ms: AtomicU64,
}

struct GroupLimiter {
    global: DefaultDirectRateLimiter,
    clients: DefaultKeyedRateLimiter<String>,
}

/// Which bucket refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The bucket the whole group shares.
    Global,
    /// The bucket of one client app key.
    Client,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Client => "client",
        }
    }
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    // Config::validate refuses zeros; clamp anyway so a hand-built config cannot panic.
    let per_sec = std::num::NonZeroU32::new(per_sec).unwrap_or(std::num::NonZeroU32::MIN);
    let burst = std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN);
    Quota::per_second(per_sec).allow_burst(burst)
}

impl GroupLimiter {
    fn new(c: &GroupLimitConfig) -> GroupLimiter {
        GroupLimiter {
            global: governor::RateLimiter::direct(quota(c.global_per_sec, c.global_burst)),
            clients: governor::RateLimiter::keyed(quota(c.client_per_sec, c.client_burst)),
        }
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn new(config: &RateLimitsConfig) -> RateLimits {
        // The limits in force, visible next to the refusals they cause.
        for (group, c) in [
            ("submit", &config.submit),
            ("read", &config.read),
            ("admin", &config.admin),
        ] {
            for (scope, per_sec, burst) in [
                ("global", c.global_per_sec, c.global_burst),
                ("client", c.client_per_sec, c.client_burst),
            ] {
                metrics::gauge!("xfhub_rate_limit_per_second", "group" => group, "scope" => scope)
                    .set(f64::from(per_sec));
                metrics::gauge!("xfhub_rate_limit_burst", "group" => group, "scope" => scope)
                    .set(f64::from(burst));
            }
        }
        RateLimits {
            inner: Arc::new(Inner {
                submit: GroupLimiter::new(&config.submit),
                read: GroupLimiter::new(&config.read),
                admin: GroupLimiter::new(&config.admin),
                clock: DefaultClock::default(),
                started: Instant::now(),
                last_sweep_ms: AtomicU64::new(0),
            }),
        }
    }

    fn group(&self, group: RouteGroup) -> Option<&GroupLimiter> {
        match group {
            RouteGroup::Open => None,
            RouteGroup::Submit => Some(&self.inner.submit),
            RouteGroup::Read => Some(&self.inner.read),
            RouteGroup::Admin => Some(&self.inner.admin),
            // Excel uploads share the submit limits, exports the read limits.
            RouteGroup::Import => Some(&self.inner.submit),
            RouteGroup::Export => Some(&self.inner.read),
        }
    }

    /// Takes one request from the group's shared bucket, or says how long to wait.
    pub fn check_global(&self, group: RouteGroup) -> Result<(), Duration> {
        let Some(g) = self.group(group) else {
            return Ok(());
        };
        g.global
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.inner.clock.now()))
    }

    /// Takes one request from the bucket of `app_key` in the group, or says how long to wait.
    pub fn check_client(&self, group: RouteGroup, app_key: &str) -> Result<(), Duration> {
        let Some(g) = self.group(group) else {
            return Ok(());
        };
        self.sweep_if_due();
        g.clients
            .check_key(&app_key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.inner.clock.now()))
    }

    /// Drops the buckets of clients idle long enough to be full again, at most once per
    /// [`SWEEP_EVERY`]; only the caller that wins the race does the sweep.
    fn sweep_if_due(&self) {
        let now = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.inner.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .inner
            .last_sweep_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.sweep();
        }
    }

    fn sweep(&self) {
        for g in [&self.inner.submit, &self.inner.read, &self.inner.admin] {
            g.clients.retain_recent();
            g.clients.shrink_to_fit();
        }
    }

    /// Number of per-client buckets held (for tests and diagnostics).
    pub fn client_buckets(&self) -> usize {
        [&self.inner.submit, &self.inner.read, &self.inner.admin]
            .iter()
            .map(|g| g.clients.len())
            .sum()
    }
}

/// The 429 answer: `Retry-After` in whole seconds (rounded up, at least 1).
pub fn limited(group: RouteGroup, scope: Scope, wait: Duration) -> Response {
    metrics::counter!(
        "xfhub_rate_limited_total",
        "group" => group.as_str(),
        "scope" => scope.as_str()
    )
    .increment(1);
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let (message, message_zh) = match scope {
        Scope::Global => (
            format!(
                "the hub is receiving too many {} requests; retry after {secs} s",
                group.as_str()
            ),
            format!("请求过于频繁，请 {secs} 秒后重试"),
        ),
        Scope::Client => (
            format!(
                "too many {} requests from this client; retry after {secs} s",
                group.as_str()
            ),
            format!("本客户端请求过于频繁，请 {secs} 秒后重试"),
        ),
    };
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        message,
        message_zh,
    )
    .into_response();
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Middleware: the group's shared bucket. Place it outside authentication.
pub async fn global_limit(State(limits): State<RateLimits>, req: Request, next: Next) -> Response {
    let group = group_of(req.method(), req.uri().path());
    match limits.check_global(group) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::debug!(group = group.as_str(), "RateLimited: global");
            limited(group, Scope::Global, wait)
        }
    }
}

/// Middleware: the bucket of the authenticated caller's app key in the group. Place it inside
/// authentication (it reads the [`Caller`] extension); without a `Caller` it passes.
pub async fn client_limit(State(limits): State<RateLimits>, req: Request, next: Next) -> Response {
    let group = group_of(req.method(), req.uri().path());
    let Some(caller) = req.extensions().get::<Caller>() else {
        return next.run(req).await;
    };
    match limits.check_client(group, &caller.app_key) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::debug!(group = group.as_str(), app_key = %caller.app_key, "RateLimited: client");
            limited(group, Scope::Client, wait)
        }
    }
}

/// `router` with [`global_limit`] as its outermost layer so far.
pub fn layer_global<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limits: RateLimits,
) -> Router<S> {
    router.layer(middleware::from_fn_with_state(limits, global_limit))
}

/// `router` with [`client_limit`] as its outermost layer so far (add authentication after it,
/// so that authentication runs first).
pub fn layer_client<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limits: RateLimits,
) -> Router<S> {
    router.layer(middleware::from_fn_with_state(limits, client_limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Method;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    /// Stands in for the authentication middleware: `x-test-caller` names the app key.
    async fn fake_auth(mut req: Request, next: Next) -> Response {
        if let Some(k) = req.headers().get("x-test-caller") {
            let caller = Caller {
                app_key: k.to_str().unwrap().to_owned(),
                name: "test".into(),
                scopes: vec!["submit".into(), "read".into()],
                info_sets: vec!["*".into()],
                divisions: vec!["*".into()],
            };
            req.extensions_mut().insert(caller);
        }
        next.run(req).await
    }

    fn app(config: &RateLimitsConfig) -> Router {
        let limits = RateLimits::new(config);
        let r = Router::new()
            .route("/api/v1/petitions", post(|| async { "stored" }))
            .route("/api/v1/petitions/{id}", get(|| async { "one" }))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ok" }))
            .route("/openapi.json", get(|| async { "{}" }));
        let r = layer_client(r, limits.clone());
        let r = r.layer(middleware::from_fn(fake_auth)); // auth layer goes here
        layer_global(r, limits)
    }

    fn tight(global_burst: u32, client_burst: u32) -> RateLimitsConfig {
        let g = GroupLimitConfig {
            global_per_sec: 1,
            global_burst,
            client_per_sec: 1,
            client_burst,
        };
        RateLimitsConfig {
            submit: g,
            read: g,
            admin: g,
        }
    }

    async fn call(app: &Router, method: Method, path: &str, caller: Option<&str>) -> Response {
        let mut b = axum::http::Request::builder().method(method).uri(path);
        if let Some(c) = caller {
            b = b.header("x-test-caller", c);
        }
        app.clone()
            .oneshot(b.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_json(resp: Response) -> serde_json::Value {
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn assert_limited(resp: Response, zh: &str) {
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = resp.headers()[RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1, "{retry}");
        let body = body_json(resp).await;
        assert_eq!(body["code"], "rate_limited");
        assert!(
            body["message"].as_str().unwrap().contains("retry after"),
            "{body}"
        );
        assert!(body["message_zh"].as_str().unwrap().contains(zh), "{body}");
    }

    #[tokio::test]
    async fn under_the_global_limit_200_over_it_429() {
        let handle = crate::telemetry::metrics_handle();
        let app = app(&tight(3, 100));
        for _ in 0..3 {
            let r = call(&app, Method::POST, "/api/v1/petitions", None).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
        let r = call(&app, Method::POST, "/api/v1/petitions", None).await;
        assert_limited(r, "请求过于频繁").await;
        // The groups have their own buckets: reads still pass.
        let r = call(&app, Method::GET, "/api/v1/petitions/1", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        let text = crate::telemetry::render(&handle);
        assert!(
            text.contains(r#"xfhub_rate_limited_total{group="submit",scope="global"}"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn clients_have_independent_buckets() {
        let app = app(&tight(1000, 2));
        for _ in 0..2 {
            let r = call(&app, Method::POST, "/api/v1/petitions", Some("xfa")).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
        let r = call(&app, Method::POST, "/api/v1/petitions", Some("xfa")).await;
        assert_limited(r, "本客户端请求过于频繁").await;
        // Another client, and the same client in another group, are not affected.
        for _ in 0..2 {
            let r = call(&app, Method::POST, "/api/v1/petitions", Some("xfb")).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
        let r = call(&app, Method::GET, "/api/v1/petitions/1", Some("xfa")).await;
        assert_eq!(r.status(), StatusCode::OK);
        // Without a caller (authentication not in place) the client limit passes.
        for _ in 0..5 {
            let r = call(&app, Method::POST, "/api/v1/petitions", None).await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn open_routes_are_never_limited() {
        let app = app(&tight(1, 1));
        for path in ["/healthz", "/readyz", "/openapi.json"] {
            for _ in 0..20 {
                let r = call(&app, Method::GET, path, Some("xfa")).await;
                assert_eq!(r.status(), StatusCode::OK, "{path}");
            }
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let cases = [
            (Duration::ZERO, "1"),
            (Duration::from_millis(1), "1"),
            (Duration::from_millis(1000), "1"),
            (Duration::from_millis(1001), "2"),
            (Duration::from_secs(60), "60"),
        ];
        for (wait, want) in cases {
            let r = limited(RouteGroup::Read, Scope::Client, wait);
            assert_eq!(r.headers()[RETRY_AFTER], want, "{wait:?}");
        }
    }

    #[test]
    fn idle_client_buckets_are_swept() {
        // At 10/s with a burst of 1, a bucket is indistinguishable from a fresh one (and
        // dropped) two emission intervals after its last use.
        let mut config = tight(1000, 1);
        config.submit.client_per_sec = 10;
        let limits = RateLimits::new(&config);
        for i in 0..50 {
            limits
                .check_client(RouteGroup::Submit, &format!("xf{i}"))
                .unwrap();
        }
        assert_eq!(limits.client_buckets(), 50);
        limits.sweep();
        assert_eq!(limits.client_buckets(), 50, "recent buckets stay");
        std::thread::sleep(Duration::from_millis(300));
        limits.sweep();
        assert_eq!(limits.client_buckets(), 0);
    }
}
