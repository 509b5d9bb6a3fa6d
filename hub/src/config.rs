//! Configuration of `xfhub serve`: embedded defaults, or a TOML file in which every field is
//! documented here and an unknown field is rejected with its name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gateway listens on, e.g. `127.0.0.1:8080` or `[::]:8080` (on Linux `[::]`
    /// accepts IPv6 and IPv4 alike).
    pub listen: SocketAddr,
    /// More addresses served like `listen` (same routes, same TLS), e.g. `["[::1]:8080"]` to add
    /// IPv6 loopback to an IPv4 `listen`. Empty by default.
    pub also_listen: Vec<SocketAddr>,
    /// Directory for the embedded SQLite database and other local state.
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://path/to/file.db` or `postgres://user@host/db`. Default: the
    /// SQLite file `xfhub.db` in `data_dir`.
    pub database_url: Option<String>,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Message bus.
    pub bus: BusConfig,
    /// Logging.
    pub log: LogConfig,
    /// Keys for personal data at rest.
    pub security: SecurityConfig,
    /// Request rate limits per route group.
    pub rate_limits: RateLimitsConfig,
    /// TLS termination on every listener.
    pub tls: TlsConfig,
    /// The routing table of the bus.
    pub routes: RoutesConfig,
    /// The pull connectors: `[connectors.provincial]` (provincial sharing site, SOAP) and
    /// `[connectors.hotline12345]` (12345 platform, REST); see `xfhub_connectors::pull::PullSettings`.
    pub connectors: xfhub_connectors::ConnectorsConfig,
    /// The SMS gateway connector (`xfhub_connectors::sms::SmsConfig`).
    pub sms: xfhub_connectors::sms::SmsConfig,
    /// The warning module (`xfhub_modules::warning::WarningConfig`).
    pub warning: xfhub_modules::warning::WarningConfig,
    /// The dispatch module (`xfhub_modules::dispatch::DispatchConfig`).
    pub dispatch: xfhub_modules::dispatch::DispatchConfig,
    /// Excel imports and exports (`crate::excel::ExcelConfig`).
    pub excel: crate::excel::ExcelConfig,
    /// Exchange packages (`crate::exchange::ExchangeConfig`).
    pub exchange: crate::exchange::ExchangeConfig,
    /// The Xiangyiban app channel (`crate::mobile::AppConfig`): staff JWTs, the public
    /// complaint channel, its abuse limits.
    pub app: crate::mobile::AppConfig,
    /// The HTTP server's view of its clients.
    pub server: ServerConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Reverse proxies whose `X-Forwarded-For` is believed, as CIDR blocks or addresses, e.g.
    /// `["10.0.0.0/8", "127.0.0.1/32"]`. Behind one, the client IP (per-IP limits of the app
    /// channel, the audit's remote address) is the right-most forwarded address that is not a
    /// trusted proxy; from any other peer the header is ignored. Empty by default: the peer is
    /// the client. A value that is not a CIDR block stops the load with its position.
    pub trusted_proxies: Vec<crate::client_ip::Cidr>,
}

/// The routing table (`routes.toml`, see the README, "Routing table").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutesConfig {
    /// Routing table file. Default: the built-in table (`routes/routes.toml`, compiled in).
    /// An invalid file at start is a startup error listing every error; a running hub checks
    /// the file every 2 s and swaps in a changed file that validates (an invalid one is logged
    /// with every error and the table in force stays).
    pub file: Option<PathBuf>,
}

/// Keys for personal data at rest, and request signing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Key ring file (TOML, see `xfhub_security::keys`). Default: `keys.toml` in `data_dir`.
    /// Created with mode 0600 on first start when missing; a running hub reloads it within 2 s
    /// of a change (`xfhub keys rotate`). The environment variable `XFHUB_KEYS`, holding the
    /// same TOML text, overrides the file.
    pub key_file: Option<PathBuf>,
    /// Largest difference, in seconds, between a signed request's timestamp and the hub's
    /// clock; nonces are remembered for twice this long.
    pub signature_window_secs: u64,
    /// How long, in seconds, a client's previous secret stays valid after `xfhub clients rotate`.
    pub secret_grace_secs: u64,
}

