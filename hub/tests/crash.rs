//! Process-level delivery guarantees (DESIGN.md "Delivery guarantees"), against the real
//! `xfhub` binary: nothing acknowledged is lost by `kill -9`, nothing unacknowledged is
//! half-stored, every message's effect happens exactly once across a crash, SIGTERM drains and
//! exits 0, and a bad configuration is refused by name. Every request is signed as a client
//! with every scope (see `support`), and no identity number or mobile of a submitted petition
//! may appear in the hubs' logs, which run at debug level.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinSet;

use support::{
    assert_logs_free_of_pii, create_client, petition_source_id, pii_in_logs, Answer, Api,
    HubProcess, SETTLE_TIMEOUT, VERIFY_CONCURRENCY,
};

/// What one submission got before the hub went away.
#[derive(Debug, Clone)]
enum Outcome {
    /// 2xx with this receipt: the hub promised the petition is stored.
    Acked(Value),
    /// A transport failure or a non-2xx answer: no promise was made.
    Unacked(String),
}

/// Counters shared by the client tasks and the test that watches them.
#[derive(Debug, Default)]
struct Load {
    next: AtomicU64,
    acked: AtomicUsize,
    in_flight: AtomicUsize,
    /// Set once the hub was told to stop; a client then stops at its first failure.
    stopping: AtomicBool,
    /// Non-2xx HTTP answers (not transport failures), for diagnostics.
    http_errors: std::sync::Mutex<Vec<(u64, Answer)>>,
}

/// Starts `clients` tasks submitting distinct petitions `0..n` as fast as they can. Each
/// result is (petition index, outcome). With `stop_at_failure`, a client quits at its first
/// failure after `Load::stopping` was set; otherwise clients run through every index.
fn start_load(
    api: &Api,
    load: &Arc<Load>,
    n: u64,
    clients: usize,
    stop_at_failure: bool,
) -> JoinSet<Vec<(u64, Outcome)>> {
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let (api, load) = (api.clone(), load.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = load.next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                load.in_flight.fetch_add(1, Ordering::SeqCst);
                let result = api.submit_petition(i).await;
                load.in_flight.fetch_sub(1, Ordering::SeqCst);
                let outcome = match result {
                    Ok(a) if a.is_success() => {
                        load.acked.fetch_add(1, Ordering::SeqCst);
                        Outcome::Acked(a.body)
                    }
                    Ok(a) => {
                        let why = format!("HTTP {}: {}", a.status, a.body);
                        load.http_errors.lock().expect("lock").push((i, a));
                        Outcome::Unacked(why)
                    }
                    Err(e) => Outcome::Unacked(e),
                };
                let failed = matches!(outcome, Outcome::Unacked(_));
                out.push((i, outcome));
                if failed && stop_at_failure && load.stopping.load(Ordering::SeqCst) {
                    break;
                }
            }
            out
        });
    }
    set
}

/// Waits for every client task; fails rather than hangs.
async fn join_load(mut set: JoinSet<Vec<(u64, Outcome)>>) -> HashMap<u64, Outcome> {
    let joined = tokio::time::timeout(SETTLE_TIMEOUT, async {
        let mut all = HashMap::new();
        while let Some(r) = set.join_next().await {
            for (i, o) in r.expect("client task") {
                assert!(all.insert(i, o).is_none(), "petition {i} submitted twice");
            }
        }
        all
    })
    .await;
    joined.expect("the client tasks did not finish in time")
}

/// Waits until `pred` holds, polling; panics after `timeout`.
async fn wait_until(what: &str, timeout: Duration, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

/// How many submissions failed for each reason (transport error or HTTP status), for the
/// test's report.
fn failure_reasons(outcomes: &HashMap<u64, Outcome>) -> Vec<(String, usize)> {
    let mut by_reason: HashMap<String, usize> = HashMap::new();
    for o in outcomes.values() {
        if let Outcome::Unacked(why) = o {
            // Drop reqwest's "error sending request for url (...): " prefix.
            let why = why.split_once("): ").map_or(why.as_str(), |(_, rest)| rest);
            *by_reason.entry(why.to_owned()).or_default() += 1;
        }
    }
    let mut v: Vec<_> = by_reason.into_iter().collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.1));
    v
}

