//! Named leases: at most one holder at a time across every process sharing the database, for
//! work only one instance may do (a pull connector polling a source).
//!
//! # Using a lease (pull connectors)
//!
//! ```no_run
//! # async fn run(store: xfhub_store::Store) -> xfhub_store::Result<()> {
//! use std::time::Duration;
//! loop {
//!     match store.try_lease("connector:provincial").await? {
//!         // Another instance polls: try again later (within `LEASE_TAKEOVER` of its death
//!         // the lease is free).
//!         None => tokio::time::sleep(Duration::from_secs(2)).await,
//!         Some(lease) => {
//!             tokio::select! {
//!                 // Lost (the database connection behind it died): stop polling at once;
//!                 // another instance may hold it already.
//!                 _ = lease.lost() => {}
//!                 _ = async { /* poll the source, page by page, each page one Store::transact */ } => {}
//!             }
//!             lease.release().await;
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! # How
//!
//! - **PostgreSQL:** a session advisory lock, `pg_try_advisory_lock(LEASE_CLASS, hash(name))`,
//!   on a connection taken out of the read pool for as long as the lease is held. A process that
//!   dies (even `kill -9`) closes its socket and the server frees the lock at once. A holder
//!   whose host vanishes is cut off by TCP keepalives set on that session (`LEASE_KEEPALIVE`),
//!   which bounds the takeover. The holder pings its connection every `LEASE_CHECK`; when a
//!   ping fails or takes longer than `LEASE_PING_TIMEOUT` the lease is lost and [`LeaseGuard::lost`]
//!   resolves, well before the server would free the lock for someone else.
//! - **SQLite:** one process owns the database, so a lease is a process-wide set of held names
//!   (per database file): it keeps two tasks of the process apart.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sqlx::{Connection, Row};
use tokio::sync::{oneshot, watch};

use crate::{Backend, Result, Store};

/// Two-key advisory lock class of leases (the writer lock uses the one-key space).
const LEASE_CLASS: i32 = 7866;
/// How often a holder checks its lease's connection.
pub const LEASE_CHECK: Duration = Duration::from_secs(2);
/// A ping slower than this counts as a lost connection.
pub const LEASE_PING_TIMEOUT: Duration = Duration::from_secs(3);
/// TCP keepalive of a lease's session (idle, interval, count): the server drops a vanished
/// holder, and frees its lease, after about idle + interval * count.
pub const LEASE_KEEPALIVE: (u32, u32, u32) = (10, 5, 3);
/// Longest time before a lease whose holder's host vanished can be taken (PostgreSQL); a
/// holder killed on a live host frees it at once.
pub const LEASE_TAKEOVER: Duration =
    Duration::from_secs((LEASE_KEEPALIVE.0 + LEASE_KEEPALIVE.1 * LEASE_KEEPALIVE.2) as u64);

/// A held lease. Dropping it releases it (in the background); [`LeaseGuard::release`] waits.
#[derive(Debug)]
pub struct LeaseGuard {
    name: String,
    lost: watch::Receiver<bool>,
    release: Option<oneshot::Sender<oneshot::Sender<()>>>,
    local: Option<(String, String)>,
    /// SQLite: the sender that never reports a loss.
    _never_lost: Option<watch::Sender<bool>>,
}

impl LeaseGuard {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// False once the lease was lost (its database connection failed).
    pub fn is_held(&self) -> bool {
        !*self.lost.borrow()
    }

    /// Resolves when the lease is lost; never while it is held.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        if rx.wait_for(|lost| *lost).await.is_err() {
            // The keeper is gone without saying so: treat as lost.
        }
    }

    /// Releases the lease and waits until another holder could take it.
    pub async fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
        self.drop_local();
    }

    fn drop_local(&mut self) {
        if let Some(key) = self.local.take() {
            local_leases().lock().expect("lease set").remove(&key);
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Dropping `release` tells the keeper to unlock and close the connection.
        self.drop_local();
    }
}

fn local_leases() -> &'static Mutex<HashSet<(String, String)>> {
    static HELD: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    HELD.get_or_init(Mutex::default)
}

/// FNV-1a of the name, folded to the lock's 32-bit key (a collision only makes two leases
/// exclude each other).
fn lease_key(name: &str) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((h >> 32) ^ h) as u32 as i32
}

impl Store {
    /// Takes the lease `name` if nobody holds it; `None` when another holder (this process or
    /// another) has it. See the [module docs](crate::lease) for the pattern.
    pub async fn try_lease(&self, name: &str) -> Result<Option<LeaseGuard>> {
        match self.backend {
            Backend::Sqlite => {
                let db = self.read.connect_options().database_url.to_string();
                let key = (db, name.to_owned());
                if !local_leases()
                    .lock()
                    .expect("lease set")
                    .insert(key.clone())
                {
                    return Ok(None);
                }
                // Never lost: the lease lives in this process.
                let (tx, rx) = watch::channel(false);
                Ok(Some(LeaseGuard {
                    name: name.to_owned(),
                    lost: rx,
                    release: None,
                    local: Some(key),
                    _never_lost: Some(tx),
                }))
            }
            Backend::Postgres => self.try_pg_lease(name).await,
        }
    }

    async fn try_pg_lease(&self, name: &str) -> Result<Option<LeaseGuard>> {
        let mut conn = self.read.acquire().await?.detach();
        let (idle, interval, count) = LEASE_KEEPALIVE;
        for sql in [
            format!("SET tcp_keepalives_idle = {idle}"),
            format!("SET tcp_keepalives_interval = {interval}"),
            format!("SET tcp_keepalives_count = {count}"),
        ] {
            sqlx::query(&sql).execute(&mut conn).await?;
        }
        let key = lease_key(name);
        let held: bool = sqlx::query("SELECT pg_try_advisory_lock($1, $2) AS held")
            .bind(LEASE_CLASS)
            .bind(key)
            .fetch_one(&mut conn)
            .await?
            .try_get("held")?;
        if !held {
            let _ = conn.close().await;
            return Ok(None);
        }
        let (lost_tx, lost_rx) = watch::channel(false);
        let (release_tx, mut release_rx) = oneshot::channel::<oneshot::Sender<()>>();
        let lease = name.to_owned();
        tokio::spawn(async move {
            let lost_tx = Arc::new(lost_tx);
            loop {
                tokio::select! {
                    asked = &mut release_rx => {
                        let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                            .bind(LEASE_CLASS)
                            .bind(key)
                            .execute(&mut conn)
                            .await;
                        let _ = conn.close().await;
                        if let Ok(done) = asked {
                            let _ = done.send(());
                        }
                        return;
                    }
                    _ = tokio::time::sleep(LEASE_CHECK) => {
                        let ping = tokio::time::timeout(
                            LEASE_PING_TIMEOUT,
                            sqlx::query("SELECT 1").execute(&mut conn),
                        )
                        .await;
                        if !matches!(ping, Ok(Ok(_))) {
                            tracing::warn!(lease = %lease, "LeaseLost");
                            let _ = lost_tx.send(true);
                            // Dropping the connection ends the session: the server frees the
                            // lock if it has not already.
                            return;
                        }
                    }
                }
            }
        });
        Ok(Some(LeaseGuard {
            name: name.to_owned(),
            lost: lost_rx,
            release: Some(release_tx),
            local: None,
            _never_lost: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::lease_key;

    #[test]
    fn lease_keys_are_stable_and_spread() {
        assert_eq!(lease_key("connector:a"), lease_key("connector:a"));
        assert_ne!(lease_key("connector:a"), lease_key("connector:b"));
    }
}
