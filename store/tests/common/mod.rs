//! Helpers shared by the store and bus test suites (`routes/tests/common/mod.rs` includes this
//! file by path).
//!
//! Every backend test gets a fresh database: a SQLite file in a temporary directory, or a
//! PostgreSQL database created on the server named by `XFHUB_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped when the test ends, even when it
//! fails. PostgreSQL tests fail, never skip, when the server cannot be reached.
#![allow(dead_code)] // reason: each test crate uses a different subset of these helpers

use std::future::Future;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;
use uuid::Uuid;
use xfhub_schemas::{sample_petition, sample_workorder, Petition, WorkOrder};
use xfhub_store::{IngestItem, IngestOutcome, Receipt, RecordKind, Store, StoreOptions};

/// Admin URL used when `XFHUB_TEST_PG_URL` is not set.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Longest a backend test may run before it is failed as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Generates, for each `case(store: Store)` function named, a module of the same name with two
/// tests, `sqlite` and `postgres`, each running the case on a fresh store of that backend
/// (test names `case_xxx::sqlite`, `case_xxx::postgres`).
macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (store, _dir) = $crate::common::sqlite_store().await;
                $crate::common::run_case(super::$case(store)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let (store, _db) = $crate::common::postgres_store().await;
                $crate::common::run_case(super::$case(store)).await;
            }
        }
    )*};
}

/// Like [`backend_tests!`], for cases that also need their database's URL (to reach it with
/// raw SQL beside the store): each `case(store: Store, url: String)`.
#[allow(unused_macros)] // reason: not every suite that includes this file uses it
macro_rules! backend_tests_with_url {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (store, dir) = $crate::common::sqlite_store().await;
                let url = $crate::common::sqlite_url(&dir);
                $crate::common::run_case(super::$case(store, url)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let (store, db) = $crate::common::postgres_store().await;
                let url = db.url.clone();
                $crate::common::run_case(super::$case(store, url)).await;
            }
        }
    )*};
}

/// Runs a case, failing it when it does not finish within [`CASE_TIMEOUT`].
pub async fn run_case(case: impl Future<Output = ()>) {
    if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
        panic!("test case did not finish within {CASE_TIMEOUT:?}");
    }
}

fn options(url: String) -> StoreOptions {
    StoreOptions {
        // Keeps many parallel PostgreSQL tests under the server's connection limit.
        read_connections: 2,
        ..StoreOptions::new(url)
    }
}

/// The URL of the SQLite database [`sqlite_store`] made in `dir`.
pub fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}/x.db", dir.path().display())
}

/// A store on a fresh SQLite file; keep the directory alive as long as the store.
pub async fn sqlite_store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = sqlite_url(&dir);
    let store = Store::open(options(url.clone()))
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    (store, dir)
}

/// A store on a fresh PostgreSQL database, dropped with the returned guard.
pub async fn postgres_store() -> (Store, PgDb) {
    postgres_store_with("").await
}

/// Like [`postgres_store`], with extra `CREATE DATABASE` options (template, locale, ...).
pub async fn postgres_store_with(create_options: &str) -> (Store, PgDb) {
    let db = PgDb::create(create_options).await;
    let store = Store::open(options(db.url.clone()))
        .await
        .unwrap_or_else(|e| panic!("open PostgreSQL database {}: {e}", db.name));
    (store, db)
}

pub fn pg_admin_url() -> String {
    std::env::var("XFHUB_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// `url` with its database name replaced by `db` (query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

async fn connect_admin(admin_url: &str) -> PgConnection {
    match tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL tests need a server: cannot connect to {admin_url}: {e} \
             (set XFHUB_TEST_PG_URL to an admin URL)"
        ),
        Err(_) => panic!(
            "PostgreSQL tests need a server: connecting to {admin_url} timed out \
             (set XFHUB_TEST_PG_URL to an admin URL)"
        ),
    }
}