/// After a restart, proves the guarantees over everything the clients submitted:
///
/// - every acknowledged petition is stored under its receipt id with its source id, and a
///   repeat of it answers 200 with the very same receipt;
/// - every unacknowledged petition, resubmitted, is either new (201) or was wholly stored
///   before the hub went away (200 with its receipt): never a conflict or a server error;
/// - the listing holds exactly one record per submitted petition, and the message of every
///   record reached its consumer exactly once.
///
/// Returns how many unacknowledged petitions turned out to be stored already.
async fn verify_after_restart(api: &Api, outcomes: &HashMap<u64, Outcome>) -> usize {
    let acked: Vec<(u64, Value)> = outcomes
        .iter()
        .filter_map(|(i, o)| match o {
            Outcome::Acked(r) => Some((*i, r.clone())),
            Outcome::Unacked(_) => None,
        })
        .collect();
    let unacked: Vec<u64> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Unacked(_)))
        .map(|(i, _)| *i)
        .collect();

    // (a) Every acknowledged petition is stored, and its repeat gets the first receipt.
    stream::iter(acked.iter())
        .for_each_concurrent(VERIFY_CONCURRENCY, |(i, receipt)| async move {
            let id = str_of(receipt, "id");
            let stored = api.get_ok(&format!("/api/v1/petitions/{id}")).await;
            assert_eq!(stored["id"], receipt["id"], "petition {i}");
            assert_eq!(
                stored["data"]["source"]["id"],
                petition_source_id(*i).as_str(),
                "petition {i}: record {id} holds another source id"
            );
            let again = api.submit_petition(*i).await.expect("resubmit");
            assert_eq!(
                again.status, 200,
                "repeat of acknowledged petition {i}: {again:?}"
            );
            assert_eq!(
                &again.body, receipt,
                "repeat of petition {i}: another receipt"
            );
        })
        .await;

    // (b) The message of every acknowledged petition is consumed, exactly once.
    let acked_messages: Vec<String> = acked
        .iter()
        .map(|(_, r)| str_of(r, "message_id").to_owned())
        .collect();
    api.assert_each_consumed_exactly_once(&acked_messages).await;

    // (c) Nothing unacknowledged is half-stored: a resubmission is new or the whole first
    // receipt, never a conflict (a version stored without its record) or a server error.
    let resubmitted: Vec<(u64, Answer)> = stream::iter(unacked.iter().copied())
        .map(|i| async move { (i, api.submit_petition(i).await.expect("resubmit")) })
        .buffer_unordered(VERIFY_CONCURRENCY)
        .collect()
        .await;
    let bad: Vec<_> = resubmitted
        .iter()
        .filter(|(_, a)| a.status != 201 && a.status != 200)
        .collect();
    assert!(
        bad.is_empty(),
        "{} unacknowledged petitions were refused on resubmission, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let mut stored_before = 0;
    for (i, a) in &resubmitted {
        let r = &a.body;
        assert_eq!(str_of(r, "source_id"), petition_source_id(*i), "{a:?}");
        assert_eq!(str_of(r, "kind"), "petition", "{a:?}");
        assert_eq!(r["version"], 1, "{a:?}");
        // A 200 is the receipt of the first (unanswered) submission: it created the record.
        assert_eq!(str_of(r, "status"), "created", "{a:?}");
        if a.status == 200 {
            stored_before += 1;
        }
    }

    // Every submitted petition is now stored exactly once, and its message consumed once.
    let receipts: HashMap<String, (u64, Value)> = acked
        .iter()
        .cloned()
        .chain(resubmitted.into_iter().map(|(i, a)| (i, a.body)))
        .map(|(i, r)| (str_of(&r, "id").to_owned(), (i, r)))
        .collect();
    assert_eq!(
        receipts.len(),
        outcomes.len(),
        "two petitions got the same hub id"
    );
    let listed = api.list_all_petitions().await;
    assert_eq!(
        listed.len(),
        outcomes.len(),
        "records stored vs distinct petitions submitted"
    );
    for record in &listed {
        let id = str_of(record, "id");
        let (i, _) = receipts
            .get(id)
            .unwrap_or_else(|| panic!("record {id} was stored but no receipt names it"));
        assert_eq!(
            record["data"]["source"]["id"],
            petition_source_id(*i).as_str(),
            "record {id}"
        );
    }
    let sources: HashSet<&str> = listed
        .iter()
        .filter_map(|r| r["data"]["source"]["id"].as_str())
        .collect();
    assert_eq!(
        sources.len(),
        listed.len(),
        "a source record is stored twice"
    );
    let all_messages: Vec<String> = receipts
        .values()
        .map(|(_, r)| str_of(r, "message_id").to_owned())
        .collect();
    api.assert_each_consumed_exactly_once(&all_messages).await;

    // No message was given up on along the way.
    let dead = api.get_ok("/admin/dead-letters?all=true").await;
    assert_eq!(dead, Value::Array(Vec::new()), "dead letters after a crash");
    stored_before
}

