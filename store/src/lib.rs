//! Durable store of xfhub.
//!
//! One API over SQLite (default, WAL, `synchronous=FULL`) and PostgreSQL (`synchronous_commit=on`)
//! through sqlx's `Any` driver, so that every query is written once with `$N` placeholders; the
//! two backends differ only in their migration files.
//!
//! **Writes go through one writer task that commits in groups** (`writer.rs`): callers send an
//! operation and wait for its answer; the writer takes every operation that is waiting, applies
//! each inside its own savepoint of one transaction, commits once (one disk sync for the whole
//! group) and only then answers each caller. A caller is therefore told "done" only after its
//! change is durable, and the change log's sequence is strictly increasing in commit order.
//! Reads use a separate pool and never wait for the writer.

mod ext;
pub mod intake;
pub mod lease;
mod nonces;
mod read;
mod security;
mod writer;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use ext::{SqlValue, Stmt, Txn, TxnOutcome};
pub use lease::LeaseGuard;
pub use read::{DeadLetter, ImportError, ListQuery, OutboxRow, Page, StoredRecord, TrailHop};
pub use security::{AuditDraft, AuditRow, ClientRecord, ResealTable};
pub use writer::{
    Effect, ImportErrorItem, IngestItem, IngestOutcome, LeasedMessage, Receipt, ReceiptStatus,
};

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of the store. Business outcomes (duplicate, conflict) are not errors: see
/// [`IngestOutcome`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("not found")]
    NotFound,
    #[error("the store is shutting down")]
    Closed,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Most operations committed in one transaction.
    pub max_batch: usize,
    /// Connections of the read pool.
    pub read_connections: u32,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_batch: 512,
            read_connections: 4,
        }
    }
}

/// Hex digits of a blind-index digest that `pii_index` keeps: the first 128 bits of the keyed
/// digest (migration 0012 says why).
const PII_KEY_HEX: usize = 32;

/// The key under which `pii_index` holds a blind-index digest ([`xfhub_security`]'s
/// `KeyRing::blind_index`): its first [`PII_KEY_HEX`] hex digits. Writers and lookups both go
/// through here.
pub fn pii_key(digest: &str) -> &str {
    digest.get(..PII_KEY_HEX).unwrap_or(digest)
}

/// The store: a read pool and a handle to the group-commit writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    read: AnyPool,
    writer: mpsc::Sender<writer::Job>,
}

static DRIVERS: Once = Once::new();

fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl(
            url.split(':').next().unwrap_or_default().to_owned(),
        ))
    }
}

/// SQLite page cache of the writer's connection, KiB.
const WRITER_CACHE_KIB: u32 = 8 * 1024;
/// Dirty pages the writer's transaction may hold before SQLite spills them (64 MiB of 4 KiB
/// pages).
const WRITER_SPILL_PAGES: u32 = 16_384;
/// SQLite page cache of each read connection, KiB.
const READER_CACHE_KIB: u32 = 1024;

/// Which side of the store a pool serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

