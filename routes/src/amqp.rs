//! The AMQP bus: RabbitMQ through lapin, for several hub instances sharing one broker.
//!
//! # Topology (declared by the hub, idempotently, on every connection)
//!
//! - `<exchange>` (topic): every message is published here once, with its routing key
//!   (`<type>.<division>`) and a `CC` header naming its destinations as `@<queue>`. The routing
//!   table (predicates over canonical fields, which AMQP bindings cannot express) decides the
//!   destinations in the hub; the broker fans the one publish out to them.
//! - `<prefix><queue>`: one quorum queue per consumer group, bound to `<exchange>` by `@<queue>`
//!   and to `<exchange>.requeue` by `*.<queue>`. Its dead-letter exchange is `<exchange>.dlx`
//!   (at-least-once dead-lettering) and its `x-delivery-limit` is `delivery_limit`. Every hub
//!   instance consuming a group competes on the same queue.
//! - `<exchange>.retry` (topic) and one quorum queue `<prefix>retry.<ms>` per retry step, bound by
//!   `<ms>.*`, with a message TTL of `<ms>` and `<exchange>.requeue` as dead-letter exchange: a
//!   retry is published as `<ms>.<queue>` and comes back to `<queue>` alone when its TTL ends.
//!   Fixed steps rather than a per-message TTL: a queue expires only its head, so one long delay
//!   in front would hold back every shorter one behind it.
//! - `<exchange>.requeue` (topic): where expired retries and replayed dead letters come back.
//! - `<exchange>.dlx` (fanout) and `<prefix>dead`: what the broker dead-letters by itself (a
//!   message whose consumer died on it `delivery_limit` times). [`AmqpBus::collect_dead_letters`]
//!   moves each into the store's `dead_letters` table.
//!
//! # Guarantees
//!
//! - **Publish:** confirms are on; a batch is published pipelined (every message sent, then every
//!   confirm awaited) with `mandatory`, and the outbox rows are marked sent only after every
//!   confirm of the batch came back positive. A lost connection, a nack or a returned message
//!   fails the batch: the rows stay unsent and are published again (consumers de-duplicate).
//! - **Consume:** manual acks, `basic.qos` prefetch. An ack first commits the consumer's
//!   effects with its (consumer, message id) dedup key in the store, then acks the broker: a
//!   crash in between redelivers the message, and the store answers "duplicate" without a
//!   second effect.
//! - **Retry:** the retry is published (confirmed) before the delivery is acked.
//! - **Dead letters:** the store's `dead_letters` table stays the operator's view on both buses.
//!   A consumer's dead letter is recorded there (idempotently) before the delivery is acked;
//!   what the broker dead-letters is collected into it; a replay publishes the message back to
//!   its queue (confirmed) and only then marks it replayed.
//! - **Connection loss:** publishing fails fast and reconnects with exponential backoff
//!   (`reconnect_min_ms` to `reconnect_max_ms`); consumers resubscribe with the same backoff.
//!   Deliveries of a lost channel cannot be acked any more: the broker delivers them again.
//!
//! Attempts: a delivery's attempt is the attempts carried by `x-xfhub-attempts` (set when it
//! was sent to a retry queue) plus the quorum queue's `x-delivery-count` plus one. A graceful
//! release (nack with requeue) counts as a delivery on a quorum queue.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use xfhub_store::{now_ms, OutboxRow, Stmt, Store, Txn};

use crate::table::{RouteTable, TableHandle};
use crate::{Bus, BusError, Delivery, PublishTail, Settlement};

/// Header carrying the attempts a message had before it went through a retry queue.
const ATTEMPTS_HEADER: &str = "x-xfhub-attempts";
/// Longest wait for the broker to answer a connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before giving a delivery back when the store could not settle it (store down): an
/// immediate requeue would spin.
const SETTLE_FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// Settings of the AMQP bus (`[bus.amqp]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// Broker URL: `amqp://user:password@host:5672/vhost` (`%2f` is the default vhost `/`).
    pub url: String,
    /// The topic exchange messages are published to. The retry, requeue and dead-letter
    /// exchanges are named after it: `<exchange>.retry`, `<exchange>.requeue`, `<exchange>.dlx`.
    pub exchange: String,
    /// Prefix of every queue: consumer group `trail` reads `<queue_prefix>trail`; retry queues
    /// are `<queue_prefix>retry.<ms>`, broker dead letters wait in `<queue_prefix>dead`.
    pub queue_prefix: String,
    /// Delays of the retry queues in ms, increasing. A retry waits the longest step not above
    /// the delay the retry policy asks for (the first step when every step is above it).
    pub retry_steps_ms: Vec<u64>,
    /// Deliveries after which the broker itself dead-letters a message (its consumer died on
    /// it every time): a backstop behind `bus.max_attempts`, so keep it above that.
    pub delivery_limit: u32,
    /// First wait before reconnecting after a failed connection, in ms; doubles per failure.
    pub reconnect_min_ms: u64,
    /// Longest wait between reconnection attempts, in ms.
    pub reconnect_max_ms: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            exchange: "xfhub".to_owned(),
            queue_prefix: "xfhub.".to_owned(),
            retry_steps_ms: vec![1_000, 5_000, 30_000, 120_000, 600_000],
            delivery_limit: 20,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
        }
    }
}