fn data_dirs() -> (TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    (root, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_nothing_acknowledged() {
    const N: u64 = 3000;
    const CLIENTS: usize = 32;
    let started = Instant::now();
    let (root, data) = data_dirs();
    let credentials = create_client(&data).await;
    let mut hub = HubProcess::start(&data, root.path(), &credentials).await;
    let api = hub.api();

    let load = Arc::new(Load::default());
    let clients = start_load(&api, &load, N, CLIENTS, false);
    // Kill after a third of the petitions were acknowledged, or a second after the first one:
    // either way while the clients are still sending.
    wait_until("the first acknowledgement", SETTLE_TIMEOUT, || {
        load.acked.load(Ordering::SeqCst) > 0
    })
    .await;
    let first_ack = Instant::now();
    wait_until("a third of the petitions", SETTLE_TIMEOUT, || {
        load.acked.load(Ordering::SeqCst) >= (N / 3) as usize
            || first_ack.elapsed() > Duration::from_secs(1)
    })
    .await;
    let in_flight = load.in_flight.load(Ordering::SeqCst);
    hub.kill9().await;
    let outcomes = join_load(clients).await;
    assert_eq!(outcomes.len() as u64, N, "every petition was tried once");
    let acked = outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Acked(_)))
        .count();
    let http_errors = load.http_errors.lock().expect("lock").clone();
    assert!(
        http_errors.is_empty(),
        "the hub answered errors before the kill: {:?}",
        &http_errors[..http_errors.len().min(5)]
    );
    assert!(
        acked > 0 && acked < N as usize,
        "the kill must fall mid-stream: {acked} of {N} acknowledged"
    );
    let crashed_stderr = hub.stderr();
    drop(hub);

    let hub = HubProcess::start(&data, root.path(), &credentials).await;
    let stored_before = verify_after_restart(&hub.api(), &outcomes).await;
    eprintln!(
        "kill -9 after {acked} of {N} acknowledged with {in_flight} requests in flight; \
         {stored_before} unacknowledged petitions had been stored whole; {:.1?} in all; \
         failures: {:?}",
        started.elapsed(),
        failure_reasons(&outcomes)
    );
    assert!(
        !hub.stderr().contains("panicked"),
        "the restarted hub panicked:\n{}\n--- before the kill ---\n{crashed_stderr}",
        hub.stderr()
    );
    drop(hub);
    assert_logs_free_of_pii(root.path(), outcomes.keys().copied());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_and_exits() {
    // An upper bound: the clients stop once the hub stops answering.
    const N: u64 = 100_000;
    const CLIENTS: usize = 4;
    let started = Instant::now();
    let (root, data) = data_dirs();
    let credentials = create_client(&data).await;
    let mut hub = HubProcess::start(&data, root.path(), &credentials).await;
    let api = hub.api();

    let load = Arc::new(Load::default());
    let clients = start_load(&api, &load, N, CLIENTS, true);
    wait_until("200 acknowledgements", SETTLE_TIMEOUT, || {
        load.acked.load(Ordering::SeqCst) >= 200
    })
    .await;
    load.stopping.store(true, Ordering::SeqCst);
    let term_at = Instant::now();
    hub.sigterm();
    let status = hub.wait_exit(Duration::from_secs(30)).await;
    let exit_took = term_at.elapsed();
    let stderr = hub.stderr();
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}\n--- hub stderr ---\n{stderr}"
    );
    assert!(
        stderr.contains("HubStopped") && !stderr.contains("ShutdownGraceExceeded"),
        "the hub did not stop in order:\n{stderr}"
    );
    let outcomes = join_load(clients).await;
    let acked = outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Acked(_)))
        .count();
    // Requests the hub accepted before it stopped are answered, not dropped or failed.
    let http_errors = load.http_errors.lock().expect("lock").clone();
    assert!(
        http_errors.is_empty(),
        "the draining hub answered errors: {:?}",
        &http_errors[..http_errors.len().min(5)]
    );
    drop(hub);

    // Draining publishes everything that committed: no outbox row is left unsent.
    {
        let url = format!("sqlite://{}", data.join("xfhub.db").display());
        let store = xfhub_store::Store::open(xfhub_store::StoreOptions::new(url))
            .await
            .expect("open the store of the stopped hub");
        let (_, unsent) = store.depths().await.expect("depths");
        assert_eq!(unsent, 0, "outbox rows left unpublished by a graceful stop");
        store.close().await;
    }

    let hub = HubProcess::start(&data, root.path(), &credentials).await;
    let stored_before = verify_after_restart(&hub.api(), &outcomes).await;
    // A graceful stop gives back what the consumer leased but did not handle: no message
    // acknowledged before SIGTERM was delivered twice or had an attempt used up.
    for outcome in outcomes.values() {
        let Outcome::Acked(receipt) = outcome else {
            continue;
        };
        let message_id = str_of(receipt, "message_id");
        let trail = hub
            .api()
            .get_ok(&format!("/admin/messages/{message_id}/trail"))
            .await;
        let attempts: Vec<i64> = trail["hops"]
            .as_array()
            .expect("hops")
            .iter()
            .filter(|h| h["hop"] == "delivered")
            .map(|h| h["attempt"].as_i64().expect("attempt"))
            .collect();
        assert!(
            attempts.iter().all(|a| *a == 1),
            "message {message_id} used more than one attempt across a graceful stop: {trail}"
        );
    }
    eprintln!(
        "SIGTERM after {acked} of {} acknowledged; exit 0 in {exit_took:.1?}; \
         {stored_before} unacknowledged petitions had been stored; {:.1?} in all; \
         failures: {:?}",
        outcomes.len(),
        started.elapsed(),
        failure_reasons(&outcomes)
    );
    drop(hub);
    assert_logs_free_of_pii(root.path(), outcomes.keys().copied());
}

