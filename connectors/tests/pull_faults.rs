//! End to end: both pull connectors against the in-process mocks, under each fault mode, on
//! both backends. Afterwards the store holds exactly the valid records the mocks served (by
//! source id and latest version), each stored version was published exactly once, and every
//! malformed record is in the import-error store once, with its reasons.

#[path = "../../store/tests/common/mod.rs"]
#[macro_use]
mod common;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use verify::{verify, verify_events};
use xfhub_connectors::pull::{read_state, PullSettings};
use xfhub_connectors::{Connectors, ConnectorsConfig};
use xfhub_mocks::faults::{Credentials, Faults};
use xfhub_mocks::hotline12345::{update_time, HotlineConfig, HotlineMock};
use xfhub_mocks::provincial::{DocEncoding, ProvincialConfig, ProvincialMock};
use xfhub_security::keys::KeyRing;
use xfhub_store::Store;

const RECORDS: u64 = 400;
const CATCH_UP: Duration = Duration::from_secs(90);

fn creds(name: &str) -> Credentials {
    Credentials {
        app_key: format!("hub-{name}"),
        secret: format!("secret-of-{name}"),
    }
}

fn settings(url: String, name: &str) -> PullSettings {
    let c = creds(name);
    PullSettings {
        enabled: true,
        url,
        app_key: c.app_key,
        secret: c.secret,
        interval_ms: 30,
        page_size: 50,
        timeout_ms: 800,
        backoff_base_ms: 5,
        backoff_max_ms: 80,
        breaker_failures: 4,
        breaker_open_ms: 150,
        ..PullSettings::default()
    }
}