impl AmqpConfig {
    /// Every problem with these settings, each prefixed with its key under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.url.starts_with("amqp://") {
            out.push(format!(
                "{prefix}url: must start with amqp:// (amqps is not built in)"
            ));
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !name_ok(&self.exchange) {
            out.push(format!(
                "{prefix}exchange: letters, digits, `.`, `_`, `-` only, not empty"
            ));
        }
        if !self.queue_prefix.is_empty() && !name_ok(&self.queue_prefix) {
            out.push(format!(
                "{prefix}queue_prefix: letters, digits, `.`, `_`, `-` only"
            ));
        }
        if self.retry_steps_ms.is_empty()
            || self.retry_steps_ms[0] == 0
            || self.retry_steps_ms.windows(2).any(|w| w[0] >= w[1])
        {
            out.push(format!(
                "{prefix}retry_steps_ms: at least one step, each above 0 and above the one before"
            ));
        }
        if self.delivery_limit == 0 {
            out.push(format!("{prefix}delivery_limit: must be at least 1"));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            out.push(format!(
                "{prefix}reconnect_min_ms: must be at least 1 and at most reconnect_max_ms"
            ));
        }
        out
    }

    fn queue(&self, group: &str) -> String {
        format!("{}{group}", self.queue_prefix)
    }

    fn retry_exchange(&self) -> String {
        format!("{}.retry", self.exchange)
    }

    fn requeue_exchange(&self) -> String {
        format!("{}.requeue", self.exchange)
    }

    fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    fn retry_queue(&self, step: u64) -> String {
        format!("{}retry.{step}", self.queue_prefix)
    }

    fn parking_queue(&self) -> String {
        format!("{}dead", self.queue_prefix)
    }

    /// The retry step for a delay the policy asked for.
    fn step_for(&self, delay_ms: i64) -> u64 {
        let delay = u64::try_from(delay_ms).unwrap_or(0);
        self.retry_steps_ms
            .iter()
            .rev()
            .find(|s| **s <= delay)
            .or(self.retry_steps_ms.first())
            .copied()
            .unwrap_or(1_000)
    }
}

/// The RabbitMQ bus. Cheap to clone; connects lazily and reconnects by itself.
#[derive(Clone)]
pub struct AmqpBus {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    table: TableHandle,
    config: AmqpConfig,
    link: tokio::sync::Mutex<Link>,
    /// Consumer-group queues declared and bound on the current connection.
    declared: Mutex<HashSet<String>>,
    /// Name this process gives its connections (shown by `rabbitmqctl list_connections`).
    name: String,
}

#[derive(Default)]
struct Link {
    conn: Option<Arc<Connection>>,
    publisher: Option<Channel>,
    failures: u32,
    retry_at: Option<Instant>,
}

fn broker(e: impl std::fmt::Display) -> BusError {
    BusError::Broker(e.to_string())
}

fn field_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn int_header(headers: Option<&FieldTable>, key: &str) -> i64 {
    let Some(v) = headers.and_then(|h| h.inner().get(key)) else {
        return 0;
    };
    match v {
        AMQPValue::ShortShortInt(i) => i64::from(*i),
        AMQPValue::ShortShortUInt(i) => i64::from(*i),
        AMQPValue::ShortInt(i) => i64::from(*i),
        AMQPValue::ShortUInt(i) => i64::from(*i),
        AMQPValue::LongInt(i) => i64::from(*i),
        AMQPValue::LongUInt(i) => i64::from(*i),
        AMQPValue::LongLongInt(i) => *i,
        _ => 0,
    }
}

fn str_header(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers.and_then(|h| h.inner().get(key))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Properties of a persistent JSON message.
fn properties(message_id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(message_id))
        .with_timestamp(u64::try_from(now_ms() / 1000).unwrap_or_default())
        .with_headers(headers)
}

/// Waits for the confirms of pipelined publishes; every one must be a plain ack.
async fn await_confirms(
    confirms: Vec<lapin::publisher_confirm::PublisherConfirm>,
) -> Result<(), BusError> {
    let mut failure = None;
    for c in confirms {
        // Await every confirm even after a failure, so none is left dangling on the channel.
        let outcome = match c.await {
            Ok(Confirmation::Ack(None)) => continue,
            Ok(Confirmation::Ack(Some(ret))) => format!(
                "message returned unroutable ({} {})",
                ret.reply_code, ret.reply_text
            ),
            Ok(Confirmation::Nack(_)) => "the broker nacked a message".to_owned(),
            Ok(Confirmation::NotRequested) => "publisher confirms are off".to_owned(),
            Err(e) => e.to_string(),
        };
        failure.get_or_insert(outcome);
    }
    match failure {
        None => Ok(()),
        Some(f) => Err(BusError::Broker(f)),
    }
}

