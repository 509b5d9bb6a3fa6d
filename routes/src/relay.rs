//! The outbox relay: publishes committed outbox rows to the bus, in order, and marks them sent
//! only once the bus holds them. A crash in between publishes a row again; consumers
//! de-duplicate by message id.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use xfhub_store::Store;

use crate::Bus;

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
    pub async fn run(self, store: Store, bus: Arc<dyn Bus>, stop: CancellationToken) {
        loop {
            let published = self.pass(&store, bus.as_ref()).await;
            if stop.is_cancelled() {
                // Drain: intake has stopped, publish what committed before returning.
                while self.pass(&store, bus.as_ref()).await > 0 {}
                return;
            }
            if published < self.batch as usize {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }

    /// One pass: publishes up to one batch; returns how many rows it published.
    async fn pass(&self, store: &Store, bus: &dyn Bus) -> usize {
        let rows = match store.outbox_unsent(self.batch).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "OutboxReadError");
                tokio::time::sleep(IDLE_POLL).await;
                return 0;
            }
        };
        let n = rows.len();
        if n == 0 {
            return 0;
        }
        match bus.publish(rows).await {
            Ok(()) => {
                metrics::counter!("xfhub_outbox_relayed_total").increment(n as u64);
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "OutboxPublishError");
                tokio::time::sleep(IDLE_POLL).await;
                0
            }
        }
    }
}
