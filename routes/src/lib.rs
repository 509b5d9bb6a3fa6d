//! The bus of xfhub: the [`Bus`] trait, its durable [`embedded`] implementation on the store,
//! the outbox [`relay`], the declarative routing [`table`] (`routes.toml`) that maps routing keys
//! and envelopes to queues, its hot [`reload`], the code-built [`Router`], and the consumer
//! [`runtime`] (ack, retry with backoff, dead letter, idempotency).
//!
//! Delivery is at least once; effects are exactly once because a consumer's effects, its
//! (consumer, message id) dedup key and its ack commit in one transaction of the store.

pub mod amqp;
pub mod cases;
pub mod embedded;
pub mod relay;
pub mod reload;
pub mod router;
pub mod runtime;
pub mod table;
pub mod trail;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use xfhub_schemas::Envelope;
use xfhub_store::{Effect, OutboxRow, StoreError};

pub use amqp::{AmqpBus, AmqpConfig};
pub use embedded::EmbeddedBus;
pub use relay::Relay;
pub use reload::{ActiveRoutes, ReloadOutcome, TableSource};
pub use router::{Router, Subscription};
pub use runtime::{Handler, HandlerError, RetryPolicy};
pub use table::{RouteTable, Routing, Rule, TableHandle};

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown queue {0}")]
    UnknownQueue(String),
    /// The broker is unreachable or refused the operation (AMQP bus); retried later.
    #[error("broker: {0}")]
    Broker(String),
}

/// One delivery of a message to a consumer. Dropping it without settling leaves the message to
/// be redelivered when its lease ends.
#[derive(Debug)]
pub struct Delivery {
    pub queue: String,
    pub message_id: String,
    /// The envelope as stored (JSON), for dead-lettering it unchanged.
    pub raw: String,
    /// Delivery number, starting at 1.
    pub attempt: i64,
    /// Embedded bus: the queue row holding the message.
    pub(crate) row_id: Option<i64>,
    /// AMQP bus: settles the broker's delivery.
    pub(crate) acker: Option<lapin::acker::Acker>,
    /// Holds one of the consumer's prefetch slots until the delivery is settled or dropped.
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

impl Delivery {
    /// Parses the envelope; a message that does not parse is poison and is dead-lettered.
    pub fn envelope(&self) -> Result<Envelope<Value>, serde_json::Error> {
        serde_json::from_str(&self.raw)
    }
}

/// How a consumer settles a delivery.
#[derive(Debug)]
pub enum Settlement {
    /// Done: commit these effects with the dedup key and the ack, in one transaction.
    Ack(Vec<Effect>),
    /// Try again after `delay_ms`.
    Retry { reason: String, delay_ms: i64 },
    /// Give up: keep the message with its reason for an operator.
    DeadLetter { reason: String },
}

/// What is left of a publish once its messages are handed to the bus: see
/// [`Bus::start_publish`].
pub type PublishTail =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BusError>> + Send + 'static>>;

/// A message bus. Implementations: [`EmbeddedBus`] (durable queues in the store) and
/// [`AmqpBus`] (RabbitMQ).
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes outbox rows; returns once every row is durably held by the bus (stored, or
    /// confirmed by the broker). The relay marks rows sent only after this returns.
    async fn publish(&self, rows: Vec<OutboxRow>) -> Result<(), BusError>;

    /// Starts publishing `rows`: returns once every message has been handed to the bus, in
    /// order, with the rest of the work ([`PublishTail`]: waiting until the bus durably holds
    /// them, marking them sent) still to await. The relay hands over its next batch while the
    /// previous batch's tail is pending, so messages keep their order and confirms overlap with
    /// the next read. By default everything is done before returning.
    async fn start_publish(&self, rows: Vec<OutboxRow>) -> Result<PublishTail, BusError> {
        self.publish(rows).await?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    /// Opens a consumer of `queue` holding at most `prefetch` unsettled deliveries.
    async fn consume(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<mpsc::Receiver<Delivery>, BusError>;

    /// Settles a delivery for `consumer`. For an ack, returns false when the consumer had
    /// already processed this message (its effects were not applied a second time).
    async fn settle(
        &self,
        consumer: &str,
        delivery: Delivery,
        how: Settlement,
    ) -> Result<bool, BusError>;

    /// Gives back deliveries that were never handled (graceful stop): they become ready again
    /// without counting as an attempt.
    async fn release(&self, deliveries: Vec<Delivery>) -> Result<(), BusError>;

    /// Puts a dead letter back on its queue; returns the queue, or None if there is nothing to
    /// replay under that id.
    async fn replay(&self, dead_letter_id: i64) -> Result<Option<String>, BusError>;
}
