//! `xfhub bench`: a closed-loop load generator for a running hub.
//!
//! It measures the bare HTTP round trip first (`POST /api/v1/echo`, the baseline), then the
//! ingest path (`POST /api/v1/petitions`) with the same bodies, and reports throughput, latency
//! percentiles, ingest throughput as a share of the baseline, and the server's resident memory
//! read from `GET /metrics` before and after the ingest phase.
//!
//! All bodies are built with `xfhub_schemas::sample_petition` and serialized before any timing,
//! into one buffer that lives until the process exits, so a request borrows its body without a
//! copy and no JSON work of the client is measured. `C` workers share one HTTP/1.1 client and
//! take the next request index from an atomic counter, so exactly `N` requests are sent however
//! fast each worker is. A latency runs from just before a request is sent to after its response
//! body is read, and is recorded in microseconds; only responses with the expected status are
//! recorded and counted in the throughput.
//!
//! A phase stops early once its transport errors (refused or reset connections, timeouts) pass
//! 0.5% of its requests: the run has failed by then, and a dead hub should not cost minutes of
//! timeouts. The report is printed either way, then the command fails.
//!
//! Every request but `GET /healthz` is signed as a client of the hub (`--app-key`, `--secret`,
//! or `XFHUB_APP_KEY`, `XFHUB_SECRET`; create one with `xfhub clients add`): HMAC-SM3 over the
//! request with the current time and a fresh nonce, computed when the request is sent, inside
//! the measured latency, in both phases alike. The client needs the `read` scope (echo),
//! `submit` (petitions) and `admin` (`/metrics`, for the memory figures).

use std::error::Error as StdError;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde::Serialize;
use xfhub_security::sign;
use zeroize::Zeroizing;

/// The gauge with the server's current resident set size, in bytes.
const RESIDENT_GAUGE: &str = "process_resident_memory_bytes";
/// The gauge with the server's peak resident set size (VmHWM), in bytes.
const PEAK_RESIDENT_GAUGE: &str = "process_resident_memory_max_bytes";

/// The share of a phase's requests that may fail in transport before the run fails.
const TRANSPORT_ERROR_LIMIT: f64 = 0.005;
/// How many error samples each phase keeps for the report.
const KEPT_ERRORS: usize = 5;
/// How much of an error response body a sample keeps.
const KEPT_BODY_CHARS: usize = 300;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Latencies above this are recorded as this (the request timeout is well below it).
const MAX_LATENCY_MICROS: u64 = 120_000_000;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Base URL of a running hub
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Petitions to submit
    #[arg(long, short = 'n', default_value_t = 20000)]
    pub requests: u64,
    /// Concurrent clients
    #[arg(long, short = 'c', default_value_t = 64)]
    pub concurrency: usize,
    /// Requests to send to the echo route first, as the baseline (0 = skip the baseline)
    #[arg(long, default_value_t = 20000)]
    pub echo_requests: u64,
    /// First source id number (so repeated runs against one hub do not collide)
    #[arg(long)]
    pub start: Option<u64>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// App key of the client the requests are signed as (needs scopes submit, read, admin)
    #[arg(long, env = "XFHUB_APP_KEY")]
    pub app_key: Option<String>,
    /// Secret of that client, as `xfhub clients add` printed it
    #[arg(long, env = "XFHUB_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,
}

/// A client secret: kept out of `Debug` output and wiped from memory when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(Zeroizing::new(s.to_owned())))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Signs requests as one client: the four signing headers, made when a request is sent.
#[derive(Debug, Clone)]
struct Signer {
    app_key: Arc<str>,
    secret: Arc<Secret>,
}

impl Signer {
    /// The signer of `--app-key` and `--secret`; an error naming what is missing and how to get
    /// it when either is absent or blank.
    fn from_args(app_key: Option<&str>, secret: Option<&Secret>) -> anyhow::Result<Signer> {
        let app_key = app_key.map(str::trim).filter(|k| !k.is_empty());
        let secret = secret.filter(|s| !s.0.trim().is_empty());
        match (app_key, secret) {
            (Some(app_key), Some(secret)) => Ok(Signer {
                app_key: Arc::from(app_key),
                secret: Arc::new(Secret(Zeroizing::new(secret.0.trim().to_owned()))),
            }),
            (app_key, secret) => {
                let missing: Vec<&str> = [
                    app_key.is_none().then_some("--app-key (or XFHUB_APP_KEY)"),
                    secret.is_none().then_some("--secret (or XFHUB_SECRET)"),
                ]
                .into_iter()
                .flatten()
                .collect();
                bail!(
                    "missing {}: the hub accepts only signed requests. Create a client with \
                     `xfhub clients add --name bench --scopes submit,read,admin --info-sets '*' \
                     --divisions '*' --data-dir <the hub's data dir>` and pass the app_key and \
                     secret it prints",
                    missing.join(" and ")
                )
            }
        }
    }

