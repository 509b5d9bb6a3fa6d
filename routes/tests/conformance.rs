//! The bus conformance suite: one set of cases run against every bus, the embedded bus (queues in
//! the store) and the AMQP bus (RabbitMQ at `XFHUB_TEST_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). Each AMQP case gets its own exchange and queue
//! prefix (`t<uuid>`) and deletes them at its end. These cases never skip: without a broker the
//! AMQP variants fail.
//!
//! Both buses keep their consumer state (dedup keys, dead letters, trail) in a store: SQLite
//! here. Every wait is bounded.

#![allow(unused_macros)] // reason: the shared test helpers define macros this suite does not use

#[macro_use]
mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xfhub_routes::runtime::run_consumer;
use xfhub_routes::{
    AmqpBus, AmqpConfig, Bus, BusError, Delivery, EmbeddedBus, Handler, HandlerError, RetryPolicy,
    Router, Settlement,
};
use xfhub_schemas::Envelope;
use xfhub_store::{Effect, Store};

use common::{ingest_petitions, wait_until};

/// Longest wait for a condition a bus reaches in well under a second.
const WAIT: Duration = Duration::from_secs(30);
const QUEUE: &str = "conformance";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Embedded,
    Amqp,
}

macro_rules! bus_tests {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                $crate::common::run_case(super::$case($crate::Kind::Embedded)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn amqp() {
                $crate::common::run_case(super::$case($crate::Kind::Amqp)).await;
            }
        }
    )*};
}

bus_tests!(
    publish_consume_ack,
    transient_failures_are_retried_with_growing_delays,
    dead_letter_after_max_attempts_then_replay,
    permanent_error_dead_letters_at_once,
    redelivery_after_a_crash,
    effect_committed_but_ack_lost_has_no_second_effect,
    prefetch_bounds_unsettled_deliveries,
    republished_outbox_rows_have_no_second_effect,
);

fn amqp_url() -> String {
    std::env::var("XFHUB_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A bus of one kind over a fresh store, with a private broker namespace for AMQP.
struct Kit {
    kind: Kind,
    store: Store,
    _dir: tempfile::TempDir,
    amqp: Option<AmqpConfig>,
    bus: Arc<dyn Bus>,
    /// Every AMQP bus made, closed at the end.
    made: Mutex<Vec<AmqpBus>>,
}

impl Kit {
    async fn new(kind: Kind) -> Kit {
        let (store, dir) = common::sqlite_store().await;
        let amqp = (kind == Kind::Amqp).then(|| {
            let ns = format!("t{}", uuid::Uuid::now_v7().simple());
            AmqpConfig {
                url: amqp_url(),
                exchange: ns.clone(),
                queue_prefix: format!("{ns}."),
                retry_steps_ms: vec![20, 50, 100, 400],
                delivery_limit: 20,
                reconnect_min_ms: 50,
                reconnect_max_ms: 1_000,
            }
        });
        let made = Mutex::default();
        let bus = Kit::make_bus(&store, amqp.as_ref(), &made).await;
        Kit {
            kind,
            store,
            _dir: dir,
            amqp,
            bus,
            made,
        }
    }

    fn router() -> Router {
        let mut r = Router::new();
        r.subscribe(QUEUE, &["petition.#"]);
        r
    }

    /// Another bus on the same store and broker namespace: what a restarted process builds.
    async fn new_bus(&self) -> Arc<dyn Bus> {
        Kit::make_bus(&self.store, self.amqp.as_ref(), &self.made).await
    }

    async fn make_bus(
        store: &Store,
        amqp: Option<&AmqpConfig>,
        made: &Mutex<Vec<AmqpBus>>,
    ) -> Arc<dyn Bus> {
        match amqp {
            None => Arc::new(EmbeddedBus::new(store.clone(), Kit::router())),
            Some(c) => {
                let bus = AmqpBus::new(store.clone(), Kit::router(), c.clone());
                bus.connect()
                    .await
                    .unwrap_or_else(|e| panic!("connect to RabbitMQ at {}: {e}", c.url));
                made.lock().unwrap().push(bus.clone());
                Arc::new(bus)
            }
        }
    }

    /// Publishes every unsent outbox row, as relay passes would; returns how many.
    async fn publish_pending(&self, bus: &dyn Bus) -> usize {
        let mut n = 0;
        loop {
            let rows = self.store.outbox_unsent(128).await.unwrap();
            if rows.is_empty() {
                return n;
            }
            n += rows.len();
            bus.publish(rows).await.unwrap();
        }
    }

    async fn hops(&self, hop: &str) -> i64 {
        self.store.count_hops(hop, QUEUE).await.unwrap()
    }

    async fn wait_hops(&self, hop: &str, n: i64) {
        wait_until(
            || async move { self.hops(hop).await >= n },
            WAIT,
            &format!("{n} {hop} hops on {QUEUE} ({:?})", self.kind),
        )
        .await;
    }

    /// Removes the broker namespace of an AMQP kit.
    async fn finish(self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap());
        if let Some(bus) = made.first() {
            bus.delete_topology()
                .await
                .expect("delete the test topology");
        }
        for bus in made {
            bus.close().await;
        }
    }
}

fn policy(max_attempts: i64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), BusError>>,
}