/// Trail rows `(message_id, hop, queue, attempt, detail, at)` as multi-row inserts of at most
/// [`TRAIL_ROWS_PER_STMT`] rows: numbered `$N` parameters cost SQLite a search of the parameter
/// list per bind, quadratic in one statement with thousands of them.
struct TrailRows {
    done: Vec<Stmt>,
    sql: String,
    args: Vec<xfhub_store::SqlValue>,
}

const TRAIL_ROWS_PER_STMT: usize = 50;
const TRAIL_INSERT: &str =
    "INSERT INTO message_trail (message_id, hop, queue, attempt, detail, at) VALUES ";

impl TrailRows {
    fn new() -> Self {
        TrailRows {
            done: Vec::new(),
            sql: String::from(TRAIL_INSERT),
            args: Vec::new(),
        }
    }

    fn push(
        &mut self,
        message_id: &str,
        hop: &str,
        queue: Option<&str>,
        attempt: Option<i64>,
        detail: Option<&str>,
    ) {
        let n = self.args.len();
        if n > 0 {
            self.sql.push_str(", ");
        }
        self.sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6
        ));
        self.args.extend([
            message_id.into(),
            hop.into(),
            queue.into(),
            attempt.into(),
            detail.into(),
            now_ms().into(),
        ]);
        if self.args.len() >= TRAIL_ROWS_PER_STMT * 6 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.args.is_empty() {
            return;
        }
        let sql = std::mem::replace(&mut self.sql, String::from(TRAIL_INSERT));
        let mut stmt = Stmt::new(sql);
        for a in std::mem::take(&mut self.args) {
            stmt = stmt.bind(a);
        }
        self.done.push(stmt);
    }

    fn into_stmts(mut self) -> Vec<Stmt> {
        self.flush();
        self.done
    }
}

/// The statement recording a dead letter unless the same message is already dead on the same
/// queue and not replayed (a redelivery after a crash between recording and acking).
fn dead_letter_stmt(
    queue: &str,
    message_id: &str,
    envelope: &str,
    reason: &str,
    attempt: i64,
) -> Stmt {
    Stmt::new(
        "INSERT INTO dead_letters (queue, message_id, envelope, reason, attempts, failed_at) \
         SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM dead_letters \
         WHERE queue = $7 AND message_id = $8 AND replayed_at IS NULL)",
    )
    .bind(queue)
    .bind(message_id)
    .bind(envelope)
    .bind(reason)
    .bind(attempt)
    .bind(now_ms())
    .bind(queue)
    .bind(message_id)
}

