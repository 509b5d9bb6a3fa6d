//! What both pull mocks share: the feed, the faults, the signature check, the admin routes
//! (`/mock/faults`, `/mock/stats`, `/mock/advance`, `/mock/ledger`) and the background advance
//! of process events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::faults::{draw, Action, Credentials, Faults, Nonces};
use crate::feed::{Change, Feed, Served};
use crate::render::Malformation;

/// Counters of a mock.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub pages: u64,
    pub records_served: u64,
    pub duplicates_served: u64,
    pub malformed_served: u64,
    pub updates_appended: u64,
    pub refused_signatures: u64,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Feed positions (backlog plus updates).
    pub feed_len: u64,
    pub records: u64,
}

/// A page's worth of changes, each with its malformation.
#[derive(Debug, Clone)]
pub struct PagePlan {
    pub changes: Vec<(Change, Option<Malformation>)>,
    pub next: u64,
    pub has_more: bool,
}

#[derive(Debug)]
pub struct Core {
    pub seed: u64,
    pub credentials: Credentials,
    pub feed: Mutex<Feed>,
    pub faults: RwLock<Faults>,
    pub rng: Mutex<StdRng>,
    pub nonces: Mutex<Nonces>,
    pub stats: Mutex<Stats>,
    /// Source id of record `index` (for the ledger).
    pub source_id: fn(u64) -> String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Core {
    pub fn new(
        seed: u64,
        credentials: Credentials,
        feed: Feed,
        faults: Faults,
        source_id: fn(u64) -> String,
    ) -> Core {
        Core {
            seed,
            credentials,
            feed: Mutex::new(feed),
            faults: RwLock::new(faults),
            rng: Mutex::new(StdRng::seed_from_u64(seed.wrapping_add(17))),
            nonces: Mutex::new(Nonces::default()),
            stats: Mutex::new(Stats::default()),
            source_id,
        }
    }

    pub fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_faults(&self, f: Faults) -> Result<(), Vec<String>> {
        f.validate()?;
        *self
            .faults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = f;
        Ok(())
    }

    /// Counts a request and draws what to do with it.
    pub fn draw(&self) -> (Action, Faults) {
        let f = self.faults();
        let action = draw(&f, &mut *lock(&self.rng));
        let mut s = lock(&self.stats);
        s.requests += 1;
        if action != Action::Serve {
            *s.faults.entry(format!("{action:?}")).or_default() += 1;
        }
        (action, f)
    }

    pub fn refused_signature(&self) {
        lock(&self.stats).refused_signatures += 1;
    }

    /// Plans the page after `after`: at most `size` records, some of them repeats of earlier
    /// pages (`duplicate_share`), each with its malformation; notes them in the ledger and,
    /// with `update_share`, updates records at the source afterwards.
    pub fn plan(&self, after: u64, size: usize, f: &Faults) -> PagePlan {
        let mut feed = lock(&self.feed);
        let dups = ((size as f64) * f.duplicate_share).round() as usize;
        let dups = dups.min(size.saturating_sub(1));
        let (fresh, next) = feed.page(after, size - dups);
        let repeats = if fresh.is_empty() {
            Vec::new()
        } else {
            feed.earlier(after, dups)
        };
        let n_repeats = repeats.len();
        let mut changes = Vec::with_capacity(fresh.len() + repeats.len());
        // Repeats first: they were served before, as a page overlap shows them.
        for c in repeats.into_iter().chain(fresh) {
            let m = f.malformation(self.seed, c.index, c.version);
            feed.record_served(&c, m.is_none());
            changes.push((c, m));
        }
        let has_more = next < feed.len();
        let updates = ((changes.len() as f64) * f.update_share).ceil() as usize;
        let appended = if updates > 0 && !changes.is_empty() {
            feed.advance(updates)
        } else {
            0
        };
        let mut s = lock(&self.stats);
        s.pages += 1;
        s.records_served += changes.len() as u64;
        s.duplicates_served += n_repeats as u64;
        s.malformed_served += changes.iter().filter(|(_, m)| m.is_some()).count() as u64;
        s.updates_appended += appended as u64;
        PagePlan {
            changes,
            next,
            has_more: has_more || appended > 0,
        }
    }

    pub fn stats(&self) -> Stats {
        let feed = lock(&self.feed);
        let mut s = lock(&self.stats).clone();
        s.feed_len = feed.len();
        s.records = feed.records();
        s
    }

    pub fn advance(&self, n: usize) -> usize {
        let done = lock(&self.feed).advance(n);
        lock(&self.stats).updates_appended += done as u64;
        done
    }

    /// What was served, by source id (needs the ledger on).
    pub fn ledger(&self) -> BTreeMap<String, Served> {
        lock(&self.feed)
            .ledger()
            .into_iter()
            .map(|(i, s)| ((self.source_id)(i), s))
            .collect()
    }

    /// Feed length, for tests waiting until a connector caught up.
    pub fn feed_len(&self) -> u64 {
        lock(&self.feed).len()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    /// Number of records to move one stage on.
    records: usize,
}

#[derive(Debug, Serialize)]
struct Problem {
    code: &'static str,
    errors: Vec<String>,
}

async fn get_faults(State(c): State<Arc<Core>>) -> Json<Faults> {
    Json(c.faults())
}

async fn put_faults(
    State(c): State<Arc<Core>>,
    body: axum::body::Bytes,
) -> Result<Json<Faults>, (StatusCode, Json<Problem>)> {
    let bad = |errors| {
        (
            StatusCode::BAD_REQUEST,
            Json(Problem {
                code: "invalid_faults",
                errors,
            }),
        )
    };
    let f: Faults = serde_json::from_slice(&body).map_err(|e| bad(vec![e.to_string()]))?;
    c.set_faults(f.clone()).map_err(bad)?;
    tracing::info!(faults = ?f, "MockFaultsSet");
    Ok(Json(f))
}

async fn get_stats(State(c): State<Arc<Core>>) -> Json<Stats> {
    Json(c.stats())
}

async fn post_advance(
    State(c): State<Arc<Core>>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, (StatusCode, Json<Problem>)> {
    let b: AdvanceBody = serde_json::from_slice(&body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(Problem {
                code: "invalid_body",
                errors: vec![e.to_string()],
            }),
        )
    })?;
    let n = c.advance(b.records.min(100_000));
    Ok(Json(serde_json::json!({ "advanced": n })))
}

async fn get_ledger(State(c): State<Arc<Core>>) -> Json<BTreeMap<String, Served>> {
    Json(c.ledger())
}

/// The admin routes of a mock (unsigned: the mock is a test fixture).
pub fn admin_routes(core: Arc<Core>) -> Router {
    Router::new()
        .route("/mock/faults", get(get_faults).put(put_faults))
        .route("/mock/stats", get(get_stats))
        .route("/mock/advance", post(post_advance))
        .route("/mock/ledger", get(get_ledger))
        .with_state(core)
}

/// Moves `batch` records one stage on every `every`: process events advancing over time.
pub fn spawn_advance(core: Arc<Core>, every: Duration, batch: usize) {
    if every.is_zero() || batch == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            core.advance(batch);
        }
    });
}