/// Rate limits of the three limited route groups (`/healthz`, `/readyz` and `/openapi.json`
/// are never limited). A field left out keeps the default of its own group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// `POST /api/v1/petitions` and `POST /api/v1/workorders`.
    #[serde(deserialize_with = "submit_limits")]
    pub submit: GroupLimitConfig,
    /// Reads of records and code tables, and the echo route.
    #[serde(deserialize_with = "read_limits")]
    pub read: GroupLimitConfig,
    /// `/admin/*` and `/metrics`.
    #[serde(deserialize_with = "admin_limits")]
    pub admin: GroupLimitConfig,
}

/// Limits of one route group: a global token bucket shared by every request of the group
/// (checked before authentication) and one bucket per client app key (checked after it).
/// Beyond either the answer is `429 rate_limited` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimitConfig {
    /// Requests per second the whole group sustains, all clients together (at least 1).
    pub global_per_sec: u32,
    /// Requests the whole group may take at once above the sustained rate (at least 1).
    pub global_burst: u32,
    /// Requests per second one client app key sustains in this group (at least 1).
    pub client_per_sec: u32,
    /// Requests one client app key may take at once (at least 1).
    pub client_burst: u32,
}

impl GroupLimitConfig {
    /// Defaults of the submit group.
    pub const SUBMIT: GroupLimitConfig = GroupLimitConfig {
        global_per_sec: 20_000,
        global_burst: 20_000,
        client_per_sec: 2_000,
        client_burst: 2_000,
    };
    /// Defaults of the read group. The global rate is above the echo baseline that
    /// `xfhub bench` measures (about 50,000 req/s), so the benchmark is not capped by it.
    pub const READ: GroupLimitConfig = GroupLimitConfig {
        global_per_sec: 100_000,
        global_burst: 100_000,
        client_per_sec: 5_000,
        client_burst: 5_000,
    };
    /// Defaults of the admin group.
    pub const ADMIN: GroupLimitConfig = GroupLimitConfig {
        global_per_sec: 200,
        global_burst: 200,
        client_per_sec: 50,
        client_burst: 50,
    };
}

/// The file form of a group's limits: a missing field keeps the group's own default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupLimitFile {
    global_per_sec: Option<u32>,
    global_burst: Option<u32>,
    client_per_sec: Option<u32>,
    client_burst: Option<u32>,
}

impl GroupLimitFile {
    fn over(self, d: GroupLimitConfig) -> GroupLimitConfig {
        GroupLimitConfig {
            global_per_sec: self.global_per_sec.unwrap_or(d.global_per_sec),
            global_burst: self.global_burst.unwrap_or(d.global_burst),
            client_per_sec: self.client_per_sec.unwrap_or(d.client_per_sec),
            client_burst: self.client_burst.unwrap_or(d.client_burst),
        }
    }
}

fn submit_limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<GroupLimitConfig, D::Error> {
    GroupLimitFile::deserialize(d).map(|f| f.over(GroupLimitConfig::SUBMIT))
}

fn read_limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<GroupLimitConfig, D::Error> {
    GroupLimitFile::deserialize(d).map(|f| f.over(GroupLimitConfig::READ))
}

fn admin_limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<GroupLimitConfig, D::Error> {
    GroupLimitFile::deserialize(d).map(|f| f.over(GroupLimitConfig::ADMIN))
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            submit: GroupLimitConfig::SUBMIT,
            read: GroupLimitConfig::READ,
            admin: GroupLimitConfig::ADMIN,
        }
    }
}

/// TLS termination (rustls). Both files or neither: without them every listener speaks plain
/// HTTP (put a TLS-terminating proxy in front); with them every listener speaks only HTTPS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the server certificate first, then its intermediate certificates.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the private key of the certificate (PKCS#8, PKCS#1 or SEC1); keep it
    /// mode 0600.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files when TLS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        }
    }
}

/// Limits applied to every request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body accepted, in bytes (413 beyond).
    pub body_bytes: usize,
    /// Longest a request may take, in seconds, before it is answered 503 `timeout`.
    pub request_timeout_secs: u64,
    /// Longest a graceful shutdown waits for in-flight work, in seconds.
    pub shutdown_grace_secs: u64,
}

