//! Exchange export of a million records (BENCHMARKS.md, "SOAP, XML and exchange packages").
//!
//! ```sh
//! cargo run --release -p xfhub --example export_bench -- load /tmp/xfhub-export 1000000
//! ./target/release/xfhub serve --data-dir /tmp/xfhub-export --listen 127.0.0.1:18282 &
//! XFHUB_APP_KEY=... XFHUB_SECRET=... \
//!   cargo run --release -p xfhub --example export_bench -- pull http://127.0.0.1:18282 1000000
//! ```
//!
//! `load` stores N distinct sample petitions straight through the store's intake (sealed,
//! indexed, with change-log entries, as a submission stores them; 1,000 per transaction) and
//! registers a client with the `export` scope, printing its app key and secret. `pull` asks the
//! running hub for one package of N petitions, reads the stream to the end (counting bytes, no
//! file), and reports records per second and the hub's peak resident memory (`/metrics`,
//! VmHWM) before and after; `baseline` reads the same records' bodies from the database with
//! no conversion, the floor of any export.

use std::time::Instant;

use xfhub::config::Config;
use xfhub_schemas::{sample_petition, validate_petition, CodeTables};
use xfhub_security::sign;
use xfhub_store::{intake, Txn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("load") => {
            let dir = args.get(2).ok_or_else(|| anyhow::anyhow!("load DIR N"))?;
            let n: u64 = args.get(3).map_or(Ok(1_000_000), |s| s.parse())?;
            load(dir, n).await
        }
        Some("pull") => {
            let url = args.get(2).ok_or_else(|| anyhow::anyhow!("pull URL N"))?;
            let n: u64 = args.get(3).map_or(Ok(1_000_000), |s| s.parse())?;
            pull(url, n).await
        }
        Some("direct") => {
            let dir = args.get(2).ok_or_else(|| anyhow::anyhow!("direct DIR N"))?;
            let n: u64 = args.get(3).map_or(Ok(1_000_000), |s| s.parse())?;
            direct(dir, n).await
        }
        Some("baseline") => {
            let dir = args.get(2).ok_or_else(|| anyhow::anyhow!("baseline DIR"))?;
            baseline(dir).await
        }
        _ => anyhow::bail!(
            "usage: export_bench load DIR N | pull URL N | direct DIR N | baseline DIR"
        ),
    }
}