impl AmqpBus {
    /// A bus routing by `table`, publishing to and consuming from the broker of `config`. No
    /// connection is made until the bus is first used.
    pub fn new(store: Store, table: impl Into<RouteTable>, config: AmqpConfig) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "xfhub".to_owned());
        AmqpBus {
            inner: Arc::new(Inner {
                store,
                table: TableHandle::new(table.into()),
                config,
                link: tokio::sync::Mutex::default(),
                declared: Mutex::default(),
                name: format!(
                    "xfhub {host} pid {} bus {}",
                    std::process::id(),
                    &uuid::Uuid::now_v7().simple().to_string()[20..]
                ),
            }),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &AmqpConfig {
        &self.inner.config
    }

    /// The name of this process's connections, as the broker lists them.
    pub fn connection_name(&self) -> &str {
        &self.inner.name
    }

    /// The routing table in force.
    pub fn table(&self) -> Arc<RouteTable> {
        self.inner.table.current()
    }

    /// The handle through which the table is replaced (hot reload).
    pub fn table_handle(&self) -> TableHandle {
        self.inner.table.clone()
    }

    /// True when the connection is up (it is made at first use).
    pub async fn is_connected(&self) -> bool {
        let link = self.inner.link.lock().await;
        link.conn.as_ref().is_some_and(|c| c.status().connected())
    }

    /// Connects (if not connected) and declares the topology of the table in force.
    pub async fn connect(&self) -> Result<(), BusError> {
        let ch = self.publisher().await?;
        self.declare_table(&ch, &self.inner.table.current()).await
    }

    /// Closes the connection (consumers see it lost and reconnect if still running).
    pub async fn close(&self) {
        let mut link = self.inner.link.lock().await;
        if let Some(conn) = link.conn.take() {
            let _ = conn.close(200, "closed").await;
        }
        link.publisher = None;
        self.inner.declared.lock().expect("declared lock").clear();
    }

    /// Deletes every queue and exchange of this bus's topology for the table in force (tests
    /// and decommissioning). Messages in them are lost.
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let ch = self.publisher().await?;
        let c = &self.inner.config;
        let mut queues: Vec<String> = self
            .inner
            .table
            .current()
            .rules
            .iter()
            .flat_map(|r| r.to.iter().map(|q| c.queue(q)))
            .collect();
        queues.extend(c.retry_steps_ms.iter().map(|s| c.retry_queue(*s)));
        queues.push(c.parking_queue());
        queues.sort();
        queues.dedup();
        for q in queues {
            ch.queue_delete(&q, QueueDeleteOptions::default())
                .await
                .map_err(broker)?;
        }
        for x in [
            c.exchange.clone(),
            c.retry_exchange(),
            c.requeue_exchange(),
            c.dead_letter_exchange(),
        ] {
            ch.exchange_delete(&x, ExchangeDeleteOptions::default())
                .await
                .map_err(broker)?;
        }
        self.inner.declared.lock().expect("declared lock").clear();
        Ok(())
    }

    /// The connection, made (with the base topology) if there is none or it was lost. While
    /// connecting fails, further attempts wait an exponentially growing backoff; calls in
    /// between fail at once.
    async fn connection(&self) -> Result<(Arc<Connection>, Channel), BusError> {
        let mut link = self.inner.link.lock().await;
        if let (Some(conn), Some(ch)) = (&link.conn, &link.publisher) {
            if conn.status().connected() && ch.status().connected() {
                return Ok((conn.clone(), ch.clone()));
            }
        }
        if let Some(at) = link.retry_at {
            if Instant::now() < at {
                return Err(BusError::Broker(
                    "not connected (waiting to reconnect)".to_owned(),
                ));
            }
        }
        let attempt = async {
            let conn = match &link.conn {
                // Only the publishing channel was lost (a failed declaration closes it).
                Some(c) if c.status().connected() => c.clone(),
                _ => {
                    self.inner.declared.lock().expect("declared lock").clear();
                    let props = ConnectionProperties::default()
                        .with_executor(tokio_executor_trait::Tokio::current())
                        .with_reactor(tokio_reactor_trait::Tokio)
                        .with_connection_name(LongString::from(
                            self.inner.name.as_bytes().to_vec(),
                        ));
                    let conn = tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        Connection::connect(&self.inner.config.url, props),
                    )
                    .await
                    .map_err(|_| BusError::Broker("connection timed out".to_owned()))?
                    .map_err(broker)?;
                    Arc::new(conn)
                }
            };
            let ch = conn.create_channel().await.map_err(broker)?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(broker)?;
            self.declare_base(&ch).await?;
            Ok::<_, BusError>((conn, ch))
        }
        .await;
        match attempt {
            Ok((conn, ch)) => {
                if link.failures > 0 || link.conn.is_some() {
                    tracing::info!(after_failures = link.failures, "AmqpReconnected");
                }
                link.conn = Some(conn.clone());
                link.publisher = Some(ch.clone());
                link.failures = 0;
                link.retry_at = None;
                Ok((conn, ch))
            }
            Err(e) => {
                link.failures = link.failures.saturating_add(1);
                let c = &self.inner.config;
                let backoff = c
                    .reconnect_min_ms
                    .saturating_mul(1u64 << link.failures.min(20).saturating_sub(1))
                    .min(c.reconnect_max_ms);
                link.retry_at = Some(Instant::now() + Duration::from_millis(backoff));
                metrics::counter!("xfhub_amqp_connect_failures_total").increment(1);
                tracing::warn!(error = %e, failures = link.failures, backoff_ms = backoff, "AmqpConnectError");
                Err(e)
            }
        }
    }

    async fn publisher(&self) -> Result<Channel, BusError> {
        Ok(self.connection().await?.1)
    }

    /// Waits until connected, retrying with the bus's backoff; None when `stop` fires first.
    async fn wait_connection(&self, stop: &CancellationToken) -> Option<Arc<Connection>> {
        loop {
            match self.connection().await {
                Ok((conn, _)) => return Some(conn),
                Err(_) => {
                    let wait = {
                        let link = self.inner.link.lock().await;
                        link.retry_at
                            .map(|at| at.saturating_duration_since(Instant::now()))
                            .unwrap_or_default()
                            .max(Duration::from_millis(self.inner.config.reconnect_min_ms))
                    };
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Exchanges, retry queues and the parking queue of broker dead letters.
    async fn declare_base(&self, ch: &Channel) -> Result<(), BusError> {
        let c = &self.inner.config;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for (name, kind) in [
            (c.exchange.clone(), ExchangeKind::Topic),
            (c.retry_exchange(), ExchangeKind::Topic),
            (c.requeue_exchange(), ExchangeKind::Topic),
            (c.dead_letter_exchange(), ExchangeKind::Fanout),
        ] {
            ch.exchange_declare(&name, kind, durable, FieldTable::default())
                .await
                .map_err(broker)?;
        }
        let qopts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), field_str("quorum"));
        ch.queue_declare(&c.parking_queue(), qopts, args)
            .await
            .map_err(broker)?;
        ch.queue_bind(
            &c.parking_queue(),
            &c.dead_letter_exchange(),
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
        for step in &c.retry_steps_ms {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), field_str("quorum"));
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(*step).unwrap_or(i64::MAX)),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                field_str(&c.requeue_exchange()),
            );
            args.insert("x-dead-letter-strategy".into(), field_str("at-least-once"));
            args.insert("x-overflow".into(), field_str("reject-publish"));
            let q = c.retry_queue(*step);
            ch.queue_declare(&q, qopts, args).await.map_err(broker)?;
            ch.queue_bind(
                &q,
                &c.retry_exchange(),
                &format!("{step}.*"),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        }
        Ok(())
    }

    /// Declares and binds the queue of a consumer group, once per connection.
    async fn declare_queue(&self, ch: &Channel, group: &str) -> Result<(), BusError> {
        if self
            .inner
            .declared
            .lock()
            .expect("declared lock")
            .contains(group)
        {
            return Ok(());
        }
        let c = &self.inner.config;
        let q = c.queue(group);
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), field_str("quorum"));
        args.insert(
            "x-dead-letter-exchange".into(),
            field_str(&c.dead_letter_exchange()),
        );
        args.insert("x-dead-letter-strategy".into(), field_str("at-least-once"));
        args.insert("x-overflow".into(), field_str("reject-publish"));
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(c.delivery_limit)),
        );
        let opts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(&q, opts, args).await.map_err(broker)?;
        for (exchange, key) in [
            (c.exchange.clone(), format!("@{group}")),
            (c.requeue_exchange(), format!("*.{group}")),
        ] {
            ch.queue_bind(
                &q,
                &exchange,
                &key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        }
        self.inner
            .declared
            .lock()
            .expect("declared lock")
            .insert(group.to_owned());
        Ok(())
    }

    /// Declares the queue of every destination of the table, so that no routed message is
    /// published before its queue exists.
    async fn declare_table(&self, ch: &Channel, table: &RouteTable) -> Result<(), BusError> {
        for rule in table.rules.iter().filter(|r| r.enabled) {
            for q in &rule.to {
                self.declare_queue(ch, q).await?;
            }
        }
        Ok(())
    }

    /// Publishes one message straight to one queue (through the requeue exchange) and waits for
    /// its confirm.
    async fn publish_to_queue(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
        attempts: i64,
    ) -> Result<(), BusError> {
        let ch = self.publisher().await?;
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(attempts));
        let confirm = ch
            .basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties(message_id, headers),
            )
            .await
            .map_err(broker)?;
        await_confirms(vec![confirm]).await
    }

    /// Gives a delivery back to the broker after a pause (used when the store could not settle
    /// it).
    fn requeue_later(acker: Option<lapin::acker::Acker>) {
        if let Some(acker) = acker {
            tokio::spawn(async move {
                tokio::time::sleep(SETTLE_FAILURE_PAUSE).await;
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
            });
        }
    }

    async fn ack_broker(acker: Option<lapin::acker::Acker>, message_id: &str) {
        if let Some(acker) = acker {
            if let Err(e) = acker.ack(BasicAckOptions::default()).await {
                // The channel is gone: the broker delivers the message again and the store
                // answers "duplicate" (no second effect).
                tracing::warn!(message_id = %message_id, error = %e, "AmqpAckLost");
            }
        }
    }

    /// Opens a channel with `prefetch` and consumes `amqp_queue` on it.
    async fn subscribe(
        &self,
        conn: &Connection,
        group: Option<&str>,
        amqp_queue: &str,
        prefetch: u16,
    ) -> Result<(Channel, lapin::Consumer), BusError> {
        let ch = conn.create_channel().await.map_err(broker)?;
        if let Some(group) = group {
            // Declared on this channel: a consumer may start before anything was published.
            let publisher = self.publisher().await?;
            self.declare_queue(&publisher, group).await?;
        }
        ch.basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(broker)?;
        let consumer = ch
            .basic_consume(
                amqp_queue,
                &format!("{}:{}", self.inner.name, uuid::Uuid::now_v7()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        Ok((ch, consumer))
    }

    /// Moves what the broker dead-lettered by itself (`<prefix>dead`) into the store's
    /// `dead_letters` table, each recorded before it is acked. Runs until `stop`; one per
    /// instance (instances compete on the queue).
    pub async fn collect_dead_letters(self, stop: CancellationToken) {
        let c = self.inner.config.clone();
        let parking = c.parking_queue();
        loop {
            let Some(conn) = self.wait_connection(&stop).await else {
                return;
            };
            let (ch, mut consumer) = match self.subscribe(&conn, None, &parking, 32).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "AmqpDeadLetterSubscribeError");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(c.reconnect_max_ms)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => {
                        let _ = ch.close(200, "stopping").await;
                        return;
                    }
                    next = consumer.next() => next,
                };
                let Some(Ok(d)) = next else { break };
                let headers = d.properties.headers().as_ref();
                let queue = str_header(headers, "x-first-death-queue")
                    .map(|q| q.strip_prefix(&c.queue_prefix).unwrap_or(&q).to_owned())
                    .unwrap_or_else(|| "unknown".to_owned());
                let why = str_header(headers, "x-first-death-reason")
                    .unwrap_or_else(|| "unknown".to_owned());
                let raw = String::from_utf8_lossy(&d.data).into_owned();
                let message_id = message_id_of(&d.properties, &raw);
                let reason = format!(
                    "dead-lettered by the broker ({why}): the consumer never settled it in {} deliveries",
                    c.delivery_limit
                );
                let attempt = int_header(headers, ATTEMPTS_HEADER) + i64::from(c.delivery_limit);
                let mut trail = TrailRows::new();
                trail.push(
                    &message_id,
                    "dead_lettered",
                    Some(&queue),
                    Some(attempt),
                    Some(&reason),
                );
                let txn = Txn {
                    statements: std::iter::once(dead_letter_stmt(
                        &queue,
                        &message_id,
                        &raw,
                        &reason,
                        attempt,
                    ))
                    .chain(trail.into_stmts())
                    .collect(),
                    ..Default::default()
                };
                match self.inner.store.transact(txn).await {
                    Ok(_) => {
                        tracing::warn!(queue = %queue, message_id = %message_id, reason = %why, "AmqpBrokerDeadLetter");
                        AmqpBus::ack_broker(Some(d.acker), &message_id).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "AmqpDeadLetterRecordError");
                        AmqpBus::requeue_later(Some(d.acker));
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(c.reconnect_min_ms)) => {}
            }
        }
    }
}