fn start(
    bus: &Arc<dyn Bus>,
    handler: Arc<dyn Handler>,
    prefetch: usize,
    p: RetryPolicy,
) -> Running {
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        bus.clone(),
        handler,
        prefetch,
        p,
        stop.clone(),
    ));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run_consumer returns after stop")
            .expect("consumer task")
            .expect("consumer result");
    }
}

/// The effect every test consumer commits: a `consumed` hop with the attempt.
fn consumed(envelope: &Envelope<Value>) -> Vec<Effect> {
    vec![Effect::Trail {
        message_id: envelope.message_id.to_string(),
        hop: "consumed".to_owned(),
        queue: Some(QUEUE.to_owned()),
        detail: None,
    }]
}

/// Fails transiently until a message's `fail_until`-th attempt (never when 0), permanently when
/// `permanent`; records every attempt it saw.
struct Scripted {
    fail_until: AtomicI64,
    permanent: AtomicBool,
    attempts: Mutex<Vec<(String, i64)>>,
}

impl Scripted {
    fn new(fail_until: i64) -> Arc<Scripted> {
        Arc::new(Scripted {
            fail_until: AtomicI64::new(fail_until),
            permanent: AtomicBool::new(false),
            attempts: Mutex::default(),
        })
    }

    fn attempts_of(&self, message_id: &str) -> Vec<i64> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == message_id)
            .map(|(_, a)| *a)
            .collect()
    }
}

#[async_trait]
impl Handler for Scripted {
    fn name(&self) -> &str {
        QUEUE
    }

    async fn handle(
        &self,
        env: &Envelope<Value>,
        attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        self.attempts
            .lock()
            .unwrap()
            .push((env.message_id.to_string(), attempt));
        if self.permanent.load(Ordering::SeqCst) {
            return Err(HandlerError::Permanent(
                "this consumer cannot use it".into(),
            ));
        }
        if attempt < self.fail_until.load(Ordering::SeqCst) {
            return Err(HandlerError::Transient(format!(
                "partner down (attempt {attempt})"
            )));
        }
        Ok(consumed(env))
    }
}

async fn recv(rx: &mut tokio::sync::mpsc::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a delivery in time")
        .expect("the delivery channel is open")
}

// ---------------------------------------------------------------------------------------------
// Cases

/// Every published message reaches the consumer and is acked once, with its effect once.
async fn publish_consume_ack(kind: Kind) {
    let kit = Kit::new(kind).await;
    let receipts = ingest_petitions(&kit.store, 0..40).await;
    assert_eq!(kit.publish_pending(kit.bus.as_ref()).await, 40);
    assert!(
        kit.store.outbox_unsent(10).await.unwrap().is_empty(),
        "marked sent"
    );
    let handler = Scripted::new(0);
    let consumer = start(&kit.bus, handler.clone(), 16, policy(3));
    kit.wait_hops("acked", 40).await;
    consumer.stop().await;
    assert_eq!(kit.hops("consumed").await, 40);
    assert_eq!(kit.hops("acked").await, 40);
    for r in &receipts {
        let m = r.message_id.to_string();
        assert_eq!(
            handler.attempts_of(&m),
            [1],
            "{m} handled once, first attempt"
        );
        let trail = kit.store.trail(&m).await.unwrap();
        assert!(
            trail
                .iter()
                .any(|h| h.hop == "published" && h.queue.as_deref() == Some(QUEUE)),
            "published hop on {QUEUE}: {trail:?}"
        );
    }
    kit.finish().await;
}

