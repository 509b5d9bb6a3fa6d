//! The pull loop shared by the provincial and 12345 connectors.
//!
//! A connector asks its partner for the page after its cursor, maps and validates every record
//! of the page, and commits the page in one [`Txn`]: the records (each stored or recognised as
//! a repeat by the store), the rejects (import errors with the sealed raw record and every
//! reason), the process events, and the new cursor. The cursor therefore never runs ahead of
//! the records it covers: a crash before the commit fetches the page again, a crash after it
//! does not. A repeat of a stored (source id, version) is a `Duplicate` and publishes nothing.
//!
//! Transient failures (5xx, timeouts, dropped connections, unreadable answers, expired
//! signatures) back off exponentially with jitter; after `breaker_failures` failures in a row
//! the circuit opens for `breaker_open_ms`, then one trial request decides (half-open).
//! Rate-limit answers (429, SOAP `Server.RateLimited`) wait the partner's `Retry-After` and do
//! not count as failures.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use xfhub_schemas::{FieldError, ProcessEvent};
use xfhub_security::keys::KeyRing;
use xfhub_store::IngestItem;
use xfhub_store::{IngestOutcome, Stmt, Store, Txn};
use xfhub_transforms::codemap::CodeMap;

/// Settings of one pull connector (`[connectors.provincial]`, `[connectors.hotline12345]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullSettings {
    /// Pull from the partner at all (default false).
    pub enabled: bool,
    /// The partner's service: the provincial SOAP endpoint (`http://host/provincial/ws`), or
    /// the 12345 platform's base URL (`http://host`).
    pub url: String,
    /// The app key the partner issued to the hub.
    pub app_key: String,
    /// The secret the partner issued, as issued. The environment variables
    /// `XFHUB_PROVINCIAL_SECRET` / `XFHUB_HOTLINE12345_SECRET` override it (keep it out of
    /// the file).
    #[serde(skip_serializing)]
    pub secret: String,
    /// Pause between pulls once the partner has nothing more, in milliseconds.
    pub interval_ms: u64,
    /// Records a page (1 to 100).
    pub page_size: u32,
    /// Longest a request may take, in milliseconds.
    pub timeout_ms: u64,
    /// First backoff after a failure, in milliseconds; doubled per failure in a row.
    pub backoff_base_ms: u64,
    /// Longest backoff, in milliseconds.
    pub backoff_max_ms: u64,
    /// Failures in a row that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the open breaker refuses requests, in milliseconds, before one trial.
    pub breaker_open_ms: u64,
    /// Code map file replacing the embedded one (`transforms/data/<partner>.toml` format);
    /// read at start and again before import errors are reprocessed.
    pub code_map_file: Option<PathBuf>,
    /// Division whose records are pulled (provincial only; 430100 = Changsha).
    pub region_code: String,
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            enabled: false,
            url: String::new(),
            app_key: String::new(),
            secret: String::new(),
            interval_ms: 30_000,
            page_size: 100,
            timeout_ms: 10_000,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            breaker_failures: 5,
            breaker_open_ms: 60_000,
            code_map_file: None,
            region_code: "430100".to_owned(),
        }
    }
}

impl PullSettings {
    /// Every problem, each prefixed with `section` (`connectors.provincial`).
    pub fn validate(&self, section: &str, errors: &mut Vec<String>) {
        if !self.enabled {
            return;
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://"))
            || reqwest::Url::parse(&self.url).is_err()
        {
            errors.push(format!("{section}.url: must be an http:// or https:// URL"));
        }
        if self.app_key.is_empty() {
            errors.push(format!("{section}.app_key: required when enabled"));
        }
        if self.secret.is_empty() {
            errors.push(format!(
                "{section}.secret: required when enabled (or the environment variable)"
            ));
        }
        if !(1..=100).contains(&self.page_size) {
            errors.push(format!("{section}.page_size: must be between 1 and 100"));
        }
        if self.interval_ms == 0 || self.timeout_ms == 0 {
            errors.push(format!(
                "{section}.interval_ms, timeout_ms: must be at least 1"
            ));
        }
        if self.backoff_base_ms == 0 || self.backoff_base_ms > self.backoff_max_ms {
            errors.push(format!(
                "{section}.backoff_base_ms: must be at least 1 and at most backoff_max_ms"
            ));
        }
        if self.breaker_failures == 0 {
            errors.push(format!("{section}.breaker_failures: must be at least 1"));
        }
        if let Some(f) = &self.code_map_file {
            if !f.is_file() {
                errors.push(format!(
                    "{section}.code_map_file: {} is not a file",
                    f.display()
                ));
            }
        }
    }
}

/// A record ready to commit, or a reject.
#[derive(Debug)]
pub enum Prepared {
    Record {
        item: Box<IngestItem>,
        events: Vec<ProcessEvent>,
    },
    Reject(Reject),
}

/// A record that failed mapping or validation.
#[derive(Debug, Clone)]
pub struct Reject {
    /// `petition` | `workorder`
    pub kind: &'static str,
    /// `<source id>#<version>` as far as it could be read.
    pub source_ref: Option<String>,
    /// The record as received (decoded to UTF-8 text when its encoding allowed).
    pub raw: Vec<u8>,
    pub reasons: Vec<FieldError>,
}

/// A fetched, mapped page.
#[derive(Debug)]
pub struct FetchedPage {
    pub records: Vec<Prepared>,
    pub next_cursor: String,
    pub has_more: bool,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The partner asked to slow down.
    RateLimited {
        retry_after: Duration,
        detail: String,
    },
    /// Anything worth retrying after a backoff.
    Transient(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::RateLimited {
                retry_after,
                detail,
            } => write!(f, "rate limited for {retry_after:?}: {detail}"),
            FetchError::Transient(e) => f.write_str(e),
        }
    }
}

