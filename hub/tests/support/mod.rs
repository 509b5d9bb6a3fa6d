//! Runs the real `xfhub` binary as a child process and talks to it over HTTP.
//!
//! A [`HubProcess`] kills its child when dropped (a failing assertion never leaves a hub
//! running), keeps the child's stderr in a file next to the data directory, and puts that
//! stderr into every failure message about the process.
//!
//! Every route but `/healthz`, `/readyz` and `/openapi.json` needs a signed request: before a
//! hub first starts on a data directory, [`create_client`] registers a client with every scope
//! in its store (which also writes the key ring `keys.toml` the hub then loads), and [`Api`]
//! signs every request it sends with that client's secret, a fresh nonce and the current time.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::Value;
use tokio::process::{Child, Command};
use xfhub::config::Config;
use xfhub_security::sign;

/// Longest wait for `/readyz` to answer 200 after a start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a message to reach its consumer, for a page of records, for an exit.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest any single HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Trail checks and resubmissions in flight at once during verification.
pub const VERIFY_CONCURRENCY: usize = 16;
/// The hub's log filter in these tests: verbose, so that the check that no personal data
/// reaches the logs ([`assert_logs_free_of_pii`]) covers debug logging too.
const HUB_LOG_FILTER: &str = "debug";

/// Settings of every hub these tests start: rate limits far above anything the tests send, so
/// that the guarantees under test are never masked by `429 rate_limited` (verification reads
/// thousands of trails through the admin routes).
const HUB_CONFIG: &str = "\
[rate_limits.submit]
global_per_sec = 1000000
global_burst = 1000000
client_per_sec = 1000000
client_burst = 1000000
[rate_limits.read]
global_per_sec = 1000000
global_burst = 1000000
client_per_sec = 1000000
client_burst = 1000000
[rate_limits.admin]
global_per_sec = 1000000
global_burst = 1000000
client_per_sec = 1000000
client_burst = 1000000
";

/// The app key and secret of the client the tests call the hub as.
#[derive(Clone)]
pub struct Credentials {
    pub app_key: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

/// Registers a client with every scope (`submit,read,admin,pii:read`), every info set and
/// every division in the store of `data_dir`, the way `xfhub clients add` does, and closes the
/// store again. Creates the data directory and its key ring (`keys.toml`) when missing.
pub async fn create_client(data_dir: &Path) -> Credentials {
    let config = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    let (store, keys) = xfhub::admin_cli::open(&config)
        .await
        .unwrap_or_else(|e| panic!("open the store in {}: {e:#}", data_dir.display()));
    let list = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (app_key, secret) = xfhub::admin_cli::add_client(
        &store,
        &keys.current(),
        "process-tests",
        list(&["submit", "read", "admin", "pii:read"]),
        list(&["*"]),
        list(&["*"]),
    )
    .await
    .unwrap_or_else(|e| panic!("add a client: {e:#}"));
    store.close().await;
    assert!(
        config.key_file().exists(),
        "the key ring was written to {}",
        config.key_file().display()
    );
    Credentials { app_key, secret }
}

/// The body of the `i`-th distinct sample petition.
pub fn petition_body(i: u64) -> Vec<u8> {
    serde_json::to_vec(&xfhub_schemas::sample_petition(i)).expect("a sample petition serializes")
}

/// The source id of the `i`-th sample petition.
pub fn petition_source_id(i: u64) -> String {
    xfhub_schemas::sample_petition(i).source.id
}

/// A free local port: bound, read and released (the hub binds it again a moment later; a
/// start that loses that race is retried on another port).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// An HTTP client of one hub, signing every request. Cheap to clone into client tasks.
#[derive(Clone, Debug)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    credentials: Credentials,
}

