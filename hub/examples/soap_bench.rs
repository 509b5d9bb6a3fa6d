//! SOAP `SubmitPetition` against the REST route `POST /api/v1/petitions`, in the same run
//! (BENCHMARKS.md, "SOAP, XML and exchange packages").
//!
//! ```sh
//! XFHUB_APP_KEY=... XFHUB_SECRET=... \
//!   cargo run --release -p xfhub --example soap_bench -- http://127.0.0.1:18181 20000 64
//! ```
//!
//! Runs four phases of N requests at C concurrent clients each: REST, SOAP 1.1, REST, SOAP 1.1
//! (alternating, so that a slow start or a growing store does not favour one surface), every
//! request a distinct sample petition, signed (HMAC-SM3) when it is sent, answered only after
//! the commit. Prints req/s and latency percentiles per phase and SOAP / REST throughput.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use xfhub_schemas::sample_petition;
use xfhub_security::sign;

#[derive(Clone, Copy, PartialEq)]
enum Surface {
    Rest,
    Soap,
}

struct Phase {
    surface: Surface,
    req_per_sec: f64,
    hist: Histogram<u64>,
    errors: u64,
}

fn body(surface: Surface, i: u64) -> Vec<u8> {
    let p = sample_petition(i);
    match surface {
        Surface::Rest => serde_json::to_vec(&p).expect("json"),
        Surface::Soap => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><SubmitPetition xmlns=\"urn:xfhub:v1\">{}</SubmitPetition></soap:Body></soap:Envelope>",
            xfhub_transforms::xml_soap::encode("petition", "urn:xfhub:v1", &p).expect("xml")
        )
        .into_bytes(),
    }
}

async fn phase(
    client: &reqwest::Client,
    base: &str,
    key: &Arc<(String, String)>,
    surface: Surface,
    start: u64,
    n: u64,
    c: usize,
) -> Phase {
    let (path, ct) = match surface {
        Surface::Rest => ("/api/v1/petitions", "application/json"),
        Surface::Soap => ("/ws/PetitionService", "text/xml; charset=utf-8"),
    };
    // Bodies built before the clock starts.
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new((start..start + n).map(|i| body(surface, i)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (client, bodies, next, key) =
            (client.clone(), bodies.clone(), next.clone(), key.clone());
        let url = format!("{base}{path}");
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let b = &bodies[i as usize];
                let headers = sign::sign_headers(
                    &key.0,
                    key.1.as_bytes(),
                    "POST",
                    path,
                    b,
                    xfhub_store::now_ms(),
                    &sign::new_nonce(),
                );
                let mut req = client.post(&url).header("content-type", ct).body(b.clone());
                for (h, v) in headers {
                    req = req.header(h, v);
                }
                let t = Instant::now();
                let ok = match req.send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let _ = r.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                hist.record(t.elapsed().as_micros().max(1) as u64).ok();
                if !ok {
                    errors += 1;
                }
            }
            (hist, errors)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await.expect("task");
        hist.add(h).expect("merge");
        errors += e;
    }
    let secs = t0.elapsed().as_secs_f64();
    Phase {
        surface,
        req_per_sec: n as f64 / secs,
        hist,
        errors,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let n: u64 = args.get(2).map_or(Ok(20_000), |s| s.parse())?;
    let c: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let key = Arc::new((
        std::env::var("XFHUB_APP_KEY").map_err(|_| anyhow::anyhow!("set XFHUB_APP_KEY"))?,
        std::env::var("XFHUB_SECRET").map_err(|_| anyhow::anyhow!("set XFHUB_SECRET"))?,
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(c)
        .timeout(Duration::from_secs(60))
        .build()?;
    // Distinct source ids per run: the clock in seconds times 10^7.
    let mut start = (xfhub_store::now_ms() as u64 / 1000 % 100_000) * 10_000_000;
    let mut phases = Vec::new();
    for surface in [Surface::Rest, Surface::Soap, Surface::Rest, Surface::Soap] {
        phases.push(phase(&client, &base, &key, surface, start, n, c).await);
        start += n;
    }
    println!("| phase | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for p in &phases {
        let ms = |q: f64| p.hist.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {} | {n} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            if p.surface == Surface::Rest {
                "REST POST /api/v1/petitions"
            } else {
                "SOAP SubmitPetition"
            },
            p.errors,
            p.req_per_sec,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            p.hist.max() as f64 / 1000.0
        );
    }
    let rate = |s: Surface| {
        let v: Vec<f64> = phases
            .iter()
            .filter(|p| p.surface == s)
            .map(|p| p.req_per_sec)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "SOAP / REST throughput: {:.1} % (mean of two phases each)",
        rate(Surface::Soap) / rate(Surface::Rest) * 100.0
    );
    Ok(())
}