/// A transient failure is retried after a delay; the attempt number grows; the effect happens
/// once, on the attempt that succeeded.
async fn transient_failures_are_retried_with_growing_delays(kind: Kind) {
    let kit = Kit::new(kind).await;
    let receipts = ingest_petitions(&kit.store, 0..5).await;
    kit.publish_pending(kit.bus.as_ref()).await;
    let handler = Scripted::new(3);
    let consumer = start(&kit.bus, handler.clone(), 8, policy(5));
    kit.wait_hops("acked", 5).await;
    consumer.stop().await;
    assert_eq!(kit.hops("consumed").await, 5);
    assert_eq!(kit.hops("retry_scheduled").await, 10);
    for r in &receipts {
        assert_eq!(handler.attempts_of(&r.message_id.to_string()), [1, 2, 3]);
    }
    kit.finish().await;
}

/// After the last attempt the message is a dead letter in the store; a replay puts it back on
/// its queue once, and its effect then happens once.
async fn dead_letter_after_max_attempts_then_replay(kind: Kind) {
    let kit = Kit::new(kind).await;
    let receipts = ingest_petitions(&kit.store, 0..3).await;
    kit.publish_pending(kit.bus.as_ref()).await;
    let handler = Scripted::new(i64::MAX);
    let consumer = start(&kit.bus, handler.clone(), 8, policy(2));
    kit.wait_hops("dead_lettered", 3).await;
    let dead = kit.store.dead_letters(true, 10).await.unwrap();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for d in &dead {
        assert_eq!(d.queue, QUEUE);
        assert_eq!(d.attempts, 2);
        assert!(
            d.reason.contains("gave up after 2 attempts"),
            "{}",
            d.reason
        );
        assert!(receipts
            .iter()
            .any(|r| r.message_id.to_string() == d.message_id));
    }
    assert_eq!(kit.hops("consumed").await, 0);

    handler.fail_until.store(0, Ordering::SeqCst);
    for d in &dead {
        assert_eq!(kit.bus.replay(d.id).await.unwrap().as_deref(), Some(QUEUE));
        assert_eq!(
            kit.bus.replay(d.id).await.unwrap(),
            None,
            "replayed once only"
        );
    }
    kit.wait_hops("consumed", 3).await;
    assert!(kit.store.dead_letters(true, 10).await.unwrap().is_empty());
    consumer.stop().await;
    for r in &receipts {
        // Two failed attempts, then the replay starts counting again at 1.
        assert_eq!(handler.attempts_of(&r.message_id.to_string()), [1, 2, 1]);
    }
    assert_eq!(kit.hops("consumed").await, 3);
    kit.finish().await;
}

/// A permanent error dead-letters at the first attempt, and other messages flow on.
async fn permanent_error_dead_letters_at_once(kind: Kind) {
    let kit = Kit::new(kind).await;
    ingest_petitions(&kit.store, 0..4).await;
    kit.publish_pending(kit.bus.as_ref()).await;
    let handler = Scripted::new(0);
    handler.permanent.store(true, Ordering::SeqCst);
    let consumer = start(&kit.bus, handler.clone(), 8, policy(5));
    kit.wait_hops("dead_lettered", 4).await;
    consumer.stop().await;
    let dead = kit.store.dead_letters(true, 10).await.unwrap();
    assert_eq!(dead.len(), 4);
    assert!(dead
        .iter()
        .all(|d| d.attempts == 1 && d.reason == "this consumer cannot use it"));
    assert_eq!(handler.attempts.lock().unwrap().len(), 4);
    kit.finish().await;
}

/// A consumer that dies holding deliveries: the next process gets them again (attempt 2) and
/// every message is consumed exactly once.
async fn redelivery_after_a_crash(kind: Kind) {
    const PREFETCH: usize = 4;
    let kit = Kit::new(kind).await;
    ingest_petitions(&kit.store, 0..12).await;
    kit.publish_pending(kit.bus.as_ref()).await;
    let mut rx = kit.bus.consume(QUEUE, PREFETCH).await.unwrap();
    let mut taken = Vec::new();
    for _ in 0..PREFETCH {
        let d = recv(&mut rx).await;
        assert_eq!(d.attempt, 1);
        taken.push(d.message_id.clone());
        drop(d); // never settled
    }
    drop(rx);
    if kind == Kind::Amqp {
        // The dead process's connection goes with it.
        let first = kit.made.lock().unwrap()[0].clone();
        first.close().await;
    }

    let bus = kit.new_bus().await;
    let handler = Scripted::new(0);
    let consumer = start(&bus, handler.clone(), PREFETCH, policy(5));
    kit.wait_hops("acked", 12).await;
    consumer.stop().await;
    assert_eq!(kit.hops("consumed").await, 12);
    for m in &taken {
        assert_eq!(handler.attempts_of(m), [2], "{m} came back as attempt 2");
    }
    kit.finish().await;
}