/// The message id of a delivery: its property, else the envelope's, else a new one (the
/// envelope will not parse and is dead-lettered).
fn message_id_of(props: &BasicProperties, raw: &str) -> String {
    if let Some(id) = props.message_id() {
        return id.as_str().to_owned();
    }
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| {
            v.get("message_id")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, rows: Vec<OutboxRow>) -> Result<(), BusError> {
        self.start_publish(rows).await?.await
    }

    async fn start_publish(&self, rows: Vec<OutboxRow>) -> Result<PublishTail, BusError> {
        if rows.is_empty() {
            return Ok(Box::pin(std::future::ready(Ok(()))));
        }
        let ch = self.publisher().await?;
        let table = self.inner.table.current();
        self.declare_table(&ch, &table).await?;
        let exchange = &self.inner.config.exchange;
        let mut confirms = Vec::with_capacity(rows.len());
        let mut trail = TrailRows::new();
        let mut published = 0u64;
        for row in &rows {
            let routing = table.resolve_text(&row.routing_key, &row.envelope);
            if !routing.routed {
                trail.push(&row.message_id, "published", None, None, Some("no route"));
            }
            if routing.queues.is_empty() {
                continue;
            }
            let cc: Vec<AMQPValue> = routing
                .queues
                .iter()
                .map(|q| field_str(&format!("@{q}")))
                .collect();
            let mut headers = FieldTable::default();
            headers.insert("CC".into(), AMQPValue::FieldArray(FieldArray::from(cc)));
            let confirm = ch
                .basic_publish(
                    exchange,
                    &row.routing_key,
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    row.envelope.as_bytes(),
                    properties(&row.message_id, headers),
                )
                .await
                .map_err(broker)?;
            confirms.push(confirm);
            for q in &routing.queues {
                trail.push(&row.message_id, "published", Some(q), None, None);
                published += 1;
            }
        }
        // Every message is on the channel, in order; the confirms and the bookkeeping are the
        // tail the relay overlaps with its next batch.
        let bus = self.clone();
        Ok(Box::pin(async move {
            if let Err(e) = await_confirms(confirms).await {
                // A returned message means a queue is missing: declare again next time.
                bus.inner.declared.lock().expect("declared lock").clear();
                return Err(e);
            }
            // Integers only: formatting them into the statement cannot inject anything.
            let seqs: Vec<String> = rows.iter().map(|r| r.seq.to_string()).collect();
            let mut statements = vec![Stmt::new(format!(
                "UPDATE outbox SET sent_at = $1 WHERE seq IN ({})",
                seqs.join(",")
            ))
            .bind(now_ms())
            .single_use()];
            statements.extend(trail.into_stmts());
            bus.inner
                .store
                .transact(Txn {
                    statements,
                    ..Default::default()
                })
                .await?;
            metrics::counter!("xfhub_bus_published_total", "bus" => "amqp").increment(published);
            Ok(())
        }))
    }

    async fn consume(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<mpsc::Receiver<Delivery>, BusError> {
        if !self.inner.table.current().has_queue(queue) {
            return Err(BusError::UnknownQueue(queue.to_owned()));
        }
        let prefetch = prefetch.clamp(1, usize::from(u16::MAX));
        let (tx, rx) = mpsc::channel(prefetch);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(consumer_loop(
            self.clone(),
            queue.to_owned(),
            prefetch,
            tx,
            ready_tx,
        ));
        // Return once subscribed, so that a caller's next step sees a live consumer; if the
        // broker is down the consumer keeps trying in the background.
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, ready_rx).await;
        Ok(rx)
    }

    async fn settle(
        &self,
        consumer: &str,
        mut d: Delivery,
        how: Settlement,
    ) -> Result<bool, BusError> {
        let acker = d.acker.take();
        let store = &self.inner.store;
        match how {
            Settlement::Ack(effects) => {
                match store
                    .ack(consumer, &d.queue, None, &d.message_id, d.attempt, effects)
                    .await
                {
                    Ok(fresh) => {
                        AmqpBus::ack_broker(acker, &d.message_id).await;
                        Ok(fresh)
                    }
                    Err(e) => {
                        AmqpBus::requeue_later(acker);
                        Err(e.into())
                    }
                }
            }
            Settlement::Retry { reason, delay_ms } => {
                let step = self.inner.config.step_for(delay_ms);
                let sent = self
                    .publish_to_queue(
                        &self.inner.config.retry_exchange(),
                        &format!("{step}.{}", d.queue),
                        &d.message_id,
                        d.raw.as_bytes(),
                        d.attempt,
                    )
                    .await;
                if let Err(e) = sent {
                    AmqpBus::requeue_later(acker);
                    return Err(e);
                }
                let mut trail = TrailRows::new();
                let detail = format!("{reason} (retry in {step} ms)");
                trail.push(
                    &d.message_id,
                    "retry_scheduled",
                    Some(&d.queue),
                    Some(d.attempt),
                    Some(&detail),
                );
                if let Err(e) = store
                    .transact(Txn {
                        statements: trail.into_stmts(),
                        ..Default::default()
                    })
                    .await
                {
                    // The retry is on its way; only its trail hop is missing.
                    tracing::warn!(message_id = %d.message_id, error = %e, "AmqpTrailError");
                }
                AmqpBus::ack_broker(acker, &d.message_id).await;
                Ok(true)
            }
            Settlement::DeadLetter { reason } => {
                let mut trail = TrailRows::new();
                trail.push(
                    &d.message_id,
                    "dead_lettered",
                    Some(&d.queue),
                    Some(d.attempt),
                    Some(&reason),
                );
                let mut statements = vec![dead_letter_stmt(
                    &d.queue,
                    &d.message_id,
                    &d.raw,
                    &reason,
                    d.attempt,
                )];
                statements.extend(trail.into_stmts());
                match store
                    .transact(Txn {
                        statements,
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => {
                        AmqpBus::ack_broker(acker, &d.message_id).await;
                        Ok(true)
                    }
                    Err(e) => {
                        AmqpBus::requeue_later(acker);
                        Err(e.into())
                    }
                }
            }
        }
    }

    async fn release(&self, deliveries: Vec<Delivery>) -> Result<(), BusError> {
        for mut d in deliveries {
            if let Some(acker) = d.acker.take() {
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
            }
        }
        Ok(())
    }

    async fn replay(&self, dead_letter_id: i64) -> Result<Option<String>, BusError> {
        use sqlx::Row;
        let row = Stmt::new(
            "SELECT queue, message_id, envelope FROM dead_letters WHERE id = $1 AND replayed_at IS NULL",
        )
        .bind(dead_letter_id);
        let row = row
            .query()
            .fetch_optional(self.inner.store.reader())
            .await
            .map_err(|e| BusError::Store(e.into()))?;
        let Some(row) = row else { return Ok(None) };
        let get = |c: &str| -> Result<String, BusError> {
            row.try_get::<String, _>(c)
                .map_err(|e| BusError::Store(e.into()))
        };
        let (queue, message_id, envelope) = (get("queue")?, get("message_id")?, get("envelope")?);
        if !self.inner.table.current().has_queue(&queue) {
            return Err(BusError::UnknownQueue(queue));
        }
        let ch = self.publisher().await?;
        self.declare_queue(&ch, &queue).await?;
        // Published (confirmed) before it is marked replayed: a crash in between leaves it open
        // for another replay, which the consumer's de-duplication makes harmless.
        self.publish_to_queue(
            &self.inner.config.requeue_exchange(),
            &format!("replay.{queue}"),
            &message_id,
            envelope.as_bytes(),
            0,
        )
        .await?;
        let mut trail = TrailRows::new();
        trail.push(
            &message_id,
            "replayed",
            Some(&queue),
            None,
            Some(&format!("dead letter {dead_letter_id}")),
        );
        let mut statements = vec![Stmt::new(
            "UPDATE dead_letters SET replayed_at = $1 WHERE id = $2 AND replayed_at IS NULL",
        )
        .bind(now_ms())
        .bind(dead_letter_id)];
        statements.extend(trail.into_stmts());
        self.inner
            .store
            .transact(Txn {
                statements,
                ..Default::default()
            })
            .await?;
        Ok(Some(queue))
    }
}

/// Consumes one group's queue for one receiver: subscribes (again after every lost channel,
/// with backoff), forwards deliveries within the prefetch, and when the receiver is gone
/// cancels the subscription, waits for the deliveries handed out to be settled or dropped (their
/// acks need this channel), then closes the channel (the broker requeues anything unacked).
async fn consumer_loop(
    bus: AmqpBus,
    group: String,
    prefetch: usize,
    tx: mpsc::Sender<Delivery>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let c = bus.inner.config.clone();
    let amqp_queue = c.queue(&group);
    let slots = Arc::new(Semaphore::new(prefetch));
    let mut ready = Some(ready);
    let mut backoff = c.reconnect_min_ms;
    let gone = CancellationToken::new();
    {
        let (tx, gone) = (tx.clone(), gone.clone());
        tokio::spawn(async move {
            tx.closed().await;
            gone.cancel();
        });
    }
    loop {
        let Some(conn) = bus.wait_connection(&gone).await else {
            return;
        };
        let prefetch16 = u16::try_from(prefetch).unwrap_or(u16::MAX);
        let (ch, mut consumer) = match bus
            .subscribe(&conn, Some(&group), &amqp_queue, prefetch16)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(queue = %group, error = %e, "AmqpSubscribeError");
                tokio::select! {
                    _ = gone.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(backoff)) => {}
                }
                backoff = (backoff * 2).min(c.reconnect_max_ms);
                continue;
            }
        };
        backoff = c.reconnect_min_ms;
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        tracing::debug!(queue = %group, "AmqpSubscribed");
        loop {
            let next = tokio::select! {
                biased;
                _ = gone.cancelled() => {
                    stop_consumer(&ch, &consumer, &slots, prefetch).await;
                    return;
                }
                next = consumer.next() => next,
            };
            let d = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    tracing::warn!(queue = %group, error = %e, "AmqpConsumerLost");
                    break;
                }
                None => {
                    tracing::warn!(queue = %group, "AmqpConsumerCancelled");
                    break;
                }
            };
            // Never blocks for long: the broker sends at most `prefetch` unacked deliveries.
            // After a reconnection, deliveries of the lost channel still hold their slots until
            // the runtime drops them.
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = gone.cancelled() => {
                    stop_consumer(&ch, &consumer, &slots, prefetch).await;
                    return;
                }
            };
            let headers = d.properties.headers().as_ref();
            let attempt =
                int_header(headers, ATTEMPTS_HEADER) + int_header(headers, "x-delivery-count") + 1;
            let raw = String::from_utf8_lossy(&d.data).into_owned();
            let delivery = Delivery {
                queue: group.clone(),
                message_id: message_id_of(&d.properties, &raw),
                raw,
                attempt,
                row_id: None,
                acker: Some(d.acker),
                _permit: Some(permit),
            };
            if let Err(mpsc::error::SendError(mut back)) = tx.send(delivery).await {
                if let Some(acker) = back.acker.take() {
                    let _ = acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await;
                }
                drop(back);
                stop_consumer(&ch, &consumer, &slots, prefetch).await;
                return;
            }
        }
        drop(consumer);
        let _ = ch.close(200, "resubscribing").await;
        tokio::select! {
            _ = gone.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(backoff)) => {}
        }
        backoff = (backoff * 2).min(c.reconnect_max_ms);
    }
}

