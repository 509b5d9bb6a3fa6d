//! The outbox relay: publishes committed outbox rows to the bus, in order, and marks them sent
//! only once the bus holds them. A crash in between publishes a row again; consumers
//! de-duplicate by message id.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use xfhub_store::Store;

use crate::{Bus, PublishTail};

const BATCH: u32 = 128;
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Handle to wake the relay when new outbox rows have committed.
#[derive(Clone)]
pub struct Relay {
    wake: Arc<Notify>,
    batch: u32,
}

impl Default for Relay {
    fn default() -> Self {
        Relay::with_batch(BATCH)
    }
}

impl Relay {
    pub fn new() -> Self {
        Relay::default()
    }

    /// A relay publishing up to `batch` rows per pass (the AMQP bus pipelines a whole pass:
    /// more confirms in flight).
    pub fn with_batch(batch: u32) -> Self {
        Relay {
            wake: Arc::default(),
            batch: batch.max(1),
        }
    }

    /// Tells the relay that rows are waiting (called after an ingest commits).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Runs until `stop` is cancelled, then publishes what is left once more and returns.
    ///
    /// Batches are handed to the bus one after the other ([`Bus::start_publish`]), so messages
    /// keep their order; the tail of a batch (broker confirms, marking the rows sent) is
    /// awaited only after the next batch was read and handed over, at most `PENDING_TAILS`
    /// tails being pending. After any failure, and when idle, the relay settles the pending
    /// tails and reads again from the oldest unsent row: what was not marked sent is published
    /// again (consumers de-duplicate).
    pub async fn run(self, store: Store, bus: Arc<dyn Bus>, stop: CancellationToken) {
        let mut pass = Pass::default();
        loop {
            let published = pass.step(&self, &store, bus.as_ref()).await;
            if stop.is_cancelled() {
                // Drain: intake has stopped, publish what committed before returning.
                while pass.step(&self, &store, bus.as_ref()).await > 0 {}
                pass.finish().await;
                return;
            }
            if published < self.batch as usize {
                // Idle: settle what is pending, then read from the oldest unsent row again.
                pass.finish().await;
                pass.after = 0;
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }
}

/// Batch tails pending at most while the next batch is handed over.
const PENDING_TAILS: usize = 2;

/// The relay's position: the last sequence handed to the bus and the tails still pending,
/// oldest first.
#[derive(Default)]
struct Pass {
    after: i64,
    pending: std::collections::VecDeque<PublishTail>,
}

impl Pass {
    /// Reads and hands over one batch after `after`; returns how many rows it handed over.
    async fn step(&mut self, relay: &Relay, store: &Store, bus: &dyn Bus) -> usize {
        let rows = match store.outbox_unsent_after(self.after, relay.batch).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "OutboxReadError");
                self.fail().await;
                return 0;
            }
        };
        let n = rows.len();
        if n == 0 {
            return 0;
        }
        let last = rows[n - 1].seq;
        match bus.start_publish(rows).await {
            Ok(tail) => {
                self.after = last;
                self.pending.push_back(tail);
                while self.pending.len() > PENDING_TAILS {
                    let oldest = self.pending.pop_front().expect("a pending tail");
                    if let Err(e) = oldest.await {
                        tracing::warn!(error = %e, "OutboxPublishError");
                        self.fail().await;
                        return 0;
                    }
                }
                metrics::counter!("xfhub_outbox_relayed_total").increment(n as u64);
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "OutboxPublishError");
                self.fail().await;
                0
            }
        }
    }

    /// Awaits the pending tails, oldest first.
    async fn finish(&mut self) {
        while let Some(tail) = self.pending.pop_front() {
            if let Err(e) = tail.await {
                tracing::warn!(error = %e, "OutboxPublishError");
            }
        }
    }

    /// After a failure: settle the pending tails, start again from the oldest unsent row, pause.
    async fn fail(&mut self) {
        self.finish().await;
        self.after = 0;
        tokio::time::sleep(IDLE_POLL).await;
    }
}
