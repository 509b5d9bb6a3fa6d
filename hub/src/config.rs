//! Configuration of `xfhub serve`: embedded defaults, or a TOML file in which every field is
//! documented here and an unknown field is rejected with its name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gateway listens on, e.g. `127.0.0.1:8080` or `[::]:8080`.
    pub listen: SocketAddr,
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
    /// `embedded`: durable queues in the store (the only kind in this release).
    pub kind: BusKind,
    /// Unsettled deliveries a consumer holds at most (backpressure).
    pub prefetch: usize,
    /// Deliveries before a failing message is dead-lettered.
    pub max_attempts: i64,
    /// First retry delay in milliseconds; doubles each attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub retry_max_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    Embedded,
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
            data_dir: PathBuf::from("./data"),
            database_url: None,
            limits: LimitsConfig::default(),
            bus: BusConfig::default(),
            log: LogConfig::default(),
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
            prefetch: 128,
            max_attempts: 5,
            retry_base_ms: 500,
            retry_max_ms: 300_000,
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
        if self.limits.body_bytes < 1024 {
            errors.push("limits.body_bytes: must be at least 1024".to_owned());
        }
        if self.limits.request_timeout_secs == 0 {
            errors.push("limits.request_timeout_secs: must be at least 1".to_owned());
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
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:"))
            {
                errors.push("database_url: must start with sqlite: or postgres:".to_owned());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
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
    fn defaults_are_embedded() {
        let cfg = Config::default();
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.database_url(), "sqlite://./data/xfhub.db");
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
    }
}
