//! Benchmark of the warning module (BENCHMARKS.md, "Warning module and SMS connector"):
//! petitions per second through `WarningModule::handle` and the commit of its effects with the
//! ack (`Store::ack`, what the consumer runtime does), with a 10,000-word list, every petition
//! scanned, tagged and its alerts raised. Baseline in the same run: the trail consumer (one
//! effect per message) through the same handle-and-ack path.
//!
//! `cargo run --release -p xfhub-modules --example warning_bench -- [petitions] [concurrency]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use xfhub_modules::clock::SystemClock;
use xfhub_modules::warning::{self, Compiled, WarningConfig, WarningModule, WordEntry, Words};
use xfhub_routes::trail::TrailConsumer;
use xfhub_routes::Handler;
use xfhub_schemas::{sample_petition, Envelope, Record};
use xfhub_store::{Store, StoreOptions, Txn};

/// 10,000 words: the topics of the sample petitions (so petitions are really tagged and
/// alerted) plus deterministic two- to four-character words of common characters.
fn words() -> Vec<WordEntry> {
    const REAL: &[(&str, &str)] = &[
        ("sensitive", "拖欠"),
        ("sensitive", "违约金"),
        ("hot", "电梯"),
        ("hot", "油烟"),
        ("hot", "低保"),
        ("hot", "违法建设"),
    ];
    let chars: Vec<char> = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基".chars().collect();
    let mut out: Vec<WordEntry> = REAL
        .iter()
        .map(|(l, w)| WordEntry {
            list: (*l).into(),
            word: (*w).into(),
            category: None,
        })
        .collect();
    let n = chars.len() as u64;
    let mut i: u64 = 0;
    let mut seen = std::collections::HashSet::new();
    while out.len() < 10_000 {
        i += 1;
        let len = 2 + (i % 3) as usize;
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let w: String = (0..len)
            .map(|_| {
                x = x.rotate_left(13) ^ (x >> 7);
                chars[(x % n) as usize]
            })
            .collect();
        if seen.insert(w.clone()) {
            out.push(WordEntry {
                list: if i % 2 == 0 { "sensitive" } else { "hot" }.into(),
                word: w,
                category: if i % 97 == 0 {
                    Some("扬言".into())
                } else {
                    None
                },
            });
        }
    }
    out
}

fn envelopes(n: u64, offset: u64) -> Vec<Envelope<Value>> {
    (0..n)
        .map(|i| {
            let p = sample_petition(offset + i);
            let division = p.appeal.division.clone();
            let record = Record {
                id: uuid::Uuid::now_v7(),
                kind: "petition".into(),
                version: 1,
                status: "registered".into(),
                received_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
                data: serde_json::to_value(&p).unwrap(),
            };
            Envelope::new(
                "petition.received",
                "api",
                &division,
                serde_json::to_value(record).unwrap(),
            )
        })
        .collect()
}

/// Handles and acks every envelope with `concurrency` tasks; petitions per second.
async fn run(
    store: &Store,
    h: Arc<dyn Handler>,
    envs: Vec<Envelope<Value>>,
    concurrency: usize,
) -> (f64, u64) {
    let envs = Arc::new(envs);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let effects = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (store, h, envs, next, effects) = (
            store.clone(),
            h.clone(),
            envs.clone(),
            next.clone(),
            effects.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(env) = envs.get(i) else { break };
                let e = h.handle(env, 1).await.expect("handled");
                effects.fetch_add(e.len() as u64, std::sync::atomic::Ordering::Relaxed);
                store
                    .ack(h.name(), h.name(), None, &env.message_id.to_string(), 1, e)
                    .await
                    .expect("acked");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        envs.len() as f64 / started.elapsed().as_secs_f64(),
        effects.load(std::sync::atomic::Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(20_000);
    let concurrency = args.get(1).copied().unwrap_or(32) as usize;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(format!(
        "sqlite://{}/bench.db",
        dir.path().display()
    )))
    .await
    .unwrap();
    let words = words();
    let started = Instant::now();
    let compiled = Compiled::build(words.clone());
    println!(
        "word list: {} words, compiled in {:.1} ms",
        compiled.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let statements = words.iter().map(warning::put_word_stmt).collect();
    store
        .transact(Txn {
            statements,
            ..Txn::default()
        })
        .await
        .unwrap();

    // Scan only (no I/O): the automaton over each petition's text.
    let texts: Vec<String> = (0..n).map(|i| sample_petition(i).appeal.summary).collect();
    let started = Instant::now();
    let found: usize = texts.iter().map(|t| compiled.find(t).len()).sum();
    let scan = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "scan only: {scan:.0} petitions/s ({:.1} words found per petition)",
        found as f64 / n as f64
    );

    let trail: Arc<dyn Handler> = Arc::new(TrailConsumer);
    // Warm-up (file growth, caches), then the baseline before and after the module's run.
    run(
        &store,
        trail.clone(),
        envelopes(n / 4, 2_000_000),
        concurrency,
    )
    .await;
    let (before, _) = run(&store, trail.clone(), envelopes(n, 0), concurrency).await;
    println!("baseline (trail consumer, handle + ack), before: {before:.0} messages/s");

    let module: Arc<dyn Handler> = Arc::new(WarningModule::new(
        store.clone(),
        Words::new(store.clone(), Duration::from_secs(3600)),
        WarningConfig::default(),
        Arc::new(SystemClock),
    ));
    let (rate, effects) = run(&store, module, envelopes(n, 1_000_000), concurrency).await;
    let (after, _) = run(&store, trail, envelopes(n, 3_000_000), concurrency).await;
    println!("baseline (trail consumer, handle + ack), after: {after:.0} messages/s");
    let base = (before + after) / 2.0;
    println!(
        "warning module (handle + ack): {rate:.0} petitions/s, {:.1} effects per petition, {:.2}x the baseline",
        effects as f64 / n as f64,
        rate / base
    );
    store.close().await;
}
