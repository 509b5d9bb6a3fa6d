//! The bus suite: the embedded bus, the outbox relay and the consumer runtime over a store, on
//! SQLite and on PostgreSQL (see `common::backend_tests`).
//!
//! Every wait is bounded: a broken bus fails the test instead of hanging it.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use xfhub_routes::runtime::run_consumer;
use xfhub_routes::trail::{TrailConsumer, TRAIL_PATTERNS, TRAIL_QUEUE};
use xfhub_routes::{Bus, BusError, EmbeddedBus, Handler, HandlerError, Relay, RetryPolicy, Router};
use xfhub_schemas::Envelope;
use xfhub_store::{Effect, Receipt, Store};

use common::{
    ingest_new, ingest_petitions, sample_petition_item, sample_workorder_item, wait_until,
};

backend_tests!(
    case_relay_publishes_to_subscribed_queues,
    case_relay_publishes_again_what_a_failed_batch_left_unsent,
    case_trail_consumer_processes_every_message_once,
    case_transient_failures_are_retried_with_backoff,
    case_dead_letter_after_max_attempts_then_replay,
    case_permanent_error_dead_letters_at_once,
    case_poison_message_does_not_block_the_queue,
    case_crash_looping_message_is_dead_lettered_unhandled,
    case_prefetch_bounds_unsettled_deliveries,
    case_redelivery_after_crash,
    case_stop_settles_in_flight_deliveries,
    case_republished_messages_have_no_second_effect,
);

/// Longest wait for a condition the bus should reach in well under a second.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers

fn bus_for(store: &Store, queues: &[(&str, &[&str])]) -> Arc<EmbeddedBus> {
    let mut router = Router::new();
    for (queue, patterns) in queues {
        router.subscribe(queue, patterns);
    }
    Arc::new(EmbeddedBus::new(store.clone(), router))
}

/// Publishes every unsent outbox row, as one relay pass would.
async fn publish_pending(store: &Store, bus: &dyn Bus) -> usize {
    let mut n = 0;
    loop {
        let rows = store.outbox_unsent(512).await.unwrap();
        if rows.is_empty() {
            return n;
        }
        n += rows.len();
        bus.publish(rows).await.unwrap();
    }
}

fn policy(max_attempts: i64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    }
}

/// A running `run_consumer` and the token that stops it.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), BusError>>,
}

fn start(
    bus: &Arc<EmbeddedBus>,
    handler: Arc<dyn Handler>,
    prefetch: usize,
    p: RetryPolicy,
) -> Running {
    let stop = CancellationToken::new();
    let bus: Arc<dyn Bus> = bus.clone();
    let task = tokio::spawn(run_consumer(bus, handler, prefetch, p, stop.clone()));
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

async fn hops(store: &Store, hop: &str, queue: &str) -> i64 {
    store.count_hops(hop, queue).await.unwrap()
}

async fn wait_hops(store: &Store, hop: &str, queue: &str, n: i64) {
    wait_until(
        || async move { hops(store, hop, queue).await == n },
        WAIT,
        &format!("{n} {hop} hops on {queue}"),
    )
    .await;
    assert_eq!(hops(store, hop, queue).await, n, "{hop} on {queue}");
}

async fn depth(store: &Store, queue: &str) -> i64 {
    let (queues, _) = store.depths().await.unwrap();
    queues
        .into_iter()
        .find(|(q, _)| q == queue)
        .map_or(0, |(_, n)| n)
}

/// (hop, attempt) of a message's trail on `queue`.
async fn trail_on(store: &Store, message_id: &str, queue: &str) -> Vec<(String, Option<i64>)> {
    store
        .trail(message_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.queue.as_deref() == Some(queue))
        .map(|h| (h.hop, h.attempt))
        .collect()
}

fn hop(name: &str, attempt: Option<i64>) -> (String, Option<i64>) {
    (name.to_owned(), attempt)
}

/// The effect every test handler commits: one `consumed` hop on its queue.
fn consumed(envelope: &Envelope<Value>, queue: &str) -> Vec<Effect> {
    vec![Effect::Trail {
        message_id: envelope.message_id.to_string(),
        hop: "consumed".to_owned(),
        queue: Some(queue.to_owned()),
        detail: None,
    }]
}

/// Fails transiently on the first `failures` deliveries of each message, then succeeds.
struct Flaky {
    failures: i64,
    calls: Mutex<HashMap<Uuid, Vec<Instant>>>,
}

#[async_trait]
impl Handler for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn handle(
        &self,
        env: &Envelope<Value>,
        attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        self.calls
            .lock()
            .unwrap()
            .entry(env.message_id)
            .or_default()
            .push(Instant::now());
        if attempt <= self.failures {
            Err(HandlerError::Transient(format!(
                "partner down at attempt {attempt}"
            )))
        } else {
            Ok(consumed(env, self.name()))
        }
    }
}

