//! Wiring: opens the store, builds the bus and its consumers, the relay, and the HTTP router;
//! runs them and shuts them down in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use xfhub_routes::runtime::run_consumer;
use xfhub_routes::trail::{TrailConsumer, TRAIL_QUEUE};
use xfhub_routes::{
    ActiveRoutes, AmqpBus, Bus, BusError, EmbeddedBus, Handler, Relay, RetryPolicy, TableSource,
};
use xfhub_schemas::CodeTables;
use xfhub_store::{Store, StoreOptions};

use crate::api;
use crate::config::{BusKind, Config};
use crate::error::ApiError;
use crate::telemetry;

/// The queues some consumer of this build reads (a routing rule sending elsewhere is warned
/// about).
pub const CONSUMER_QUEUES: &[&str] = &[TRAIL_QUEUE, "warning", "dispatch", "sms", "app_push"];

/// Runs `handler` as a routed consumer of `bus` until `stop`. If it cannot start, the log says
/// why; for a queue no rule of the routing table sends to (a trimmed routes file), it names the
/// consumer, the queue and the table, so that the operator knows which rule to add back.
pub(crate) fn spawn_consumer(
    tasks: &mut JoinSet<()>,
    bus: &Arc<dyn Bus>,
    handler: Arc<dyn Handler>,
    config: &Config,
    policy: &RetryPolicy,
    stop: &CancellationToken,
) {
    let (b, p, s, prefetch) = (
        bus.clone(),
        policy.clone(),
        stop.clone(),
        config.bus.prefetch,
    );
    let routes = match &config.routes.file {
        Some(path) => path.display().to_string(),
        None => "built-in".to_owned(),
    };
    tasks.spawn(async move {
        let consumer = handler.name().to_owned();
        match run_consumer(b, handler, prefetch, p, s).await {
            Ok(()) => {}
            Err(BusError::UnknownQueue(queue)) => tracing::error!(
                consumer = %consumer,
                queue = %queue,
                routes = %routes,
                "ConsumerStartError: no rule of the routing table sends to this queue, so the \
                 consumer does not run; add a rule with this queue in `to` (the built-in table \
                 has one for every consumer)"
            ),
            Err(e) => tracing::error!(consumer = %consumer, error = %e, "ConsumerStartError"),
        }
    });
}

/// What every handler can reach: a cheap handle (one reference count) to [`Shared`]. Every
/// middleware layer and handler takes its own copy per request; cloning the fields one by one
/// was about 1 % of the ingest route's CPU.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state behind [`AppState`].
pub struct Shared {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    pub relay: Relay,
    pub tables: &'static CodeTables,
    pub metrics: PrometheusHandle,
    /// False once shutdown began: `/readyz` answers 503 so balancers stop sending traffic.
    pub accepting: Arc<AtomicBool>,
    /// The key ring sealing personal data and client secrets.
    pub keys: crate::keys::Keys,
    /// Recently read partner clients.
    pub clients: crate::auth::ClientCache,
    pub auth: crate::auth::AuthSettings,
    /// The routing table in force, its source and its reloads.
    pub routes: ActiveRoutes,
    /// The pull connectors (provincial sharing site, 12345 platform).
    pub connectors: xfhub_connectors::Connectors,
    /// Excel imports and exports: settings, job slots, live progress.
    pub excel: crate::excel::ExcelState,
    /// Exchange packages: settings and the one-import-at-a-time lock.
    pub exchange: crate::exchange::ExchangeState,
    /// The warning module's word lists in force (the API invalidates them after a change).
    pub words: Arc<xfhub_modules::warning::Words>,
    /// The Xiangyiban app channel: identity provider keys, abuse limits (issue 9).
    pub app: crate::mobile::AppChannel,
}