struct Run {
    provincial: ProvincialMock,
    hotline: HotlineMock,
    connectors: Connectors,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

async fn start(store: &Store, ring: Arc<KeyRing>, faults: Faults, encoding: DocEncoding) -> Run {
    let provincial = ProvincialMock::start(ProvincialConfig {
        seed: 11,
        records: RECORDS,
        credentials: creds("provincial"),
        encoding,
        ledger: true,
        faults: faults.clone(),
        ..ProvincialConfig::default()
    })
    .await
    .expect("start the provincial mock");
    let hotline = HotlineMock::start(HotlineConfig {
        seed: 12,
        records: RECORDS,
        credentials: creds("hotline12345"),
        ledger: true,
        faults,
        ..HotlineConfig::default()
    })
    .await
    .expect("start the 12345 mock");
    let connectors = Connectors::new(&ConnectorsConfig {
        provincial: settings(provincial.url(), "provincial"),
        hotline12345: settings(hotline.url(), "hotline12345"),
    })
    .expect("connectors");
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    connectors.start(
        &mut tasks,
        store,
        Arc::new(move || ring.clone()),
        Arc::new(|| {}),
        &stop,
    );
    Run {
        provincial,
        hotline,
        connectors,
        stop,
        tasks,
    }
}

/// Waits until both connectors committed a cursor at the end of their mock's feed.
async fn wait_caught_up(store: &Store, run: &Run) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let p = read_state(store, "provincial")
            .await
            .unwrap()
            .map(|r| r.cursor);
        let h = read_state(store, "hotline12345")
            .await
            .unwrap()
            .map(|r| r.cursor);
        let p_end = run.provincial.core.feed_len().to_string();
        let h_end = update_time(run.hotline.core.feed_len());
        if p.as_deref() == Some(p_end.as_str()) && h.as_deref() == Some(h_end.as_str()) {
            return;
        }
        if Instant::now() > deadline {
            let statuses = run.connectors.statuses(store).await;
            panic!(
                "not caught up within {CATCH_UP:?}: provincial {p:?} / {p_end}, 12345 {h:?} / {h_end}\n{}",
                serde_json::to_string_pretty(&statuses).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_mode(store: Store, faults: Faults, encoding: DocEncoding) -> (usize, usize) {
    let ring = Arc::new(KeyRing::generate());
    let mut run = start(&store, ring, faults, encoding).await;
    wait_caught_up(&store, &run).await;
    run.stop.cancel();
    while run.tasks.join_next().await.is_some() {}
    let (p_ok, p_bad) = verify(&store, "provincial", &run.provincial.core.ledger()).await;
    verify_events(&store, &run.provincial).await;
    let (h_ok, h_bad) = verify(&store, "hotline12345", &run.hotline.core.ledger()).await;
    (p_ok + h_ok, p_bad + h_bad)
}

fn faults(f: impl FnOnce(&mut Faults)) -> Faults {
    let mut x = Faults::default();
    f(&mut x);
    x
}

async fn no_faults(store: Store) {
    let (ok, bad) = run_mode(store, Faults::default(), DocEncoding::Utf8).await;
    assert_eq!((ok, bad), (2 * RECORDS as usize, 0));
}

async fn gbk_documents(store: Store) {
    let (ok, _) = run_mode(store, Faults::default(), DocEncoding::Gbk).await;
    assert_eq!(ok, 2 * RECORDS as usize);
}

async fn latency(store: Store) {
    run_mode(store, faults(|f| f.latency_ms = 15), DocEncoding::Utf8).await;
}

async fn server_errors(store: Store) {
    run_mode(store, faults(|f| f.error_share = 0.35), DocEncoding::Utf8).await;
}

async fn timeouts(store: Store) {
    run_mode(
        store,
        faults(|f| {
            f.timeout_share = 0.2;
            f.timeout_ms = 2_000;
        }),
        DocEncoding::Utf8,
    )
    .await;
}

async fn connection_resets(store: Store) {
    run_mode(store, faults(|f| f.reset_share = 0.35), DocEncoding::Gbk).await;
}

async fn duplicates_across_pages(store: Store) {
    run_mode(
        store,
        faults(|f| f.duplicate_share = 0.3),
        DocEncoding::Utf8,
    )
    .await;
}

async fn updates_between_pages(store: Store) {
    let (ok, _) = run_mode(store, faults(|f| f.update_share = 0.5), DocEncoding::Utf8).await;
    assert_eq!(ok, 2 * RECORDS as usize);
}

async fn malformed_records(store: Store) {
    let (_, bad) = run_mode(
        store,
        faults(|f| f.malformed_share = 0.15),
        DocEncoding::Utf8,
    )
    .await;
    assert!(bad > 20, "malformed records were served: {bad}");
}

async fn malformed_in_gbk(store: Store) {
    let (_, bad) = run_mode(
        store,
        faults(|f| f.malformed_share = 0.15),
        DocEncoding::Gbk,
    )
    .await;
    assert!(bad > 20, "malformed records were served: {bad}");
}

async fn expired_signatures(store: Store) {
    run_mode(
        store,
        faults(|f| f.expired_signature_share = 0.35),
        DocEncoding::Utf8,
    )
    .await;
}

async fn rate_limits(store: Store) {
    run_mode(
        store,
        faults(|f| {
            f.rate_limit_share = 0.25;
            f.retry_after_secs = 0;
        }),
        DocEncoding::Utf8,
    )
    .await;
}

async fn every_fault_at_once(store: Store) {
    run_mode(
        store,
        Faults {
            latency_ms: 2,
            error_share: 0.1,
            timeout_share: 0.05,
            timeout_ms: 2_000,
            reset_share: 0.1,
            duplicate_share: 0.2,
            update_share: 0.3,
            malformed_share: 0.1,
            expired_signature_share: 0.1,
            rate_limit_share: 0.1,
            retry_after_secs: 0,
            ..Faults::default()
        },
        DocEncoding::Gbk,
    )
    .await;
}

backend_tests!(
    no_faults,
    gbk_documents,
    latency,
    server_errors,
    timeouts,
    connection_resets,
    duplicates_across_pages,
    updates_between_pages,
    malformed_records,
    malformed_in_gbk,
    expired_signatures,
    rate_limits,
    every_fault_at_once,
);