    /// The headers that sign `method path_and_query` with `body`, now, with a fresh nonce.
    fn headers(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        sign::sign_headers(
            &self.app_key,
            self.secret.0.as_bytes(),
            method,
            path_and_query,
            body,
            xfhub_store::now_ms(),
            &sign::new_nonce(),
        )
    }
}

/// The request target of `url` as the hub sees it (path and query): what is signed.
fn request_target(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid URL {url}"))?;
    Ok(match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    })
}

/// Runs the benchmark against the hub at `args.url` and prints the report (progress and error
/// samples go to stderr, the report to stdout). Fails when the hub is unreachable or unhealthy
/// at the start, or when more than 0.5% of a phase's requests failed in transport.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let signer = Signer::from_args(args.app_key.as_deref(), args.secret.as_ref())?;
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.concurrency)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;

    check_health(&client, &base).await?;
    check_credentials(&client, &signer, &base).await?;

    let start = match args.start {
        Some(start) => start,
        None => default_start()?,
    };
    eprintln!(
        "building {} petition bodies (source index {} on)...",
        args.requests, start
    );
    let built = Instant::now();
    let bodies = Arc::new(Bodies::build(start, args.requests)?);
    eprintln!(
        "built in {:.2} s, {:.1} MiB, {} bytes on average",
        built.elapsed().as_secs_f64(),
        bodies.total_bytes() as f64 / MIB,
        bodies.total_bytes() / bodies.len().max(1)
    );

    let echo = if args.echo_requests > 0 {
        let phase = Phase {
            name: "echo",
            url: format!("{base}/api/v1/echo"),
            total: args.echo_requests,
            expect: Expect::Success,
        };
        let echo = run_phase(&client, &signer, &phase, &bodies, args.concurrency).await?;
        if transport_errors_exceed(echo.transport_errors, echo.planned) {
            // The hub cannot carry the bare round trip: measuring ingest would tell nothing.
            print_samples(&echo);
            return Err(transport_failure(&echo));
        }
        Some(echo)
    } else {
        None
    };

    let before = fetch_memory(&client, &signer, &base).await;
    let phase = Phase {
        name: "ingest",
        url: format!("{base}/api/v1/petitions"),
        total: args.requests,
        expect: Expect::CreatedOrRepeat,
    };
    let ingest = run_phase(&client, &signer, &phase, &bodies, args.concurrency).await?;
    let after = fetch_memory(&client, &signer, &base).await;

    let ingest_vs_echo_percent = echo
        .as_ref()
        .and_then(|echo| ratio_percent(ingest.req_per_sec, echo.req_per_sec));
    let report = Report {
        url: base,
        concurrency: args.concurrency,
        start,
        echo,
        ingest,
        ingest_vs_echo_percent,
        server_memory: memory_report(before, after),
    };

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serializing the report")?
        );
    } else {
        report.phases().for_each(print_samples);
        print!("{}", render_text(&report));
    }

    let failed = report
        .phases()
        .find(|p| transport_errors_exceed(p.transport_errors, p.planned));
    match failed {
        Some(failed) => Err(transport_failure(failed)),
        None => Ok(()),
    }
}

/// Prints a phase's error samples to stderr.
fn print_samples(phase: &PhaseReport) {
    if !phase.sample_errors.is_empty() {
        eprintln!("first errors of the {} phase:", phase.phase);
        for sample in &phase.sample_errors {
            eprintln!("  {sample}");
        }
        eprintln!();
    }
}

fn transport_failure(phase: &PhaseReport) -> anyhow::Error {
    anyhow::anyhow!(
        "{} phase: {} of {} requests failed in transport (over {}%){}; first: {}",
        phase.phase,
        phase.transport_errors,
        phase.planned,
        TRANSPORT_ERROR_LIMIT * 100.0,
        if phase.stopped_early {
            ", so the phase was stopped early"
        } else {
            ""
        },
        phase
            .sample_errors
            .iter()
            .find(|s| s.starts_with("transport: "))
            .map(String::as_str)
            .unwrap_or("-")
    )
}

/// Source index numbers start at the current unix time in milliseconds times 1000, so runs
/// against one hub do not resubmit each other's petitions.
fn default_start() -> anyhow::Result<u64> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_millis();
    u64::try_from(millis)
        .ok()
        .and_then(|m| m.checked_mul(1000))
        .context("the system clock is too far in the future for a default --start")
}

async fn check_health(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/healthz");
    let response = match client.get(&url).timeout(PROBE_TIMEOUT).send().await {
        Ok(response) => response,
        Err(e) => bail!(
            "the hub at {base} is unreachable (GET {url}: {}); is it running? \
             Pass its address with --url",
            error_chain(&e)
        ),
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!(
            "the hub at {base} is not healthy: GET {url} answered {status}: {}",
            truncate(body.trim(), KEPT_BODY_CHARS)
        );
    }
    Ok(())
}