/// Fails transiently until it is made healthy.
#[derive(Default)]
struct Unhealthy {
    healthy: AtomicBool,
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for Unhealthy {
    fn name(&self) -> &str {
        "unhealthy"
    }

    async fn handle(
        &self,
        env: &Envelope<Value>,
        _attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.healthy.load(Ordering::SeqCst) {
            Ok(consumed(env, self.name()))
        } else {
            Err(HandlerError::Transient("partner down".to_owned()))
        }
    }
}

/// Refuses every message for good.
#[derive(Default)]
struct Refuses {
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for Refuses {
    fn name(&self) -> &str {
        "refuses"
    }

    async fn handle(
        &self,
        _env: &Envelope<Value>,
        _attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(HandlerError::Permanent(
            "division not served here".to_owned(),
        ))
    }
}

/// Holds every message until the gate opens; counts the deliveries in its hands.
struct Gated {
    open: watch::Receiver<bool>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    calls: AtomicUsize,
}

impl Gated {
    fn new() -> (Arc<Gated>, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let g = Gated {
            open: rx,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        };
        (Arc::new(g), tx)
    }
}

#[async_trait]
impl Handler for Gated {
    fn name(&self) -> &str {
        "gated"
    }

    async fn handle(
        &self,
        env: &Envelope<Value>,
        _attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(consumed(env, self.name()))
    }
}

/// Gives the bus time to do something it must not do (negative checks only).
async fn settle_time() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

// ---------------------------------------------------------------------------------------------
// Relay and routing

/// A bus whose second batch is lost after the relay handed it over (its confirms fail), while
/// later batches go through: the relay overlaps them, so they are out before it learns of the
/// failure.
struct LosesSecondBatch {
    inner: Arc<EmbeddedBus>,
    calls: AtomicUsize,
}

#[async_trait]
impl Bus for LosesSecondBatch {
    async fn publish(&self, rows: Vec<xfhub_store::OutboxRow>) -> Result<(), BusError> {
        self.inner.publish(rows).await
    }

    async fn start_publish(
        &self,
        rows: Vec<xfhub_store::OutboxRow>,
    ) -> Result<xfhub_routes::PublishTail, BusError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 1 {
            return Ok(Box::pin(async {
                Err(BusError::Broker(
                    "confirms lost with the channel".to_owned(),
                ))
            }));
        }
        self.inner.start_publish(rows).await
    }