/// What a source needs to map records: the code map in force, the key ring, the code tables.
#[derive(Clone)]
pub struct MapContext {
    pub map: Arc<CodeMap>,
    pub ring: Arc<KeyRing>,
    pub tables: &'static xfhub_schemas::CodeTables,
}

impl std::fmt::Debug for MapContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapContext")
            .field("map", &self.map.version)
            .finish_non_exhaustive()
    }
}

/// A partner the pull loop reads.
#[async_trait::async_trait]
pub trait PullSource: Send + Sync + 'static {
    /// Connector name: `provincial` | `hotline12345` (the source system of its records).
    fn name(&self) -> &'static str;
    /// Cursor of a connector that never pulled.
    fn initial_cursor(&self) -> String;
    /// Fetches and maps the page after `cursor`.
    async fn fetch(&self, cursor: &str, cx: &MapContext) -> Result<FetchedPage, FetchError>;
    /// Maps one stored raw record again (import error reprocessing).
    fn prepare(&self, raw: &[u8], cx: &MapContext) -> Prepared;
    /// Parses a code map file of this partner.
    fn parse_map(&self, text: &str) -> Result<CodeMap, String>;
    /// The embedded code map.
    fn embedded_map(&self) -> CodeMap;
}

/// Counters since the hub started.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Counts {
    pub pages: u64,
    pub records: u64,
    pub created: u64,
    pub updated: u64,
    /// Records already stored with the same version (no message).
    pub duplicates: u64,
    /// Records older than the stored version (no message).
    pub stale: u64,
    /// Same version, other content than stored (not stored; logged).
    pub conflicts: u64,
    /// Records that failed mapping or validation (in the import-error store).
    pub rejected: u64,
    /// Failed requests (transient errors, not rate limits).
    pub failures: u64,
    pub rate_limited: u64,
}

/// Totals kept in the store (all time).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Totals {
    pub pages: i64,
    pub records: i64,
    pub rejected: i64,
}

/// What `GET /admin/connectors` shows of one connector.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectorStatus {
    pub name: String,
    pub enabled: bool,
    pub url: String,
    /// `disabled` | `starting` | `pulling` | `idle` | `backing_off` | `rate_limited` |
    /// `circuit_open` | `stopped`
    pub state: String,
    /// The committed cursor.
    pub cursor: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// `closed` | `open` | `half_open`
    pub breaker: String,
    pub breaker_open_until: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub interval_ms: u64,
    /// Version of the code map in force.
    pub code_map_version: String,
    /// Since the hub started.
    pub counts: Counts,
    /// All time, from the store.
    pub totals: Totals,
}

