//! The routing table in force and its hot reload: a table file is polled every 2 s; a changed
//! file that validates replaces the table, one that does not is logged with every error and the
//! table in force stays. Each reload is logged (`RouteTableReloaded`, `RouteTableRejected`) and
//! counted (`xfhub_route_reloads_total{outcome}`).

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use xfhub_store::now_ms;

use crate::table::{RouteTable, TableHandle, BUILT_IN};

/// How often a table file is checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// Where the table comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSource {
    /// `routes/routes.toml`, compiled in.
    BuiltIn,
    File(PathBuf),
}

impl fmt::Display for TableSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableSource::BuiltIn => f.write_str("built-in"),
            TableSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl TableSource {
    /// Reads and validates the table: every error at once, warnings apart.
    pub fn load(&self, known_queues: &[&str]) -> Result<(RouteTable, Vec<String>), Vec<String>> {
        match self {
            TableSource::BuiltIn => RouteTable::parse(BUILT_IN, known_queues),
            TableSource::File(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| vec![format!("{}: {e}", p.display())])?;
                RouteTable::parse(&text, known_queues)
            }
        }
    }

    fn mtime(&self) -> Option<SystemTime> {
        match self {
            TableSource::BuiltIn => None,
            TableSource::File(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok(),
        }
    }
}

/// A reload that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// When, in ms since the epoch.
    pub at_ms: i64,
    pub errors: Vec<String>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file has not changed since it was last read.
    Unchanged,
    Applied {
        version: String,
        warnings: Vec<String>,
    },
    Rejected {
        errors: Vec<String>,
    },
}

#[derive(Debug)]
struct Status {
    loaded_at_ms: i64,
    mtime: Option<SystemTime>,
    last_rejected: Option<Rejected>,
}

/// The table in force, where it came from, and its reloads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ActiveRoutes {
    handle: TableHandle,
    source: TableSource,
    known_queues: Arc<Vec<String>>,
    status: Arc<Mutex<Status>>,
}

impl ActiveRoutes {
    /// Tracks the table behind `handle`, just loaded from `source`.
    pub fn new(handle: TableHandle, source: TableSource, known_queues: &[&str]) -> Self {
        let mtime = source.mtime();
        ActiveRoutes {
            handle,
            source,
            known_queues: Arc::new(known_queues.iter().map(|q| (*q).to_owned()).collect()),
            status: Arc::new(Mutex::new(Status {
                loaded_at_ms: now_ms(),
                mtime,
                last_rejected: None,
            })),
        }
    }

    pub fn source(&self) -> &TableSource {
        &self.source
    }

    pub fn table(&self) -> Arc<RouteTable> {
        self.handle.current()
    }

    /// When the table in force was loaded, in ms since the epoch.
    pub fn loaded_at_ms(&self) -> i64 {
        self.status.lock().expect("routes status").loaded_at_ms
    }

    /// The last reload refused, if any (cleared by a reload that succeeds).
    pub fn last_rejected(&self) -> Option<Rejected> {
        self.status
            .lock()
            .expect("routes status")
            .last_rejected
            .clone()
    }

    /// Reads the source again and replaces the table if the file is valid.
    pub fn reload(&self) -> ReloadOutcome {
        if self.source == TableSource::BuiltIn {
            return ReloadOutcome::Unchanged;
        }
        let mtime = self.source.mtime();
        let known: Vec<&str> = self.known_queues.iter().map(String::as_str).collect();
        let result = self.source.load(&known);
        let mut status = self.status.lock().expect("routes status");
        status.mtime = mtime;
        match result {
            Ok((table, warnings)) => {
                let version = table.version.clone();
                self.handle.replace(table);
                status.loaded_at_ms = now_ms();
                status.last_rejected = None;
                metrics::counter!("xfhub_route_reloads_total", "outcome" => "applied").increment(1);
                tracing::info!(source = %self.source, version = %version, warnings = ?warnings, "RouteTableReloaded");
                ReloadOutcome::Applied { version, warnings }
            }
            Err(errors) => {
                metrics::counter!("xfhub_route_reloads_total", "outcome" => "rejected")
                    .increment(1);
                tracing::error!(source = %self.source, errors = ?errors, "RouteTableRejected");
                status.last_rejected = Some(Rejected {
                    at_ms: now_ms(),
                    errors: errors.clone(),
                });
                ReloadOutcome::Rejected { errors }
            }
        }
    }

    /// Reloads when the file's modification time changed since it was last read.
    pub fn reload_if_changed(&self) -> ReloadOutcome {
        let seen = self.status.lock().expect("routes status").mtime;
        if self.source.mtime() == seen {
            ReloadOutcome::Unchanged
        } else {
            self.reload()
        }
    }

    /// Polls the table file every 2 s until `stop` is cancelled (returns at once for the
    /// built-in table).
    pub async fn watch(self, stop: CancellationToken) {
        if self.source == TableSource::BuiltIn {
            return;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            self.reload_if_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "version = \"v1\"\n[[rule]]\nname = \"t\"\nmatch = \"#\"\nto = [\"trail\"]\n";

    fn touch(path: &std::path::Path, text: &str, secs: u64) {
        std::fs::write(path, text).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn a_file_is_read_again_only_when_its_mtime_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.toml");
        touch(&path, TABLE, 1_000);
        let source = TableSource::File(path.clone());
        let (table, _) = source.load(&["trail"]).unwrap();
        let active = ActiveRoutes::new(TableHandle::new(table), source, &["trail"]);
        assert_eq!(active.reload_if_changed(), ReloadOutcome::Unchanged);

        touch(&path, "version = \"v2\"\n[[rule]]\nname = \"t\"\n", 2_000);
        let ReloadOutcome::Rejected { errors } = active.reload_if_changed() else {
            panic!("an invalid file is rejected");
        };
        assert_eq!(
            errors,
            [
                "rule[0] \"t\": match: missing",
                "rule[0] \"t\": to: missing"
            ]
        );
        assert_eq!(active.table().version, "v1");
        assert_eq!(
            active.reload_if_changed(),
            ReloadOutcome::Unchanged,
            "logged once"
        );

        touch(&path, &TABLE.replace("v1", "v3"), 3_000);
        assert_eq!(
            active.reload_if_changed(),
            ReloadOutcome::Applied {
                version: "v3".to_owned(),
                warnings: Vec::new()
            }
        );
        assert_eq!(active.table().version, "v3");
        assert!(active.last_rejected().is_none());
    }

    #[test]
    fn the_built_in_table_never_reloads() {
        let (table, _) = TableSource::BuiltIn.load(&["trail"]).unwrap();
        let active = ActiveRoutes::new(TableHandle::new(table), TableSource::BuiltIn, &["trail"]);
        assert_eq!(active.reload(), ReloadOutcome::Unchanged);
        assert_eq!(active.source().to_string(), "built-in");
    }
}