/// The consumer's effect committed, then it died before the bus heard the ack: the message comes
/// again, and its second ack reports a duplicate and applies nothing.
async fn effect_committed_but_ack_lost_has_no_second_effect(kind: Kind) {
    let kit = Kit::new(kind).await;
    let receipts = ingest_petitions(&kit.store, 0..1).await;
    kit.publish_pending(kit.bus.as_ref()).await;
    let mut rx = kit.bus.consume(QUEUE, 1).await.unwrap();
    let d = recv(&mut rx).await;
    let env = d.envelope().unwrap();
    // What an ack does first: effects and dedup key in one transaction ...
    assert!(kit
        .store
        .ack(QUEUE, QUEUE, None, &d.message_id, d.attempt, consumed(&env))
        .await
        .unwrap());
    // ... then the process dies before the bus acks.
    drop(d);
    drop(rx);
    if kind == Kind::Amqp {
        let first = kit.made.lock().unwrap()[0].clone();
        first.close().await;
    }
    let bus = kit.new_bus().await;
    let mut rx = bus.consume(QUEUE, 1).await.unwrap();
    let d = recv(&mut rx).await;
    assert_eq!(d.message_id, receipts[0].message_id.to_string());
    assert_eq!(d.attempt, 2);
    let env = d.envelope().unwrap();
    let fresh = bus
        .settle(QUEUE, d, Settlement::Ack(consumed(&env)))
        .await
        .unwrap();
    assert!(!fresh, "the second ack is a duplicate");
    assert_eq!(kit.hops("consumed").await, 1, "one effect");
    // Settled for good: nothing is delivered again.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "no further delivery"
    );
    drop(rx);
    kit.finish().await;
}

/// A consumer never holds more than its prefetch of unsettled deliveries; settling one lets the
/// next one in.
async fn prefetch_bounds_unsettled_deliveries(kind: Kind) {
    const PREFETCH: usize = 3;
    let kit = Kit::new(kind).await;
    ingest_petitions(&kit.store, 0..10).await;
    kit.publish_pending(kit.bus.as_ref()).await;
    let mut rx = kit.bus.consume(QUEUE, PREFETCH).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..PREFETCH {
        held.push(recv(&mut rx).await);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "no delivery beyond the prefetch while {PREFETCH} are unsettled"
    );
    let d = held.remove(0);
    let env = d.envelope().unwrap();
    assert!(kit
        .bus
        .settle(QUEUE, d, Settlement::Ack(consumed(&env)))
        .await
        .unwrap());
    held.push(recv(&mut rx).await);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "still bounded"
    );
    // Settle everything through the runtime.
    kit.bus.release(held).await.unwrap();
    drop(rx);
    let consumer = start(&kit.bus, Scripted::new(0), PREFETCH, policy(5));
    kit.wait_hops("consumed", 10).await;
    consumer.stop().await;
    assert_eq!(kit.hops("consumed").await, 10);
    kit.finish().await;
}

/// The relay publishes a batch again when it crashed before marking it sent: consumers get the
/// messages twice, and apply each once.
async fn republished_outbox_rows_have_no_second_effect(kind: Kind) {
    let kit = Kit::new(kind).await;
    ingest_petitions(&kit.store, 0..6).await;
    let rows = kit.store.outbox_unsent(100).await.unwrap();
    kit.bus.publish(rows.clone()).await.unwrap();
    // For the AMQP bus the broker now holds a second copy; the embedded bus's queue row is
    // unique per message and holds one.
    kit.bus.publish(rows).await.unwrap();
    let consumer = start(&kit.bus, Scripted::new(0), 8, policy(5));
    kit.wait_hops("consumed", 6).await;
    if kind == Kind::Amqp {
        kit.wait_hops("acked", 12).await;
    }
    consumer.stop().await;
    assert_eq!(kit.hops("consumed").await, 6);
    kit.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Broker faults (AMQP only: the embedded bus has no broker)

/// Closes, from the broker's side, every connection of the bus named `name` (as an operator
/// would with `rabbitmqctl close_connection`); returns how many it closed.
fn close_from_broker(name: &str) -> usize {
    // The table form: its pids are in the syntax close_connection takes (the JSON form's are
    // not).
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "--no-table-headers",
            "list_connections",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("this test needs rabbitmqctl (the broker's own CLI) on PATH");
    assert!(
        out.status.success(),
        "rabbitmqctl list_connections: {out:?}"
    );
    let mut closed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains(name) {
            continue;
        }
        let pid = line.split('\t').next().expect("a connection pid");
        let st = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "close_connection",
                pid,
                "conformance test: broker-side close",
            ])
            .output()
            .expect("rabbitmqctl close_connection");
        assert!(st.status.success(), "close_connection {pid}: {st:?}");
        closed += 1;
    }
    closed
}

