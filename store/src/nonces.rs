//! The writer's replay cache of request nonces on SQLite.
//!
//! A nonce must be refused when its client used it before within its validity. A unique index
//! on (app key, nonce) answers that, but nonces are random, so every commit dirtied a page of
//! that index per request, and SQLite writes each dirty page to the WAL at every commit: at 64
//! clients the nonce index alone cost about a tenth of the ingest throughput. On SQLite there is
//! exactly one writer (this process's writer task), so the check runs here, in memory, against
//! every nonce still valid, and each nonce is appended to `nonce_log` in the transaction that
//! uses it (append-only: no random index page). The log reloads the cache after a restart.
//! PostgreSQL keeps the unique index: several hub processes may write there.
//!
//! Nonces are kept as 128-bit keyed hashes of (app key, nonce): 24 bytes an entry, so even
//! 4,000 requests a second over a ten-minute validity stay under 60 MB; a false "reused" needs a
//! 128-bit collision.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};

#[derive(Debug, Default)]
pub(crate) struct NonceCache {
    pub loaded: bool,
    seen: HashSet<u128>,
    /// (expires at ms, key), in insertion order; expiry is `now + constant`, so the front
    /// expires first.
    expiry: VecDeque<(i64, u128)>,
    /// Keys added since the last [`NonceCache::commit`], removed again by a rollback.
    journal: Vec<u128>,
    hashers: (RandomState, RandomState),
    /// Nonces recorded since the log was last pruned.
    pub since_prune: u64,
}

impl NonceCache {
    fn key(&self, app_key: &str, nonce: &str) -> u128 {
        let h = |s: &RandomState| {
            let mut h = s.build_hasher();
            h.write(app_key.as_bytes());
            h.write_u8(0xff);
            h.write(nonce.as_bytes());
            h.finish()
        };
        (u128::from(h(&self.hashers.0)) << 64) | u128::from(h(&self.hashers.1))
    }

    /// Adds a nonce loaded from the log.
    pub fn load(&mut self, app_key: &str, nonce: &str, expires_at: i64) {
        let k = self.key(app_key, nonce);
        if self.seen.insert(k) {
            self.expiry.push_back((expires_at, k));
        }
    }

    /// Records a nonce; false when it is already recorded (a replay).
    pub fn use_once(&mut self, app_key: &str, nonce: &str, expires_at: i64, now: i64) -> bool {
        self.expire(now);
        let k = self.key(app_key, nonce);
        if !self.seen.insert(k) {
            return false;
        }
        self.expiry.push_back((expires_at, k));
        self.journal.push(k);
        self.since_prune += 1;
        true
    }

    fn expire(&mut self, now: i64) {
        while let Some(&(at, k)) = self.expiry.front() {
            // Never forget a nonce its open transaction may still roll back.
            if at >= now || self.journal.contains(&k) {
                break;
            }
            self.expiry.pop_front();
            self.seen.remove(&k);
        }
    }

    /// Position to roll back to.
    pub fn mark(&self) -> usize {
        self.journal.len()
    }

    /// Forgets the nonces recorded after `mark`: their transaction did not commit.
    pub fn rollback_to(&mut self, mark: usize) {
        for k in self.journal.drain(mark..) {
            self.seen.remove(&k);
        }
        let seen = &self.seen;
        self.expiry.retain(|(_, k)| seen.contains(k));
    }

    /// The nonces recorded so far are committed.
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_client_rollback_and_expiry() {
        let mut c = NonceCache::default();
        assert!(c.use_once("a", "n1", 100, 0));
        assert!(!c.use_once("a", "n1", 100, 0), "replay");
        assert!(c.use_once("b", "n1", 100, 0), "another client");
        assert!(c.use_once("a", "n1x", 100, 0));
        assert!(c.use_once("an", "1x", 100, 0), "keys do not run together");
        c.commit();
        let m = c.mark();
        assert!(c.use_once("a", "n2", 100, 0));
        c.rollback_to(m);
        assert!(c.use_once("a", "n2", 100, 0), "rolled back: usable again");
        c.commit();
        // Expired nonces are forgotten once time passes them.
        assert!(c.use_once("a", "late", 500, 200));
        assert_eq!(c.len(), 1);
        assert!(!c.use_once("a", "late", 500, 200));
    }

    #[test]
    fn uncommitted_nonces_do_not_expire() {
        let mut c = NonceCache::default();
        assert!(c.use_once("a", "n", 10, 0));
        assert!(c.use_once("a", "m", 10, 20));
        assert!(!c.use_once("a", "n", 10, 20), "still journaled");
        c.rollback_to(0);
        assert!(c.use_once("a", "n", 10, 0));
    }
}
