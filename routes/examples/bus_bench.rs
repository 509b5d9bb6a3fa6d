//! Bus throughput, end to end, in one run (BENCHMARKS.md, "AMQP bus"):
//!
//! 1. **raw lapin**: the same envelopes published to one durable quorum queue, persistent,
//!    with publisher confirms (`--window` in flight), consumed at the same time with manual
//!    per-message acks (prefetch `--prefetch`); time from the first publish to the last ack.
//! 2. **amqp bus**: the envelopes committed to the outbox first (not timed); then the relay
//!    publishes (routing table, CC fan-out, confirms, outbox marked sent) and a consumer
//!    (`run_consumer`) acks each one with its effect and dedup key committed in the store;
//!    time from the relay's start to the last ack.
//! 3. **embedded bus**: the same as 2 on the embedded bus (queues in the store).
//!
//! ```text
//! cargo run --release -p xfhub-routes --example bus_bench -- [--messages N] [--db URL]
//!     [--amqp URL] [--window N] [--prefetch N]
//! ```
//! `--db` defaults to a SQLite file in a temporary directory (`synchronous=FULL`); a
//! `postgres://` URL is used as an admin URL: a fresh database is made and dropped.

#[allow(unused_macros)] // reason: test helpers shared with the suites
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use xfhub_routes::runtime::run_consumer;
use xfhub_routes::trail::TrailConsumer;
use xfhub_routes::{AmqpBus, AmqpConfig, Bus, EmbeddedBus, Relay, RetryPolicy, Router};
use xfhub_store::{Store, StoreOptions, Txn};

struct Args {
    messages: u64,
    db: Option<String>,
    amqp: String,
    window: usize,
    prefetch: usize,
}

