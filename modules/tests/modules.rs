//! The warning and dispatch modules and the graded alert flow against a real store (SQLite;
//! the main warning case also on PostgreSQL), driven by the messages the store publishes for
//! ingested records, their effects committed through the store's ack exactly as the consumer
//! runtime does.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::{Connection, Executor, Row};
use uuid::Uuid;
use xfhub_modules::alerts::{self, AlertDraft, FlowError, FlowStep, RoleHolderInput};
use xfhub_modules::clock::ManualClock;
use xfhub_modules::dispatch::{self, AssignmentRule, DispatchConfig, DispatchModule};
use xfhub_modules::warning::{self, WarningConfig, WarningModule, WordEntry, Words};
use xfhub_routes::Handler;
use xfhub_schemas::{sample_petition, sample_workorder, Envelope, Petition};
use xfhub_security::keys::KeyRing;
use xfhub_store::{intake, IngestOutcome, Stmt, Store, StoreOptions, Txn};

struct T {
    store: Store,
    ring: KeyRing,
    dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> T {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(&dir).await;
    T {
        store,
        ring: KeyRing::generate(),
        dir: Some(dir),
    }
}

async fn open_sqlite(dir: &tempfile::TempDir) -> Store {
    Store::open(StoreOptions::new(format!(
        "sqlite://{}/x.db",
        dir.path().display()
    )))
    .await
    .unwrap()
}

async fn postgres() -> T {
    let admin = std::env::var("XFHUB_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let name = format!("xfhub_t_{}", Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL tests need a server at {admin}: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let store = Store::open(StoreOptions::new(format!("{base}/{name}")))
        .await
        .unwrap();
    T {
        store,
        ring: KeyRing::generate(),
        dir: None,
    }
}

/// Stores a petition; the envelope of the message the store published for it.
async fn ingest(t: &T, p: &Petition) -> Envelope<Value> {
    let item = intake::petition_item(p, &t.ring).unwrap();
    let receipt = match t.store.ingest(item).await.unwrap() {
        IngestOutcome::Created(r) | IngestOutcome::Updated(r) => r,
        other => panic!("not stored: {other:?}"),
    };
    envelope_of(t, &receipt.message_id.to_string()).await
}

async fn envelope_of(t: &T, message_id: &str) -> Envelope<Value> {
    let row = Stmt::new("SELECT envelope FROM outbox_messages WHERE message_id = $1")
        .bind(message_id)
        .query()
        .fetch_one(t.store.reader())
        .await
        .unwrap();
    serde_json::from_str(&row.try_get::<String, _>("envelope").unwrap()).unwrap()
}

/// Runs `h` on `env` and commits its effects with the ack, as the runtime does.
async fn consume(t: &T, h: &dyn Handler, env: &Envelope<Value>) -> bool {
    let effects = h.handle(env, 1).await.unwrap();
    t.store
        .ack(
            h.name(),
            h.name(),
            None,
            &env.message_id.to_string(),
            1,
            effects,
        )
        .await
        .unwrap()
}

async fn put_words(t: &T, words: &[(&str, &str, Option<&str>)]) {
    let statements = words
        .iter()
        .map(|(l, w, c)| {
            warning::put_word_stmt(&WordEntry {
                list: (*l).into(),
                word: (*w).into(),
                category: c.map(Into::into),
            })
        })
        .collect();
    t.store
        .transact(Txn {
            statements,
            ..Txn::default()
        })
        .await
        .unwrap();
}

async fn published(t: &T, message_type: &str) -> Vec<Envelope<Value>> {
    let rows =
        Stmt::new("SELECT envelope FROM outbox_messages WHERE message_type = $1 ORDER BY seq")
            .bind(message_type)
            .query()
            .fetch_all(t.store.reader())
            .await
            .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(&r.try_get::<String, _>("envelope").unwrap()).unwrap())
        .collect()
}

/// Work order `w` (not concluded) stored and consumed by a warning module whose manual clock
/// stands at its call time, which arms its ten-day timer: the receipt, the clock, the module.
async fn armed_workorder(
    t: &T,
    w: &xfhub_schemas::WorkOrder,
) -> (xfhub_store::Receipt, Arc<ManualClock>, WarningModule) {
    let clock = Arc::new(ManualClock::new(w.call_time.timestamp_millis()));
    let m = warning_module(t, clock.clone());
    let item = intake::workorder_item(w, &t.ring).unwrap();
    let IngestOutcome::Created(r) = t.store.ingest(item).await.unwrap() else {
        panic!()
    };
    consume(t, &m, &envelope_of(t, &r.message_id.to_string()).await).await;
    (r, clock, m)
}

fn warning_module(t: &T, clock: Arc<ManualClock>) -> WarningModule {
    let words = Words::new(t.store.clone(), Duration::from_secs(60));
    WarningModule::new(t.store.clone(), words, WarningConfig::default(), clock)
}

async fn words_tag_records_and_raise_alerts_once(t: T) {
    put_words(
        &t,
        &[
            ("sensitive", "拖欠工资", None),
            ("sensitive", "跳楼", Some("扬言")),
            ("hot", "电梯", None),
            ("hot", "ＡＢＣ", None),
        ],
    )
    .await;
    let m = warning_module(&t, Arc::new(ManualClock::new(1_000)));
    let mut p = sample_petition(0);
    // Full-width, spaces and a line break inside the words: still found.
    p.appeal.summary = "施工方拖欠　工资，扬言要跳\n楼；小区电梯坏了，abc 公司不管".into();
    p.acceptance.people_involved = 6;
    let env = ingest(&t, &p).await;
    assert!(consume(&t, &m, &env).await);
    // Redelivered after the ack: nothing happens twice.
    assert!(!consume(&t, &m, &env).await);
    let id = env.payload["id"].as_str().unwrap();
    let mut tags: Vec<(String, String)> = warning::tags_of(&t.store, id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.list, t.word))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("hot".into(), "电梯".into()),
            ("hot".into(), "ＡＢＣ".into()),
            ("sensitive".into(), "拖欠工资".into()),
            ("sensitive".into(), "跳楼".into()),
        ]
    );
    let mut kinds: Vec<(String, String)> = alerts::list_alerts(
        &t.store,
        &alerts::AlertFilter {
            record_id: Some(id.into()),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_iter()
    .map(|a| (a.kind, a.title))
    .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("key_risk_group".into(), "重点风险群体：扬言访".into()),
            ("key_risk_group".into(), "重点风险群体：集体访".into()),
            ("sensitive_word".into(), "敏感词：拖欠工资、跳楼".into()),
        ]
    );
    assert_eq!(published(&t, "alert.raised").await.len(), 3);
    // An update of the same petition raises no alert a second time.
    p.source.version += 1;
    p.appeal.keywords.push("更新".into());
    let env2 = ingest(&t, &p).await;
    assert_eq!(env2.message_type, "petition.updated");
    assert!(consume(&t, &m, &env2).await);
    assert_eq!(published(&t, "alert.raised").await.len(), 3);
}