/// An HTTP answer: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Api {
    pub fn new(addr: SocketAddr, credentials: Credentials) -> Api {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build the HTTP client");
        Api {
            client,
            base: format!("http://{addr}"),
            credentials,
        }
    }

    /// Sends a request signed now, with a nonce of its own (a retry is a new request: it is
    /// signed again). `path` is the request target as sent, query included. `Err` is a
    /// transport failure (refused, reset, timed out), with causes.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        let headers = sign::sign_headers(
            &self.credentials.app_key,
            self.credentials.secret.as_bytes(),
            method.as_str(),
            path,
            body.as_deref().unwrap_or_default(),
            xfhub_store::now_ms(),
            &sign::new_nonce(),
        );
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await.map_err(|e| chain(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| chain(&e))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.send(Method::GET, path, None).await
    }

    /// `POST /api/v1/petitions` with the `i`-th sample petition.
    pub async fn submit_petition(&self, i: u64) -> Result<Answer, String> {
        self.send(Method::POST, "/api/v1/petitions", Some(petition_body(i)))
            .await
    }

    /// A GET that must answer 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        match self.get(path).await {
            Ok(a) if a.status == 200 => a.body,
            other => panic!("GET {path}: expected 200, got {other:?}"),
        }
    }

    /// How many `consumed` hops the trail of `message_id` has; None while the message has no
    /// trail yet (404: not relayed yet).
    pub async fn consumed_hops(&self, message_id: &str) -> Option<usize> {
        let path = format!("/admin/messages/{message_id}/trail");
        match self.get(&path).await {
            Ok(a) if a.status == 200 => Some(consumed_in(&a.body)),
            Ok(a) if a.status == 404 => None,
            other => panic!("GET {path}: expected 200 or 404, got {other:?}"),
        }
    }

    /// Waits until the trail of `message_id` shows `consumed`; returns how many `consumed` hops
    /// it has then. Panics (with the trail) at `deadline`.
    pub async fn wait_consumed(&self, message_id: &str, deadline: Instant) -> usize {
        loop {
            if let Some(n) = self.consumed_hops(message_id).await {
                if n > 0 {
                    return n;
                }
            }
            if Instant::now() > deadline {
                let trail = self
                    .get(&format!("/admin/messages/{message_id}/trail"))
                    .await;
                panic!("message {message_id} was not consumed in time; trail: {trail:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Proves for each message: it reaches its consumer, and its effect (`consumed` hop) happens
    /// exactly once. Checks again once every message was consumed, so that a second effect that
    /// landed after the first check is caught too.
    pub async fn assert_each_consumed_exactly_once(&self, message_ids: &[String]) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let counts: Vec<(String, usize)> = stream::iter(message_ids.iter().cloned())
            .map(|m| async move {
                let n = self.wait_consumed(&m, deadline).await;
                (m, n)
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .collect()
            .await;
        let twice: Vec<_> = counts.iter().filter(|(_, n)| *n != 1).collect();
        assert!(
            twice.is_empty(),
            "{} of {} messages were consumed more than once: {:?}",
            twice.len(),
            counts.len(),
            &twice[..twice.len().min(10)]
        );
        let again: Vec<(String, Option<usize>)> = stream::iter(message_ids.iter().cloned())
            .map(|m| async move {
                let n = self.consumed_hops(&m).await;
                (m, n)
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .collect()
            .await;
        let changed: Vec<_> = again.iter().filter(|(_, n)| *n != Some(1)).collect();
        assert!(
            changed.is_empty(),
            "messages whose consumed count changed after settling: {:?}",
            &changed[..changed.len().min(10)]
        );
    }

    /// Every petition of the full listing (all pages, newest first).
    pub async fn list_all_petitions(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/petitions?limit=500&cursor={c}"),
                None => "/api/v1/petitions?limit=500".to_owned(),
            };
            let page = self.get_ok(&path).await;
            let items = page["items"].as_array().expect("items is an array");
            out.extend(items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(Instant::now() < deadline, "listing did not end in time");
        }
        let ids: HashSet<&str> = out.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids.len(), out.len(), "the listing repeats records");
        out
    }
}

fn consumed_in(trail: &Value) -> usize {
    trail["hops"]
        .as_array()
        .map(|hops| hops.iter().filter(|h| h["hop"] == "consumed").count())
        .unwrap_or(0)
}

/// An error with its sources on one line (reqwest's own message hides the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A running `xfhub serve`, killed when dropped.
#[derive(Debug)]
pub struct HubProcess {
    child: Child,
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    credentials: Credentials,
}

static STARTS: AtomicUsize = AtomicUsize::new(0);

impl HubProcess {
    /// Starts `xfhub serve` on `data_dir` and a free port; returns once `/readyz` answers 200.
    /// Its stderr goes to a file `hub-N.stderr` in `log_dir`. `credentials` name a client of
    /// the store in `data_dir` (see [`create_client`]); [`HubProcess::api`] calls as it.
    pub async fn start(data_dir: &Path, log_dir: &Path, credentials: &Credentials) -> HubProcess {
        HubProcess::start_with(data_dir, log_dir, credentials, "").await
    }

    /// Like [`HubProcess::start`], with `extra` appended to the hub's configuration file (TOML:
    /// top-level keys such as `database_url` first, then sections such as `[bus]`).
    pub async fn start_with(
        data_dir: &Path,
        log_dir: &Path,
        credentials: &Credentials,
        extra: &str,
    ) -> HubProcess {
        let config = log_dir.join("hub.toml");
        std::fs::write(&config, format!("{extra}\n{HUB_CONFIG}"))
            .expect("write the hub's configuration");
        for _ in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let n = STARTS.fetch_add(1, Ordering::SeqCst);
            let stderr_path = log_dir.join(format!("hub-{n}.stderr"));
            let stderr = std::fs::File::create(&stderr_path).expect("create the stderr file");
            let child = Command::new(env!("CARGO_BIN_EXE_xfhub"))
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--listen")
                .arg(addr.to_string())
                // Keep the hub's own log level whatever the environment of the test says.
                .env("RUST_LOG", HUB_LOG_FILTER)
                .env_remove("XFHUB_DATABASE_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(stderr))
                .kill_on_drop(true)
                .spawn()
                .expect("spawn xfhub");
            let mut hub = HubProcess {
                child,
                addr,
                stderr_path,
                credentials: credentials.clone(),
            };
            match hub.wait_ready().await {
                Ok(()) => return hub,
                Err(e) if hub.stderr().contains("Address already in use") => {
                    eprintln!("port {} was taken, retrying: {e}", addr.port());
                    continue;
                }
                Err(e) => panic!("{e}\n--- hub stderr ---\n{}", hub.stderr()),
            }
        }
        panic!("no free port after 5 attempts");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let api = self.api();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("the hub exited before it was ready: {status}"));
            }
            if let Ok(a) = api.get("/readyz").await {
                if a.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("the hub was not ready within {READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn api(&self) -> Api {
        Api::new(self.addr, self.credentials.clone())
    }

    /// What the hub wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `kill -9`: the process dies at once, with no chance to flush or drain anything.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL the hub");
        let status = self.child.wait().await.expect("reap the hub");
        assert!(!status.success(), "a killed hub cannot exit 0: {status}");
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("the hub is running");
        send_signal(pid, libc::SIGTERM);
    }

    /// Waits for the process to exit; panics with its stderr after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for the hub"),
            Err(_) => panic!(
                "the hub did not exit within {timeout:?}\n--- hub stderr ---\n{}",
                self.stderr()
            ),
        }
    }
}

#[allow(unsafe_code)] // reason: kill(2) is the only way to send SIGTERM; pid is our own child.
fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// The personal numbers of the `i`-th sample petition that must never reach a log: each
/// complainant's identity number and mobile, the mobile also as 11 digits without a country
/// prefix (`+86`, `0086`, `86`).
fn personal_numbers(i: u64) -> Vec<String> {
    let mut out = Vec::new();
    for c in xfhub_schemas::sample_petition(i).complainants {
        if let Some(id) = c.id_number {
            out.push(id.to_ascii_lowercase());
            out.push(id);
        }
        if let Some(mobile) = c.mobile {
            let digits: String = mobile.chars().filter(char::is_ascii_digit).collect();
            if digits.len() > 11 {
                out.push(digits[digits.len() - 11..].to_owned());
            }
            out.push(digits);
            out.push(mobile);
        }
    }
    out.retain(|n| n.len() >= 6);
    out
}

/// Fails when any `hub-*.stderr` file in `log_dir` contains an identity number or a mobile of
/// a sample petition of `indices` (every petition the test submitted). Names the file, the
/// petition and the line.
pub fn assert_logs_free_of_pii(log_dir: &Path, indices: impl IntoIterator<Item = u64>) {
    let (found, logs, bytes, petitions) = pii_in_logs(log_dir, indices);
    assert!(
        found.is_empty(),
        "personal data of submitted petitions in the hub logs (at most 10 shown):\n{}",
        found.join("\n")
    );
    eprintln!(
        "log check: {petitions} petitions' identity numbers and mobiles absent from {logs} hub \
         logs ({:.1} MiB, filter {HUB_LOG_FILTER:?})",
        bytes as f64 / (1024.0 * 1024.0)
    );
}

/// The occurrences (at most 10) of personal numbers of the sample petitions `indices` in the
/// `hub-*.stderr` files of `log_dir`, each as "file: number of petition i in: line"; with the
/// number of logs, of bytes scanned and of petitions looked for.
pub fn pii_in_logs(
    log_dir: &Path,
    indices: impl IntoIterator<Item = u64>,
) -> (Vec<String>, usize, usize, usize) {
    // Needles by length, so that each log is scanned once per length, not once per needle.
    let mut by_len: std::collections::BTreeMap<usize, std::collections::HashMap<Vec<u8>, u64>> =
        Default::default();
    let mut petitions = 0;
    for i in indices {
        petitions += 1;
        for n in personal_numbers(i) {
            by_len.entry(n.len()).or_default().insert(n.into_bytes(), i);
        }
    }
    assert!(petitions > 0, "no petition to look for");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .expect("read the log directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("hub-") && name.ends_with(".stderr")
        })
        .collect();
    logs.sort();
    assert!(!logs.is_empty(), "no hub log in {}", log_dir.display());
    let mut found = Vec::new();
    let mut scanned = 0;
    'logs: for log in &logs {
        let text = std::fs::read(log).expect("read a hub log");
        scanned += text.len();
        for (len, needles) in &by_len {
            for (at, window) in text.windows(*len).enumerate() {
                // Every needle starts with a digit or `+`: skip the rest cheaply.
                if !(window[0].is_ascii_digit() || window[0] == b'+') {
                    continue;
                }
                if let Some(i) = needles.get(window) {
                    let start = text[..at]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |p| p + 1);
                    let end = text[at..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(text.len(), |p| at + p);
                    found.push(format!(
                        "{}: {:?} of petition {i} in: {}",
                        log.display(),
                        String::from_utf8_lossy(window),
                        String::from_utf8_lossy(&text[start..end])
                    ));
                    if found.len() >= 10 {
                        break 'logs;
                    }
                }
            }
        }
    }
    (found, logs.len(), scanned, petitions)
}
