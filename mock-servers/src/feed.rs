//! The change feed a mock partner serves, and the ledger of what it served.
//!
//! Position `seq` (1-based) of the feed holds one change: positions `1..=count` are the
//! backlog (record `seq - 1` at its initial version), later positions are updates appended
//! while the mock runs. A record is listed only at the position of its latest change, as a
//! "changed since" query of a real system lists it; an update moves it behind the cursor. The
//! backlog is generated on demand, so memory grows with the updates only.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One change: record index and the version it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub index: u64,
    pub version: u32,
}

/// What a record's versions did on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Served {
    /// Highest version served well-formed and valid.
    pub max_valid: Option<u32>,
    /// Versions served malformed (each once in this list).
    pub malformed: Vec<u32>,
}

pub struct Feed {
    count: u64,
    initial: Box<dyn Fn(u64) -> u32 + Send + Sync>,
    max_version: Box<dyn Fn(u64) -> u32 + Send + Sync>,
    /// Appended changes, in order (position `count + 1 + i`).
    updates: Vec<(u64, u32)>,
    /// Latest (version, seq) of every record that was updated.
    latest: HashMap<u64, (u32, u64)>,
    rng: StdRng,
    /// Per record, what was served (kept only when `ledger` is on).
    ledger: Option<HashMap<u64, Served>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("count", &self.count)
            .field("updates", &self.updates.len())
            .finish_non_exhaustive()
    }
}

impl Feed {
    pub fn new(
        count: u64,
        seed: u64,
        initial: impl Fn(u64) -> u32 + Send + Sync + 'static,
        max_version: impl Fn(u64) -> u32 + Send + Sync + 'static,
        ledger: bool,
    ) -> Feed {
        Feed {
            count,
            initial: Box::new(initial),
            max_version: Box::new(max_version),
            updates: Vec::new(),
            latest: HashMap::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5EED),
            ledger: ledger.then(HashMap::new),
        }
    }

    /// Number of positions (backlog plus updates).
    pub fn len(&self) -> u64 {
        self.count + self.updates.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of distinct records.
    pub fn records(&self) -> u64 {
        self.count
    }

    /// The current version of record `index`.
    pub fn version_of(&self, index: u64) -> u32 {
        self.latest
            .get(&index)
            .map_or_else(|| (self.initial)(index), |(v, _)| *v)
    }

    /// The change at `seq` when it is still the record's latest.
    pub fn at(&self, seq: u64) -> Option<Change> {
        let (index, version) = if seq == 0 || seq > self.len() {
            return None;
        } else if seq <= self.count {
            (seq - 1, (self.initial)(seq - 1))
        } else {
            self.updates[(seq - self.count - 1) as usize]
        };
        match self.latest.get(&index) {
            Some((_, latest_seq)) if *latest_seq != seq => None,
            _ => Some(Change {
                seq,
                index,
                version,
            }),
        }
    }

    /// Up to `max` current changes after position `after`, and the position of the last one
    /// looked at (the next cursor).
    pub fn page(&self, after: u64, max: usize) -> (Vec<Change>, u64) {
        let mut out = Vec::with_capacity(max);
        let mut seq = after;
        while out.len() < max && seq < self.len() {
            seq += 1;
            if let Some(c) = self.at(seq) {
                out.push(c);
            }
        }
        (out, seq)
    }

    /// Random current changes at or before `before` (records repeated across pages).
    pub fn earlier(&mut self, before: u64, n: usize) -> Vec<Change> {
        let mut out = Vec::new();
        if before == 0 {
            return out;
        }
        for _ in 0..n * 4 {
            if out.len() == n {
                break;
            }
            let seq = self.rng.gen_range(1..=before);
            if let Some(c) = self.at(seq) {
                out.push(c);
            }
        }
        out
    }

    /// Advances `n` random records by one version (those not yet at their last stage); returns
    /// how many advanced.
    pub fn advance(&mut self, n: usize) -> usize {
        let mut done = 0;
        if self.count == 0 {
            return 0;
        }
        for _ in 0..n * 4 {
            if done == n {
                break;
            }
            let index = self.rng.gen_range(0..self.count);
            let v = self.version_of(index);
            if v < (self.max_version)(index) {
                self.updates.push((index, v + 1));
                let seq = self.len();
                self.latest.insert(index, (v + 1, seq));
                done += 1;
            }
        }
        done
    }

    /// Notes that `change` went out, well-formed and valid or not.
    pub fn record_served(&mut self, change: &Change, valid: bool) {
        if let Some(ledger) = &mut self.ledger {
            let s = ledger.entry(change.index).or_default();
            if valid {
                s.max_valid = s.max_valid.max(Some(change.version));
            } else if !s.malformed.contains(&change.version) {
                s.malformed.push(change.version);
            }
        }
    }

    /// The ledger: record index -> what was served (empty when the ledger is off).
    pub fn ledger(&self) -> HashMap<u64, Served> {
        self.ledger.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_skip_superseded_changes_and_updates_move_behind() {
        let mut f = Feed::new(10, 1, |_| 1, |_| 5, true);
        let (p, next) = f.page(0, 4);
        assert_eq!(
            p.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(next, 4);
        assert_eq!(f.advance(3), 3);
        assert_eq!(f.len(), 13);
        let (rest, end) = f.page(next, 100);
        assert_eq!(end, 13);
        // 6 backlog records minus the ones updated, plus 3 updates (distinct or not).
        let mut seen: Vec<u64> = p.iter().chain(&rest).map(|c| c.index).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10, "every record is served at least once");
        for c in &rest {
            assert_eq!(c.version, f.version_of(c.index));
        }
        f.record_served(&rest[0], true);
        f.record_served(&rest[0], false);
        assert_eq!(f.ledger()[&rest[0].index].max_valid, Some(rest[0].version));
    }
}