/// Sends one signed echo request, so that credentials the hub refuses fail the run at once
/// with the hub's reason instead of thousands of 401s.
async fn check_credentials(
    client: &reqwest::Client,
    signer: &Signer,
    base: &str,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/echo");
    let body: &[u8] = b"{}";
    let mut request = client
        .post(&url)
        .timeout(PROBE_TIMEOUT)
        .header(CONTENT_TYPE, "application/json");
    for (name, value) in signer.headers("POST", &request_target(&url)?, body) {
        request = request.header(name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("POST {url}: {}", error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!(
            "the hub refused a signed request as client {}: POST {url} answered {status}: {} \
             (check --app-key and --secret; the client needs the scopes submit, read and admin)",
            signer.app_key,
            truncate(text.trim(), KEPT_BODY_CHARS)
        );
    }
    Ok(())
}

/// Pre-serialized request bodies, all in one buffer that lives until the process exits, so a
/// request body is a `&'static [u8]` that reqwest sends without copying.
#[derive(Debug)]
struct Bodies {
    buf: &'static [u8],
    ranges: Vec<Range<usize>>,
}

impl Bodies {
    fn build(start: u64, count: u64) -> anyhow::Result<Self> {
        let count = usize::try_from(count).context("--requests is too large")?;
        let mut buf = Vec::with_capacity(count.saturating_mul(1536));
        let mut ranges = Vec::with_capacity(count);
        for k in 0..count as u64 {
            let i = start
                .checked_add(k)
                .context("--start plus --requests overflows a u64")?;
            let from = buf.len();
            serde_json::to_writer(&mut buf, &xfhub_schemas::sample_petition(i))
                .context("serializing a sample petition")?;
            ranges.push(from..buf.len());
        }
        Ok(Self {
            buf: buf.leak(),
            ranges,
        })
    }

    fn len(&self) -> usize {
        self.ranges.len()
    }

    fn total_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The body of request `index`; a phase with more requests than bodies reuses them in turn.
    fn get(&self, index: u64) -> &'static [u8] {
        let buf: &'static [u8] = self.buf;
        let range = &self.ranges[(index % self.ranges.len() as u64) as usize];
        &buf[range.clone()]
    }
}

/// Which statuses count as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Any 2xx status (the echo route).
    Success,
    /// 201 Created, or 200 OK for a petition the hub already had (the ingest route).
    CreatedOrRepeat,
}

impl Expect {
    fn accepts(self, status: StatusCode) -> bool {
        match self {
            Expect::Success => status.is_success(),
            Expect::CreatedOrRepeat => status == StatusCode::CREATED || status == StatusCode::OK,
        }
    }
}

#[derive(Debug)]
struct Phase {
    name: &'static str,
    url: String,
    total: u64,
    expect: Expect,
}

/// State shared by the workers of one phase.
#[derive(Debug)]
struct Shared {
    next: AtomicU64,
    transport_errors: AtomicU64,
    stop: AtomicBool,
    samples: Mutex<Vec<String>>,
}

impl Shared {
    /// Keeps an error sample unless enough are kept or the same one is.
    fn keep_sample(&self, sample: impl FnOnce() -> String) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < KEPT_ERRORS {
            let sample = sample();
            if !samples.contains(&sample) {
                samples.push(sample);
            }
        }
    }
}

/// What one worker counted.
#[derive(Debug)]
struct Tally {
    latencies: Histogram<u64>,
    sent: u64,
    ok: u64,
    status_errors: u64,
    transport_errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latencies: new_histogram(),
            sent: 0,
            ok: 0,
            status_errors: 0,
            transport_errors: 0,
        }
    }

    fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.latencies
            .add(&other.latencies)
            .context("merging latency histograms")?;
        self.sent += other.sent;
        self.ok += other.ok;
        self.status_errors += other.status_errors;
        self.transport_errors += other.transport_errors;
        Ok(())
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("the histogram bounds are valid")
}

async fn run_phase(
    client: &reqwest::Client,
    signer: &Signer,
    phase: &Phase,
    bodies: &Arc<Bodies>,
    concurrency: usize,
) -> anyhow::Result<PhaseReport> {
    eprintln!(
        "{}: {} requests to {} with {} clients...",
        phase.name, phase.total, phase.url, concurrency
    );
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        transport_errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        samples: Mutex::new(Vec::new()),
    });
    let url: Arc<str> = Arc::from(phase.url.as_str());
    let target: Arc<str> = Arc::from(request_target(&phase.url)?);
    let workers = usize::try_from(phase.total).map_or(concurrency, |t| t.min(concurrency));

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        set.spawn(worker(
            client.clone(),
            signer.clone(),
            Arc::clone(&url),
            Arc::clone(&target),
            Arc::clone(bodies),
            Arc::clone(&shared),
            phase.total,
            phase.expect,
        ));
    }
    let mut tally = Tally::new();
    while let Some(joined) = set.join_next().await {
        let worker_tally = joined.context("a bench worker failed")?;
        tally.merge(&worker_tally)?;
    }
    let elapsed = started.elapsed();

    let samples = std::mem::take(&mut *shared.samples.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(summarize(
        phase.name,
        phase.total,
        &tally,
        elapsed,
        shared.stop.load(Ordering::Relaxed),
        samples,
    ))
}