/// One connector: its source, settings, code map and live status.
pub struct Connector {
    source: Arc<dyn PullSource>,
    settings: PullSettings,
    map: RwLock<Arc<CodeMap>>,
    status: Mutex<ConnectorStatus>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.source.name())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Connector {
    /// A connector with the code map of `settings.code_map_file`, else the embedded one.
    pub fn new(source: Arc<dyn PullSource>, settings: PullSettings) -> Result<Connector, String> {
        let map = match &settings.code_map_file {
            Some(path) => load_map(&*source, path)?,
            None => source.embedded_map(),
        };
        let status = ConnectorStatus {
            name: source.name().to_owned(),
            enabled: settings.enabled,
            url: settings.url.clone(),
            state: if settings.enabled {
                "starting"
            } else {
                "disabled"
            }
            .to_owned(),
            cursor: None,
            last_success_at: None,
            last_error: None,
            last_error_at: None,
            breaker: "closed".to_owned(),
            breaker_open_until: None,
            consecutive_failures: 0,
            interval_ms: settings.interval_ms,
            code_map_version: map.version.clone(),
            counts: Counts::default(),
            totals: Totals::default(),
        };
        Ok(Connector {
            source,
            settings,
            map: RwLock::new(Arc::new(map)),
            status: Mutex::new(status),
        })
    }

    pub fn name(&self) -> &'static str {
        self.source.name()
    }

    pub fn settings(&self) -> &PullSettings {
        &self.settings
    }

    pub fn source(&self) -> &Arc<dyn PullSource> {
        &self.source
    }

    /// The code map in force.
    pub fn map(&self) -> Arc<CodeMap> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the code map file again (when one is configured); a bad file keeps the map in
    /// force and answers why.
    pub fn reload_map(&self) -> Result<String, String> {
        let Some(path) = &self.settings.code_map_file else {
            return Ok(self.map().version.clone());
        };
        let map = load_map(&*self.source, path)?;
        let version = map.version.clone();
        *self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(map);
        lock(&self.status).code_map_version = version.clone();
        Ok(version)
    }

    /// The live status with the store's totals and cursor.
    pub async fn status(&self, store: &Store) -> ConnectorStatus {
        let mut s = lock(&self.status).clone();
        if let Ok(Some(row)) = read_state(store, self.name()).await {
            s.cursor = Some(row.cursor);
            s.totals = row.totals;
            s.last_success_at = row.last_success_at.map(from_ms);
            if s.last_error.is_none() {
                s.last_error = row.last_error;
                s.last_error_at = row.last_error_at.map(from_ms);
            }
        }
        s
    }

    fn set<F: FnOnce(&mut ConnectorStatus)>(&self, f: F) {
        f(&mut lock(&self.status));
    }
}

fn load_map(source: &dyn PullSource, path: &std::path::Path) -> Result<CodeMap, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("code map file {}: {e}", path.display()))?;
    source
        .parse_map(&text)
        .map_err(|e| format!("code map file {}: {e}", path.display()))
}