async fn stop_consumer(
    ch: &Channel,
    consumer: &lapin::Consumer,
    slots: &Semaphore,
    prefetch: usize,
) {
    let _ = ch
        .basic_cancel(consumer.tag().as_str(), BasicCancelOptions::default())
        .await;
    // The runtime settles what it started through this channel: keep it open until every
    // delivery handed out was settled or dropped.
    while slots.available_permits() < prefetch && ch.status().connected() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = ch.close(200, "consumer stopped").await;
}

/// Rows per relay pass on the AMQP bus: a pass is published pipelined, so this is the number
/// of publisher confirms in flight.
pub const RELAY_BATCH: u32 = 1_000;

/// Name of the lease that admits one outbox relay at a time among instances sharing a
/// database.
pub const RELAY_LEASE: &str = "outbox-relay";
/// Wait between attempts to take the relay lease while another instance holds it.
const RELAY_LEASE_POLL: Duration = Duration::from_millis(500);

/// Runs the outbox relay of an instance that shares its database with others: only the holder
/// of the [`RELAY_LEASE`] relays (several relays would publish every row several times), and
/// when it dies another instance takes over within [`RELAY_LEASE_POLL`] (a killed process frees
/// its lease at once; see [`xfhub_store::lease`]). Returns after `stop`, having drained the
/// outbox if it held the lease.
pub async fn run_leased_relay(
    relay: crate::Relay,
    store: Store,
    bus: Arc<dyn Bus>,
    stop: CancellationToken,
) {
    loop {
        let lease = tokio::select! {
            _ = stop.cancelled() => return,
            l = store.try_lease(RELAY_LEASE) => l,
        };
        match lease {
            Ok(Some(lease)) => {
                tracing::info!("RelayLeaseTaken");
                let run = stop.child_token();
                let task = tokio::spawn(relay.clone().run(store.clone(), bus.clone(), run.clone()));
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = lease.lost() => tracing::warn!("RelayLeaseLost"),
                }
                run.cancel();
                let _ = task.await;
                lease.release().await;
                if stop.is_cancelled() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "RelayLeaseError"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RELAY_LEASE_POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_steps_take_the_longest_step_not_above_the_delay() {
        let c = AmqpConfig {
            retry_steps_ms: vec![100, 1_000, 10_000],
            ..Default::default()
        };
        assert_eq!(c.step_for(0), 100);
        assert_eq!(c.step_for(99), 100);
        assert_eq!(c.step_for(100), 100);
        assert_eq!(c.step_for(999), 100);
        assert_eq!(c.step_for(1_500), 1_000);
        assert_eq!(c.step_for(1_000_000), 10_000);
    }

    #[test]
    fn bad_settings_are_listed() {
        let c = AmqpConfig {
            url: "http://x".into(),
            exchange: "a b".into(),
            retry_steps_ms: vec![5, 5],
            delivery_limit: 0,
            reconnect_min_ms: 10,
            reconnect_max_ms: 1,
            ..Default::default()
        };
        let p = c.problems("bus.amqp.");
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].starts_with("bus.amqp.url"));
        assert!(AmqpConfig::default().problems("").is_empty());
    }
}