/// A PostgreSQL database created for one test; dropped (best effort) when this is dropped.
#[derive(Debug)]
pub struct PgDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create(create_options: &str) -> PgDb {
        let admin_url = pg_admin_url();
        let name = format!("xfhub_t_{}", Uuid::now_v7().simple());
        let mut conn = connect_admin(&admin_url).await;
        let sql = format!("CREATE DATABASE {name} {create_options}");
        if let Err(e) = conn.execute(sql.as_str()).await {
            panic!("{sql}: {e}");
        }
        let _ = conn.close().await;
        let url = with_database(&admin_url, &name);
        PgDb {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime (or while unwinding from a failed assertion):
        // use a runtime of our own on a thread of our own.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let connect = PgConnection::connect(&admin_url);
                if let Ok(Ok(mut conn)) =
                    tokio::time::timeout(Duration::from_secs(10), connect).await
                {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(e) = conn.execute(sql.as_str()).await {
                        eprintln!("{sql}: {e}");
                    }
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// Runs one statement on the database at `url` (SQLite or PostgreSQL) over a connection of its
/// own, outside the store; returns the rows affected, or the database's error as text.
pub async fn raw_execute(url: &str, sql: &str) -> Result<u64, String> {
    use sqlx::SqliteConnection;
    let result = if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let r = conn.execute(sql).await.map(|r| r.rows_affected());
        let _ = conn.close().await;
        r
    } else {
        let mut conn = PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let r = conn.execute(sql).await.map(|r| r.rows_affected());
        let _ = conn.close().await;
        r
    };
    result.map_err(|e| e.to_string())
}

/// Hex SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The document of an ingest item, parsed.
pub fn value_of(data: &serde_json::value::RawValue) -> serde_json::Value {
    serde_json::from_str(data.get()).expect("an item's data is JSON")
}

/// The ingest item the hub would build for a validated petition.
pub fn petition_item(p: &Petition) -> IngestItem {
    let json = serde_json::to_string(p).expect("petition serializes");
    IngestItem {
        kind: RecordKind::Petition,
        source_system: p.source.system.clone(),
        source_id: p.source.id.clone(),
        version: p.source.version,
        digest: sha256_hex(&json),
        division: p.appeal.division.clone(),
        form: Some(p.appeal.form.clone()),
        purpose: Some(p.appeal.purpose.clone()),
        content_class: Some(p.appeal.content_class.clone()),
        status: p.status().as_str().to_owned(),
        occurred_on: p.acceptance.complaint_date.format("%Y-%m-%d").to_string(),
        data: serde_json::from_str(&json).expect("petition JSON parses"),
        correlation_id: None,
        blind: Vec::new(),
        audit: None,
        nonce: None,
    }
}

/// The ingest item the hub would build for a validated work order.
pub fn workorder_item(w: &WorkOrder) -> IngestItem {
    let json = serde_json::to_string(w).expect("work order serializes");
    IngestItem {
        kind: RecordKind::Workorder,
        source_system: w.source.system.clone(),
        source_id: w.source.id.clone(),
        version: w.source.version,
        digest: sha256_hex(&json),
        division: w.division.clone(),
        form: None,
        purpose: None,
        content_class: None,
        status: w.state.clone(),
        occurred_on: w.call_time.date_naive().format("%Y-%m-%d").to_string(),
        data: serde_json::from_str(&json).expect("work order JSON parses"),
        correlation_id: None,
        blind: Vec::new(),
        audit: None,
        nonce: None,
    }
}

/// Ingest item of `sample_petition(i)`.
pub fn sample_petition_item(i: u64) -> IngestItem {
    petition_item(&sample_petition(i))
}

/// Ingest item of `sample_workorder(i)`.
pub fn sample_workorder_item(i: u64) -> IngestItem {
    workorder_item(&sample_workorder(i))
}

/// Ingests an item that must be new, returning its receipt.
pub async fn ingest_new(store: &Store, item: IngestItem) -> Receipt {
    let source = format!("{}/{}", item.source_id, item.version);
    match store.ingest(item).await {
        Ok(IngestOutcome::Created(r)) => r,
        other => panic!("ingest of {source}: expected Created, got {other:?}"),
    }
}

/// Ingests `sample_petition(i)` for every `i` of `range`, one after the other.
pub async fn ingest_petitions(store: &Store, range: std::ops::Range<u64>) -> Vec<Receipt> {
    let mut out = Vec::new();
    for i in range {
        out.push(ingest_new(store, sample_petition_item(i)).await);
    }
    out
}

/// Polls `condition` every 10 ms until it holds; fails the test after `timeout`.
pub async fn wait_until<F, Fut>(mut condition: F, timeout: Duration, what: &str)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn with_database_replaces_the_path_only() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