#[allow(clippy::too_many_arguments)] // reason: one worker's whole context, passed once
async fn worker(
    client: reqwest::Client,
    signer: Signer,
    url: Arc<str>,
    target: Arc<str>,
    bodies: Arc<Bodies>,
    shared: Arc<Shared>,
    total: u64,
    expect: Expect,
) -> Tally {
    let mut tally = Tally::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if index >= total {
            break;
        }
        tally.sent += 1;
        let body = bodies.get(index);
        let started = Instant::now();
        // Signed at send time, inside the measured latency: the same cost in every phase.
        let mut request = client.post(&*url).header(CONTENT_TYPE, "application/json");
        for (name, value) in signer.headers("POST", &target, body) {
            request = request.header(name, value);
        }
        let sent = request.body(body).send().await;
        let outcome = match sent {
            Ok(response) => {
                let status = response.status();
                if expect.accepts(status) {
                    // Read the whole body so the connection goes back to the pool.
                    response.bytes().await.map(|_| (status, None))
                } else {
                    response.text().await.map(|text| (status, Some(text)))
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok((_, None)) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latencies.saturating_record(micros.max(1));
                tally.ok += 1;
            }
            Ok((status, Some(text))) => {
                tally.status_errors += 1;
                shared.keep_sample(|| {
                    format!("{status}: {}", truncate(text.trim(), KEPT_BODY_CHARS))
                });
            }
            Err(e) => {
                tally.transport_errors += 1;
                let all = shared.transport_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if transport_errors_exceed(all, total) {
                    shared.stop.store(true, Ordering::Relaxed);
                }
                shared.keep_sample(|| format!("transport: {}", error_chain(&e)));
            }
        }
    }
    tally
}

/// Whether `errors` transport failures out of `requests` fail the run (more than 0.5%).
fn transport_errors_exceed(errors: u64, requests: u64) -> bool {
    errors as f64 > requests as f64 * TRANSPORT_ERROR_LIMIT
}

/// Ingest throughput as a percentage of the echo baseline, when there is a baseline.
fn ratio_percent(ingest_req_per_sec: f64, echo_req_per_sec: f64) -> Option<f64> {
    (echo_req_per_sec > 0.0 && ingest_req_per_sec.is_finite())
        .then(|| ingest_req_per_sec / echo_req_per_sec * 100.0)
}

/// One phase of the report. Latencies (in milliseconds) and `req_per_sec` cover the requests
/// answered with the expected status.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct PhaseReport {
    phase: &'static str,
    /// Requests the phase was to send.
    planned: u64,
    /// Requests sent (fewer than planned only when the phase was stopped early).
    requests: u64,
    ok: u64,
    /// Unexpected statuses plus transport errors.
    errors: u64,
    status_errors: u64,
    transport_errors: u64,
    stopped_early: bool,
    seconds: f64,
    req_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The first few errors: status and body, or the transport error.
    sample_errors: Vec<String>,
}

fn summarize(
    name: &'static str,
    planned: u64,
    tally: &Tally,
    elapsed: Duration,
    stopped_early: bool,
    sample_errors: Vec<String>,
) -> PhaseReport {
    let seconds = elapsed.as_secs_f64();
    let ms = |micros: u64| micros as f64 / 1000.0;
    let quantile = |q: f64| {
        if tally.latencies.is_empty() {
            0.0
        } else {
            ms(tally.latencies.value_at_quantile(q))
        }
    };
    PhaseReport {
        phase: name,
        planned,
        requests: tally.sent,
        ok: tally.ok,
        errors: tally.status_errors + tally.transport_errors,
        status_errors: tally.status_errors,
        transport_errors: tally.transport_errors,
        stopped_early,
        seconds,
        req_per_sec: if seconds > 0.0 {
            tally.ok as f64 / seconds
        } else {
            0.0
        },
        p50_ms: quantile(0.50),
        p90_ms: quantile(0.90),
        p99_ms: quantile(0.99),
        max_ms: if tally.latencies.is_empty() {
            0.0
        } else {
            ms(tally.latencies.max())
        },
        sample_errors,
    }
}

/// The two memory gauges of one `GET /metrics` sample, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct MemoryGauges {
    resident: Option<f64>,
    peak_resident: Option<f64>,
}