/// Which bus carries messages and how consumers retry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `embedded`: durable queues in the store (one process). `amqp`: RabbitMQ (`[bus.amqp]`),
    /// for several hub instances sharing one PostgreSQL database and one broker.
    pub kind: BusKind,
    /// Unsettled deliveries a consumer holds at most (backpressure). 512 by default: at 128
    /// a consumer whose every ack waits for a store commit ran out of work between commits
    /// (BENCHMARKS.md, "AMQP bus vs raw lapin").
    pub prefetch: usize,
    /// Deliveries before a failing message is dead-lettered.
    pub max_attempts: i64,
    /// First retry delay in milliseconds; doubles each attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub retry_max_ms: u64,
    /// The broker, exchange and queue names of `kind = "amqp"`.
    pub amqp: xfhub_routes::AmqpConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    Embedded,
    Amqp,
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `xfhub=debug,info`; `RUST_LOG` overrides it.
    pub filter: String,
    /// Write JSON lines instead of text.
    pub json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            also_listen: Vec::new(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            limits: LimitsConfig::default(),
            bus: BusConfig::default(),
            log: LogConfig::default(),
            security: SecurityConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            tls: TlsConfig::default(),
            routes: RoutesConfig::default(),
            connectors: Default::default(),
            sms: Default::default(),
            warning: Default::default(),
            dispatch: Default::default(),
            excel: crate::excel::ExcelConfig::default(),
            exchange: crate::exchange::ExchangeConfig::default(),
            app: crate::mobile::AppConfig::default(),
            server: ServerConfig::default(),
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            key_file: None,
            signature_window_secs: 300,
            secret_grace_secs: 86_400,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            body_bytes: 2 * 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
        }
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::Embedded,
            prefetch: 512,
            max_attempts: 5,
            retry_base_ms: 500,
            retry_max_ms: 300_000,
            amqp: xfhub_routes::AmqpConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".to_owned(),
            json: false,
        }
    }
}

