//! Consumer runtime: takes deliveries from the bus, runs a [`Handler`], and settles each
//! delivery: ack with the handler's effects (exactly once per consumer and message), retry
//! with exponential backoff and jitter, or dead letter with the reason after the last attempt.
//! Deliveries are handled concurrently up to the prefetch, so a slow or failing message never
//! holds up the ones behind it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use xfhub_schemas::Envelope;
use xfhub_store::Effect;

use crate::{Bus, BusError, Delivery, Settlement};

/// Why a handler could not process a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (a partner is down, a lock is held): retried with backoff.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never work (the message is wrong for this consumer): dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A business consumer. Its effects are returned, not applied: the runtime commits them with
/// the dedup key and the ack in one transaction.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Consumer name; also its queue on the bus.
    fn name(&self) -> &str;
    async fn handle(
        &self,
        envelope: &Envelope<Value>,
        attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError>;
}

/// Retry schedule: attempt n waits `base * 2^(n-1)`, capped at `max_delay`, with up to 50 %
/// random jitter; after `max_attempts` deliveries the message is dead-lettered.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: i64,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Delay before the delivery after `attempt`, in ms.
    pub fn delay_ms(&self, attempt: i64) -> i64 {
        let exp = (attempt - 1).clamp(0, 30) as u32;
        let base = self.base_delay.as_millis() as i64;
        let raw = base
            .saturating_mul(1i64 << exp)
            .min(self.max_delay.as_millis() as i64);
        let jitter = if raw > 1 {
            rand::thread_rng().gen_range(0..=raw / 2)
        } else {
            0
        };
        raw + jitter
    }
}

/// Runs `handler` on `queue` until `stop` is cancelled; then stops taking deliveries, lets the
/// in-flight ones finish and settle, and returns.
pub async fn run_consumer(
    bus: Arc<dyn Bus>,
    handler: Arc<dyn Handler>,
    prefetch: usize,
    policy: RetryPolicy,
    stop: CancellationToken,
) -> Result<(), BusError> {
    let queue = handler.name().to_owned();
    let mut deliveries = bus.consume(&queue, prefetch).await?;
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(consumer = %queue, error = %e, "ConsumerTaskError");
                }
            }
            next = deliveries.recv() => {
                let Some(d) = next else { break };
                let (bus, handler, policy) = (bus.clone(), handler.clone(), policy.clone());
                in_flight.spawn(async move { process(bus.as_ref(), handler.as_ref(), &policy, d).await });
            }
        }
    }
    // Give back what was leased for us but not started, so it does not count as an attempt.
    deliveries.close();
    let mut unstarted = Vec::new();
    while let Ok(d) = deliveries.try_recv() {
        unstarted.push(d);
    }
    if !unstarted.is_empty() {
        if let Err(e) = bus.release(unstarted).await {
            tracing::warn!(consumer = %queue, error = %e, "ConsumerReleaseError");
        }
    }
    while let Some(done) = in_flight.join_next().await {
        if let Err(e) = done {
            tracing::error!(consumer = %queue, error = %e, "ConsumerTaskError");
        }
    }
    // A lease the bus side had in flight when the channel closed is given back by the bus side
    // itself (its send fails): wait until it let go of the channel, so that the give-back
    // commits before we return and the store closes.
    while deliveries.sender_strong_count() > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tracing::info!(consumer = %queue, "ConsumerStopped");
    Ok(())
}

async fn process(bus: &dyn Bus, handler: &dyn Handler, policy: &RetryPolicy, d: Delivery) {
    let consumer = handler.name().to_owned();
    let message_id = d.message_id.clone();
    let settlement = match d.envelope() {
        Err(e) => Settlement::DeadLetter {
            reason: format!("unreadable envelope: {e}"),
        },
        Ok(_) if d.attempt > policy.max_attempts => Settlement::DeadLetter {
            reason: format!("delivered {} times without being settled", d.attempt - 1),
        },
        Ok(env) => match handler.handle(&env, d.attempt).await {
            Ok(effects) => Settlement::Ack(effects),
            Err(HandlerError::Permanent(reason)) => Settlement::DeadLetter { reason },
            Err(HandlerError::Transient(reason)) if d.attempt >= policy.max_attempts => {
                Settlement::DeadLetter {
                    reason: format!("gave up after {} attempts: {reason}", d.attempt),
                }
            }
            Err(HandlerError::Transient(reason)) => Settlement::Retry {
                reason,
                delay_ms: policy.delay_ms(d.attempt),
            },
        },
    };
    let outcome = match &settlement {
        Settlement::Ack(_) => "acked",
        Settlement::Retry { .. } => "retried",
        Settlement::DeadLetter { .. } => "dead_lettered",
    };
    match bus.settle(&consumer, d, settlement).await {
        Ok(_) => {
            metrics::counter!("xfhub_consumer_messages_total", "consumer" => consumer, "outcome" => outcome)
                .increment(1);
        }
        // Not settled: the lease runs out and the message is delivered again.
        Err(e) => {
            tracing::warn!(consumer = %consumer, message_id = %message_id, error = %e, "ConsumerSettleError")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for (attempt, lo, hi) in [
            (1, 100, 150),
            (2, 200, 300),
            (3, 400, 600),
            (5, 1000, 1500),
            (30, 1000, 1500),
        ] {
            let d = p.delay_ms(attempt);
            assert!(
                (lo..=hi).contains(&d),
                "attempt {attempt}: {d} not in {lo}..={hi}"
            );
        }
    }
}