    async fn consume(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<xfhub_routes::Delivery>, BusError> {
        self.inner.consume(queue, prefetch).await
    }

    async fn settle(
        &self,
        consumer: &str,
        delivery: xfhub_routes::Delivery,
        how: xfhub_routes::Settlement,
    ) -> Result<bool, BusError> {
        self.inner.settle(consumer, delivery, how).await
    }

    async fn release(&self, deliveries: Vec<xfhub_routes::Delivery>) -> Result<(), BusError> {
        self.inner.release(deliveries).await
    }

    async fn replay(&self, dead_letter_id: i64) -> Result<Option<String>, BusError> {
        self.inner.replay(dead_letter_id).await
    }
}

async fn case_relay_publishes_again_what_a_failed_batch_left_unsent(store: Store) {
    let inner = bus_for(&store, &[("petitions", &["petition.#"])]);
    let bus = Arc::new(LosesSecondBatch {
        inner,
        calls: Default::default(),
    });
    ingest_petitions(&store, 0..50).await;
    let stop = CancellationToken::new();
    let relay = Relay::with_batch(10);
    let task = tokio::spawn(relay.clone().run(store.clone(), bus.clone(), stop.clone()));
    relay.notify();
    let s = &store;
    wait_until(
        || async move { s.outbox_unsent(100).await.unwrap().is_empty() },
        WAIT,
        "outbox relayed",
    )
    .await;
    // Every message reached its queue once, the lost batch included.
    assert_eq!(depth(&store, "petitions").await, 50);
    assert!(
        bus.calls.load(Ordering::SeqCst) > 5,
        "the lost batch was handed over again"
    );
    stop.cancel();
    task.await.unwrap();
}

async fn case_relay_publishes_to_subscribed_queues(store: Store) {
    let bus = bus_for(
        &store,
        &[
            ("petitions", &["petition.#"]),
            ("div_430102", &["*.*.430102"]),
            ("wo_430102", &["workorder.*.430102"]),
        ],
    );
    // Petitions cycle through nine divisions (0 and 9 are 430102); work orders 0, 1, 2 are in
    // 430102, 430103, 430104.
    let petitions = ingest_petitions(&store, 0..18).await;
    let mut workorders = Vec::new();
    for i in 0..3 {
        workorders.push(ingest_new(&store, sample_workorder_item(i)).await);
    }

    let stop = CancellationToken::new();
    let relay = Relay::new();
    let task = tokio::spawn(relay.clone().run(store.clone(), bus.clone(), stop.clone()));
    relay.notify();
    let s = &store;
    wait_until(
        || async move { s.outbox_unsent(10).await.unwrap().is_empty() },
        WAIT,
        "outbox relayed",
    )
    .await;
    assert_eq!(depth(&store, "petitions").await, 18);
    assert_eq!(depth(&store, "div_430102").await, 3);
    assert_eq!(depth(&store, "wo_430102").await, 1);

    let queues_of = |r: &Receipt| {
        let (store, id) = (store.clone(), r.message_id.to_string());
        async move {
            store
                .trail(&id)
                .await
                .unwrap()
                .into_iter()
                .filter(|h| h.hop == "published")
                .map(|h| (h.queue, h.detail))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        queues_of(&petitions[0]).await,
        vec![
            (Some("petitions".to_owned()), None),
            (Some("div_430102".to_owned()), None)
        ]
    );
    assert_eq!(
        queues_of(&petitions[1]).await,
        vec![(Some("petitions".to_owned()), None)]
    );
    assert_eq!(
        queues_of(&workorders[0]).await,
        vec![
            (Some("div_430102".to_owned()), None),
            (Some("wo_430102".to_owned()), None)
        ]
    );
    for unrouted in &workorders[1..] {
        assert_eq!(
            queues_of(unrouted).await,
            vec![(None, Some("no route".to_owned()))],
            "a message no queue subscribes to is marked sent and its trail says so"
        );
    }

    // A record committed while the relay runs is published on notify.
    ingest_new(&store, sample_petition_item(100)).await;
    relay.notify();
    wait_until(
        || async move { depth(s, "petitions").await == 19 },
        WAIT,
        "new row relayed",
    )
    .await;

    // On stop, the relay publishes what committed before it returns.
    ingest_new(&store, sample_petition_item(101)).await;
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("relay returns after stop")
        .unwrap();
    assert!(store.outbox_unsent(10).await.unwrap().is_empty());
    assert_eq!(depth(&store, "petitions").await, 20);
}

async fn case_trail_consumer_processes_every_message_once(store: Store) {
    const N: u64 = 100;
    let bus = bus_for(&store, &[(TRAIL_QUEUE, TRAIL_PATTERNS)]);
    let stop = CancellationToken::new();
    let relay = Relay::new();
    let relay_task = tokio::spawn(relay.clone().run(store.clone(), bus.clone(), stop.clone()));
    let consumer = start(&bus, Arc::new(TrailConsumer), 8, RetryPolicy::default());

    let mut tasks = JoinSet::new();
    for i in 0..N {
        let (store, relay) = (store.clone(), relay.clone());
        tasks.spawn(async move {
            let r = ingest_new(&store, sample_petition_item(i)).await;
            relay.notify();
            r
        });
    }
    let mut receipts = Vec::new();
    while let Some(r) = tasks.join_next().await {
        receipts.push(r.unwrap());
    }

    wait_hops(&store, "consumed", TRAIL_QUEUE, N as i64).await;
    wait_hops(&store, "acked", TRAIL_QUEUE, N as i64).await;
    assert_eq!(depth(&store, TRAIL_QUEUE).await, 0);
    for r in &receipts {
        let mid = r.message_id.to_string();
        assert_eq!(
            trail_on(&store, &mid, TRAIL_QUEUE).await,
            vec![
                hop("published", None),
                hop("delivered", Some(1)),
                hop("consumed", Some(1)),
                hop("acked", Some(1)),
            ],
            "message {mid}"
        );
    }
    consumer.stop().await;
    stop.cancel();
    tokio::time::timeout(WAIT, relay_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hops(&store, "consumed", TRAIL_QUEUE).await, N as i64);
    assert!(store.dead_letters(false, 10).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Retry, dead letter, replay

async fn case_transient_failures_are_retried_with_backoff(store: Store) {
    let bus = bus_for(&store, &[("flaky", &["#"])]);
    let receipts = ingest_petitions(&store, 0..5).await;
    publish_pending(&store, bus.as_ref()).await;
    let handler = Arc::new(Flaky {
        failures: 2,
        calls: Mutex::default(),
    });
    let p = policy(5);
    let consumer = start(&bus, handler.clone(), 4, p.clone());

    wait_hops(&store, "acked", "flaky", 5).await;
    consumer.stop().await;
    assert_eq!(hops(&store, "consumed", "flaky").await, 5);
    assert_eq!(hops(&store, "retry_scheduled", "flaky").await, 10);
    assert!(store.dead_letters(false, 10).await.unwrap().is_empty());
    assert_eq!(depth(&store, "flaky").await, 0);

    let calls = handler.calls.lock().unwrap().clone();
    for r in &receipts {
        let mid = r.message_id.to_string();
        assert_eq!(
            trail_on(&store, &mid, "flaky").await,
            vec![
                hop("published", None),
                hop("delivered", Some(1)),
                hop("retry_scheduled", Some(1)),
                hop("delivered", Some(2)),
                hop("retry_scheduled", Some(2)),
                hop("delivered", Some(3)),
                hop("consumed", Some(3)),
                hop("acked", Some(3)),
            ],
            "message {mid}"
        );
        let reasons: Vec<Option<String>> = store
            .trail(&mid)
            .await
            .unwrap()
            .into_iter()
            .filter(|h| h.hop == "retry_scheduled")
            .map(|h| h.detail)
            .collect();
        assert_eq!(
            reasons,
            vec![
                Some("partner down at attempt 1".to_owned()),
                Some("partner down at attempt 2".to_owned())
            ]
        );
        // Backoff: delivery n+1 comes no earlier than base * 2^(n-1) after delivery n
        // (less 2 ms for the store's millisecond clock).
        let times = &calls[&r.message_id];
        assert_eq!(times.len(), 3, "handled three times");
        for n in 1..times.len() {
            let gap = times[n] - times[n - 1];
            let min = p.base_delay * 2u32.pow(n as u32 - 1) - Duration::from_millis(2);
            assert!(
                gap >= min,
                "retry {n} of {mid} came after {gap:?} < {min:?}"
            );
        }
    }
}

async fn case_dead_letter_after_max_attempts_then_replay(store: Store) {
    let bus = bus_for(&store, &[("unhealthy", &["#"])]);
    let receipts = ingest_petitions(&store, 0..2).await;
    publish_pending(&store, bus.as_ref()).await;
    let handler = Arc::new(Unhealthy::default());
    let consumer = start(&bus, handler.clone(), 4, policy(3));

    let s = &store;
    wait_until(
        || async move { s.dead_letters(true, 100).await.unwrap().len() == 2 },
        WAIT,
        "two dead letters",
    )
    .await;
    let dead = store.dead_letters(true, 100).await.unwrap();
    for dl in &dead {
        assert_eq!(dl.queue, "unhealthy");
        assert_eq!(dl.attempts, 3);
        assert_eq!(dl.reason, "gave up after 3 attempts: partner down");
        assert_eq!(dl.replayed_at, None);
        let env: Envelope<Value> = serde_json::from_value(dl.envelope.clone()).unwrap();
        assert_eq!(env.message_id.to_string(), dl.message_id);
    }
    let mut dead_ids: Vec<String> = dead.iter().map(|d| d.message_id.clone()).collect();
    dead_ids.sort();
    let mut want: Vec<String> = receipts.iter().map(|r| r.message_id.to_string()).collect();
    want.sort();
    assert_eq!(dead_ids, want);
    assert_eq!(hops(&store, "retry_scheduled", "unhealthy").await, 4);
    assert_eq!(hops(&store, "dead_lettered", "unhealthy").await, 2);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 6);
    assert_eq!(depth(&store, "unhealthy").await, 0);
    assert_eq!(hops(&store, "consumed", "unhealthy").await, 0);

    // The partner is back: an operator replays the dead letters to the running consumer.
    handler.healthy.store(true, Ordering::SeqCst);
    for dl in &dead {
        assert_eq!(
            bus.replay(dl.id).await.unwrap(),
            Some("unhealthy".to_owned())
        );
        assert_eq!(bus.replay(dl.id).await.unwrap(), None, "replayed once");
    }
    wait_hops(&store, "acked", "unhealthy", 2).await;
    assert_eq!(hops(&store, "consumed", "unhealthy").await, 2);
    assert!(store.dead_letters(true, 100).await.unwrap().is_empty());
    assert!(store
        .dead_letters(false, 100)
        .await
        .unwrap()
        .iter()
        .all(|d| d.replayed_at.is_some()));
    let mid = receipts[0].message_id.to_string();
    let tail: Vec<(String, Option<i64>)> = trail_on(&store, &mid, "unhealthy")
        .await
        .into_iter()
        .rev()
        .take(5)
        .collect();
    assert_eq!(
        tail,
        vec![
            hop("acked", Some(1)),
            hop("consumed", Some(1)),
            hop("delivered", Some(1)),
            hop("replayed", None),
            hop("dead_lettered", Some(3)),
        ]
    );
    consumer.stop().await;
    assert_eq!(bus.replay(987_654).await.unwrap(), None);
}

async fn case_permanent_error_dead_letters_at_once(store: Store) {
    let bus = bus_for(&store, &[("refuses", &["#"])]);
    ingest_petitions(&store, 0..3).await;
    publish_pending(&store, bus.as_ref()).await;
    let handler = Arc::new(Refuses::default());
    let consumer = start(&bus, handler.clone(), 4, policy(5));
    let s = &store;
    wait_until(
        || async move { s.dead_letters(true, 100).await.unwrap().len() == 3 },
        WAIT,
        "three dead letters",
    )
    .await;
    consumer.stop().await;
    for dl in store.dead_letters(true, 100).await.unwrap() {
        assert_eq!(dl.reason, "division not served here");
        assert_eq!(dl.attempts, 1);
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3, "no retry");
    assert_eq!(hops(&store, "retry_scheduled", "refuses").await, 0);
    assert_eq!(depth(&store, "refuses").await, 0);
}

async fn case_poison_message_does_not_block_the_queue(store: Store) {
    let bus = bus_for(&store, &[(TRAIL_QUEUE, TRAIL_PATTERNS)]);
    // The poison message is first in the queue; the consumer takes one message at a time.
    store
        .enqueue(
            vec![],
            vec![(
                TRAIL_QUEUE.into(),
                "poison-1".into(),
                "{\"type\": 42".into(),
            )],
            vec![],
        )
        .await
        .unwrap();
    ingest_petitions(&store, 0..10).await;
    publish_pending(&store, bus.as_ref()).await;
    let consumer = start(&bus, Arc::new(TrailConsumer), 1, RetryPolicy::default());

    wait_hops(&store, "consumed", TRAIL_QUEUE, 10).await;
    let s = &store;
    wait_until(
        || async move { !s.dead_letters(true, 10).await.unwrap().is_empty() },
        WAIT,
        "poison dead-lettered",
    )
    .await;
    consumer.stop().await;
    let dead = store.dead_letters(true, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, "poison-1");
    assert_eq!(dead[0].attempts, 1);
    assert!(
        dead[0].reason.starts_with("unreadable envelope"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].envelope, Value::String("{\"type\": 42".into()));
    assert_eq!(depth(&store, TRAIL_QUEUE).await, 0);
    assert_eq!(hops(&store, "retry_scheduled", TRAIL_QUEUE).await, 0);
}

/// A message whose handling kills the process every time is never settled; once it has been
/// delivered more than `max_attempts` times it is dead-lettered without running the handler.
async fn case_crash_looping_message_is_dead_lettered_unhandled(store: Store) {
    let bus = bus_for(&store, &[("unhealthy", &["#"])]);
    let receipts = ingest_petitions(&store, 0..1).await;
    publish_pending(&store, bus.as_ref()).await;
    for _ in 0..3 {
        // Delivered, then the process died: the next start-up voids the lease.
        assert_eq!(store.lease("unhealthy", 10, 60_000).await.unwrap().len(), 1);
        store.reset_leases("unhealthy").await.unwrap();
    }
    let handler = Arc::new(Unhealthy::default());
    handler.healthy.store(true, Ordering::SeqCst);
    let consumer = start(&bus, handler.clone(), 4, policy(3));
    let s = &store;
    wait_until(
        || async move { !s.dead_letters(true, 10).await.unwrap().is_empty() },
        WAIT,
        "crash-looping message dead-lettered",
    )
    .await;
    consumer.stop().await;
    let dead = store.dead_letters(true, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, receipts[0].message_id.to_string());
    assert_eq!(dead[0].attempts, 4);
    assert_eq!(dead[0].reason, "delivered 3 times without being settled");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
    assert_eq!(depth(&store, "unhealthy").await, 0);
}

// ---------------------------------------------------------------------------------------------
// Flow control, crash, shutdown, duplicates

async fn case_prefetch_bounds_unsettled_deliveries(store: Store) {
    const PREFETCH: usize = 3;
    let bus = bus_for(&store, &[("gated", &["#"])]);
    ingest_petitions(&store, 0..20).await;
    publish_pending(&store, bus.as_ref()).await;
    let (handler, gate) = Gated::new();
    let consumer = start(&bus, handler.clone(), PREFETCH, policy(5));

    let h = &handler;
    wait_until(
        || async move { h.in_flight.load(Ordering::SeqCst) == PREFETCH },
        WAIT,
        "prefetch deliveries in the handler",
    )
    .await;
    settle_time().await;
    assert_eq!(handler.in_flight.load(Ordering::SeqCst), PREFETCH);
    assert_eq!(handler.max_in_flight.load(Ordering::SeqCst), PREFETCH);
    assert_eq!(
        hops(&store, "delivered", "gated").await,
        PREFETCH as i64,
        "the bus leases no more than the free prefetch slots"
    );

    gate.send_replace(true);
    wait_hops(&store, "acked", "gated", 20).await;
    consumer.stop().await;
    assert!(handler.max_in_flight.load(Ordering::SeqCst) <= PREFETCH);
    assert_eq!(hops(&store, "consumed", "gated").await, 20);
    assert_eq!(hops(&store, "delivered", "gated").await, 20);
}

async fn case_redelivery_after_crash(store: Store) {
    const PREFETCH: usize = 4;
    let router = [(TRAIL_QUEUE, TRAIL_PATTERNS)];
    let bus = bus_for(&store, &router);
    let receipts = ingest_petitions(&store, 0..12).await;
    publish_pending(&store, bus.as_ref()).await;

    // A consumer takes deliveries, then "crashes": it never settles them.
    let mut rx = bus.consume(TRAIL_QUEUE, PREFETCH).await.unwrap();
    let mut taken = Vec::new();
    for _ in 0..PREFETCH {
        let d = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a delivery")
            .expect("open channel");
        assert_eq!(d.attempt, 1);
        taken.push(d);
    }
    drop(rx);
    drop(taken);
    settle_time().await;
    assert_eq!(
        hops(&store, "delivered", TRAIL_QUEUE).await,
        PREFETCH as i64,
        "a consumer that is gone leases nothing more"
    );

    // The next process (a new bus on the same store) delivers every message, each acked once.
    let bus = bus_for(&store, &router);
    let consumer = start(
        &bus,
        Arc::new(TrailConsumer),
        PREFETCH,
        RetryPolicy::default(),
    );
    wait_hops(&store, "acked", TRAIL_QUEUE, 12).await;
    consumer.stop().await;
    assert_eq!(hops(&store, "consumed", TRAIL_QUEUE).await, 12);
    assert_eq!(depth(&store, TRAIL_QUEUE).await, 0);
    let mut redelivered = 0;
    for r in &receipts {
        let trail = trail_on(&store, &r.message_id.to_string(), TRAIL_QUEUE).await;
        let consumed: Vec<_> = trail.iter().filter(|h| h.0 == "consumed").collect();
        assert_eq!(consumed.len(), 1);
        if trail.contains(&hop("delivered", Some(2))) {
            redelivered += 1;
            assert_eq!(consumed[0].1, Some(2));
        }
    }
    assert_eq!(redelivered, PREFETCH, "the unsettled deliveries came back");
}

async fn case_stop_settles_in_flight_deliveries(store: Store) {
    const PREFETCH: usize = 4;
    let bus = bus_for(&store, &[("gated", &["#"])]);
    ingest_petitions(&store, 0..10).await;
    publish_pending(&store, bus.as_ref()).await;
    let (handler, gate) = Gated::new();
    let consumer = start(&bus, handler.clone(), PREFETCH, policy(5));
    let h = &handler;
    wait_until(
        || async move { h.in_flight.load(Ordering::SeqCst) == PREFETCH },
        WAIT,
        "deliveries in flight",
    )
    .await;

    consumer.stop.cancel();
    settle_time().await;
    assert!(
        !consumer.task.is_finished(),
        "run_consumer waits for its in-flight deliveries"
    );
    gate.send_replace(true);
    tokio::time::timeout(WAIT, consumer.task)
        .await
        .expect("run_consumer returns once in-flight deliveries settle")
        .unwrap()
        .unwrap();
    assert_eq!(hops(&store, "acked", "gated").await, PREFETCH as i64);
    assert_eq!(hops(&store, "consumed", "gated").await, PREFETCH as i64);
    assert_eq!(depth(&store, "gated").await, 10 - PREFETCH as i64);
    settle_time().await;
    assert_eq!(
        hops(&store, "delivered", "gated").await,
        PREFETCH as i64,
        "a stopped consumer leases nothing more"
    );

    // The rest is delivered to the next consumer, each message handled once in all.
    let consumer = start(&bus, handler.clone(), PREFETCH, policy(5));
    wait_hops(&store, "acked", "gated", 10).await;
    consumer.stop().await;
    assert_eq!(hops(&store, "consumed", "gated").await, 10);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 10);
}

/// The relay may publish a row twice (it crashed before marking it sent): the consumer gets the
/// message again but its effect is not applied twice.
async fn case_republished_messages_have_no_second_effect(store: Store) {
    let bus = bus_for(&store, &[(TRAIL_QUEUE, TRAIL_PATTERNS)]);
    ingest_petitions(&store, 0..5).await;
    let rows = store.outbox_unsent(100).await.unwrap();
    bus.publish(rows.clone()).await.unwrap();
    let consumer = start(&bus, Arc::new(TrailConsumer), 2, RetryPolicy::default());
    wait_hops(&store, "acked", TRAIL_QUEUE, 5).await;

    bus.publish(rows.clone()).await.unwrap();
    wait_hops(&store, "acked", TRAIL_QUEUE, 10).await;
    consumer.stop().await;
    assert_eq!(hops(&store, "consumed", TRAIL_QUEUE).await, 5);
    for row in &rows {
        let acks: Vec<Option<String>> = store
            .trail(&row.message_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|h| h.hop == "acked")
            .map(|h| h.detail)
            .collect();
        assert_eq!(
            acks,
            vec![None, Some("duplicate: no second effect".to_owned())]
        );
    }
}