/// Every problem found in a configuration, all at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {path}:\n  {}", .errors.join("\n  "))]
pub struct ConfigError {
    pub path: String,
    pub errors: Vec<String>,
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |errors| ConfigError {
            path: path.display().to_string(),
            errors,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(vec![e.to_string()]))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| fail(vec![e.to_string()]))?;
        cfg.validate().map_err(fail)?;
        Ok(cfg)
    }

    /// Checks values serde cannot: every error is reported, not only the first.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        errors.extend(self.excel.problems());
        errors.extend(self.exchange.problems());
        errors.extend(self.app.problems());
        if self.limits.body_bytes < 1024 {
            errors.push("limits.body_bytes: must be at least 1024".to_owned());
        }
        if self.limits.request_timeout_secs == 0 {
            errors.push("limits.request_timeout_secs: must be at least 1".to_owned());
        }
        if !(10..=3600).contains(&self.security.signature_window_secs) {
            errors.push("security.signature_window_secs: must be between 10 and 3600".to_owned());
        }
        if self.bus.prefetch == 0 {
            errors.push("bus.prefetch: must be at least 1".to_owned());
        }
        if self.bus.max_attempts < 1 {
            errors.push("bus.max_attempts: must be at least 1".to_owned());
        }
        if self.bus.retry_base_ms == 0 || self.bus.retry_base_ms > self.bus.retry_max_ms {
            errors.push(
                "bus.retry_base_ms: must be at least 1 and at most bus.retry_max_ms".to_owned(),
            );
        }
        if self.bus.kind == BusKind::Amqp {
            errors.extend(self.bus.amqp.problems("bus.amqp."));
        }
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:"))
            {
                errors.push("database_url: must start with sqlite: or postgres:".to_owned());
            }
        }
        for (i, addr) in self.also_listen.iter().enumerate() {
            if *addr == self.listen || self.also_listen[..i].contains(addr) {
                errors.push(format!("also_listen[{i}]: {addr} is already listed"));
            }
        }
        for (name, g) in [
            ("submit", &self.rate_limits.submit),
            ("read", &self.rate_limits.read),
            ("admin", &self.rate_limits.admin),
        ] {
            for (field, value) in [
                ("global_per_sec", g.global_per_sec),
                ("global_burst", g.global_burst),
                ("client_per_sec", g.client_per_sec),
                ("client_burst", g.client_burst),
            ] {
                if value == 0 {
                    errors.push(format!("rate_limits.{name}.{field}: must be at least 1"));
                }
            }
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => {
                errors.push("tls.key_file: required when tls.cert_file is set".to_owned())
            }
            (None, Some(_)) => {
                errors.push("tls.cert_file: required when tls.key_file is set".to_owned())
            }
            _ => {}
        }
        for section in [
            self.sms.validate(),
            self.warning.validate(),
            self.dispatch.validate(),
        ] {
            errors.extend(section.err().unwrap_or_default());
        }
        {
            // The secrets may come from the environment (XFHUB_*_SECRET).
            let mut c = self.connectors.clone();
            c.apply_env();
            c.validate(&mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The key ring file in force: `security.key_file`, else `keys.toml` in `data_dir`.
    pub fn key_file(&self) -> PathBuf {
        self.security
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys.toml"))
    }

    /// Every address served: `listen` first, then `also_listen`.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.listen)
            .chain(self.also_listen.iter().copied())
            .collect()
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("xfhub.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_cidr_blocks() {
        let c: Config =
            toml::from_str("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert_eq!(c.server.trusted_proxies.len(), 2);
        let err = toml::from_str::<Config>("[server]\ntrusted_proxies = [\"10.0.0.1/8\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trusted_proxies") && err.contains("10.0.0.0/8"),
            "{err}"
        );
        assert!(toml::from_str::<Config>("[server]\ntrusted_proxies = [\"lb\"]\n").is_err());
    }

    #[test]
    fn unknown_field_is_named() {
        let err = toml::from_str::<Config>("listen = \"127.0.0.1:9000\"\n[bus]\nprefetchh = 3\n")
            .unwrap_err();
        assert!(err.to_string().contains("prefetchh"), "{err}");
    }

    #[test]
    fn every_value_error_is_reported() {
        let cfg: Config = toml::from_str(
            "[limits]\nbody_bytes = 1\nrequest_timeout_secs = 0\n[bus]\nprefetch = 0\n",
        )
        .unwrap();
        let errors = cfg.validate().unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn a_group_limit_left_out_keeps_its_group_default() {
        let cfg: Config =
            toml::from_str("[rate_limits.admin]\nclient_per_sec = 10\n[rate_limits.read]\n")
                .unwrap();
        assert_eq!(
            cfg.rate_limits.admin,
            GroupLimitConfig {
                client_per_sec: 10,
                ..GroupLimitConfig::ADMIN
            }
        );
        assert_eq!(cfg.rate_limits.read, GroupLimitConfig::READ);
        assert_eq!(cfg.rate_limits.submit, GroupLimitConfig::SUBMIT);
        let err =
            toml::from_str::<Config>("[rate_limits.submit]\nclient_per_second = 1\n").unwrap_err();
        assert!(err.to_string().contains("client_per_second"), "{err}");
    }

    #[test]
    fn security_values_are_checked_together() {
        let cfg: Config = toml::from_str(
            "listen = \"127.0.0.1:8080\"\nalso_listen = [\"[::1]:8080\", \"127.0.0.1:8080\", \"[::1]:8080\"]\n\
             [rate_limits.submit]\nglobal_burst = 0\n[rate_limits.admin]\nclient_per_sec = 0\n\
             [tls]\ncert_file = \"cert.pem\"\n",
        )
        .unwrap();
        let errors = cfg.validate().unwrap_err();
        assert_eq!(
            errors,
            [
                "also_listen[1]: 127.0.0.1:8080 is already listed",
                "also_listen[2]: [::1]:8080 is already listed",
                "rate_limits.submit.global_burst: must be at least 1",
                "rate_limits.admin.client_per_sec: must be at least 1",
                "tls.key_file: required when tls.cert_file is set",
            ]
        );
        let cfg: Config = toml::from_str("[tls]\nkey_file = \"key.pem\"\n").unwrap();
        assert_eq!(
            cfg.validate().unwrap_err(),
            ["tls.cert_file: required when tls.key_file is set"]
        );
        assert!(cfg.tls.files().is_none());
    }

    #[test]
    fn the_sample_file_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/xfhub.toml");
        let cfg = Config::load(&path).unwrap();
        let d = Config::default();
        assert_eq!(cfg.listen, d.listen);
        assert_eq!(cfg.also_listen, d.also_listen);
        assert_eq!(cfg.rate_limits.submit, d.rate_limits.submit);
        assert_eq!(cfg.rate_limits.read, d.rate_limits.read);
        assert_eq!(cfg.rate_limits.admin, d.rate_limits.admin);
        assert_eq!(
            cfg.security.signature_window_secs,
            d.security.signature_window_secs
        );
        assert_eq!(cfg.security.secret_grace_secs, d.security.secret_grace_secs);
        assert_eq!(cfg.key_file(), d.key_file());
        assert!(cfg.tls.files().is_none());
        assert_eq!(cfg.routes.file, d.routes.file);
        assert_eq!(cfg.server.trusted_proxies, d.server.trusted_proxies);
        assert_eq!(cfg.bus.prefetch, d.bus.prefetch);
    }

    /// The several-instance manifests (no container engine runs here): the configuration they
    /// mount loads and asks for what the shape needs, and the files agree with one another and
    /// with the hub (config path, port, probe paths).
    #[test]
    fn the_deploy_manifests_agree_with_the_hub() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let cfg = Config::load(&deploy.join("cluster.toml")).unwrap();
        assert!(cfg.validate().is_ok(), "{:?}", cfg.validate());
        assert_eq!(cfg.bus.kind, BusKind::Amqp);
        assert!(cfg
            .database_url
            .as_deref()
            .unwrap_or("")
            .starts_with("postgres://"));
        assert_eq!(cfg.listen.port(), 8080);
        assert_eq!(
            cfg.key_file(),
            PathBuf::from("/etc/xfhub/keys/keys.toml"),
            "every instance shares one mounted key ring"
        );

        let compose: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(deploy.join("compose.yaml")).unwrap())
                .unwrap();
        let services = compose["services"].as_mapping().unwrap();
        let hubs: Vec<_> = services
            .iter()
            .filter(|(k, _)| k.as_str().unwrap_or("").starts_with("xfhub-"))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(hubs.len(), 3, "three instances");
        for hub in hubs {
            let command: Vec<&str> = hub["command"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|c| c.as_str())
                .collect();
            assert_eq!(command, ["serve", "--config", "/etc/xfhub/cluster.toml"]);
            let volumes: Vec<&str> = hub["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|c| c.as_str())
                .collect();
            assert!(volumes.contains(&"./cluster.toml:/etc/xfhub/cluster.toml:ro"));
            let check = hub["healthcheck"]["test"][1].as_str().unwrap();
            assert!(check.contains("/dev/tcp/127.0.0.1/8080") && check.contains("GET /readyz"));
        }

        let k8s = std::fs::read_to_string(deploy.join("k8s/xfhub.yaml")).unwrap();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&k8s)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let deployment = docs
            .iter()
            .find(|d| d["kind"].as_str() == Some("Deployment"))
            .unwrap();
        assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(3));
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["args"][2].as_str(),
            Some("/etc/xfhub/config/cluster.toml")
        );
        assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(8080));
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        let mounts: Vec<&str> = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        assert!(mounts.contains(&"/etc/xfhub/config") && mounts.contains(&"/etc/xfhub/keys"));
        // The probes are open routes of the hub.
        for path in ["/readyz", "/healthz"] {
            assert_eq!(
                crate::auth::group_of(&axum::http::Method::GET, path),
                crate::auth::RouteGroup::Open
            );
        }
    }

    #[test]
    fn key_file_defaults_to_the_data_dir() {
        let mut cfg = Config::default();
        assert_eq!(cfg.key_file(), PathBuf::from("./data/keys.toml"));
        cfg.security.key_file = Some(PathBuf::from("/etc/xfhub/keys.toml"));
        assert_eq!(cfg.key_file(), PathBuf::from("/etc/xfhub/keys.toml"));
    }

    #[test]
    fn defaults_are_embedded() {
        let cfg = Config::default();
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.database_url(), "sqlite://./data/xfhub.db");
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
    }
}
