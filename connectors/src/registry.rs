//! The pull connectors of a hub: built from `[connectors.*]`, started with the hub, listed by
//! `GET /admin/connectors`, and used to reprocess import errors.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xfhub_security::keys::KeyRing;
use xfhub_store::{Stmt, Store};

use crate::pull::{self, Connector, ConnectorStatus, PullSettings, Reprocessed};

/// `[connectors]`: the pull connectors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorsConfig {
    /// The provincial sharing site (SOAP): `[connectors.provincial]`.
    pub provincial: PullSettings,
    /// The 12345 platform (REST): `[connectors.hotline12345]`.
    pub hotline12345: PullSettings,
}

impl ConnectorsConfig {
    /// Applies `XFHUB_PROVINCIAL_SECRET` / `XFHUB_HOTLINE12345_SECRET`.
    pub fn apply_env(&mut self) {
        if let Ok(s) = std::env::var("XFHUB_PROVINCIAL_SECRET") {
            self.provincial.secret = s;
        }
        if let Ok(s) = std::env::var("XFHUB_HOTLINE12345_SECRET") {
            self.hotline12345.secret = s;
        }
    }

    /// Every problem, each naming its field.
    pub fn validate(&self, errors: &mut Vec<String>) {
        self.provincial.validate("connectors.provincial", errors);
        self.hotline12345
            .validate("connectors.hotline12345", errors);
    }
}

/// The connectors of a running hub (enabled or not: a disabled one still maps its import
/// errors when they are reprocessed).
#[derive(Clone, Debug, Default)]
pub struct Connectors {
    list: Vec<Arc<Connector>>,
}

/// A connector's settings with an unusable URL still builds (it is disabled then); this URL
/// stands in.
const PLACEHOLDER_URL: &str = "http://127.0.0.1:9";

fn settings_or_placeholder(s: &PullSettings) -> PullSettings {
    let mut s = s.clone();
    if reqwest::Url::parse(&s.url).is_err() {
        s.url = PLACEHOLDER_URL.to_owned();
    }
    s
}

impl Connectors {
    /// Builds both connectors (reads their code map files).
    pub fn new(cfg: &ConnectorsConfig) -> Result<Connectors, String> {
        let p = settings_or_placeholder(&cfg.provincial);
        let h = settings_or_placeholder(&cfg.hotline12345);
        let mut p_shown = p.clone();
        p_shown.url = cfg.provincial.url.clone();
        let mut h_shown = h.clone();
        h_shown.url = cfg.hotline12345.url.clone();
        let provincial = Connector::new(crate::provincial::source(&p)?, p_shown)?;
        let hotline = Connector::new(crate::hotline12345::source(&h)?, h_shown)?;
        Ok(Connectors {
            list: vec![Arc::new(provincial), Arc::new(hotline)],
        })
    }

    /// Starts the pull loop of every enabled connector into `tasks`.
    pub fn start(
        &self,
        tasks: &mut JoinSet<()>,
        store: &Store,
        ring: Arc<dyn Fn() -> Arc<KeyRing> + Send + Sync>,
        on_commit: Arc<dyn Fn() + Send + Sync>,
        stop: &CancellationToken,
    ) {
        for c in &self.list {
            if c.settings().enabled {
                tasks.spawn(pull::run(
                    c.clone(),
                    store.clone(),
                    ring.clone(),
                    on_commit.clone(),
                    stop.clone(),
                ));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Connector>> {
        self.list.iter().find(|c| c.name() == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|c| c.name()).collect()
    }

    /// Every connector's status.
    pub async fn statuses(&self, store: &Store) -> Vec<ConnectorStatus> {
        let mut out = Vec::new();
        for c in &self.list {
            out.push(c.status(store).await);
        }
        out
    }

    /// Reprocesses unresolved import errors of the pull connectors: `ids` when given, else
    /// up to `limit` of `source` (or of every connector), oldest first. Reads the code map
    /// files again first; a bad file stops the run with its error.
    pub async fn reprocess(
        &self,
        store: &Store,
        ring: &Arc<KeyRing>,
        source: Option<&str>,
        ids: Option<&[i64]>,
        limit: u32,
    ) -> Result<Vec<Reprocessed>, ReprocessError> {
        for c in &self.list {
            if source.is_none_or(|s| s == c.name()) {
                c.reload_map().map_err(ReprocessError::CodeMap)?;
            }
        }
        let names: Vec<&str> = match source {
            Some(s) => {
                if self.get(s).is_none() {
                    return Err(ReprocessError::UnknownSource(s.to_owned()));
                }
                vec![s]
            }
            None => self.names(),
        };
        let mut sql = String::from(
            "SELECT id, source, source_ref, raw FROM import_errors WHERE resolved_at IS NULL AND source IN (",
        );
        let mut stmt_args: Vec<String> = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", i + 1));
            stmt_args.push((*n).to_owned());
        }
        sql.push(')');
        let mut stmt_ids = Vec::new();
        if let Some(ids) = ids {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(" AND id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", names.len() + i + 1));
                stmt_ids.push(*id);
            }
            sql.push(')');
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", limit.clamp(1, 1000)));
        let mut stmt = Stmt::new(sql);
        for a in stmt_args {
            stmt = stmt.bind(a);
        }
        for id in stmt_ids {
            stmt = stmt.bind(id);
        }
        let rows = stmt
            .query()
            .fetch_all(store.reader())
            .await
            .map_err(|e| ReprocessError::Store(e.to_string()))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let get = |e: sqlx::Error| ReprocessError::Store(e.to_string());
            let id: i64 = r.try_get("id").map_err(get)?;
            let src: String = r.try_get("source").map_err(get)?;
            let source_ref: Option<String> = r.try_get("source_ref").map_err(get)?;
            let raw: String = r.try_get("raw").map_err(get)?;
            let Some(c) = self.get(&src) else { continue };
            let done = pull::reprocess_one(c, store, ring, id, source_ref, &raw)
                .await
                .map_err(ReprocessError::Store)?;
            out.push(done);
        }
        Ok(out)
    }
}

/// Why reprocessing could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReprocessError {
    #[error("{0}")]
    CodeMap(String),
    #[error("unknown connector `{0}` (provincial, hotline12345)")]
    UnknownSource(String),
    #[error("store: {0}")]
    Store(String),
}