/// Reads `process_resident_memory_bytes` and `process_resident_memory_max_bytes` out of a
/// Prometheus text exposition. A gauge that appears more than once (with different labels)
/// gives its largest value; missing or non-finite values give `None`.
fn parse_memory_gauges(text: &str) -> MemoryGauges {
    MemoryGauges {
        resident: gauge_value(text, RESIDENT_GAUGE),
        peak_resident: gauge_value(text, PEAK_RESIDENT_GAUGE),
    }
}

fn gauge_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| sample_value(line, name))
        .fold(None, |best: Option<f64>, v| {
            Some(best.map_or(v, |b| b.max(v)))
        })
}

/// The value of one exposition line if it is a sample of metric `name`.
fn sample_value(line: &str, name: &str) -> Option<f64> {
    let line = line.trim_start();
    let rest = line.strip_prefix(name)?;
    let rest = if let Some(labels) = rest.strip_prefix('{') {
        &labels[label_block_end(labels)?..]
    } else if rest.starts_with([' ', '\t']) {
        rest
    } else {
        // Another metric whose name starts with `name`, or a comment.
        return None;
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some(value)
}

/// The index just past the `}` that closes a label block (`labels` starts after the `{`),
/// skipping braces inside quoted label values.
fn label_block_end(labels: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i + 1),
            _ => {}
        }
    }
    None
}

async fn fetch_memory(
    client: &reqwest::Client,
    signer: &Signer,
    base: &str,
) -> Option<MemoryGauges> {
    let url = format!("{base}/metrics");
    let mut request = client.get(&url).timeout(PROBE_TIMEOUT);
    match request_target(&url) {
        Ok(target) => {
            for (name, value) in signer.headers("GET", &target, b"") {
                request = request.header(name, value);
            }
        }
        Err(e) => {
            eprintln!("warning: {e:#}; no server memory figures");
            return None;
        }
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            eprintln!("warning: GET {url} failed: {}", error_chain(&e));
            return None;
        }
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        eprintln!(
            "warning: GET {url} answered {status}; no server memory figures: {}",
            truncate(body.trim(), KEPT_BODY_CHARS)
        );
        return None;
    }
    match response.text().await {
        Ok(text) => Some(parse_memory_gauges(&text)),
        Err(e) => {
            eprintln!("warning: reading GET {url} failed: {}", error_chain(&e));
            None
        }
    }
}

/// The server's resident memory around the ingest phase, in bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct MemoryReport {
    resident_before_bytes: Option<u64>,
    resident_after_bytes: Option<u64>,
    /// The peak resident set size: `process_resident_memory_max_bytes` after the ingest phase
    /// when the hub exports it, otherwise the larger of the two resident samples.
    peak_bytes: Option<u64>,
    peak_mib: Option<f64>,
    /// Whether `peak_bytes` is the kernel's high-water mark (VmHWM) rather than a sample.
    peak_is_high_water_mark: bool,
}