/// A started hub: state plus the background tasks (relay, consumers).
pub struct Hub {
    pub state: AppState,
    pub config: Config,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Hub {
    /// Opens the store and starts the relay and the consumers.
    pub async fn start(config: Config) -> anyhow::Result<Hub> {
        // The routing table first: an invalid file stops the start before anything opens.
        let source = match &config.routes.file {
            Some(path) => TableSource::File(path.clone()),
            None => TableSource::BuiltIn,
        };
        let (table, warnings) = source.load(CONSUMER_QUEUES).map_err(|errors| {
            anyhow::anyhow!("invalid routing table {source}:\n  {}", errors.join("\n  "))
        })?;
        for warning in &warnings {
            tracing::warn!(source = %source, warning = %warning, "RouteTableWarning");
        }
        let url = config.database_url();
        if url.starts_with("sqlite:") {
            std::fs::create_dir_all(&config.data_dir)?;
        }
        let store = Store::open(StoreOptions::new(url)).await?;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let (bus, table_handle): (Arc<dyn Bus>, _) = match config.bus.kind {
            BusKind::Embedded => {
                let embedded = EmbeddedBus::new(store.clone(), table);
                let handle = embedded.table_handle();
                (Arc::new(embedded), handle)
            }
            BusKind::Amqp => {
                if store.backend() == xfhub_store::Backend::Sqlite {
                    tracing::warn!(
                        "AmqpWithSqlite: fine for one instance; several instances need one \
                         PostgreSQL database (shared de-duplication and change log)"
                    );
                }
                let amqp = AmqpBus::new(store.clone(), table, config.bus.amqp.clone());
                // Connects now to report a wrong URL early; a broker that is down is waited
                // for in the background (the outbox keeps what is not published).
                if let Err(e) = amqp.connect().await {
                    tracing::warn!(error = %e, "AmqpNotConnectedAtStart");
                }
                tasks.spawn(amqp.clone().collect_dead_letters(stop.clone()));
                let handle = amqp.table_handle();
                (Arc::new(amqp), handle)
            }
        };
        let routes = ActiveRoutes::new(table_handle, source, CONSUMER_QUEUES);
        let relay = match config.bus.kind {
            BusKind::Embedded => Relay::new(),
            BusKind::Amqp => Relay::with_batch(xfhub_routes::amqp::RELAY_BATCH),
        };
        tasks.spawn(routes.clone().watch(stop.clone()));
        if config.bus.kind == BusKind::Amqp {
            // Instances share the outbox: one relay at a time (a lease).
            tasks.spawn(xfhub_routes::amqp::run_leased_relay(
                relay.clone(),
                store.clone(),
                bus.clone(),
                stop.clone(),
            ));
        } else {
            tasks.spawn(relay.clone().run(store.clone(), bus.clone(), stop.clone()));
        }
        let policy = RetryPolicy {
            max_attempts: config.bus.max_attempts,
            base_delay: Duration::from_millis(config.bus.retry_base_ms),
            max_delay: Duration::from_millis(config.bus.retry_max_ms),
        };
        spawn_consumer(
            &mut tasks,
            &bus,
            Arc::new(TrailConsumer),
            &config,
            &policy,
            &stop,
        );
        let keys = crate::keys::Keys::load(&config)?;
        crate::admin_cli::check_ring_matches(&store, &keys.current()).await?;
        tasks.spawn(keys.clone().watch(stop.clone()));
        // The pull connectors (issue 4): each enabled one pulls into the store.
        let connectors = {
            let mut c = config.connectors.clone();
            c.apply_env();
            xfhub_connectors::Connectors::new(&c).map_err(|e| anyhow::anyhow!(e))?
        };
        let (k, r) = (keys.clone(), relay.clone());
        connectors.start(
            &mut tasks,
            &store,
            Arc::new(move || k.current()),
            Arc::new(move || r.notify()),
            &stop,
        );
        // The SMS connector and the business modules (issue 8).
        let words =
            crate::modules::start(&config, &store, &bus, &keys, &policy, &stop, &mut tasks)?;
        // The Xiangyiban push connector (issue 9).
        crate::mobile::start_push(&config, &store, &bus, &policy, &stop, &mut tasks);
        // Import jobs a stopped process left running end as failed, their batches counted.
        crate::excel::jobs::mark_interrupted(&store).await?;
        let state = AppState(Arc::new(Shared {
            store,
            bus,
            relay,
            tables: CodeTables::embedded(),
            metrics: telemetry::metrics_handle(),
            accepting: Arc::new(AtomicBool::new(true)),
            keys,
            clients: crate::auth::ClientCache::default(),
            auth: crate::auth::AuthSettings {
                window_ms: config.security.signature_window_secs as i64 * 1000,
                body_limit: config.limits.body_bytes,
                upload_limit: config.excel.upload_body_limit(),
            },
            routes,
            connectors,
            excel: crate::excel::ExcelState::new(config.excel.clone()),
            exchange: crate::exchange::ExchangeState::new(config.exchange.clone()),
            words,
            app: crate::mobile::AppChannel::new(&config.app, &config.data_dir)?,
        }));
        Ok(Hub {
            state,
            config,
            stop,
            tasks,
        })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone(), &self.config)
    }

    /// Stops the relay and consumers (they finish and settle what they hold), then closes the
    /// store after its writer committed everything queued. Bounded by `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        self.state.accepting.store(false, Ordering::SeqCst);
        self.stop.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(grace_secs = grace.as_secs(), "ShutdownGraceExceeded");
            self.tasks.abort_all();
        }
        let store = self.state.store.clone();
        drop(self.state);
        store.close().await;
    }
}