#[tokio::test]
async fn bad_config_is_rejected_with_field_name() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("xfhub.toml");
    std::fs::write(&config, "[bus]\nprefetchh = 3\n").expect("write the config");
    let data = root.path().join("data");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_xfhub"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        // Should the file be accepted after all, the hub must not touch ./data or port 8080.
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(listen.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("a bad configuration must make the hub exit at once, not serve")
        .expect("run xfhub");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit status {}: {stderr}",
        out.status
    );
    assert!(
        stderr.contains("prefetchh"),
        "stderr must name the unknown field: {stderr}"
    );
    assert!(
        stderr.contains(&config.display().to_string()),
        "stderr must name the file: {stderr}"
    );
    assert!(
        !data.exists(),
        "a refused configuration created the data dir"
    );
}

/// The log check has teeth: an identity number or a mobile (with or without a country prefix)
/// of a submitted petition anywhere in a hub log fails it; other petitions' numbers do not.
#[test]
fn log_check_finds_personal_numbers() {
    let p = xfhub_schemas::sample_petition(7);
    let c = &p.complainants[0];
    let id = c
        .id_number
        .clone()
        .expect("the sample has an identity number");
    let mobile = c.mobile.clone().expect("the sample has a mobile");
    let other = xfhub_schemas::sample_petition(8).complainants[0]
        .mobile
        .clone()
        .expect("a mobile");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("hub-0.stderr");
    std::fs::write(&log, format!("INFO RequestDone mobile={other}\n")).expect("write");
    assert_logs_free_of_pii(dir.path(), [7]);
    for leak in [
        format!("DEBUG body: {{\"id_number\":\"{id}\"}}"),
        format!("WARN caller=+86{mobile} denied"),
        format!("x{mobile}"),
    ] {
        std::fs::write(&log, format!("INFO start\n{leak}\nINFO end\n")).expect("write");
        let (found, logs, _, petitions) = pii_in_logs(dir.path(), [6, 7]);
        assert_eq!((logs, petitions), (1, 2));
        assert_eq!(found.len(), 1, "{leak}: {found:?}");
        assert!(
            found[0].contains("of petition 7 in: ") && found[0].ends_with(&leak),
            "{leak}: {found:?}"
        );
    }
}