fn args() -> Args {
    let mut a = Args {
        messages: 20_000,
        db: None,
        amqp: std::env::var("XFHUB_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        window: 1_000,
        prefetch: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--messages" => a.messages = v.parse().expect("--messages N"),
            "--db" => a.db = Some(v),
            "--amqp" => a.amqp = v,
            "--window" => a.window = v.parse().expect("--window N"),
            "--prefetch" => a.prefetch = v.parse().expect("--prefetch N"),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// A fresh store: SQLite in `dir`, or a new database on the PostgreSQL server of `admin`.
async fn fresh_store(
    args: &Args,
    dir: &tempfile::TempDir,
    n: usize,
) -> (Store, Option<common::PgDb>) {
    match &args.db {
        Some(url) if url.starts_with("postgres") => {
            std::env::set_var("XFHUB_TEST_PG_URL", url);
            let db = common::PgDb::create("").await;
            let store = Store::open(StoreOptions::new(db.url.clone()))
                .await
                .unwrap();
            (store, Some(db))
        }
        _ => {
            let url = format!("sqlite://{}/b{n}.db", dir.path().display());
            (Store::open(StoreOptions::new(url)).await.unwrap(), None)
        }
    }
}

/// Commits `n` petitions (and so `n` outbox messages) in transactions of 500.
async fn fill_outbox(store: &Store, n: u64) {
    let mut i = 0;
    while i < n {
        let end = (i + 500).min(n);
        let ingests = (i..end).map(common::sample_petition_item).collect();
        store
            .transact(Txn {
                ingests,
                ..Default::default()
            })
            .await
            .unwrap();
        i = end;
    }
}

/// Relay + consumer over `bus` until `n` messages are acked; returns msgs/s.
async fn hub_path(store: &Store, bus: Arc<dyn Bus>, n: u64, prefetch: usize, relay: Relay) -> f64 {
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        bus.clone(),
        Arc::new(TrailConsumer),
        prefetch,
        RetryPolicy::default(),
        stop.clone(),
    ));
    // Let the consumer subscribe before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let relay = tokio::spawn(relay.run(store.clone(), bus, stop.clone()));
    let mut relayed_at = None;
    loop {
        if relayed_at.is_none() && store.outbox_unsent(1).await.unwrap().is_empty() {
            relayed_at = Some(started.elapsed().as_secs_f64());
        }
        let acked = store.count_hops("acked", "trail").await.unwrap();
        if acked as u64 >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    if let Some(r) = relayed_at {
        println!(
            "  (outbox relayed after {r:.2} s: {:.0}/s; last ack after {secs:.2} s)",
            n as f64 / r
        );
    }
    stop.cancel();
    let _ = relay.await;
    let _ = consumer.await;
    n as f64 / secs
}

/// Raw lapin: publish with confirms (pipelined) and consume with per-message acks, at once.
async fn raw_lapin(
    url: &str,
    bodies: &[Vec<u8>],
    window: usize,
    prefetch: usize,
) -> (f64, f64, f64) {
    let props = || {
        ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio)
    };
    let pconn = Connection::connect(url, props()).await.unwrap();
    let cconn = Connection::connect(url, props()).await.unwrap();
    let pch = pconn.create_channel().await.unwrap();
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = format!("bench.raw.{}", uuid::Uuid::now_v7().simple());
    let mut qargs = FieldTable::default();
    qargs.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    pch.queue_declare(&queue, durable, qargs).await.unwrap();
    let cch = cconn.create_channel().await.unwrap();
    cch.basic_qos(
        u16::try_from(prefetch).unwrap_or(u16::MAX),
        BasicQosOptions::default(),
    )
    .await
    .unwrap();
    let mut consumer = cch
        .basic_consume(
            &queue,
            "bench",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let n = bodies.len();
    let started = Instant::now();
    let consuming = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            let d = consumer.next().await.unwrap().unwrap();
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
            got += 1;
        }
        started.elapsed().as_secs_f64()
    });
    let mut pending = std::collections::VecDeque::new();
    for body in bodies {
        let c = pch
            .basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        pending.push_back(c);
        if pending.len() >= window {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    for c in pending {
        c.await.unwrap();
    }
    let published = started.elapsed().as_secs_f64();
    let consumed = consuming.await.unwrap();
    pch.queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    let _ = pconn.close(200, "done").await;
    let _ = cconn.close(200, "done").await;
    (
        n as f64 / published,
        n as f64 / consumed,
        n as f64 / consumed,
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = args();
    let n = args.messages;
    let dir = tempfile::tempdir().unwrap();

    // The messages: the outbox envelopes of n sample petitions.
    let (store, db) = fresh_store(&args, &dir, 0).await;
    fill_outbox(&store, n).await;
    let mut bodies = Vec::with_capacity(n as usize);
    while bodies.len() < n as usize {
        let rows = store.outbox_unsent(10_000).await.unwrap();
        let last = rows.last().map(|r| r.seq).unwrap_or_default();
        bodies.extend(rows.into_iter().map(|r| r.envelope.into_bytes()));
        // Mark them sent so that the next read moves on (these rows are not used again).
        store
            .transact(Txn {
                statements: vec![xfhub_store::Stmt::new(
                    "UPDATE outbox SET sent_at = 1 WHERE seq <= $1",
                )
                .bind(last)],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    store.close().await;
    drop(db);
    let avg = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
    println!(
        "messages: {n}, average envelope {avg} bytes, store {}",
        args.db.as_deref().unwrap_or("sqlite (temp file)")
    );

    let (pub_rate, con_rate, raw_e2e) =
        raw_lapin(&args.amqp, &bodies, args.window, args.prefetch).await;
    println!("raw lapin: publish {pub_rate:.0}/s (confirms, {} in flight), publish+consume end to end {raw_e2e:.0}/s (consume {con_rate:.0}/s, acks per message, prefetch {})", args.window, args.prefetch);

    let mut router = Router::new();
    router.subscribe("trail", &["#"]);
    let (store, db) = fresh_store(&args, &dir, 1).await;
    fill_outbox(&store, n).await;
    let ns = format!("bench{}", uuid::Uuid::now_v7().simple());
    let amqp = AmqpBus::new(
        store.clone(),
        router.clone(),
        AmqpConfig {
            url: args.amqp.clone(),
            exchange: ns.clone(),
            queue_prefix: format!("{ns}."),
            ..Default::default()
        },
    );
    amqp.connect().await.unwrap();
    let amqp_rate = hub_path(
        &store,
        Arc::new(amqp.clone()),
        n,
        args.prefetch,
        Relay::with_batch(xfhub_routes::amqp::RELAY_BATCH),
    )
    .await;
    amqp.delete_topology().await.unwrap();
    amqp.close().await;
    store.close().await;
    drop(db);
    println!(
        "amqp bus: {amqp_rate:.0} routed msgs/s end to end = {:.0} % of raw lapin end to end",
        100.0 * amqp_rate / raw_e2e
    );

    let (store, db) = fresh_store(&args, &dir, 2).await;
    fill_outbox(&store, n).await;
    let embedded = EmbeddedBus::new(store.clone(), router);
    let embedded_rate = hub_path(&store, Arc::new(embedded), n, args.prefetch, Relay::new()).await;
    store.close().await;
    drop(db);
    println!("embedded bus: {embedded_rate:.0} routed msgs/s end to end");
}