async fn load(dir: &str, n: u64) -> anyhow::Result<()> {
    let config = Config {
        data_dir: dir.into(),
        ..Config::default()
    };
    let (store, keys) = xfhub::admin_cli::open(&config).await?;
    let list = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let (app_key, secret) = xfhub::admin_cli::add_client(
        &store,
        &keys.current(),
        "export bench",
        list(&["export", "read", "pii:read", "admin"]),
        list(&["*"]),
        list(&["*"]),
    )
    .await?;
    println!("app_key: {app_key}\nsecret: {secret}");
    let tables = CodeTables::embedded();
    let now = chrono::Utc::now();
    let ring = keys.current();
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        let ingests = (i..end)
            .map(|k| {
                let p = validate_petition(sample_petition(k), tables, now)
                    .map_err(|e| anyhow::anyhow!("sample {k} invalid: {e:?}"))?;
                Ok(intake::petition_item(&p, &ring)?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store
            .transact(Txn {
                ingests,
                ..Txn::default()
            })
            .await?;
        i = end;
        if i % 100_000 == 0 {
            eprintln!(
                "{i} records, {:.0}/s",
                i as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    store.close().await;
    eprintln!(
        "loaded {n} petitions in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Peak resident memory of this process (VmHWM), MiB.
fn own_peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Counts the bytes of the package and drops them.
struct Count(u64);

impl std::io::Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The export pipeline of the hub (`exchange::export::write_package`: page reads, personal
/// data opened, canonical XML, SM3 and SHA-256, deflate, zip, signature, bookkeeping) in a
/// process of its own with no relay or consumers beside it, writing into a byte counter.
async fn direct(dir: &str, n: u64) -> anyhow::Result<()> {
    let config = Config {
        data_dir: dir.into(),
        ..Config::default()
    };
    let (store, keys) = xfhub::admin_cli::open(&config).await?;
    let before = own_peak_mib();
    let ring = keys.current();
    let rt = tokio::runtime::Handle::current();
    let t0 = Instant::now();
    let (sum, bytes) = tokio::task::spawn_blocking(move || {
        let params = xfhub::exchange::export::ExportParams {
            infoset: xfhub_transforms::exchange::InfoSet::Petition,
            since: 0,
            limit: n,
            sender: "xfhub".to_owned(),
            receiver: "bench".to_owned(),
            secret: b"bench-secret".to_vec().into(),
            divisions: None,
            mask: false,
            remote: String::new(),
        };
        let mut sink = Count(0);
        let serial = xfhub::exchange::export::new_serial();
        let sum = xfhub::exchange::export::write_package(
            &rt, &store, &ring, &params, &serial, &mut sink,
        )?;
        anyhow::Ok((sum, sink.0))
    })
    .await??;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "exported {} petitions: {secs:.1} s, {:.0} records/s, {:.1} MiB zip; peak RSS {before:.1} MiB after opening the store, {:.1} MiB after the export",
        sum.records,
        sum.records as f64 / secs,
        bytes as f64 / 1048576.0,
        own_peak_mib()
    );
    Ok(())
}

async fn peak_rss(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    secret: &str,
) -> anyhow::Result<f64> {
    let headers = sign::sign_headers(
        key,
        secret.as_bytes(),
        "GET",
        "/metrics",
        b"",
        xfhub_store::now_ms(),
        &sign::new_nonce(),
    );
    let mut req = client.get(format!("{url}/metrics"));
    for (h, v) in headers {
        req = req.header(h, v);
    }
    let text = req.send().await?.text().await?;
    let line = text
        .lines()
        .find(|l| l.starts_with("process_resident_memory_max_bytes"))
        .ok_or_else(|| anyhow::anyhow!("no process_resident_memory_max_bytes in /metrics"))?;
    let v: f64 = line.split_whitespace().last().unwrap_or("0").parse()?;
    Ok(v / 1024.0 / 1024.0)
}

async fn pull(url: &str, n: u64) -> anyhow::Result<()> {
    let key = std::env::var("XFHUB_APP_KEY")?;
    let secret = std::env::var("XFHUB_SECRET")?;
    let client = reqwest::Client::new();
    let before = peak_rss(&client, url, &key, &secret).await?;
    let target = format!("/exchange/packages?infoset=petition&since=0&limit={n}");
    let headers = sign::sign_headers(
        &key,
        secret.as_bytes(),
        "GET",
        &target,
        b"",
        xfhub_store::now_ms(),
        &sign::new_nonce(),
    );
    let mut req = client.get(format!("{url}{target}"));
    for (h, v) in headers {
        req = req.header(h, v);
    }
    let t0 = Instant::now();
    let mut resp = req.send().await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "the hub answered {}",
        resp.status()
    );
    let mut bytes = 0u64;
    while let Some(chunk) = resp.chunk().await? {
        bytes += chunk.len() as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = peak_rss(&client, url, &key, &secret).await?;
    println!(
        "exported {n} petitions: {:.1} s, {:.0} records/s, {:.1} MiB zip ({:.0} bytes/record); hub peak RSS {:.1} MiB before, {:.1} MiB after",
        secs,
        n as f64 / secs,
        bytes as f64 / 1048576.0,
        bytes as f64 / n as f64,
        before,
        after
    );
    Ok(())
}

async fn baseline(dir: &str) -> anyhow::Result<()> {
    let config = Config {
        data_dir: dir.into(),
        ..Config::default()
    };
    let (store, _) = xfhub::admin_cli::open(&config).await?;
    let t0 = Instant::now();
    let (mut after, mut count, mut bytes) = (0i64, 0u64, 0u64);
    loop {
        let rows = xfhub_store::Stmt::new(
            "SELECT c.seq AS seq, r.body AS body FROM change_log c JOIN records r ON r.id = c.record_id \
             WHERE c.seq > $1 AND c.kind = 'petition' AND r.version = c.version ORDER BY c.seq LIMIT 1000",
        )
        .bind(after)
        .query()
        .fetch_all(store.reader())
        .await?;
        if rows.is_empty() {
            break;
        }
        use sqlx::Row;
        for r in &rows {
            after = r.try_get("seq")?;
            bytes += r.try_get::<String, _>("body")?.len() as u64;
            count += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "baseline: read {count} bodies ({:.0} MiB) in {secs:.1} s, {:.0} records/s",
        bytes as f64 / 1048576.0,
        count as f64 / secs
    );
    Ok(())
}