async fn pool(backend: Backend, url: &str, connections: u32, role: Role) -> Result<AnyPool> {
    let cache_kib = match role {
        Role::Writer => WRITER_CACHE_KIB,
        Role::Reader => READER_CACHE_KIB,
    };
    let pool = AnyPoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                match backend {
                    // FULL: a commit is on disk when it returns (power-loss safe).
                    Backend::Sqlite => {
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=FULL").await?;
                        conn.execute("PRAGMA busy_timeout=10000").await?;
                        // Checkpoints run beside the writer (`checkpoints`), not in the committing
                        // connection, where the writer would stall behind them.
                        // A backstop only: if the background checkpoints fall far behind
                        // (readers holding old snapshots), the writer checkpoints itself.
                        conn.execute("PRAGMA wal_autocheckpoint=131072").await?;
                        // Truncate the log back to 64 MiB after a checkpoint reset it.
                        conn.execute("PRAGMA journal_size_limit=67108864").await?;
                        // Page cache: the writer's holds the index pages every commit touches
                        // (with 1 MiB it read them back from the OS cache, copying, for every
                        // group: 20 % slower pulls); a reader's stays small, memory matters
                        // more there (the OS caches the file anyway).
                        conn.execute(format!("PRAGMA cache_size=-{cache_kib}").as_str())
                            .await?;
                        // The writer's statement journals (the undo of one statement inside a
                        // group's transaction) stay in memory: on disk they were a third of its
                        // write calls, for data no one reads after the commit. Readers keep
                        // temporary files on disk: a large sort (an export filtered off its
                        // index) must spill to disk, not grow the process.
                        if role == Role::Writer {
                            conn.execute("PRAGMA temp_store=MEMORY").await?;
                            // A large group (an import batch dirties about 4,000 pages) keeps
                            // its dirty pages in memory up to 64 MiB instead of spilling them
                            // to the log mid-transaction once the cache is full, to write them
                            // again at commit: spills were 8 % of an import's CPU time. The
                            // pages above `cache_size` are freed as the commit releases them.
                            conn.execute(
                                format!("PRAGMA cache_spill={WRITER_SPILL_PAGES}").as_str(),
                            )
                            .await?;
                        }
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                    }
                    Backend::Postgres => {
                        conn.execute("SET synchronous_commit = on").await?;
                    }
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

fn sqlite_url_with_create(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the store, and starts its writer.
    pub async fn open(opts: StoreOptions) -> Result<Store> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = backend_of(&opts.url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_url_with_create(&opts.url),
            Backend::Postgres => opts.url.clone(),
        };
        let write = pool(backend, &url, 1, Role::Writer).await?;
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator
            .run(&write)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let read = pool(backend, &url, opts.read_connections.max(1), Role::Reader).await?;
        let (tx, rx) = mpsc::channel(opts.max_batch * 8);
        let activity = Activity::default();
        tokio::spawn(writer::run(
            write,
            rx,
            opts.max_batch.max(1),
            backend == Backend::Sqlite,
            activity.clone(),
        ));
        if backend == Backend::Sqlite {
            tokio::spawn(checkpoints(
                read.clone(),
                tx.downgrade(),
                activity,
                wal_path(&opts.url),
            ));
        }
        Ok(Store {
            backend,
            read,
            writer: tx,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.read).await.is_ok()
    }

    /// Drops this handle's side of the writer channel and closes the read pool. The writer
    /// commits what it holds and stops once the last clone is gone; callers still waiting for a
    /// write keep their clone, so nothing queued is dropped.
    pub async fn close(self) {
        let Store { read, writer, .. } = self;
        drop(writer);
        read.close().await;
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> writer::Job,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// When the writer last committed (ms), for the checkpointer to find quiet moments.
pub(crate) type Activity = Arc<AtomicI64>;

/// Quiet time after the last commit before a checkpoint runs.
const CHECKPOINT_QUIET_MS: i64 = 200;
/// WAL size beyond which a checkpoint runs even under load.
const CHECKPOINT_WAL_CAP: u64 = 256 * 1024 * 1024;
/// Least time between two checkpoints while the log is past [`CHECKPOINT_WAL_CAP`].
const CHECKPOINT_LARGE_EVERY_MS: i64 = 1000;

/// Copies the SQLite write-ahead log into the database file in the background, so that
/// commits never wait for it. A checkpoint syncs the database file, and on ext4 that sync and
/// the writer's log syncs queue behind one another: measured, checkpoints every 500 ms under
/// load turned a 28 ms p99 into 80 ms. So checkpoints run when the writer has been quiet for
/// a moment, or when the log passes 256 MiB. A PASSIVE checkpoint never blocks the writer or
/// the readers. Stops when the store is gone.
async fn checkpoints(
    read: AnyPool,
    writer: mpsc::WeakSender<writer::Job>,
    activity: Activity,
    wal: Option<PathBuf>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_checkpoint = 0;
    loop {
        tick.tick().await;
        if writer.upgrade().is_none() || read.is_closed() {
            return;
        }
        let last_commit = activity.load(Ordering::Relaxed);
        if last_commit <= last_checkpoint {
            continue; // nothing new in the log
        }
        let quiet = now_ms() - last_commit >= CHECKPOINT_QUIET_MS;
        let large = wal
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.len() >= CHECKPOINT_WAL_CAP);
        // Past the cap, once a second. Under steady commits a passive checkpoint rarely
        // catches up with the writer, so the log is not restarted and stays past the cap:
        // without the pause every tick checkpointed, syncing the database file ten times a
        // second and copying the same hot pages each time (an import wrote 15-25 % more).
        let due = large && now_ms() - last_checkpoint >= CHECKPOINT_LARGE_EVERY_MS;
        if !(quiet || due) {
            continue;
        }
        last_checkpoint = now_ms();
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&read)
            .await
        {
            tracing::warn!(error = %e, "StoreCheckpointError");
        }
    }
}

/// The `-wal` file of a SQLite URL.
fn wal_path(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(format!("{path}-wal")))
}

/// Milliseconds since the epoch, the store's time unit.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad uuid {s:?}: {e}")))
}

/// Kind of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Petition,
    Workorder,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Petition => "petition",
            RecordKind::Workorder => "workorder",
        }
    }
}