#[tokio::test]
async fn words_tag_records_and_raise_alerts_once_sqlite() {
    words_tag_records_and_raise_alerts_once(sqlite().await).await;
}

#[tokio::test]
async fn words_tag_records_and_raise_alerts_once_postgres() {
    words_tag_records_and_raise_alerts_once(postgres().await).await;
}

#[tokio::test]
async fn a_surge_over_the_baseline_raises_one_alert_with_comparisons() {
    let t = sqlite().await;
    let m = warning_module(&t, Arc::new(ManualClock::new(1_000)));
    let division = "430102";
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    // History: 2 a day for the 7 days before, 4 the same day last month, 1 last year.
    let mut statements = Vec::new();
    for (d, n) in (1..=7)
        .map(|i| (day - chrono::Days::new(i), 2))
        .chain([(day.checked_sub_months(chrono::Months::new(1)).unwrap(), 4)])
        .chain([(day.checked_sub_months(chrono::Months::new(12)).unwrap(), 1)])
    {
        statements.push(
            Stmt::new("INSERT INTO warning_daily_counts (kind, division, day, count) VALUES ('petition', $1, $2, $3)")
                .bind(division)
                .bind(d.to_string())
                .bind(n as i64),
        );
    }
    t.store
        .transact(Txn {
            statements,
            ..Txn::default()
        })
        .await
        .unwrap();
    // Baseline 2/day, factor 2: the 5th petition of the day is a surge, but the minimum
    // count is 10: the 10th raises it, the 11th and 12th do not again.
    let mut i = 0;
    let mut n = 0;
    while n < 12 {
        let p = sample_petition(i);
        i += 1;
        if p.appeal.division != division {
            continue;
        }
        let mut p = p;
        p.acceptance.complaint_date = day;
        let env = ingest(&t, &p).await;
        consume(&t, &m, &env).await;
        n += 1;
        let surges = alerts::list_alerts(
            &t.store,
            &alerts::AlertFilter {
                kind: Some("surge".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(surges.len(), usize::from(n >= 10), "after {n} petitions");
        if let Some(a) = surges.first() {
            assert_eq!(a.detail["count"], 10);
            assert_eq!(a.detail["baseline_daily_mean"], 2.0);
            assert_eq!(a.detail["same_day_last_month"]["count"], 4);
            assert_eq!(a.detail["same_day_last_year"]["count"], 1);
        }
    }
    let surges = published(&t, "alert.raised").await;
    assert_eq!(
        surges
            .iter()
            .filter(|e| e.payload["kind"] == "surge")
            .count(),
        1
    );
}

#[tokio::test]
async fn the_ten_day_timer_of_a_work_order_survives_a_restart() {
    let mut t = sqlite().await;
    let mut w = sample_workorder(1); // odd: not concluded
    assert!(w.completed_at.is_none());
    let call = w.call_time.timestamp_millis();
    let (r, clock, m) = armed_workorder(&t, &w).await;
    // A concluded work order arms nothing.
    let done = sample_workorder(2);
    let item = intake::workorder_item(&done, &t.ring).unwrap();
    let IngestOutcome::Created(r2) = t.store.ingest(item).await.unwrap() else {
        panic!()
    };
    consume(&t, &m, &envelope_of(&t, &r2.message_id.to_string()).await).await;
    // Restart: the store is closed and opened again; the clock is the only state kept.
    drop(m);
    t.store.clone().close().await;
    t.store = open_sqlite(t.dir.as_ref().unwrap()).await;
    clock.set(call + 10 * 86_400_000 - 1);
    assert_eq!(
        warning::sweep_timers(&t.store, clock.as_ref(), 10)
            .await
            .unwrap(),
        0
    );
    clock.advance(1);
    assert_eq!(
        warning::sweep_timers(&t.store, clock.as_ref(), 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        warning::sweep_timers(&t.store, clock.as_ref(), 10)
            .await
            .unwrap(),
        0
    );
    let id = r.id.to_string();
    let a = alerts::list_alerts(
        &t.store,
        &alerts::AlertFilter {
            record_id: Some(id.clone()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].kind, "key_risk_item");
    let tags = warning::tags_of(&t.store, &id).await.unwrap();
    assert!(tags.iter().any(|t| t.word == "key_risk_item"));
    // Concluded later than the alert: the timer is done already; a new one is not armed.
    w.completed_at = Some(w.call_time + chrono::Duration::days(11));
    w.source.version += 1;
    let item = intake::workorder_item(&w, &t.ring).unwrap();
    assert!(matches!(
        t.store.ingest(item).await.unwrap(),
        IngestOutcome::Updated(_)
    ));
    assert_eq!(published(&t, "alert.raised").await.len(), 1);
}

/// Two hub instances sharing a database may both see a timer armed and due (each reads it
/// before the other's sweep commits): the timer fires once, as one alert and one message.
async fn a_timer_swept_twice_raises_one_alert_and_one_message(t: T) {
    let w = sample_workorder(3); // odd: not concluded
    let call = w.call_time.timestamp_millis();
    let (r, clock, _m) = armed_workorder(&t, &w).await;
    clock.set(call + 10 * 86_400_000);
    assert_eq!(
        warning::sweep_timers(&t.store, clock.as_ref(), 10)
            .await
            .unwrap(),
        1
    );
    // The other instance's view: the timer still armed when it read it.
    let rearmed = t
        .store
        .transact(Txn {
            statements: vec![Stmt::new(
                "UPDATE warning_timers SET state = 'armed', fired_at = NULL WHERE record_id = $1",
            )
            .bind(r.id.to_string())],
            ..Txn::default()
        })
        .await
        .unwrap();
    assert_eq!(rearmed.rows_affected, vec![1]);
    assert_eq!(
        warning::sweep_timers(&t.store, clock.as_ref(), 10)
            .await
            .unwrap(),
        1,
        "the second sweep sees the timer due"
    );
    let raised = published(&t, "alert.raised").await;
    assert_eq!(raised.len(), 1, "one message: {raised:#?}");
    let alerts = alerts::list_alerts(
        &t.store,
        &alerts::AlertFilter {
            record_id: Some(r.id.to_string()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(raised[0].payload["id"], alerts[0].id.as_str());
    assert_eq!(
        raised[0].message_id,
        alerts::alert_message_id(&format!("key_risk_item:workorder_open:{}", r.id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_swept_twice_raises_one_alert_and_one_message_sqlite() {
    a_timer_swept_twice_raises_one_alert_and_one_message(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_swept_twice_raises_one_alert_and_one_message_postgres() {
    a_timer_swept_twice_raises_one_alert_and_one_message(postgres().await).await;
}

async fn holder(t: &T, id: &str, role: &str, org: &str, mobile: &str) {
    let input = RoleHolderInput {
        name: format!("张{id}"),
        role: role.into(),
        post: None,
        org: org.into(),
        mobile: mobile.into(),
    };
    let m = alerts::check_role_holder(&input).unwrap();
    t.store
        .transact(Txn {
            statements: vec![alerts::put_role_holder_stmt(id, &input, &m, &t.ring)],
            ..Txn::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn dispatch_finds_duplicates_assigns_and_pushes() {
    let t = sqlite().await;
    let unit = "芙蓉区人社局";
    holder(&t, "l1", "responsible_leader", unit, "13900000001").await;
    holder(&t, "h1", "handler", unit, "+86 139 0000 0002").await;
    holder(&t, "h2", "handler", unit, "13900000003").await;
    let mut rule = AssignmentRule {
        id: "r1".into(),
        content_class_prefix: String::new(),
        division: None,
        unit: unit.into(),
        priority: 0,
    };
    let first = sample_petition(0);
    rule.content_class_prefix = first.appeal.content_class[..2].to_owned();
    dispatch::check_rule(&rule).unwrap();
    t.store
        .transact(Txn {
            statements: vec![dispatch::put_rule_stmt(&rule)],
            ..Txn::default()
        })
        .await
        .unwrap();
    let m = DispatchModule::new(t.store.clone(), DispatchConfig::default());
    let e1 = ingest(&t, &first).await;
    consume(&t, &m, &e1).await;
    // The same person, the same matter, a slightly reworded summary, another source id.
    let mut again = first.clone();
    again.source.id = format!("{}-again", first.source.id);
    again.appeal.summary = first
        .appeal
        .summary
        .replacen("信访人反映", "来信人再次反映", 1);
    // Someone else with the same matter is no duplicate.
    let mut other = first.clone();
    other.source.id = format!("{}-other", first.source.id);
    for c in &mut other.complainants {
        c.id_number = None;
        c.mobile = Some("13700000009".into());
    }
    let e2 = ingest(&t, &again).await;
    let e3 = ingest(&t, &other).await;
    consume(&t, &m, &e2).await;
    consume(&t, &m, &e3).await;
    let id2 = e2.payload["id"].as_str().unwrap();
    let d = dispatch::list_duplicates(&t.store, Some(id2), 10)
        .await
        .unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].candidate_id, e1.payload["id"].as_str().unwrap());
    assert!(d[0].score >= 0.5 && d[0].score < 1.0, "{}", d[0].score);
    assert!(d[0].matched_on.contains("id_number") || d[0].matched_on.contains("mobile"));
    let id3 = e3.payload["id"].as_str().unwrap();
    assert!(dispatch::list_duplicates(&t.store, Some(id3), 10)
        .await
        .unwrap()
        .is_empty());
    // Every petition was assigned; each caused two SMS requests.
    assert_eq!(published(&t, "petition.assigned").await.len(), 3);
    let sms = published(&t, "sms.requested").await;
    assert_eq!(sms.len(), 6);
    let first_two: Vec<_> = sms
        .iter()
        .filter(|e| e.causation_id == Some(e1.message_id))
        .collect();
    assert_eq!(first_two.len(), 2);
    let leader = &first_two
        .iter()
        .find(|e| e.payload["template"] == "instant_push_leader")
        .unwrap()
        .payload;
    assert_eq!(leader["recipients"].as_array().unwrap().len(), 1);
    let handler = &first_two
        .iter()
        .find(|e| e.payload["template"] == "instant_push_handler")
        .unwrap()
        .payload;
    assert_eq!(handler["recipients"].as_array().unwrap().len(), 2);
    // Numbers travel sealed, and open to the normalized mobile.
    let sealed = handler["recipients"][0]["phone"].as_str().unwrap();
    assert!(KeyRing::is_sealed(sealed));
    assert_eq!(t.ring.open(sealed).unwrap(), "13900000002");
}

#[tokio::test]
async fn the_graded_alert_flow() {
    let t = sqlite().await;
    let unit = "天心区住建局";
    holder(&t, "li", "liaison", "市信访局", "13900000011").await;
    holder(&t, "di", "petition_director", "市信访局", "13900000012").await;
    holder(&t, "ud", "unit_director", unit, "13900000013").await;
    holder(&t, "bl", "bureau_leader", unit, "13900000014").await;
    // A role holder without a valid mobile is rejected.
    let bad = RoleHolderInput {
        name: "李四".into(),
        role: "handler".into(),
        post: None,
        org: unit.into(),
        mobile: "0731-1234".into(),
    };
    let errs = alerts::check_role_holder(&bad).unwrap_err();
    assert_eq!(errs[0].code, "invalid_mobile");
    let draft = AlertDraft {
        liaison: "li".into(),
        kind: "key_risk_item".into(),
        title: "某小区业主聚集".into(),
        division: "430103".into(),
        org: None,
        record_id: None,
        detail: None,
    };
    let a = alerts::draft(&t.store, &draft).await.unwrap();
    assert_eq!(a.status, "drafted");
    // Only a liaison submits, only with a unit; only a director approves.
    let submit = |actor: &str, org: Option<&str>| FlowStep::Submit {
        actor: actor.into(),
        level: "urgent".into(),
        org: org.map(Into::into),
        note: None,
    };
    assert!(
        matches!(alerts::step(&t.store, &a.id, &submit("di", Some(unit))).await, Err(FlowError::Invalid(e)) if e[0].code == "wrong_role")
    );
    assert!(
        matches!(alerts::step(&t.store, &a.id, &submit("li", None)).await, Err(FlowError::Invalid(e)) if e[0].code == "missing_org")
    );
    let a = alerts::step(&t.store, &a.id, &submit("li", Some(unit)))
        .await
        .unwrap();
    assert_eq!(
        (a.status.as_str(), a.level.as_str()),
        ("submitted", "urgent")
    );
    let back = FlowStep::Return {
        actor: "di".into(),
        note: Some("请补充材料".into()),
    };
    let a = alerts::step(&t.store, &a.id, &back).await.unwrap();
    assert_eq!(a.status, "returned");
    assert!(
        matches!(alerts::step(&t.store, &a.id, &back).await, Err(FlowError::WrongState(s)) if s == "returned")
    );
    alerts::step(&t.store, &a.id, &submit("li", None))
        .await
        .unwrap();
    let approve = FlowStep::Approve {
        actor: "di".into(),
        note: None,
    };
    let a = alerts::step(&t.store, &a.id, &approve).await.unwrap();
    assert_eq!(a.status, "dispatched");
    assert_eq!(a.history.as_array().unwrap().len(), 5);
    assert!(matches!(
        alerts::step(&t.store, &a.id, &approve).await,
        Err(FlowError::WrongState(_))
    ));
    assert_eq!(published(&t, "alert.dispatched").await.len(), 1);
    let sms = published(&t, "sms.requested").await;
    assert_eq!(sms.len(), 1);
    assert_eq!(
        sms[0].payload["request_id"],
        alerts::urgent_request_id(&a.id).to_string()
    );
    let roles: Vec<&str> = sms[0].payload["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["unit_director", "bureau_leader"]);
}

#[test]
fn ten_thousand_words_compile_and_match() {
    let words: Vec<WordEntry> = (0..10_000)
        .map(|i| WordEntry {
            list: "sensitive".into(),
            word: format!("词{i:05}"),
            category: None,
        })
        .collect();
    let c = warning::Compiled::build(words);
    assert_eq!(c.len(), 10_000);
    let found: Vec<&str> = c
        .find("前文 词０９９９９ 后文词00001")
        .iter()
        .map(|w| w.word.as_str())
        .collect();
    assert_eq!(found, ["词00001", "词09999"]);
}