/// A connector's row of `connector_state`.
#[derive(Debug, Clone)]
pub struct StateRow {
    pub cursor: String,
    pub totals: Totals,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

/// Reads a connector's committed cursor and totals.
pub async fn read_state(
    store: &Store,
    name: &str,
) -> Result<Option<StateRow>, xfhub_store::StoreError> {
    let stmt = Stmt::new(
        "SELECT cursor, pages, records, rejected, last_success_at, last_error, last_error_at \
         FROM connector_state WHERE name = $1",
    )
    .bind(name);
    let row = stmt
        .query()
        .fetch_optional(store.reader())
        .await
        .map_err(xfhub_store::StoreError::from)?;
    let Some(r) = row else { return Ok(None) };
    let get = |e: sqlx::Error| xfhub_store::StoreError::from(e);
    Ok(Some(StateRow {
        cursor: r.try_get("cursor").map_err(get)?,
        totals: Totals {
            pages: r.try_get("pages").map_err(get)?,
            records: r.try_get("records").map_err(get)?,
            rejected: r.try_get("rejected").map_err(get)?,
        },
        last_success_at: r.try_get("last_success_at").map_err(get)?,
        last_error: r.try_get("last_error").map_err(get)?,
        last_error_at: r.try_get("last_error_at").map_err(get)?,
    }))
}

/// The statement advancing a connector's cursor over `pages` pages, in their transaction.
pub fn cursor_stmt(
    name: &str,
    cursor: &str,
    pages: i64,
    records: i64,
    rejected: i64,
    now: i64,
) -> Stmt {
    Stmt::new(
        "INSERT INTO connector_state (name, cursor, pages, records, rejected, last_success_at, updated_at) \
         VALUES ($1, $2, $6, $3, $4, $5, $5) \
         ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, \
         pages = connector_state.pages + excluded.pages, records = connector_state.records + excluded.records, \
         rejected = connector_state.rejected + excluded.rejected, \
         last_success_at = excluded.last_success_at, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(cursor)
    .bind(records)
    .bind(rejected)
    .bind(now)
    .bind(pages)
}

fn error_stmt(name: &str, cursor: &str, error: &str, now: i64) -> Stmt {
    Stmt::new(
        "INSERT INTO connector_state (name, cursor, last_error, last_error_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (name) DO UPDATE SET last_error = excluded.last_error, \
         last_error_at = excluded.last_error_at, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(cursor)
    .bind(error)
    .bind(now)
}

/// Stores a reject unless an unresolved import error of the same source record and version is
/// there already (a record repeated across pages is one import error). The raw record is
/// sealed: it may hold personal data.
pub fn reject_stmt(source: &str, r: &Reject, ring: &KeyRing, now: i64) -> Stmt {
    let reasons = serde_json::to_string(&r.reasons).unwrap_or_else(|_| "[]".to_owned());
    Stmt::new(
        "INSERT INTO import_errors (source, kind, source_ref, raw, reasons, created_at) \
         SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM import_errors \
         WHERE source = $1 AND source_ref = $3 AND resolved_at IS NULL)",
    )
    .bind(source)
    .bind(r.kind)
    .bind(r.source_ref.clone())
    .bind(ring.seal_bytes(&r.raw))
    .bind(reasons)
    .bind(now)
}

/// One statement inserting the process events of a page into `process_events` (shared with
/// the events responsible units write back), each joined to its stored petition by source id
/// (the statement runs after the page's records in the same transaction). An event already
/// there (same petition, kind and time) is not stored again.
pub fn events_stmt(events: &[&ProcessEvent], now: i64) -> Option<Stmt> {
    if events.is_empty() {
        return None;
    }
    let mut sql = String::from(
        "INSERT INTO process_events (petition_id, kind, occurred_at, division, body, actor, created_at) \
         SELECT r.id, v.kind, v.occurred_at, r.division, v.body, v.actor, $1 FROM (",
    );
    let mut stmt_args = Vec::with_capacity(events.len());
    let mut n = 1;
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str(&format!(
            "SELECT ${} AS system, ${} AS source_id, ${} AS kind, ${} AS occurred_at, ${} AS body, ${} AS actor",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6
        ));
        n += 6;
        stmt_args.push(e);
    }
    // `WHERE 1 = 1`: SQLite needs a WHERE before an upsert's ON CONFLICT after a join.
    sql.push_str(
        ") v JOIN records r ON r.kind = 'petition' AND r.source_system = v.system \
         AND r.source_id = v.source_id WHERE 1 = 1 \
         ON CONFLICT (petition_id, kind, occurred_at) DO NOTHING",
    );
    let mut stmt = Stmt::new(sql).bind(now);
    for e in stmt_args {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        stmt = stmt
            .bind(e.petition_source.system.as_str())
            .bind(e.petition_source.id.as_str())
            .bind(kind)
            .bind(e.occurred_at.to_rfc3339())
            .bind(serde_json::to_string(e).unwrap_or_default())
            .bind(e.petition_source.system.as_str());
    }
    Some(stmt)
}

/// What a committed page did.
#[derive(Debug, Clone, Default)]
pub struct PageOutcome {
    pub created: u64,
    pub updated: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub conflicts: u64,
    pub rejected: u64,
}

/// Commits consecutive pages (at least one): their records, rejects and events and the cursor
/// of the last one, in one transaction.
pub async fn commit_pages(
    store: &Store,
    name: &str,
    pages: Vec<FetchedPage>,
    ring: &KeyRing,
) -> Result<PageOutcome, xfhub_store::StoreError> {
    let now = xfhub_store::now_ms();
    let mut txn = Txn::default();
    let mut events = Vec::new();
    let mut rejects: Vec<Reject> = Vec::new();
    let page_count = pages.len() as i64;
    let mut next_cursor = String::new();
    for page in pages {
        next_cursor = page.next_cursor;
        for p in page.records {
            match p {
                Prepared::Record { item, events: ev } => {
                    txn.ingests.push(*item);
                    events.extend(ev);
                }
                Prepared::Reject(r) => {
                    // A record repeated within the batch is one import error.
                    if r.source_ref.is_none()
                        || !rejects.iter().any(|x| x.source_ref == r.source_ref)
                    {
                        rejects.push(r);
                    }
                }
            }
        }
    }
    let refs: Vec<&ProcessEvent> = events.iter().collect();
    // One compound-SELECT term and six bind values per event: chunks keep each statement under
    // SQLite's limits whatever the number of events.
    for chunk in refs.chunks(EVENTS_PER_STATEMENT) {
        if let Some(s) = events_stmt(chunk, now) {
            txn.statements.push(s);
        }
    }
    for r in &rejects {
        txn.statements.push(reject_stmt(name, r, ring, now));
    }
    let records = txn.ingests.len() as i64 + rejects.len() as i64;
    txn.statements.push(cursor_stmt(
        name,
        &next_cursor,
        page_count,
        records,
        rejects.len() as i64,
        now,
    ));
    let outcome = store.transact(txn).await?;
    let mut o = PageOutcome {
        rejected: rejects.len() as u64,
        ..PageOutcome::default()
    };
    for r in &outcome.ingests {
        match r {
            IngestOutcome::Created(_) => o.created += 1,
            IngestOutcome::Updated(_) => o.updated += 1,
            IngestOutcome::Duplicate(_) => o.duplicates += 1,
            IngestOutcome::Stale { .. } => o.stale += 1,
            IngestOutcome::Conflict { .. } | IngestOutcome::Replayed => o.conflicts += 1,
        }
    }
    Ok(o)
}

/// Maps a page's records on two threads (mapping, validation and sealing are the CPU work of a
/// page), in order. A panic in either half is resumed, never turned into lost records.
pub fn map_in_parallel<T: Send, F: Fn(T) -> Prepared + Sync>(
    mut items: Vec<T>,
    f: F,
) -> Vec<Prepared> {
    if items.len() < 16 {
        return items.into_iter().map(f).collect();
    }
    let second = items.split_off(items.len() / 2);
    std::thread::scope(|s| {
        let h = s.spawn(|| second.into_iter().map(&f).collect::<Vec<_>>());
        let mut out: Vec<Prepared> = items.into_iter().map(&f).collect();
        out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        out
    })
}

/// Backoff before retry `failures` (1-based): base * 2^(failures-1), at most max, with
/// "equal jitter" (half fixed, half random) so that retries of many hubs do not align.
pub fn backoff(base_ms: u64, max_ms: u64, failures: u32) -> Duration {
    let exp = base_ms.saturating_mul(1u64 << failures.saturating_sub(1).min(30));
    let d = exp.min(max_ms).max(1);
    let half = d / 2;
    Duration::from_millis(half + rand::thread_rng().gen_range(0..=d - half))
}

/// Sleeps `d` unless `stop` fires first; false when stopped.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Runs the pull loop until `stop`. `ring` gives the key ring in force; `on_commit` is called
/// after a page stored new versions (the hub wakes its outbox relay).
pub async fn run(
    connector: Arc<Connector>,
    store: Store,
    ring: Arc<dyn Fn() -> Arc<KeyRing> + Send + Sync>,
    on_commit: Arc<dyn Fn() + Send + Sync>,
    stop: CancellationToken,
) {
    let name = connector.name();
    let s = connector.settings().clone();
    let mut cursor = loop {
        match read_state(&store, name).await {
            Ok(Some(row)) => break row.cursor,
            Ok(None) => break connector.source().initial_cursor(),
            Err(e) => {
                tracing::warn!(connector = name, error = %e, "ConnectorStateUnreadable");
                if !pause(&stop, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    tracing::info!(connector = name, cursor = %cursor, url = %s.url, "ConnectorStarted");
    let mut failures: u32 = 0;
    let mut half_open = false;
    // Pages fetched (and mapped) ahead of the commits, from the committed cursor on.
    let mut feed: Option<Feed> = None;
    // A fetch result taken from the feed but not handled yet (an error found while gathering
    // pages for a commit is handled after that commit).
    let mut deferred: Option<Result<FetchedPage, FetchError>> = None;
    while !stop.is_cancelled() {
        connector.set(|st| {
            st.state = "pulling".to_owned();
            st.cursor = Some(cursor.clone());
        });
        let cx = MapContext {
            map: connector.map(),
            ring: ring(),
            tables: xfhub_schemas::CodeTables::embedded(),
        };
        // A reloaded code map or a new key: pages fetched ahead with the old ones are dropped.
        if feed.as_ref().is_some_and(|f| !f.uses(&cx)) {
            feed = None;
            deferred = None;
        }
        let fetched = match deferred.take() {
            Some(r) => r,
            None => {
                let f = feed.get_or_insert_with(|| {
                    Feed::start(connector.source().clone(), cursor.clone(), cx.clone())
                });
                tokio::select! {
                    _ = stop.cancelled() => break,
                    r = f.rx.recv() => r.unwrap_or_else(|| Err(FetchError::Transient("the fetch task stopped".to_owned()))),
                }
            }
        };
        let error = match fetched {
            Ok(page) => {
                // Every page already fetched joins this commit, up to MAX_COMMIT_RECORDS: when
                // the store is the slower side, commits grow and share their fixed cost (the
                // sync to disk), and the cursor still moves only with what it covers.
                let mut pages = vec![page];
                let mut n = pages[0].records.len();
                while pages.last().is_some_and(|p| p.has_more) && n < MAX_COMMIT_RECORDS {
                    let Some(f) = feed.as_mut() else { break };
                    match f.rx.try_recv() {
                        Ok(Ok(p)) => {
                            n += p.records.len();
                            pages.push(p);
                        }
                        Ok(Err(e)) => {
                            deferred = Some(Err(e));
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let page_count = pages.len() as u64;
                let n = n as u64;
                let last = pages.last().expect("at least one page");
                let next = last.next_cursor.clone();
                let has_more = last.has_more;
                // The commit is not raced against `stop`: once handed to the store it commits.
                match commit_pages(&store, name, pages, &cx.ring).await {
                    Ok(o) => {
                        if o.created + o.updated > 0 {
                            on_commit();
                        }
                        metrics::counter!("xfhub_connector_records_total", "connector" => name)
                            .increment(n);
                        if o.conflicts > 0 {
                            tracing::warn!(
                                connector = name,
                                conflicts = o.conflicts,
                                "ConnectorVersionConflicts"
                            );
                        }
                        if o.rejected > 0 {
                            tracing::info!(
                                connector = name,
                                rejected = o.rejected,
                                "ConnectorRecordsRejected"
                            );
                        }
                        tracing::debug!(connector = name, pages = page_count, records = n, created = o.created, updated = o.updated,
                            duplicates = o.duplicates, cursor = %next, "ConnectorPagesCommitted");
                        cursor = next;
                        failures = 0;
                        half_open = false;
                        connector.set(|st| {
                            st.cursor = Some(cursor.clone());
                            st.last_success_at = Some(Utc::now());
                            st.breaker = "closed".to_owned();
                            st.breaker_open_until = None;
                            st.consecutive_failures = 0;
                            let c = &mut st.counts;
                            c.pages += page_count;
                            c.records += n;
                            c.created += o.created;
                            c.updated += o.updated;
                            c.duplicates += o.duplicates;
                            c.stale += o.stale;
                            c.conflicts += o.conflicts;
                            c.rejected += o.rejected;
                        });
                        if !has_more {
                            // The feed ended with this page.
                            feed = None;
                            connector.set(|st| st.state = "idle".to_owned());
                            if !pause(&stop, Duration::from_millis(s.interval_ms)).await {
                                break;
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        // What was fetched after the failed pages is fetched again from the
                        // committed cursor.
                        feed = None;
                        deferred = None;
                        format!("store: {e}")
                    }
                }
            }
            Err(FetchError::RateLimited {
                retry_after,
                detail,
            }) => {
                feed = None;
                tracing::info!(connector = name, retry_after_ms = retry_after.as_millis() as u64, %detail, "ConnectorRateLimited");
                connector.set(|st| {
                    st.state = "rate_limited".to_owned();
                    st.counts.rate_limited += 1;
                });
                let wait = retry_after.clamp(Duration::from_millis(100), Duration::from_secs(600));
                if !pause(&stop, wait).await {
                    break;
                }
                continue;
            }
            Err(FetchError::Transient(e)) => {
                feed = None;
                e
            }
        };
        failures += 1;
        let now = xfhub_store::now_ms();
        tracing::warn!(connector = name, failures, error = %error, "ConnectorPullFailed");
        // Best effort: the error is shown by GET /admin/connectors either way.
        let _ = store
            .transact(Txn {
                statements: vec![error_stmt(name, &cursor, &error, now)],
                ..Txn::default()
            })
            .await;
        let open = half_open || failures >= s.breaker_failures;
        let wait = if open {
            Duration::from_millis(s.breaker_open_ms)
        } else {
            backoff(s.backoff_base_ms, s.backoff_max_ms, failures)
        };
        connector.set(|st| {
            st.last_error = Some(error.clone());
            st.last_error_at = Some(Utc::now());
            st.consecutive_failures = failures;
            st.counts.failures += 1;
            if open {
                st.state = "circuit_open".to_owned();
                st.breaker = "open".to_owned();
                st.breaker_open_until =
                    Some(Utc::now() + chrono::Duration::milliseconds(s.breaker_open_ms as i64));
            } else {
                st.state = "backing_off".to_owned();
            }
        });
        if open {
            tracing::warn!(
                connector = name,
                open_ms = s.breaker_open_ms,
                "ConnectorCircuitOpen"
            );
        }
        let started = Instant::now();
        if !pause(&stop, wait).await {
            break;
        }
        if open {
            half_open = true;
            connector.set(|st| st.breaker = "half_open".to_owned());
            tracing::info!(
                connector = name,
                waited_ms = started.elapsed().as_millis() as u64,
                "ConnectorCircuitHalfOpen"
            );
        }
    }
    drop(feed);
    connector.set(|st| st.state = "stopped".to_owned());
    tracing::info!(connector = name, "ConnectorStopped");
}

/// Most records in one commit of pulled pages.
const MAX_COMMIT_RECORDS: usize = 1_000;
/// Pages fetched ahead of the commits at most.
const FEED_PAGES: usize = 6;
/// Process events per insert statement: each event is one term of a compound `SELECT`, and
/// SQLite refuses more than 500 terms (`SQLITE_MAX_COMPOUND_SELECT`).
const EVENTS_PER_STATEMENT: usize = 400;

/// A task fetching pages one after the other from a cursor, ahead of the commits: it stops
/// after a page without more, after a failed fetch, or when dropped (the task is aborted).
/// Nothing it fetched counts until committed; dropping it loses nothing, the pages are
/// fetched again from the committed cursor.
struct Feed {
    rx: tokio::sync::mpsc::Receiver<Result<FetchedPage, FetchError>>,
    task: tokio::task::JoinHandle<()>,
    map: Arc<CodeMap>,
    ring: Arc<KeyRing>,
}

impl Feed {
    fn start(source: Arc<dyn PullSource>, cursor: String, cx: MapContext) -> Feed {
        let (tx, rx) = tokio::sync::mpsc::channel(FEED_PAGES);
        let (map, ring) = (cx.map.clone(), cx.ring.clone());
        let task = tokio::spawn(async move {
            let mut cursor = cursor;
            loop {
                let r = source.fetch(&cursor, &cx).await;
                let next = match &r {
                    Ok(p) if p.has_more => Some(p.next_cursor.clone()),
                    _ => None,
                };
                if tx.send(r).await.is_err() {
                    return;
                }
                match next {
                    Some(c) => cursor = c,
                    None => return,
                }
            }
        });
        Feed {
            rx,
            task,
            map,
            ring,
        }
    }

    /// Whether the pages are mapped with this context's code map and key.
    fn uses(&self, cx: &MapContext) -> bool {
        Arc::ptr_eq(&self.map, &cx.map) && Arc::ptr_eq(&self.ring, &cx.ring)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Result of reprocessing one import error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reprocessed {
    pub id: i64,
    pub source_ref: Option<String>,
    /// `stored` (mapped, validated and committed; the import error is resolved) or `failed`.
    pub outcome: String,
    /// Store answer for a stored record: `created` | `updated` | `duplicate` | `stale` |
    /// `conflict`.
    pub ingest: Option<String>,
    /// Every reason of a record that still fails.
    pub reasons: Vec<FieldError>,
}

/// Maps the import error `id` of `connector` again with the code map in force; stores it and
/// resolves the import error in one transaction when it now passes, or updates its reasons.
pub async fn reprocess_one(
    connector: &Connector,
    store: &Store,
    ring: &Arc<KeyRing>,
    id: i64,
    source_ref: Option<String>,
    sealed_raw: &str,
) -> Result<Reprocessed, String> {
    let raw = if KeyRing::is_sealed(sealed_raw) {
        ring.open_bytes(sealed_raw)
            .map_err(|e| format!("import error {id}: cannot open the raw record: {e}"))?
    } else {
        sealed_raw.as_bytes().to_vec()
    };
    let cx = MapContext {
        map: connector.map(),
        ring: ring.clone(),
        tables: xfhub_schemas::CodeTables::embedded(),
    };
    let now = xfhub_store::now_ms();
    match connector.source().prepare(&raw, &cx) {
        Prepared::Record { item, events } => {
            let mut txn = Txn::default();
            txn.ingests.push(*item);
            let refs: Vec<&ProcessEvent> = events.iter().collect();
            if let Some(s) = events_stmt(&refs, now) {
                txn.statements.push(s);
            }
            txn.statements.push(
                Stmt::new("UPDATE import_errors SET resolved_at = $1 WHERE id = $2 AND resolved_at IS NULL")
                    .bind(now)
                    .bind(id),
            );
            let out = store.transact(txn).await.map_err(|e| e.to_string())?;
            let ingest = out.ingests.first().map(|o| {
                match o {
                    IngestOutcome::Created(_) => "created",
                    IngestOutcome::Updated(_) => "updated",
                    IngestOutcome::Duplicate(_) => "duplicate",
                    IngestOutcome::Stale { .. } => "stale",
                    IngestOutcome::Conflict { .. } | IngestOutcome::Replayed => "conflict",
                }
                .to_owned()
            });
            Ok(Reprocessed {
                id,
                source_ref,
                outcome: "stored".to_owned(),
                ingest,
                reasons: Vec::new(),
            })
        }
        Prepared::Reject(r) => {
            let reasons = serde_json::to_string(&r.reasons).unwrap_or_else(|_| "[]".to_owned());
            store
                .transact(Txn {
                    statements: vec![Stmt::new(
                        "UPDATE import_errors SET reasons = $1 WHERE id = $2 AND resolved_at IS NULL",
                    )
                    .bind(reasons)
                    .bind(id)],
                    ..Txn::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(Reprocessed {
                id,
                source_ref,
                outcome: "failed".to_owned(),
                ingest: None,
                reasons: r.reasons,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages gathered into one commit may carry more process events than SQLite takes terms
    /// in one compound SELECT (500): they are inserted in chunks, and the cursor counts every
    /// page of the commit.
    #[tokio::test]
    async fn a_commit_of_many_pages_stores_every_event_and_counts_its_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(xfhub_store::StoreOptions::new(format!(
            "sqlite://{}/x.db",
            dir.path().display()
        )))
        .await
        .unwrap();
        let ring = KeyRing::generate();
        let tables = xfhub_schemas::CodeTables::embedded();
        let now = Utc::now();
        let page = |k: u64, events: usize| {
            let p =
                xfhub_schemas::validate_petition(xfhub_schemas::sample_petition(k), tables, now)
                    .unwrap();
            let base = p.acceptance.registered_at;
            let events = (0..events)
                .map(|i| ProcessEvent {
                    petition_source: p.source.clone(),
                    kind: xfhub_schemas::ProcessEventKind::Transferred,
                    occurred_at: base + chrono::Duration::seconds(i as i64 + 1),
                    org: None,
                    target_org: None,
                    note: None,
                })
                .collect();
            FetchedPage {
                records: vec![Prepared::Record {
                    item: Box::new(xfhub_store::intake::petition_item(&p, &ring).unwrap()),
                    events,
                }],
                next_cursor: format!("c{k}"),
                has_more: true,
            }
        };
        let pages = vec![page(1, 700), page(2, 700)];
        let o = commit_pages(&store, "provincial", pages, &ring)
            .await
            .unwrap();
        assert_eq!(o.created, 2);
        let count = |sql: &'static str| {
            let store = store.clone();
            async move {
                let row = Stmt::new(sql)
                    .query()
                    .fetch_one(store.reader())
                    .await
                    .unwrap();
                row.try_get::<i64, _>(0).unwrap()
            }
        };
        assert_eq!(count("SELECT COUNT(*) FROM process_events").await, 1400);
        let state = read_state(&store, "provincial").await.unwrap().unwrap();
        assert_eq!(state.cursor, "c2");
        assert_eq!(state.totals.pages, 2);
        assert_eq!(state.totals.records, 2);
        // The same pages again: nothing twice.
        let pages = vec![page(1, 700), page(2, 700), page(3, 0)];
        let o = commit_pages(&store, "provincial", pages, &ring)
            .await
            .unwrap();
        assert_eq!((o.created, o.duplicates), (1, 2));
        assert_eq!(count("SELECT COUNT(*) FROM process_events").await, 1400);
        let state = read_state(&store, "provincial").await.unwrap().unwrap();
        assert_eq!((state.cursor.as_str(), state.totals.pages), ("c3", 5));
        store.close().await;
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for failures in 1..40 {
            let d = backoff(100, 10_000, failures).as_millis() as u64;
            let full = (100u64 << (failures - 1).min(30)).min(10_000);
            assert!(
                d >= full / 2 && d <= full,
                "{failures}: {d} not in {}..={full}",
                full / 2
            );
        }
        let samples: std::collections::HashSet<u128> = (0..50)
            .map(|_| backoff(1000, 60_000, 3).as_millis())
            .collect();
        assert!(samples.len() > 5, "jitter varies the delay: {samples:?}");
    }

    #[test]
    fn settings_are_checked_only_when_enabled() {
        let mut errors = Vec::new();
        PullSettings::default().validate("c", &mut errors);
        assert!(errors.is_empty());
        let s = PullSettings {
            enabled: true,
            url: "ftp://x".to_owned(),
            page_size: 101,
            backoff_base_ms: 0,
            breaker_failures: 0,
            code_map_file: Some("/nonexistent/map.toml".into()),
            ..PullSettings::default()
        };
        s.validate("c", &mut errors);
        let all = errors.join("\n");
        for want in [
            "c.url",
            "c.app_key",
            "c.secret",
            "c.page_size",
            "c.backoff_base_ms",
            "c.breaker_failures",
            "c.code_map_file",
        ] {
            assert!(all.contains(want), "{want} missing in {all}");
        }
    }
}
