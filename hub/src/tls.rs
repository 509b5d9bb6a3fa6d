//! Transport: the listeners of `xfhub serve` (`listen` plus `also_listen`) and, when `[tls]`
//! names a certificate and a key, TLS termination with rustls (TLS 1.2 and 1.3, `ring`
//! provider, ALPN `http/1.1`).
//!
//! Every listener serves the same router and stops on the same shutdown token. Each request
//! carries the peer address as `ConnectInfo<SocketAddr>`, plain or TLS alike. TLS handshakes
//! run off the accept loop (at most [`MAX_HANDSHAKES`] at once, each bounded by
//! [`HANDSHAKE_TIMEOUT`]), so a slow or silent client cannot hold up other connections.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes in progress at most per listener; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;

/// Reads the PEM certificate chain and private key into a rustls server configuration.
/// Errors name the file and what is wrong with it, never key material.
pub fn server_config(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("tls.cert_file {}", cert_file.display()))?;
    if certs.is_empty() {
        bail!(
            "tls.cert_file {}: no CERTIFICATE block found",
            cert_file.display()
        );
    }
    warn_if_open(key_file);
    let key = PrivateKeyDer::from_pem_file(key_file).with_context(|| {
        format!(
            "tls.key_file {}: expected a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key_file.display()
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "tls.cert_file {} and tls.key_file {}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    // axum serves HTTP/1.1 only (its http2 feature is off).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn warn_if_open(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    key_file = %path.display(),
                    mode = format!("{mode:04o}"),
                    "TlsKeyFilePermissions: group or others can access the TLS private key; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A TCP listener whose connections come out TLS-terminated.
pub struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: JoinHandle<()>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Starts accepting on `tcp`; handshakes run in their own tasks.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            local,
            rx,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Closes the socket: a stopped server accepts nothing more.
        self.acceptor.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) {
                    // Out of file descriptors and the like: wait as axum does for plain TCP.
                    tracing::error!(error = %e, "AcceptError");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => {
                    metrics::counter!("xfhub_tls_handshake_failures_total", "reason" => "error")
                        .increment(1);
                    tracing::debug!(peer = %peer, error = %e, "TlsHandshakeFailed");
                }
                Err(_) => {
                    metrics::counter!("xfhub_tls_handshake_failures_total", "reason" => "timeout")
                        .increment(1);
                    tracing::debug!(peer = %peer, "TlsHandshakeTimedOut");
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// One bound listener.
#[derive(Debug)]
enum Bound {
    Plain(TcpListener),
    Tls(TlsListener),
}

/// Every listener of the configuration, bound.
#[derive(Debug)]
pub struct Listeners {
    bound: Vec<(SocketAddr, Bound)>,
    tls: bool,
}

impl Listeners {
    /// Reads the TLS files (when configured) and binds `listen` and every `also_listen`
    /// address. Errors name the address or file at fault.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let tls = match config.tls.files() {
            Some((cert, key)) => Some(server_config(cert, key)?),
            None => None,
        };
        let mut bound = Vec::new();
        for (i, addr) in config.listen_addrs().into_iter().enumerate() {
            let what = if i == 0 {
                format!("listen {addr}")
            } else {
                format!("also_listen {addr}")
            };
            let tcp = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {what}"))?;
            let local = tcp.local_addr()?;
            let b = match &tls {
                Some(c) => Bound::Tls(TlsListener::new(tcp, c.clone())?),
                None => Bound::Plain(tcp),
            };
            bound.push((local, b));
        }
        Ok(Listeners {
            bound,
            tls: tls.is_some(),
        })
    }

    /// The bound addresses, `listen` first (with the actual port when 0 was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound.iter().map(|(a, _)| *a).collect()
    }

    /// Whether the listeners terminate TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Serves `app` on every listener until `stop` is cancelled, then lets in-flight requests
    /// finish (graceful shutdown) and returns once every listener is done.
    pub async fn serve(self, app: Router, stop: CancellationToken) -> std::io::Result<()> {
        type Server = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;
        let servers: Vec<Server> = self
            .bound
            .into_iter()
            .map(|(_, b)| {
                let make = app
                    .clone()
                    .into_make_service_with_connect_info::<SocketAddr>();
                let stop = stop.clone().cancelled_owned();
                match b {
                    Bound::Plain(l) => {
                        let l = l.tap_io(|s: &mut TcpStream| {
                            let _ = s.set_nodelay(true);
                        });
                        Box::pin(
                            async move { axum::serve(l, make).with_graceful_shutdown(stop).await },
                        ) as Server
                    }
                    Bound::Tls(l) => {
                        let l = l.tap_io(|_: &mut TlsStream<TcpStream>| {});
                        Box::pin(
                            async move { axum::serve(l, make).with_graceful_shutdown(stop).await },
                        ) as Server
                    }
                }
            })
            .collect();
        let results = futures::future::join_all(servers).await;
        results.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ConnectInfo;
    use axum::routing::get;

    fn app() -> Router {
        Router::new().route(
            "/healthz",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                format!("ok from {}", peer.ip())
            }),
        )
    }

    struct Cert {
        _dir: tempfile::TempDir,
        cert_pem: String,
        cert_file: std::path::PathBuf,
        key_file: std::path::PathBuf,
    }

    fn self_signed() -> Cert {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        let cert_pem = ck.cert.pem();
        std::fs::write(&cert_file, &cert_pem).unwrap();
        std::fs::write(&key_file, ck.key_pair.serialize_pem()).unwrap();
        Cert {
            _dir: dir,
            cert_pem,
            cert_file,
            key_file,
        }
    }

    async fn start(config: &Config) -> (Vec<SocketAddr>, CancellationToken, JoinHandle<()>) {
        let listeners = Listeners::bind(config).await.unwrap();
        let addrs = listeners.local_addrs();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { listeners.serve(app(), stop).await.unwrap() }
        });
        (addrs, stop, task)
    }

    #[tokio::test]
    async fn https_healthz_with_a_self_signed_certificate() {
        let cert = self_signed();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: crate::config::TlsConfig {
                cert_file: Some(cert.cert_file.clone()),
                key_file: Some(cert.key_file.clone()),
            },
            ..Config::default()
        };
        let (addrs, stop, task) = start(&config).await;
        let addr = addrs[0];

        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap())
            .resolve("localhost", addr)
            .build()
            .unwrap();
        let resp = client
            .get(format!("https://localhost:{}/healthz", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok from 127.0.0.1");

        // Plain HTTP on the TLS port gets no answer.
        let plain = reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(plain.is_err(), "{plain:?}");

        // A client that does not trust the certificate is refused.
        let untrusting = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .resolve("localhost", addr)
            .build()
            .unwrap();
        let refused = untrusting
            .get(format!("https://localhost:{}/healthz", addr.port()))
            .send()
            .await;
        assert!(refused.is_err(), "{refused:?}");

        stop.cancel();
        task.await.unwrap();
        // The listener closes once the server stopped (its accept task is aborted).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still accepting");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn also_listen_adds_an_ipv6_listener() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            println!("note: [::1] cannot be bound here (no IPv6 loopback); IPv6 part skipped");
            return;
        }
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            also_listen: vec!["[::1]:0".parse().unwrap()],
            ..Config::default()
        };
        let (addrs, stop, task) = start(&config).await;
        assert_eq!(addrs.len(), 2);
        assert!(addrs[1].is_ipv6());
        for (addr, from) in [(addrs[0], "127.0.0.1"), (addrs[1], "::1")] {
            let resp = reqwest::get(format!("http://{addr}/healthz"))
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{addr}");
            assert_eq!(resp.text().await.unwrap(), format!("ok from {from}"));
        }
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn bad_tls_files_are_named() {
        let cert = self_signed();
        let missing = cert.cert_file.with_file_name("nope.pem");
        let err = format!("{:#}", server_config(&missing, &cert.key_file).unwrap_err());
        assert!(err.starts_with("tls.cert_file "), "{err}");
        // The key where the certificate belongs, and the certificate where the key belongs.
        let err = format!(
            "{:#}",
            server_config(&cert.key_file, &cert.key_file).unwrap_err()
        );
        assert!(err.contains("no CERTIFICATE block"), "{err}");
        let err = format!(
            "{:#}",
            server_config(&cert.cert_file, &cert.cert_file).unwrap_err()
        );
        assert!(err.starts_with("tls.key_file "), "{err}");
        // A key that is not the certificate's.
        let other = self_signed();
        let err = server_config(&cert.cert_file, &other.key_file);
        assert!(err.is_err(), "a foreign key was accepted");
    }
}
