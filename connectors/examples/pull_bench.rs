//! Pull benchmark: records per second pulled, mapped and committed from each mock (no injected
//! latency) into a fresh SQLite store, against the transform alone (parse, map, validate,
//! seal: pure CPU, one thread) measured in the same run; and the process's resident memory
//! over the pull.
//!
//! `cargo run --release -p xfhub-connectors --example pull_bench -- [RECORDS] [provincial|hotline12345|both]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xfhub_connectors::pull::{read_state, MapContext, PullSettings};
use xfhub_connectors::{Connectors, ConnectorsConfig};
use xfhub_mocks::faults::Credentials;
use xfhub_mocks::generator::Generator;
use xfhub_mocks::hotline12345::{update_time, HotlineConfig, HotlineMock};
use xfhub_mocks::provincial::{ProvincialConfig, ProvincialMock};
use xfhub_mocks::render::{hotline_json, provincial_xml};
use xfhub_schemas::CodeTables;
use xfhub_security::keys::KeyRing;
use xfhub_store::{Store, StoreOptions};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn creds() -> Credentials {
    Credentials {
        app_key: "bench".to_owned(),
        secret: "bench-secret".to_owned(),
    }
}

fn settings(url: String, enabled: bool) -> PullSettings {
    PullSettings {
        enabled,
        url,
        app_key: "bench".to_owned(),
        secret: "bench-secret".to_owned(),
        interval_ms: 1000,
        page_size: 100,
        ..PullSettings::default()
    }
}

/// The transform alone, one thread: records/s of parse + map + validate + seal.
fn transform_alone(which: &str, n: u64) -> f64 {
    let ring = Arc::new(KeyRing::generate());
    let g = Generator::new(7);
    let cx_p = xfhub_transforms::provincial::embedded_map().clone();
    let cx_h = xfhub_transforms::hotline12345::embedded_map().clone();
    let settings = settings("http://127.0.0.1:9".to_owned(), false);
    let (source, map) = if which == "provincial" {
        (
            xfhub_connectors::provincial::source(&settings).unwrap(),
            cx_p,
        )
    } else {
        (
            xfhub_connectors::hotline12345::source(&settings).unwrap(),
            cx_h,
        )
    };
    let cx = MapContext {
        map: Arc::new(map.clone()),
        ring,
        tables: CodeTables::embedded(),
    };
    // Inputs prepared beforehand: only the transform is timed.
    let inputs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            if which == "provincial" {
                provincial_xml(&g.petition(i, 1 + (i % 5) as u32), &map, None).into_bytes()
            } else {
                serde_json::to_vec(&hotline_json(
                    &g.workorder(i, 1 + (i % 5) as u32),
                    &map,
                    &update_time(i + 1),
                    None,
                ))
                .unwrap()
            }
        })
        .collect();
    let t = Instant::now();
    let mut ok = 0;
    for raw in &inputs {
        if matches!(
            source.prepare(raw, &cx),
            xfhub_connectors::pull::Prepared::Record { .. }
        ) {
            ok += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every generated record maps");
    n as f64 / secs
}

async fn pull(which: &str, n: u64) -> (f64, Vec<(u64, f64)>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(StoreOptions::new(url)).await.unwrap();
    let ring = Arc::new(KeyRing::generate());
    let (cfg, end): (ConnectorsConfig, Box<dyn Fn() -> String>) = if which == "provincial" {
        let m = ProvincialMock::start(ProvincialConfig {
            records: n,
            credentials: creds(),
            ..ProvincialConfig::default()
        })
        .await
        .unwrap();
        let end = m.core.feed_len().to_string();
        (
            ConnectorsConfig {
                provincial: settings(m.url(), true),
                hotline12345: settings(String::new(), false),
            },
            Box::new(move || end.clone()),
        )
    } else {
        let m = HotlineMock::start(HotlineConfig {
            records: n,
            credentials: creds(),
            ..HotlineConfig::default()
        })
        .await
        .unwrap();
        let end = update_time(m.core.feed_len());
        (
            ConnectorsConfig {
                provincial: settings(String::new(), false),
                hotline12345: settings(m.url(), true),
            },
            Box::new(move || end.clone()),
        )
    };
    let connectors = Connectors::new(&cfg).unwrap();
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let t = Instant::now();
    connectors.start(
        &mut tasks,
        &store,
        Arc::new(move || ring.clone()),
        Arc::new(|| {}),
        &stop,
    );
    let mut samples = Vec::new();
    let mut next_sample = Instant::now();
    loop {
        let state = read_state(&store, which).await.unwrap();
        let records = state.as_ref().map_or(0, |s| s.totals.records as u64);
        if Instant::now() >= next_sample {
            samples.push((records, rss_mib()));
            next_sample += Duration::from_secs(2);
        }
        if state.is_some_and(|s| s.cursor == end()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    samples.push((n, rss_mib()));
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    store.close().await;
    (n as f64 / secs, samples)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let which = args.get(2).cloned().unwrap_or_else(|| "both".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for name in ["provincial", "hotline12345"] {
        if which != "both" && which != name {
            continue;
        }
        let base = transform_alone(name, n.min(20_000));
        let (rate, samples) = rt.block_on(pull(name, n));
        println!(
            "{name}: {n} records pulled, mapped and committed at {rate:.0} records/s; \
             transform alone {base:.0} records/s (one thread); ratio {:.2}",
            rate / base
        );
        let rss: Vec<String> = samples
            .iter()
            .map(|(r, m)| format!("{r}:{m:.0}MiB"))
            .collect();
        println!("  RSS by records committed: {}", rss.join(" "));
    }
}