fn memory_report(before: Option<MemoryGauges>, after: Option<MemoryGauges>) -> MemoryReport {
    let bytes = |v: f64| v.max(0.0).round() as u64;
    let resident_before = before.and_then(|g| g.resident).map(bytes);
    let resident_after = after.and_then(|g| g.resident).map(bytes);
    let high_water = after
        .and_then(|g| g.peak_resident)
        .or_else(|| before.and_then(|g| g.peak_resident))
        .map(bytes);
    let peak = high_water.or(resident_before.max(resident_after));
    MemoryReport {
        resident_before_bytes: resident_before,
        resident_after_bytes: resident_after,
        peak_bytes: peak,
        peak_mib: peak.map(|b| b as f64 / MIB),
        peak_is_high_water_mark: high_water.is_some(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Report {
    url: String,
    concurrency: usize,
    /// The source index number of the first body (`sample_petition(start)`).
    start: u64,
    echo: Option<PhaseReport>,
    ingest: PhaseReport,
    /// Ingest req/s as a percentage of echo req/s; absent without a baseline.
    ingest_vs_echo_percent: Option<f64>,
    server_memory: MemoryReport,
}

impl Report {
    fn phases(&self) -> impl Iterator<Item = &PhaseReport> {
        self.echo.iter().chain(std::iter::once(&self.ingest))
    }
}

/// The report as an aligned plain-text table and a few summary lines.
fn render_text(report: &Report) -> String {
    let mut lines = vec![
        format!(
            "xfhub bench  {}  concurrency {}  source index from {}",
            report.url, report.concurrency, report.start
        ),
        String::new(),
        format!(
            "{:<8} {:>9} {:>7} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8}",
            "phase",
            "requests",
            "errors",
            "seconds",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        ),
    ];
    for p in report.phases() {
        lines.push(format!(
            "{:<8} {:>9} {:>7} {:>8.2} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            p.phase,
            p.requests,
            p.errors,
            p.seconds,
            p.req_per_sec,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.max_ms
        ));
    }
    lines.push(String::new());
    for p in report.phases() {
        if p.errors > 0 || p.stopped_early {
            lines.push(format!(
                "{} errors: {} unexpected status, {} transport{}",
                p.phase,
                p.status_errors,
                p.transport_errors,
                if p.stopped_early {
                    format!(" (stopped early after {} of {})", p.requests, p.planned)
                } else {
                    String::new()
                }
            ));
        }
    }
    lines.push(match (report.ingest_vs_echo_percent, &report.echo) {
        (Some(pct), _) => format!("ingest / echo throughput: {pct:.1} %"),
        (None, None) => "ingest / echo throughput: n/a (no echo baseline)".to_owned(),
        (None, Some(_)) => "ingest / echo throughput: n/a (no echo request succeeded)".to_owned(),
    });
    let mem = &report.server_memory;
    let mib = |b: Option<u64>| b.map_or("n/a".to_owned(), |b| format!("{:.1} MiB", b as f64 / MIB));
    lines.push(match mem.peak_bytes {
        Some(_) => format!(
            "server RSS: {} before ingest, {} after, peak {}{}",
            mib(mem.resident_before_bytes),
            mib(mem.resident_after_bytes),
            mib(mem.peak_bytes),
            if mem.peak_is_high_water_mark {
                " (VmHWM)"
            } else {
                " (sampled)"
            }
        ),
        None => format!(
            "server RSS: n/a (GET /metrics has no {RESIDENT_GAUGE} or {PEAK_RESIDENT_GAUGE})"
        ),
    });
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// An error and its sources on one line: reqwest's own message hides the cause.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 5.2428800e+07
# HELP process_resident_memory_max_bytes Peak resident memory size (VmHWM) in bytes.
# TYPE process_resident_memory_max_bytes gauge
process_resident_memory_max_bytes 83886080
process_resident_memory_bytes_total 1
xfhub_ingest_total{route=\"petitions\"} 20000
";

    #[test]
    fn parses_both_memory_gauges() {
        let gauges = parse_memory_gauges(METRICS);
        assert_eq!(gauges.resident, Some(52_428_800.0));
        assert_eq!(gauges.peak_resident, Some(83_886_080.0));
    }

    #[test]
    fn missing_gauges_are_none() {
        let gauges = parse_memory_gauges("# nothing here\nxfhub_up 1\n");
        assert_eq!(gauges, MemoryGauges::default());
        // A longer name that starts with the gauge name is another metric.
        let gauges = parse_memory_gauges("process_resident_memory_bytes_total 7\n");
        assert_eq!(gauges.resident, None);
    }

    #[test]
    fn parses_labels_timestamps_and_odd_values() {
        let text = "process_resident_memory_bytes{pid=\"1\",note=\"a } b\"} 1024 1700000000000\n\
                    process_resident_memory_bytes{pid=\"2\"} 4096\n\
                    process_resident_memory_max_bytes NaN\n";
        let gauges = parse_memory_gauges(text);
        assert_eq!(gauges.resident, Some(4096.0));
        assert_eq!(gauges.peak_resident, None);
        assert_eq!(
            sample_value("process_resident_memory_bytes{pid=\"1\"", RESIDENT_GAUGE),
            None
        );
        assert_eq!(
            sample_value("  process_resident_memory_bytes\t+2e3", RESIDENT_GAUGE),
            Some(2000.0)
        );
    }

    #[test]
    fn memory_report_prefers_the_high_water_mark() {
        let before = parse_memory_gauges("process_resident_memory_bytes 1048576\n");
        let after = parse_memory_gauges(METRICS);
        let mem = memory_report(Some(before), Some(after));
        assert_eq!(mem.resident_before_bytes, Some(1_048_576));
        assert_eq!(mem.resident_after_bytes, Some(52_428_800));
        assert_eq!(mem.peak_bytes, Some(83_886_080));
        assert_eq!(mem.peak_mib, Some(80.0));
        assert!(mem.peak_is_high_water_mark);

        let sampled = memory_report(Some(after), Some(before));
        assert_eq!(sampled.peak_bytes, Some(83_886_080));

        let only_resident = memory_report(
            Some(parse_memory_gauges(
                "process_resident_memory_bytes 3145728\n",
            )),
            Some(before),
        );
        assert_eq!(only_resident.peak_bytes, Some(3_145_728));
        assert!(!only_resident.peak_is_high_water_mark);

        let none = memory_report(None, None);
        assert_eq!(none.peak_bytes, None);
        assert_eq!(none.peak_mib, None);
    }

    #[test]
    fn ratio_is_a_percentage_of_the_baseline() {
        assert_eq!(ratio_percent(2500.0, 10_000.0), Some(25.0));
        assert_eq!(ratio_percent(1000.0, 0.0), None);
        assert_eq!(ratio_percent(f64::NAN, 10.0), None);
    }

    #[test]
    fn transport_error_limit_is_half_a_percent() {
        assert!(!transport_errors_exceed(0, 1000));
        assert!(!transport_errors_exceed(5, 1000));
        assert!(transport_errors_exceed(6, 1000));
        assert!(transport_errors_exceed(1, 100));
        assert!(!transport_errors_exceed(0, 0));
    }

    #[test]
    fn summarize_computes_rates_and_percentiles() {
        let mut tally = Tally::new();
        for micros in 1..=1000u64 {
            tally.latencies.record(micros * 10).unwrap();
        }
        tally.sent = 1003;
        tally.ok = 1000;
        tally.status_errors = 2;
        tally.transport_errors = 1;
        let report = summarize(
            "ingest",
            1003,
            &tally,
            Duration::from_millis(500),
            false,
            vec![],
        );
        assert_eq!(report.requests, 1003);
        assert_eq!(report.errors, 3);
        assert_eq!(report.req_per_sec, 2000.0);
        assert!((report.p50_ms - 5.0).abs() < 0.01, "{}", report.p50_ms);
        assert!((report.p90_ms - 9.0).abs() < 0.01, "{}", report.p90_ms);
        assert!((report.p99_ms - 9.9).abs() < 0.01, "{}", report.p99_ms);
        assert!((report.max_ms - 10.0).abs() < 0.01, "{}", report.max_ms);

        let empty = summarize("echo", 0, &Tally::new(), Duration::ZERO, false, vec![]);
        assert_eq!(empty.req_per_sec, 0.0);
        assert_eq!(empty.p99_ms, 0.0);
        assert_eq!(empty.max_ms, 0.0);
    }

    fn phase(name: &'static str, req_per_sec: f64, errors: u64) -> PhaseReport {
        PhaseReport {
            phase: name,
            planned: 20000,
            requests: 20000,
            ok: 20000 - errors,
            errors,
            status_errors: errors,
            transport_errors: 0,
            stopped_early: false,
            seconds: 20000.0 / req_per_sec,
            req_per_sec,
            p50_ms: 3.25,
            p90_ms: 5.5,
            p99_ms: 12.0,
            max_ms: 40.25,
            sample_errors: vec![],
        }
    }

    fn sample_report() -> Report {
        let echo = phase("echo", 16000.0, 0);
        let ingest = phase("ingest", 4000.0, 2);
        Report {
            url: "http://127.0.0.1:8080".to_owned(),
            concurrency: 64,
            start: 42,
            ingest_vs_echo_percent: ratio_percent(ingest.req_per_sec, echo.req_per_sec),
            echo: Some(echo),
            ingest,
            server_memory: memory_report(None, Some(parse_memory_gauges(METRICS))),
        }
    }

    #[test]
    fn text_report_is_an_aligned_table() {
        let text = render_text(&sample_report());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "xfhub bench  http://127.0.0.1:8080  concurrency 64  source index from 42"
        );
        assert_eq!(
            lines[2],
            "phase     requests  errors  seconds      req/s   p50 ms   p90 ms   p99 ms   max ms"
        );
        assert_eq!(
            lines[3],
            "echo         20000       0     1.25    16000.0     3.25     5.50    12.00    40.25"
        );
        assert_eq!(
            lines[4],
            "ingest       20000       2     5.00     4000.0     3.25     5.50    12.00    40.25"
        );
        // Every table row ends in the same column.
        assert!(lines[2..5].iter().all(|l| l.len() == lines[2].len()));
        assert!(text.contains("ingest errors: 2 unexpected status, 0 transport\n"));
        assert!(text.contains("ingest / echo throughput: 25.0 %\n"));
        assert!(
            text.contains("server RSS: n/a before ingest, 50.0 MiB after, peak 80.0 MiB (VmHWM)\n")
        );
        assert!(!text.contains("echo errors"));
    }

    #[test]
    fn text_report_without_baseline_or_metrics() {
        let mut report = sample_report();
        report.echo = None;
        report.ingest_vs_echo_percent = None;
        report.server_memory = memory_report(None, None);
        let text = render_text(&report);
        assert_eq!(text.lines().filter(|l| l.starts_with("echo")).count(), 0);
        assert!(text.contains("ingest / echo throughput: n/a (no echo baseline)"));
        assert!(text.contains("server RSS: n/a (GET /metrics has no process_resident_memory_bytes"));
    }

    #[test]
    fn json_report_has_the_figures() {
        let value = serde_json::to_value(sample_report()).unwrap();
        assert_eq!(value["ingest_vs_echo_percent"], 25.0);
        assert_eq!(value["echo"]["req_per_sec"], 16000.0);
        assert_eq!(value["ingest"]["errors"], 2);
        assert_eq!(value["server_memory"]["peak_mib"], 80.0);
        assert_eq!(value["server_memory"]["peak_is_high_water_mark"], true);
    }

    #[test]
    fn bodies_are_sample_petitions() {
        let bodies = Bodies::build(7, 3).unwrap();
        assert_eq!(bodies.len(), 3);
        let expected = serde_json::to_vec(&xfhub_schemas::sample_petition(8)).unwrap();
        assert_eq!(bodies.get(1), expected.as_slice());
        // Indices past the end reuse the bodies in turn.
        assert_eq!(bodies.get(4), expected.as_slice());
        assert!(Bodies::build(u64::MAX, 2).is_err());
    }

    #[test]
    fn expected_statuses() {
        assert!(Expect::Success.accepts(StatusCode::OK));
        assert!(Expect::Success.accepts(StatusCode::NO_CONTENT));
        assert!(!Expect::Success.accepts(StatusCode::BAD_REQUEST));
        assert!(Expect::CreatedOrRepeat.accepts(StatusCode::CREATED));
        assert!(Expect::CreatedOrRepeat.accepts(StatusCode::OK));
        assert!(!Expect::CreatedOrRepeat.accepts(StatusCode::ACCEPTED));
        assert!(!Expect::CreatedOrRepeat.accepts(StatusCode::TOO_MANY_REQUESTS));
    }

    fn secret(s: &str) -> Secret {
        s.parse().unwrap()
    }

    #[test]
    fn requests_are_signed_with_a_fresh_nonce() {
        let signer =
            Signer::from_args(Some("xf0123456789abcdef01"), Some(&secret("s3cr3t"))).unwrap();
        let body = br#"{"source":{"id":"XF-1"}}"#;
        let before = xfhub_store::now_ms();
        let headers = signer.headers("POST", "/api/v1/petitions", body);
        let after = xfhub_store::now_ms();
        let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                sign::HEADER_APP_KEY,
                sign::HEADER_TIMESTAMP,
                sign::HEADER_NONCE,
                sign::HEADER_SIGNATURE
            ]
        );
        let value = |name: &str| headers.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(value(sign::HEADER_APP_KEY), "xf0123456789abcdef01");
        let ts = value(sign::HEADER_TIMESTAMP);
        let ms: i64 = ts.parse().unwrap();
        assert!(
            (before..=after).contains(&ms),
            "{ms} not in {before}..={after}"
        );
        let nonce = value(sign::HEADER_NONCE);
        let signature = value(sign::HEADER_SIGNATURE);
        // What the hub checks: the signature over this very request, with this secret.
        assert!(sign::verify(
            b"s3cr3t",
            &signature,
            "POST",
            "/api/v1/petitions",
            "",
            &ts,
            &nonce,
            body
        ));
        assert!(!sign::verify(
            b"s3cr3t",
            &signature,
            "POST",
            "/api/v1/echo",
            "",
            &ts,
            &nonce,
            body
        ));
        assert!(!sign::verify(
            b"other",
            &signature,
            "POST",
            "/api/v1/petitions",
            "",
            &ts,
            &nonce,
            body
        ));
        // Every request gets a nonce of its own.
        let again = signer.headers("POST", "/api/v1/petitions", body);
        assert_ne!(again[2].1, nonce);
        assert_ne!(again[3].1, signature);
        // A GET without a body signs the empty body; the query is part of the target.
        let get = signer.headers("GET", "/metrics?x=1", b"");
        assert!(sign::verify(
            b"s3cr3t", &get[3].1, "GET", "/metrics", "x=1", &get[1].1, &get[2].1, b""
        ));
        // The secret never shows in debug output.
        assert!(!format!("{signer:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_request_target_is_path_and_query() {
        assert_eq!(
            request_target("http://127.0.0.1:8080/api/v1/echo").unwrap(),
            "/api/v1/echo"
        );
        assert_eq!(
            request_target("https://hub.example/prefix/metrics?a=1").unwrap(),
            "/prefix/metrics?a=1"
        );
        assert!(request_target("not a url").is_err());
    }

    #[test]
    fn missing_credentials_are_named() {
        let err = |key: Option<&str>, s: Option<&str>| {
            let s = s.map(secret);
            Signer::from_args(key, s.as_ref()).unwrap_err().to_string()
        };
        let both = err(None, None);
        assert!(
            both.starts_with(
                "missing --app-key (or XFHUB_APP_KEY) and --secret (or XFHUB_SECRET):"
            ),
            "{both}"
        );
        assert!(both.contains("xfhub clients add"), "{both}");
        let key = err(None, Some("s"));
        assert!(
            key.starts_with("missing --app-key (or XFHUB_APP_KEY):"),
            "{key}"
        );
        let blank = err(Some("xf1"), Some("  "));
        assert!(
            blank.starts_with("missing --secret (or XFHUB_SECRET):"),
            "{blank}"
        );
        assert!(Signer::from_args(Some(" xf1 "), Some(&secret("s"))).is_ok());
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("信访件编号", 2), "信访...");
        assert_eq!(truncate("short", 10), "short");
    }
}