/// The broker drops the hub's connection twice mid-stream: the outbox keeps what could not be
/// published, publishing and consuming reconnect with backoff, and every message is consumed
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amqp_connection_closed_by_the_broker_mid_stream() {
    common::run_case(async {
        let kit = Kit::new(Kind::Amqp).await;
        let amqp = kit.made.lock().unwrap()[0].clone();
        let handler = Scripted::new(0);
        let consumer = start(&kit.bus, handler.clone(), 16, policy(5));
        let relay = xfhub_routes::Relay::new();
        let stop = CancellationToken::new();
        let relay_task = tokio::spawn(relay.clone().run(
            kit.store.clone(),
            kit.bus.clone(),
            stop.clone(),
        ));
        let mut closed = 0;
        for batch in 0..30u64 {
            ingest_petitions(&kit.store, batch * 10..batch * 10 + 10).await;
            relay.notify();
            if batch == 10 || batch == 20 {
                closed += close_from_broker(amqp.connection_name());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            closed >= 2,
            "the broker closed the bus's connection ({closed})"
        );
        kit.wait_hops("consumed", 300).await;
        wait_until(
            || async { kit.store.outbox_unsent(10).await.unwrap().is_empty() },
            WAIT,
            "every outbox row confirmed",
        )
        .await;
        stop.cancel();
        relay_task.await.unwrap();
        consumer.stop().await;
        assert_eq!(
            kit.hops("consumed").await,
            300,
            "each message consumed once"
        );
        let seen: std::collections::HashSet<String> = handler
            .attempts
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect();
        assert_eq!(seen.len(), 300);
        assert!(amqp.is_connected().await, "reconnected");
        kit.finish().await;
    })
    .await;
}

/// A message whose consumer dies on it every time is dead-lettered by the broker after
/// `delivery_limit` deliveries; the collector records it in the store's dead letters, from where
/// it is replayed like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amqp_broker_dead_letters_are_collected_and_replayable() {
    common::run_case(async {
        let mut kit = Kit::new(Kind::Amqp).await;
        let first = kit.made.lock().unwrap()[0].clone();
        first.delete_topology().await.unwrap();
        first.close().await;
        kit.amqp.as_mut().unwrap().delivery_limit = 2;
        let bus = kit.new_bus().await;
        kit.bus = bus;
        let receipts = ingest_petitions(&kit.store, 0..1).await;
        kit.publish_pending(kit.bus.as_ref()).await;
        let mut crashes = 0;
        loop {
            let bus = kit.new_bus().await;
            let mut rx = bus.consume(QUEUE, 1).await.unwrap();
            match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                Ok(Some(d)) => {
                    crashes += 1;
                    drop(d);
                    drop(rx);
                    let last = kit.made.lock().unwrap().last().unwrap().clone();
                    last.close().await;
                }
                _ => break,
            }
            assert!(crashes < 10, "the broker never gave up on the message");
        }
        assert_eq!(crashes, 3, "delivered 1 + delivery_limit times");
        let collector_bus = kit.made.lock().unwrap()[1].clone();
        let stop = CancellationToken::new();
        let collector = tokio::spawn(collector_bus.collect_dead_letters(stop.clone()));
        wait_until(
            || async { !kit.store.dead_letters(true, 10).await.unwrap().is_empty() },
            WAIT,
            "the broker's dead letter in the store",
        )
        .await;
        let dead = kit.store.dead_letters(true, 10).await.unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].queue, QUEUE);
        assert_eq!(dead[0].message_id, receipts[0].message_id.to_string());
        assert!(
            dead[0].reason.contains("delivery_limit"),
            "{}",
            dead[0].reason
        );
        stop.cancel();
        collector.await.unwrap();

        let consumer = start(&kit.bus, Scripted::new(0), 4, policy(5));
        assert_eq!(
            kit.bus.replay(dead[0].id).await.unwrap().as_deref(),
            Some(QUEUE)
        );
        kit.wait_hops("consumed", 1).await;
        consumer.stop().await;
        assert_eq!(kit.hops("consumed").await, 1);
        kit.finish().await;
    })
    .await;
}