/// The HTTP router with its middleware.
pub fn router(state: AppState, config: &Config) -> Router {
    let timeout = Duration::from_secs(config.limits.request_timeout_secs);
    let limits = crate::ratelimit::RateLimits::new(&config.rate_limits);
    api::routes()
        // The app channel authenticates its own callers (staff JWTs, public sessions).
        .merge(crate::mobile::routes(&config.app))
        // Per (route group, app key): needs the Caller that authentication attaches.
        .layer(middleware::from_fn_with_state(
            limits.clone(),
            crate::ratelimit::client_limit,
        ))
        // Every route but health, readiness and the OpenAPI document needs a signed request.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(timeout, deadline))
        // Per route group, before any signature is checked; 429s still show in the metrics.
        .layer(middleware::from_fn_with_state(
            limits,
            crate::ratelimit::global_limit,
        ))
        // SOAP clients get faults, not JSON, for the refusals of the layers above.
        .layer(middleware::from_fn(crate::soap::fault_edge))
        .layer(middleware::from_fn(telemetry::http_metrics))
        // The client IP behind trusted proxies, for everything above.
        .layer(middleware::from_fn_with_state(
            crate::client_ip::TrustedProxies::new(&config.server.trusted_proxies),
            crate::client_ip::layer,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::internal("handler", &"handler panicked").into_response()
                }))
                .layer(DefaultBodyLimit::max(config.limits.body_bytes)),
        )
        .with_state(state)
}

/// Answers 503 `timeout` when a request takes longer than the configured limit. A write that
/// was already handed to the store still commits; a retry then gets its first receipt.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(route = %path, "RequestTimedOut");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long; if it was a submission, retry it: repeats are safe",
                "请求处理超时；提交类请求可安全重试",
            )
            .into_response()
        }
    }
}

/// `xfhub serve`: runs until SIGTERM or ctrl-c, then stops intake, drains and exits.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let grace = Duration::from_secs(config.limits.shutdown_grace_secs);
    // `listen` and every `also_listen` address, TLS-terminated when [tls] is set.
    let listeners = crate::tls::Listeners::bind(&config).await?;
    let hub = Hub::start(config).await?;
    let app = hub.router();
    let addrs = listeners.local_addrs();
    tracing::info!(
        listen = %addrs[0],
        also_listen = ?&addrs[1..],
        tls = listeners.is_tls(),
        "HubStarted"
    );
    let stopping = CancellationToken::new();
    let accepting = hub.state.accepting.clone();
    let signal = tokio::spawn({
        let (stopping, accepting) = (stopping.clone(), accepting.clone());
        async move {
            shutdown_signal().await;
            tracing::info!("ShutdownRequested");
            // From now on /readyz answers 503 on connections still open.
            accepting.store(false, Ordering::SeqCst);
            stopping.cancel();
        }
    });
    // One graceful shutdown for every listener.
    let server = listeners.serve(app, stopping.clone());
    let server = async {
        let result = server.await;
        accepting.store(false, Ordering::SeqCst);
        result
    };
    tokio::pin!(server);
    // Bound the wait for in-flight requests once shutdown started.
    tokio::select! {
        r = &mut server => r?,
        _ = async { stopping.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("ShutdownGraceExceeded: in-flight requests abandoned");
        }
    }
    signal.abort();
    hub.shutdown(grace).await;
    tracing::info!("HubStopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfhub_routes::ReloadOutcome;

    const GOOD: &str = "version = \"v1\"\n[[rule]]\nname = \"trail\"\nmatch = \"#\"\nto = [\"trail\"]\ntap = true\n";

    fn config(dir: &std::path::Path, routes: &std::path::Path) -> Config {
        let mut config = Config {
            data_dir: dir.to_owned(),
            ..Default::default()
        };
        config.routes.file = Some(routes.to_owned());
        config
    }

    #[tokio::test]
    async fn a_bad_table_file_never_replaces_the_table_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.toml");
        std::fs::write(&file, GOOD).unwrap();
        let hub = Hub::start(config(dir.path(), &file)).await.unwrap();
        let routes = hub.state.routes.clone();
        assert_eq!(routes.table().version, "v1");
        assert_eq!(routes.source(), &TableSource::File(file.clone()));

        std::fs::write(
            &file,
            "version = \"v2\"\n[[rule]]\nname = \"trail\"\nmatch = \"#\"\nto = []\nwhen = { path = \"x\", lt = true }\n",
        )
        .unwrap();
        let ReloadOutcome::Rejected { errors } = routes.reload() else {
            panic!("an invalid file is rejected");
        };
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(routes.table().version, "v1", "the old table stays");
        let shown = crate::api::admin::routes(State(hub.state.clone())).await.0;
        assert_eq!(shown.version, "v1");
        assert_eq!(shown.source, file.display().to_string());
        assert_eq!(shown.rules.len(), 1);
        assert_eq!(shown.last_rejected.map(|r| r.errors), Some(errors));

        std::fs::write(&file, GOOD.replace("v1", "v2")).unwrap();
        assert!(
            matches!(routes.reload(), ReloadOutcome::Applied { version, .. } if version == "v2")
        );
        assert_eq!(hub.state.routes.table().version, "v2");
        assert!(routes.last_rejected().is_none());
        hub.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn an_invalid_table_file_at_start_lists_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.toml");
        std::fs::write(&file, "[[rule]]\nname = \"a\"\nmatch = \"a..b\"\nto = []\n").unwrap();
        let err = Hub::start(config(dir.path(), &file))
            .await
            .err()
            .expect("the hub refuses to start")
            .to_string();
        for e in ["bad pattern `a..b`", "to: empty", "version: missing"] {
            assert!(err.contains(e), "{err}");
        }
    }
}
