//! Benchmark of the SMS connector's gateway-wide limit (BENCHMARKS.md, "Warning module and SMS
//! connector"): 1 request = 1 text to a distinct number, handled by 16 concurrent tasks as the
//! consumer runtime does, against the mock gateway in-process. Prints the rate held against the
//! configured limit, and, as the baseline of the same run, the rate with no limit at all.
//!
//! `cargo run --release -p xfhub-connectors --example sms_rate -- [limit_per_sec] [texts]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use xfhub_connectors::sms::{SmsConfig, SmsConnector, SmsRecipient, SmsRequest, SMS_REQUESTED};
use xfhub_mocks::sms::{MockSmsGateway, SmsMockConfig};
use xfhub_routes::Handler;
use xfhub_schemas::Envelope;
use xfhub_security::keys::KeyRing;
use xfhub_store::{Effect, Store, StoreOptions};

async fn run(limit: u32, texts: u64, offset: u64) -> (f64, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(format!(
        "sqlite://{}/b.db",
        dir.path().display()
    )))
    .await
    .unwrap();
    let mock = MockSmsGateway::start(
        ([127, 0, 0, 1], 0).into(),
        SmsMockConfig {
            per_number: (1000, 1000, 1000),
            ..SmsMockConfig::default()
        },
    )
    .await
    .unwrap();
    let ring = Arc::new(KeyRing::generate());
    let config = SmsConfig {
        gateway_url: Some(mock.url()),
        access_key: "sms-mock-key".into(),
        access_secret: "sms-mock-secret".into(),
        gateway_per_sec: limit,
        // A tenth of a second of burst: a waiter woken late (timer granularity, a loaded machine)
        // takes the slot it missed instead of losing it.
        gateway_burst: (limit / 10).max(1),
        ..SmsConfig::default()
    };
    let r = ring.clone();
    let c = Arc::new(
        SmsConnector::from_config(store.clone(), Arc::new(move || r.clone()), &config)
            .unwrap()
            .unwrap(),
    );
    let envs: Vec<Envelope<serde_json::Value>> = (0..texts)
        .map(|i| {
            let req = SmsRequest {
                request_id: uuid::Uuid::now_v7(),
                template: "instant_push_handler".into(),
                params: [("case_no", "XF-1"), ("summary", "测试")]
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
                recipients: vec![SmsRecipient {
                    phone: ring.seal(&format!("139{:08}", offset + i)),
                    role: None,
                }],
                reason: None,
            };
            Envelope::new(
                SMS_REQUESTED,
                "xfhub",
                "430100",
                serde_json::to_value(req).unwrap(),
            )
        })
        .collect();
    let envs = Arc::new(envs);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, envs, next, store) = (c.clone(), envs.clone(), next.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(env) = envs.get(i) else { break };
                let effects: Vec<Effect> = c.handle(env, 1).await.expect("sent");
                store
                    .ack("sms", "sms", None, &env.message_id.to_string(), 1, effects)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = mock.texts();
    assert_eq!(sent.len() as u64, texts, "every text once");
    // Steady state: the rate after the initial burst (the first tenth of a second's texts go
    // at once), from the gateway's own clock.
    let skip = ((limit / 10).max(1) as usize).min(sent.len() - 2);
    let t0 = sent[skip].sent_at_ms;
    let t1 = sent[sent.len() - 1].sent_at_ms;
    let steady = (sent.len() - 1 - skip) as f64 / ((t1 - t0).max(1) as f64 / 1000.0);
    store.close().await;
    (texts as f64 / elapsed, steady, sent.len() as u64)
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let limit = args.first().copied().unwrap_or(100) as u32;
    let texts = args.get(1).copied().unwrap_or(1000);
    let (free, _, _) = run(1_000_000, texts, 0).await;
    println!("baseline, no limit: {free:.0} texts/s");
    let (rate, steady, n) = run(limit, texts, 50_000_000).await;
    println!(
        "limit {limit}/s: {n} texts, overall {rate:.1}/s ({:+.2} %), steady state {steady:.1}/s ({:+.2} %)",
        (rate / f64::from(limit) - 1.0) * 100.0,
        (steady / f64::from(limit) - 1.0) * 100.0
    );
    let _ = Duration::ZERO;
}
