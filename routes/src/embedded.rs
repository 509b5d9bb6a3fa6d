//! The embedded bus: durable queues in the store (table `bus_queue`), for one process.
//!
//! Publishing routes each outbox row to its queues and marks it sent in one transaction, so a
//! crash either publishes a row to all its queues or to none. Consumers lease ready rows; a
//! lease that ends without a settlement (the process died) makes the row ready again, so a
//! message is delivered at least once and survives `kill -9`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Notify, Semaphore};
use xfhub_store::{now_ms, OutboxRow, Store};

use crate::table::{RouteTable, TableHandle};
use crate::{Bus, BusError, Delivery, Settlement};

/// How long a leased message stays invisible to other deliveries.
const LEASE_MS: i64 = 60_000;
/// Longest wait between checks for delayed retries and expired leases.
const IDLE_POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct EmbeddedBus {
    store: Store,
    table: TableHandle,
    wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl EmbeddedBus {
    /// A bus routing by `table` (a [`RouteTable`], or a [`crate::Router`] built in code).
    pub fn new(store: Store, table: impl Into<RouteTable>) -> Self {
        EmbeddedBus {
            store,
            table: TableHandle::new(table.into()),
            wakers: Arc::default(),
        }
    }

    /// The routing table in force.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.current()
    }

    /// The handle through which the table is replaced (hot reload).
    pub fn table_handle(&self) -> TableHandle {
        self.table.clone()
    }

    /// Routes every later publish by `table`.
    pub fn replace_table(&self, table: RouteTable) {
        self.table.replace(table);
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        self.wakers
            .lock()
            .expect("wakers lock")
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }

    fn wake(&self, queue: &str) {
        self.waker(queue).notify_one();
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, rows: Vec<OutboxRow>) -> Result<(), BusError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut deliveries = Vec::new();
        let mut unrouted = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        {
            let table = self.table.current();
            for row in rows {
                seqs.push(row.seq);
                // The envelope is parsed only when a matching rule has a predicate.
                let routing = table.resolve_text(&row.routing_key, &row.envelope);
                if !routing.routed {
                    unrouted.push(row.message_id.clone());
                }
                for q in routing.queues {
                    if !touched.contains(&q) {
                        touched.push(q.clone());
                    }
                    deliveries.push((q, row.message_id.clone(), row.envelope.clone()));
                }
            }
        }
        let n = deliveries.len() as u64;
        self.store.enqueue(seqs, deliveries, unrouted).await?;
        metrics::counter!("xfhub_bus_published_total", "bus" => "embedded").increment(n);
        for q in touched {
            self.wake(&q);
        }
        Ok(())
    }

    async fn consume(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<mpsc::Receiver<Delivery>, BusError> {
        if !self.table.current().has_queue(queue) {
            return Err(BusError::UnknownQueue(queue.to_owned()));
        }
        // One consumer per queue in this process: leases of a previous run are void.
        self.store.reset_leases(queue).await?;
        let prefetch = prefetch.max(1);
        let (tx, rx) = mpsc::channel(prefetch);
        let slots = Arc::new(Semaphore::new(prefetch));
        let store = self.store.clone();
        let waker = self.waker(queue);
        let queue = queue.to_owned();
        tokio::spawn(async move {
            loop {
                // Backpressure: lease only as many messages as there are free prefetch slots.
                // Stop as soon as the consumer is gone: a slot freed by its last settlements
                // must not lease messages nobody will take (they would wait out the lease with
                // one more delivery counted against them).
                let first = tokio::select! {
                    biased;
                    _ = tx.closed() => return,
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let free = slots.available_permits() + 1;
                let leased = match store.lease(&queue, free, LEASE_MS).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(queue = %queue, error = %e, "BusLeaseError");
                        drop(first);
                        tokio::time::sleep(IDLE_POLL).await;
                        continue;
                    }
                };
                if leased.is_empty() {
                    drop(first);
                    let wait = match store.next_ready_at(&queue).await {
                        Ok(Some(t)) => Duration::from_millis((t - now_ms()).clamp(1, 500) as u64),
                        _ => IDLE_POLL,
                    };
                    tokio::select! {
                        _ = waker.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = tx.closed() => return,
                    }
                    continue;
                }
                let mut first = Some(first);
                let mut leased = leased.into_iter();
                while let Some(m) = leased.next() {
                    let permit = match first.take() {
                        Some(p) => p,
                        None => match slots.clone().try_acquire_owned() {
                            Ok(p) => p,
                            // Cannot happen (we leased no more than the free slots), but if it
                            // did, waiting keeps the bound.
                            Err(_) => match slots.clone().acquire_owned().await {
                                Ok(p) => p,
                                Err(_) => return,
                            },
                        },
                    };
                    let d = Delivery {
                        queue: m.queue,
                        message_id: m.message_id,
                        raw: m.envelope,
                        attempt: m.attempt,
                        row_id: Some(m.row_id),
                        acker: None,
                        _permit: Some(permit),
                    };
                    if let Err(mpsc::error::SendError(d)) = tx.send(d).await {
                        // Consumer gone: give this delivery and the rest of the batch back.
                        let mut rows = vec![(d.row_id.unwrap_or_default(), d.queue, d.message_id)];
                        rows.extend(leased.map(|m| (m.row_id, m.queue, m.message_id)));
                        if let Err(e) = store.release(rows).await {
                            tracing::warn!(queue = %queue, error = %e, "BusReleaseError");
                        }
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    async fn settle(&self, consumer: &str, d: Delivery, how: Settlement) -> Result<bool, BusError> {
        match how {
            Settlement::Ack(effects) => Ok(self
                .store
                .ack(
                    consumer,
                    &d.queue,
                    d.row_id,
                    &d.message_id,
                    d.attempt,
                    effects,
                )
                .await?),
            Settlement::Retry { reason, delay_ms } => {
                let row_id = d
                    .row_id
                    .ok_or_else(|| BusError::UnknownQueue(d.queue.clone()))?;
                let leased = xfhub_store::LeasedMessage {
                    row_id,
                    queue: d.queue.clone(),
                    message_id: d.message_id.clone(),
                    envelope: String::new(),
                    attempt: d.attempt,
                };
                self.store
                    .retry_later(&leased, &reason, now_ms() + delay_ms)
                    .await?;
                self.wake(&d.queue);
                Ok(true)
            }
            Settlement::DeadLetter { reason } => {
                self.store
                    .dead_letter(
                        &d.queue,
                        d.row_id,
                        &d.message_id,
                        &d.raw,
                        d.attempt,
                        &reason,
                    )
                    .await?;
                Ok(true)
            }
        }
    }

    async fn release(&self, deliveries: Vec<Delivery>) -> Result<(), BusError> {
        let rows: Vec<(i64, String, String)> = deliveries
            .into_iter()
            .filter_map(|d| d.row_id.map(|id| (id, d.queue, d.message_id)))
            .collect();
        if let Some((_, queue, _)) = rows.first() {
            let queue = queue.clone();
            self.store.release(rows).await?;
            self.wake(&queue);
        }
        Ok(())
    }

    async fn replay(&self, dead_letter_id: i64) -> Result<Option<String>, BusError> {
        let queue = self.store.replay_dead_letter(dead_letter_id).await?;
        if let Some(q) = &queue {
            self.wake(q);
        }
        Ok(queue)
    }
}
