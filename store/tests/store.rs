//! The store suite: every case runs on SQLite and on PostgreSQL (see `common::backend_tests`).

#[macro_use]
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use sqlx::Row;
use tokio::task::JoinSet;
use uuid::Uuid;
use xfhub_schemas::{sample_petition, sample_workorder, Envelope, Petition, Record};
use xfhub_store::{
    now_ms, AuditDraft, Effect, ImportErrorItem, IngestOutcome, ListQuery, Receipt, ReceiptStatus,
    RecordKind, Stmt, Store, StoreError, StoredRecord, Txn,
};

use common::{
    ingest_new, ingest_petitions, petition_item, postgres_store_with, run_case,
    sample_petition_item, sample_workorder_item, value_of,
};

backend_tests!(
    case_ingest_creates_record_change_and_outbox,
    case_ingest_repeat_returns_first_receipt,
    case_ingest_same_version_other_content_conflicts,
    case_ingest_higher_version_updates_lower_is_stale,
    case_outbox_message_borrows_its_records_body,
    case_change_log_strictly_increasing_under_concurrency,
    case_list_records_filters,
    case_list_records_cursor_paging,
    case_bus_queue_lease_ack_retry_dead_letter_replay,
    case_ack_is_deduplicated_per_consumer,
    case_import_errors_insert_and_list,
    case_failed_operation_is_isolated_in_its_group,
    case_dead_letter_with_unreadable_envelope_is_listed,
    case_transact_applies_everything_or_nothing,
    case_sql_effect_commits_with_its_ack_once,
);

/// A language collation (ICU `en-US`, as most PostgreSQL installations use instead of `C`):
/// filters and paging must not depend on the byte order of text.
const PG_LANGUAGE_COLLATION: &str = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_language_collation_list_records_filters() {
    let (store, _db) = postgres_store_with(PG_LANGUAGE_COLLATION).await;
    run_case(case_list_records_filters(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_language_collation_list_records_cursor_paging() {
    let (store, _db) = postgres_store_with(PG_LANGUAGE_COLLATION).await;
    run_case(case_list_records_cursor_paging(store)).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers

async fn changes(store: &Store) -> Vec<(i64, Uuid, String, String, i64)> {
    store.changes_since(0, 10_000).await.expect("change log")
}

async fn unsent_ids(store: &Store) -> Vec<String> {
    store
        .outbox_unsent(10_000)
        .await
        .expect("outbox")
        .into_iter()
        .map(|r| r.message_id)
        .collect()
}

/// Every record of `kind` matching `q`, walking all pages.
async fn list_all(store: &Store, kind: RecordKind, q: &ListQuery) -> Vec<StoredRecord> {
    let mut q = ListQuery {
        limit: 500,
        ..q.clone()
    };
    let mut out = Vec::new();
    loop {
        let page = store.list_records(kind, &q).await.expect("list records");
        out.extend(page.items);
        match page.next {
            Some(next) => q.before = Some(next),
            None => return out,
        }
    }
}

fn ids(records: &[StoredRecord]) -> Vec<Uuid> {
    records.iter().map(|r| r.id).collect()
}

/// Ids of the receipts whose petition passes `keep`, newest first.
fn expected(all: &[(Receipt, Petition)], keep: impl Fn(&Petition) -> bool) -> Vec<Uuid> {
    let mut v: Vec<Uuid> = all
        .iter()
        .filter(|(_, p)| keep(p))
        .map(|(r, _)| r.id)
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

fn trail_effect(message_id: &str, queue: &str) -> Effect {
    Effect::Trail {
        message_id: message_id.to_owned(),
        hop: "consumed".to_owned(),
        queue: Some(queue.to_owned()),
        detail: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Ingest

async fn case_ingest_creates_record_change_and_outbox(store: Store) {
    let petition = sample_petition(7);
    let mut item = petition_item(&petition);
    let correlation = Uuid::now_v7();
    item.correlation_id = Some(correlation);

    let before = now_ms();
    let receipt = ingest_new(&store, item.clone()).await;
    let after = now_ms();

    assert_eq!(receipt.kind, "petition");
    assert_eq!(receipt.source_system, petition.source.system);
    assert_eq!(receipt.source_id, petition.source.id);
    assert_eq!(receipt.version, 1);
    assert_eq!(receipt.status, ReceiptStatus::Created);
    assert!((before..=after).contains(&receipt.received_at.timestamp_millis()));

    // The record, by hub id and by source.
    let stored = store
        .get_record(RecordKind::Petition, receipt.id)
        .await
        .unwrap()
        .expect("record stored");
    assert_eq!(stored.id, receipt.id);
    assert_eq!(stored.kind, "petition");
    assert_eq!(stored.source_system, petition.source.system);
    assert_eq!(stored.source_id, petition.source.id);
    assert_eq!(stored.version, 1);
    assert_eq!(stored.status, petition.status().as_str());
    assert_eq!(stored.received_at, receipt.received_at);
    assert_eq!(stored.updated_at, receipt.received_at);
    assert_eq!(stored.data, value_of(&item.data));
    let back: Petition = serde_json::from_value(stored.data.clone()).unwrap();
    assert_eq!(back, petition);
    let by_source = store
        .get_record_by_source(RecordKind::Petition, "api", &petition.source.id)
        .await
        .unwrap();
    assert_eq!(by_source.as_ref(), Some(&stored));
    assert!(store
        .get_record(RecordKind::Workorder, receipt.id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_record(RecordKind::Petition, Uuid::now_v7())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_record_by_source(RecordKind::Petition, "provincial", &petition.source.id)
        .await
        .unwrap()
        .is_none());

    // The change log.
    assert_eq!(
        changes(&store).await,
        vec![(
            receipt.change_seq,
            receipt.id,
            "petition".to_owned(),
            "I".to_owned(),
            1
        )]
    );
    assert!(store
        .changes_since(receipt.change_seq, 100)
        .await
        .unwrap()
        .is_empty());

    // The outbox row and its envelope.
    let outbox = store.outbox_unsent(100).await.unwrap();
    assert_eq!(outbox.len(), 1);
    let row = &outbox[0];
    assert_eq!(row.message_id, receipt.message_id.to_string());
    assert_eq!(row.message_type, "petition.received");
    assert_eq!(
        row.routing_key,
        format!("petition.received.{}", petition.appeal.division)
    );
    let env: Envelope<Record<Petition>> = serde_json::from_str(&row.envelope).unwrap();
    assert_eq!(env.message_id, receipt.message_id);
    assert_eq!(env.message_type, "petition.received");
    assert_eq!(env.source_system, "api");
    assert_eq!(env.division, petition.appeal.division);
    assert_eq!(env.correlation_id, correlation);
    assert_eq!(env.causation_id, None);
    assert_eq!(env.routing_key(), row.routing_key);
    assert_eq!(env.payload.id, receipt.id);
    assert_eq!(env.payload.kind, "petition");
    assert_eq!(env.payload.version, 1);
    assert_eq!(env.payload.status, petition.status().as_str());
    assert_eq!(env.payload.received_at, receipt.received_at);
    assert_eq!(env.payload.data, petition);

    let (queues, unsent) = store.depths().await.unwrap();
    assert!(queues.is_empty());
    assert_eq!(unsent, 1);
    assert!(store.ping().await);
}

async fn case_ingest_repeat_returns_first_receipt(store: Store) {
    let item = sample_petition_item(3);
    let first = ingest_new(&store, item.clone()).await;
    let changes_before = changes(&store).await;
    let outbox_before = unsent_ids(&store).await;
    let record_before = store
        .get_record(RecordKind::Petition, first.id)
        .await
        .unwrap();

    for _ in 0..3 {
        // A retried request carries a new correlation id; it is still the same submission.
        let mut again = item.clone();
        again.correlation_id = Some(Uuid::now_v7());
        match store.ingest(again).await.unwrap() {
            IngestOutcome::Duplicate(r) => assert_eq!(r, first),
            other => panic!("expected Duplicate, got {other:?}"),
        }
    }
    assert_eq!(changes(&store).await, changes_before);
    assert_eq!(unsent_ids(&store).await, outbox_before);
    assert_eq!(
        store
            .get_record(RecordKind::Petition, first.id)
            .await
            .unwrap(),
        record_before
    );

    // Concurrent first submissions of one new record: exactly one creates it, every other one
    // gets that same receipt.
    let item = sample_petition_item(4);
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (store, item) = (store.clone(), item.clone());
        tasks.spawn(async move { store.ingest(item).await.unwrap() });
    }
    let mut created = Vec::new();
    let mut duplicates = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            IngestOutcome::Created(r) => created.push(r),
            IngestOutcome::Duplicate(r) => duplicates.push(r),
            other => panic!("expected Created or Duplicate, got {other:?}"),
        }
    }
    assert_eq!(
        created.len(),
        1,
        "exactly one submission creates the record"
    );
    assert_eq!(duplicates.len(), 19);
    assert!(duplicates.iter().all(|r| *r == created[0]));
    assert_eq!(changes(&store).await.len(), changes_before.len() + 1);
    assert_eq!(unsent_ids(&store).await.len(), outbox_before.len() + 1);
}

async fn case_ingest_same_version_other_content_conflicts(store: Store) {
    let petition = sample_petition(4);
    let item = petition_item(&petition);
    let first = ingest_new(&store, item.clone()).await;
    let changes_before = changes(&store).await;
    let outbox_before = unsent_ids(&store).await;

    let mut changed = petition.clone();
    changed.appeal.summary.push_str("（补充材料）");
    let changed_item = petition_item(&changed);
    assert_ne!(changed_item.digest, item.digest);
    assert_eq!(
        store.ingest(changed_item).await.unwrap(),
        IngestOutcome::Conflict { version: 1 }
    );

    let stored = store
        .get_record(RecordKind::Petition, first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.data,
        value_of(&item.data),
        "the conflicting content is not stored"
    );
    assert_eq!(changes(&store).await, changes_before);
    assert_eq!(unsent_ids(&store).await, outbox_before);
    // The original content is still the same submission.
    assert_eq!(
        store.ingest(item).await.unwrap(),
        IngestOutcome::Duplicate(first)
    );
}

async fn case_ingest_higher_version_updates_lower_is_stale(store: Store) {
    let v1 = sample_petition(5);
    let created = ingest_new(&store, petition_item(&v1)).await;

    let mut v3 = v1.clone();
    v3.source.version = 3;
    v3.handling.concluded = true;
    let v3_item = petition_item(&v3);
    let updated = match store.ingest(v3_item.clone()).await.unwrap() {
        IngestOutcome::Updated(r) => r,
        other => panic!("expected Updated, got {other:?}"),
    };
    assert_eq!(updated.id, created.id, "an update keeps the hub id");
    assert_eq!(updated.version, 3);
    assert_eq!(updated.status, ReceiptStatus::Updated);
    assert!(updated.change_seq > created.change_seq);
    assert_ne!(updated.message_id, created.message_id);

    let stored = store
        .get_record(RecordKind::Petition, created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 3);
    assert_eq!(stored.status, "concluded");
    assert_eq!(stored.data, value_of(&v3_item.data));
    assert_eq!(
        stored.received_at, created.received_at,
        "first receipt time"
    );
    assert!(stored.updated_at >= stored.received_at);

    let log = changes(&store).await;
    assert_eq!(
        log,
        vec![
            (
                created.change_seq,
                created.id,
                "petition".to_owned(),
                "I".to_owned(),
                1
            ),
            (
                updated.change_seq,
                created.id,
                "petition".to_owned(),
                "U".to_owned(),
                3
            ),
        ]
    );

    let outbox = store.outbox_unsent(100).await.unwrap();
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox[1].message_id, updated.message_id.to_string());
    assert_eq!(outbox[1].message_type, "petition.updated");
    assert_eq!(
        outbox[1].routing_key,
        format!("petition.updated.{}", v1.appeal.division)
    );
    let env: Envelope<Record<Petition>> = serde_json::from_str(&outbox[1].envelope).unwrap();
    assert_eq!(env.payload.id, created.id);
    assert_eq!(env.payload.version, 3);
    assert_eq!(env.payload.status, "concluded");
    assert_eq!(env.payload.received_at, created.received_at);
    assert_eq!(env.payload.data, v3);

    // An older version never seen is stale; versions seen before answer their first receipt.
    let mut v2 = v1.clone();
    v2.source.version = 2;
    assert_eq!(
        store.ingest(petition_item(&v2)).await.unwrap(),
        IngestOutcome::Stale { current_version: 3 }
    );
    assert_eq!(
        store.ingest(v3_item).await.unwrap(),
        IngestOutcome::Duplicate(updated)
    );
    assert_eq!(
        store.ingest(petition_item(&v1)).await.unwrap(),
        IngestOutcome::Duplicate(created)
    );
    assert_eq!(changes(&store).await, log, "nothing new in the change log");
    assert_eq!(store.outbox_unsent(100).await.unwrap().len(), 2);
    assert_eq!(
        store
            .get_record(RecordKind::Petition, stored.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
}

/// The stored outbox row of `message_id`: (envelope as stored, record whose body it borrows).
async fn outbox_row_as_stored(store: &Store, message_id: &str) -> (String, Option<String>) {
    let row = sqlx::query("SELECT envelope, body_record FROM outbox WHERE message_id = $1")
        .bind(message_id)
        .fetch_one(store.reader())
        .await
        .unwrap();
    (row.get("envelope"), row.get("body_record"))
}

/// The whole envelope of every unsent message, by message id, as the relay reads it; checked
/// against the `outbox_messages` view operators and tests query.
async fn unsent_envelopes(store: &Store) -> Vec<(String, Envelope<Record<Petition>>)> {
    let rows = store.outbox_unsent(100).await.unwrap();
    let mut out = Vec::new();
    for r in rows {
        let view: String =
            sqlx::query("SELECT envelope FROM outbox_messages WHERE message_id = $1")
                .bind(&r.message_id)
                .fetch_one(store.reader())
                .await
                .unwrap()
                .get("envelope");
        assert_eq!(
            view, r.envelope,
            "the view and the relay read the same text"
        );
        out.push((r.message_id, serde_json::from_str(&r.envelope).unwrap()));
    }
    out
}

async fn case_outbox_message_borrows_its_records_body(store: Store) {
    // Non-ASCII text before the document (the source system here) checks that the splice
    // counts characters, not bytes, on both backends.
    let mut v1 = sample_petition(11);
    v1.source.system = "省信访信息系统".to_owned();
    let created = ingest_new(&store, petition_item(&v1)).await;
    let m1 = created.message_id.to_string();

    // Stored without the document, which the relay reads back in full.
    let body_len = serde_json::to_string(&v1).unwrap().len();
    let (stored, borrows) = outbox_row_as_stored(&store, &m1).await;
    assert_eq!(borrows, Some(created.id.to_string()));
    assert!(
        stored.len() < body_len,
        "the stored envelope ({} bytes) holds no copy of the {body_len}-byte document",
        stored.len()
    );
    let all = unsent_envelopes(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.source_system, v1.source.system);
    assert_eq!(all[0].1.payload.data, v1);

    // Routed into an embedded-bus queue, where the message is read from the outbox too.
    let rows = store.outbox_unsent(100).await.unwrap();
    store
        .enqueue(
            vec![rows[0].seq],
            vec![("q".to_owned(), m1.clone(), rows[0].envelope.clone())],
            vec![],
        )
        .await
        .unwrap();

    // A later version rewrites the record's body: the earlier message keeps its document.
    let mut v2 = v1.clone();
    v2.source.version = 2;
    v2.handling.concluded = true;
    let updated = match store.ingest(petition_item(&v2)).await.unwrap() {
        IngestOutcome::Updated(r) => r,
        other => panic!("expected Updated, got {other:?}"),
    };
    let m2 = updated.message_id.to_string();
    let (_, borrows) = outbox_row_as_stored(&store, &m1).await;
    assert_eq!(borrows, None, "given its own copy before the body changed");
    let leased = store.lease("q", 10, 60_000).await.unwrap();
    assert_eq!(leased.len(), 1);
    let env: Envelope<Record<Petition>> = serde_json::from_str(&leased[0].envelope).unwrap();
    assert_eq!(env.payload.version, 1);
    assert_eq!(env.payload.data, v1);
    assert_eq!(
        outbox_row_as_stored(&store, &m2).await.1,
        Some(created.id.to_string())
    );
    let all = unsent_envelopes(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, m2);
    assert_eq!(all[0].1.payload.data, v2);

    // Two versions decided in one group: the superseded one holds its own copy.
    let mut v3 = v2.clone();
    v3.source.version = 3;
    v3.appeal.summary.push_str("（补充）");
    let mut v4 = v3.clone();
    v4.source.version = 4;
    v4.appeal.summary.push_str("（再补充）");
    let out = store
        .transact(Txn {
            ingests: vec![petition_item(&v3), petition_item(&v4)],
            ..Txn::default()
        })
        .await
        .unwrap();
    let ids: Vec<String> = out
        .ingests
        .iter()
        .map(|o| match o {
            IngestOutcome::Updated(r) => r.message_id.to_string(),
            other => panic!("expected Updated, got {other:?}"),
        })
        .collect();
    assert_eq!(outbox_row_as_stored(&store, &m2).await.1, None);
    assert_eq!(outbox_row_as_stored(&store, &ids[0]).await.1, None);
    assert_eq!(
        outbox_row_as_stored(&store, &ids[1]).await.1,
        Some(created.id.to_string())
    );
    let all = unsent_envelopes(&store).await;
    let data: Vec<(&str, &Petition)> = all
        .iter()
        .map(|(id, e)| (id.as_str(), &e.payload.data))
        .collect();
    assert_eq!(
        data,
        vec![
            (m2.as_str(), &v2),
            (ids[0].as_str(), &v3),
            (ids[1].as_str(), &v4)
        ]
    );

    // Any other write of the body (a feature's own statement, a key rotation) is covered by
    // the database, not by the writer: the borrowing message gets the body it had.
    let mut v4_handled = v4.clone();
    v4_handled.handling.concluded = false;
    store
        .transact(Txn {
            statements: vec![Stmt::new("UPDATE records SET body = $1 WHERE id = $2")
                .bind(serde_json::to_string(&v4_handled).unwrap())
                .bind(created.id.to_string())],
            ..Txn::default()
        })
        .await
        .unwrap();
    assert_eq!(outbox_row_as_stored(&store, &ids[1]).await.1, None);
    let all = unsent_envelopes(&store).await;
    assert_eq!(all[2].1.payload.data, v4);
    assert_eq!(
        store
            .get_record(RecordKind::Petition, created.id)
            .await
            .unwrap()
            .unwrap()
            .data,
        serde_json::to_value(&v4_handled).unwrap()
    );
}

async fn case_change_log_strictly_increasing_under_concurrency(store: Store) {
    const N: u64 = 200;
    // A pull consumer follows the change log while the ingests commit: it must never see a
    // sequence number below one it has already passed, so it misses nothing.
    let done = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn({
        let (store, done) = (store.clone(), done.clone());
        async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                for change in store.changes_since(cursor, 10_000).await.unwrap() {
                    assert!(change.0 > cursor, "change log went backwards");
                    cursor = change.0;
                    seen.push(change);
                }
                if finished {
                    return seen;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    });

    let mut tasks = JoinSet::new();
    for i in 0..N {
        let store = store.clone();
        tasks.spawn(async move { ingest_new(&store, sample_petition_item(i)).await });
    }
    let mut receipts = Vec::new();
    while let Some(r) = tasks.join_next().await {
        receipts.push(r.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let seen = poller.await.unwrap();

    let log = changes(&store).await;
    assert_eq!(log.len(), N as usize);
    assert!(
        log.windows(2).all(|w| w[0].0 < w[1].0),
        "sequence strictly increasing"
    );
    assert_eq!(
        seen, log,
        "a follower of the change log saw every change once"
    );
    let record_ids: HashSet<Uuid> = log.iter().map(|c| c.1).collect();
    assert_eq!(record_ids.len(), N as usize);
    let mut by_seq: Vec<(i64, Uuid)> = receipts.iter().map(|r| (r.change_seq, r.id)).collect();
    by_seq.sort_unstable();
    assert_eq!(
        by_seq,
        log.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
        "each receipt names its own change"
    );

    // The outbox holds one message per change, in the same (commit) order.
    let outbox = store.outbox_unsent(10_000).await.unwrap();
    assert_eq!(outbox.len(), N as usize);
    assert!(outbox.windows(2).all(|w| w[0].seq < w[1].seq));
    let seq_of_message: std::collections::HashMap<String, i64> = receipts
        .iter()
        .map(|r| (r.message_id.to_string(), r.change_seq))
        .collect();
    let change_order: Vec<i64> = outbox
        .iter()
        .map(|r| seq_of_message[&r.message_id])
        .collect();
    assert!(
        change_order.windows(2).all(|w| w[0] < w[1]),
        "outbox order follows change order"
    );
}

// ---------------------------------------------------------------------------------------------
// Listing

async fn case_list_records_filters(store: Store) {
    let mut all = Vec::new();
    for i in 0..72 {
        let p = sample_petition(i);
        let r = ingest_new(&store, petition_item(&p)).await;
        all.push((r, p));
    }
    let mut workorders = Vec::new();
    for i in 0..5 {
        workorders.push(ingest_new(&store, sample_workorder_item(i)).await);
    }

    let check = |name: &'static str, q: ListQuery, want: Vec<Uuid>| {
        let store = store.clone();
        async move {
            let got = ids(&list_all(&store, RecordKind::Petition, &q).await);
            assert_eq!(got, want, "filter {name}: {q:?}");
        }
    };
    check("none", ListQuery::default(), expected(&all, |_| true)).await;
    check(
        "division",
        ListQuery {
            division: Some("430104".into()),
            ..Default::default()
        },
        expected(&all, |p| p.appeal.division == "430104"),
    )
    .await;
    check(
        "form",
        ListQuery {
            form: Some("0004".into()),
            ..Default::default()
        },
        expected(&all, |p| p.appeal.form == "0004"),
    )
    .await;
    check(
        "purpose",
        ListQuery {
            purpose: Some("02".into()),
            ..Default::default()
        },
        expected(&all, |p| p.appeal.purpose == "02"),
    )
    .await;
    for prefix in ["03", "0304", "030102", "13", "99"] {
        let want = expected(&all, |p| p.appeal.content_class.starts_with(prefix));
        if prefix != "99" {
            assert!(!want.is_empty(), "samples cover content class {prefix}");
        }
        check(
            "content_class_prefix",
            ListQuery {
                content_class_prefix: Some(prefix.into()),
                ..Default::default()
            },
            want,
        )
        .await;
    }
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    check(
        "from..to",
        ListQuery {
            from: Some("2024-01-20".into()),
            to: Some("2024-02-10".into()),
            ..Default::default()
        },
        expected(&all, |p| {
            (day("2024-01-20")..=day("2024-02-10")).contains(&p.acceptance.complaint_date)
        }),
    )
    .await;
    check(
        "from",
        ListQuery {
            from: Some("2024-03-01".into()),
            ..Default::default()
        },
        expected(&all, |p| p.acceptance.complaint_date >= day("2024-03-01")),
    )
    .await;
    check(
        "to",
        ListQuery {
            to: Some("2024-01-05".into()),
            ..Default::default()
        },
        expected(&all, |p| p.acceptance.complaint_date <= day("2024-01-05")),
    )
    .await;
    let one_day = sample_petition(10).acceptance.complaint_date.to_string();
    let want = expected(&all, |p| p.acceptance.complaint_date.to_string() == one_day);
    assert_eq!(want.len(), 1);
    check(
        "from = to (inclusive bounds)",
        ListQuery {
            from: Some(one_day.clone()),
            to: Some(one_day),
            ..Default::default()
        },
        want,
    )
    .await;
    for status in ["registered", "accepted", "concluded", "replied"] {
        check(
            "status",
            ListQuery {
                status: Some(status.into()),
                ..Default::default()
            },
            expected(&all, |p| p.status().as_str() == status),
        )
        .await;
    }
    let want = expected(&all, |p| {
        p.appeal.content_class.starts_with("03")
            && p.appeal.purpose == "02"
            && p.status().as_str() == "accepted"
            && p.acceptance.complaint_date >= day("2024-01-15")
    });
    assert!(!want.is_empty());
    check(
        "combined",
        ListQuery {
            content_class_prefix: Some("03".into()),
            purpose: Some("02".into()),
            status: Some("accepted".into()),
            from: Some("2024-01-15".into()),
            ..Default::default()
        },
        want,
    )
    .await;

    // Work orders are listed apart from petitions, with the same filters.
    let mut want: Vec<Uuid> = workorders.iter().map(|r| r.id).collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        ids(&list_all(&store, RecordKind::Workorder, &ListQuery::default()).await),
        want
    );
    let completed: Vec<Uuid> = want
        .iter()
        .copied()
        .filter(|id| {
            let i = workorders.iter().position(|r| r.id == *id).unwrap() as u64;
            sample_workorder(i).state == "completed"
        })
        .collect();
    assert!(!completed.is_empty());
    assert_eq!(
        ids(&list_all(
            &store,
            RecordKind::Workorder,
            &ListQuery {
                status: Some("completed".into()),
                ..Default::default()
            }
        )
        .await),
        completed
    );
    assert_eq!(
        ids(&list_all(
            &store,
            RecordKind::Workorder,
            &ListQuery {
                division: Some(sample_workorder(2).division),
                ..Default::default()
            }
        )
        .await),
        vec![workorders[2].id]
    );
}

async fn case_list_records_cursor_paging(store: Store) {
    let receipts = ingest_petitions(&store, 0..45).await;
    let mut newest_first: Vec<Uuid> = receipts.iter().map(|r| r.id).collect();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    // Ids are time-ordered: newest first is the reverse of ingest order.
    assert_eq!(
        newest_first,
        receipts.iter().rev().map(|r| r.id).collect::<Vec<_>>()
    );

    for limit in [1u32, 7, 9, 15, 44, 45, 46, 500] {
        let mut q = ListQuery {
            limit,
            ..Default::default()
        };
        let mut walked = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.list_records(RecordKind::Petition, &q).await.unwrap();
            pages += 1;
            assert!(page.items.len() <= limit as usize);
            assert!(!page.items.is_empty(), "no empty page (limit {limit})");
            walked.extend(page.items.iter().map(|r| r.id));
            match page.next {
                Some(next) => {
                    assert_eq!(
                        page.items.len(),
                        limit as usize,
                        "only the last page is short"
                    );
                    assert_eq!(Some(next), page.items.last().map(|r| r.id));
                    q.before = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(
            walked, newest_first,
            "limit {limit}: no duplicates, no gaps"
        );
        assert_eq!(pages, 45usize.div_ceil(limit as usize), "limit {limit}");
    }

    // A limit of 0 is read as 1.
    let page = store
        .list_records(RecordKind::Petition, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(ids(&page.items), vec![newest_first[0]]);

    // Records arriving during the walk are newer than the cursor: the walk neither repeats
    // nor skips anything of what it started with.
    let mut q = ListQuery {
        limit: 10,
        ..Default::default()
    };
    let mut walked = Vec::new();
    let mut extra = 1000;
    loop {
        let page = store.list_records(RecordKind::Petition, &q).await.unwrap();
        walked.extend(page.items.iter().map(|r| r.id));
        ingest_new(&store, sample_petition_item(extra)).await;
        extra += 1;
        match page.next {
            Some(next) => q.before = Some(next),
            None => break,
        }
    }
    assert_eq!(walked, newest_first);

    // Paging combines with filters.
    let division = sample_petition(0).appeal.division;
    let want: Vec<Uuid> = newest_first
        .iter()
        .copied()
        .filter(|id| {
            let i = receipts.iter().position(|r| r.id == *id).unwrap() as u64;
            sample_petition(i).appeal.division == division
        })
        .collect();
    assert_eq!(want.len(), 5);
    let mut q = ListQuery {
        division: Some(division),
        limit: 2,
        ..Default::default()
    };
    let mut sizes = Vec::new();
    let mut walked = Vec::new();
    loop {
        let page = store.list_records(RecordKind::Petition, &q).await.unwrap();
        sizes.push(page.items.len());
        walked.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(next) => q.before = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(walked, want);
}

// ---------------------------------------------------------------------------------------------
// Embedded bus queues

async fn case_bus_queue_lease_ack_retry_dead_letter_replay(store: Store) {
    ingest_petitions(&store, 0..3).await;
    let rows = store.outbox_unsent(100).await.unwrap();
    assert_eq!(rows.len(), 3);
    let mut deliveries: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| ("q".to_owned(), r.message_id.clone(), r.envelope.clone()))
        .collect();
    deliveries.push((
        "other".to_owned(),
        rows[0].message_id.clone(),
        rows[0].envelope.clone(),
    ));
    store
        .enqueue(
            rows.iter().map(|r| r.seq).collect(),
            deliveries,
            vec!["unrouted-1".to_owned()],
        )
        .await
        .unwrap();
    assert!(
        store.outbox_unsent(100).await.unwrap().is_empty(),
        "marked sent"
    );
    let (mut queues, unsent) = store.depths().await.unwrap();
    queues.sort();
    assert_eq!(queues, vec![("other".to_owned(), 1), ("q".to_owned(), 3)]);
    assert_eq!(unsent, 0);
    let hops = store.trail(&rows[0].message_id).await.unwrap();
    let published: Vec<Option<&str>> = hops
        .iter()
        .filter(|h| h.hop == "published")
        .map(|h| h.queue.as_deref())
        .collect();
    assert_eq!(published, vec![Some("q"), Some("other")]);
    let unrouted = store.trail("unrouted-1").await.unwrap();
    assert_eq!(unrouted.len(), 1);
    assert_eq!(unrouted[0].hop, "published");
    assert_eq!(unrouted[0].queue, None);
    assert_eq!(unrouted[0].detail.as_deref(), Some("no route"));

    // Lease in order, at most `max`, each message once while leased.
    let m = store.lease("q", 2, 60_000).await.unwrap();
    assert_eq!(
        m.iter().map(|l| l.message_id.as_str()).collect::<Vec<_>>(),
        vec![rows[0].message_id.as_str(), rows[1].message_id.as_str()]
    );
    assert!(m.iter().all(|l| l.attempt == 1 && l.queue == "q"));
    assert_eq!(m[0].envelope, rows[0].envelope);
    let m3 = store.lease("q", 10, 60_000).await.unwrap();
    assert_eq!(m3.len(), 1);
    assert_eq!(m3[0].message_id, rows[2].message_id);
    assert!(store.lease("q", 10, 60_000).await.unwrap().is_empty());
    let next = store
        .next_ready_at("q")
        .await
        .unwrap()
        .expect("leased rows");
    assert!(next > now_ms() + 50_000, "ready again when the leases end");

    // Ack removes the message.
    assert!(store
        .ack("c", "q", Some(m[0].row_id), &m[0].message_id, 1, vec![])
        .await
        .unwrap());
    assert_eq!(
        store.depths().await.unwrap().0.iter().find(|q| q.0 == "q"),
        Some(&("q".to_owned(), 2))
    );

    // Retry: the message comes back with the next delivery number, the reasons in its trail.
    store
        .retry_later(&m[1], "partner down", now_ms())
        .await
        .unwrap();
    let again = store.lease("q", 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, rows[1].message_id);
    assert_eq!(again[0].attempt, 2);
    let hops: Vec<(String, Option<i64>, Option<String>)> = store
        .trail(&rows[1].message_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.queue.as_deref() == Some("q"))
        .map(|h| (h.hop, h.attempt, h.detail))
        .collect();
    assert_eq!(
        hops,
        vec![
            ("published".to_owned(), None, None),
            ("delivered".to_owned(), Some(1), None),
            (
                "retry_scheduled".to_owned(),
                Some(1),
                Some("partner down".to_owned())
            ),
            ("delivered".to_owned(), Some(2), None),
        ]
    );

    // Dead letter: out of the queue, kept with its reason and envelope.
    store
        .dead_letter(
            "q",
            Some(m3[0].row_id),
            &m3[0].message_id,
            &m3[0].envelope,
            1,
            "cannot map division",
        )
        .await
        .unwrap();
    let dead = store.dead_letters(true, 100).await.unwrap();
    assert_eq!(dead.len(), 1);
    let dl = &dead[0];
    assert_eq!(dl.queue, "q");
    assert_eq!(dl.message_id, rows[2].message_id);
    assert_eq!(dl.reason, "cannot map division");
    assert_eq!(dl.attempts, 1);
    assert_eq!(dl.replayed_at, None);
    assert_eq!(
        dl.envelope,
        serde_json::from_str::<Value>(&rows[2].envelope).unwrap()
    );
    assert_eq!(
        store.depths().await.unwrap().0.iter().find(|q| q.0 == "q"),
        Some(&("q".to_owned(), 1))
    );

    // Replay: back on its queue once, counted from the first delivery again.
    assert_eq!(
        store.replay_dead_letter(dl.id).await.unwrap(),
        Some("q".to_owned())
    );
    assert_eq!(store.replay_dead_letter(dl.id).await.unwrap(), None);
    assert_eq!(store.replay_dead_letter(dl.id + 1000).await.unwrap(), None);
    assert!(store.dead_letters(true, 100).await.unwrap().is_empty());
    let all_dead = store.dead_letters(false, 100).await.unwrap();
    assert_eq!(all_dead.len(), 1);
    assert!(all_dead[0].replayed_at.is_some());
    let replayed = store.lease("q", 10, 60_000).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].message_id, rows[2].message_id);
    assert_eq!(replayed[0].envelope, rows[2].envelope);
    assert_eq!(replayed[0].attempt, 1);
    let last: Vec<String> = store
        .trail(&rows[2].message_id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.hop)
        .rev()
        .take(3)
        .collect();
    assert_eq!(last, vec!["delivered", "replayed", "dead_lettered"]);

    // Reset: every lease of the queue ends now (the previous consumer is gone).
    assert_eq!(store.reset_leases("q").await.unwrap(), 2);
    let back = store.lease("q", 10, 60_000).await.unwrap();
    let mut got: Vec<(String, i64)> = back
        .iter()
        .map(|l| (l.message_id.clone(), l.attempt))
        .collect();
    got.sort();
    let mut want = vec![
        (rows[1].message_id.clone(), 3),
        (rows[2].message_id.clone(), 2),
    ];
    want.sort();
    assert_eq!(got, want);

    // A delayed retry stays invisible until it is due.
    let due = now_ms() + 3_600_000;
    let (first, second) = (&back[0], &back[1]);
    store.retry_later(first, "later", due).await.unwrap();
    assert!(store
        .ack("c", "q", Some(second.row_id), &second.message_id, 2, vec![])
        .await
        .unwrap());
    assert!(store.lease("q", 10, 60_000).await.unwrap().is_empty());
    assert_eq!(store.next_ready_at("q").await.unwrap(), Some(due));

    // Queues are independent.
    let other = store.lease("other", 10, 60_000).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].message_id, rows[0].message_id);
    assert_eq!(other[0].attempt, 1);
    assert!(store.lease("nope", 10, 60_000).await.unwrap().is_empty());
    assert_eq!(store.next_ready_at("nope").await.unwrap(), None);
}

async fn case_ack_is_deduplicated_per_consumer(store: Store) {
    ingest_petitions(&store, 0..1).await;
    let row = store.outbox_unsent(10).await.unwrap().remove(0);
    store
        .enqueue(
            vec![row.seq],
            vec![("q".into(), row.message_id.clone(), row.envelope.clone())],
            vec![],
        )
        .await
        .unwrap();
    let leased = store.lease("q", 1, 60_000).await.unwrap().remove(0);
    let cause: Envelope<Value> = serde_json::from_str(&row.envelope).unwrap();
    let follow = Envelope::caused_by(&cause, "petition.checked", json!({ "ok": true }));
    let mid = &row.message_id;

    assert!(store
        .ack(
            "c1",
            "q",
            Some(leased.row_id),
            mid,
            1,
            vec![trail_effect(mid, "q"), Effect::Publish(follow.clone())],
        )
        .await
        .unwrap());
    assert_eq!(store.count_hops("consumed", "q").await.unwrap(), 1);
    let unsent = store.outbox_unsent(10).await.unwrap();
    assert_eq!(unsent.len(), 1);
    assert_eq!(unsent[0].message_id, follow.message_id.to_string());
    assert_eq!(unsent[0].message_type, "petition.checked");
    let published: Envelope<Value> = serde_json::from_str(&unsent[0].envelope).unwrap();
    assert_eq!(published, follow);
    assert_eq!(published.correlation_id, cause.correlation_id);
    assert_eq!(published.causation_id, Some(cause.message_id));

    // The same consumer acking the same message again (a redelivery): no second effect.
    let follow2 = Envelope::caused_by(&cause, "petition.checked", json!({ "ok": true }));
    assert!(!store
        .ack(
            "c1",
            "q",
            None,
            mid,
            2,
            vec![trail_effect(mid, "q"), Effect::Publish(follow2)],
        )
        .await
        .unwrap());
    assert_eq!(store.count_hops("consumed", "q").await.unwrap(), 1);
    assert_eq!(
        unsent_ids(&store).await,
        vec![follow.message_id.to_string()]
    );
    let acked: Vec<_> = store
        .trail(mid)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.hop == "acked")
        .collect();
    assert_eq!(acked.len(), 2);
    assert_eq!(acked[0].detail, None);
    assert_eq!(acked[0].attempt, Some(1));
    assert_eq!(
        acked[1].detail.as_deref(),
        Some("duplicate: no second effect")
    );

    // Another consumer has its own key.
    assert!(store
        .ack("c2", "q", None, mid, 1, vec![trail_effect(mid, "q")])
        .await
        .unwrap());
    assert_eq!(store.count_hops("consumed", "q").await.unwrap(), 2);
    assert_eq!(store.count_hops("acked", "q").await.unwrap(), 3);
    assert!(store.depths().await.unwrap().0.is_empty(), "row removed");
}

async fn case_import_errors_insert_and_list(store: Store) {
    let a = ImportErrorItem {
        source: "excel".into(),
        kind: "petition".into(),
        source_ref: Some("sheet1!row7".into()),
        raw: r#"{"问题属地":"999999"}"#.into(),
        reasons: json!([{ "path": "appeal.division", "code": "unknown_code" }]),
    };
    let b = ImportErrorItem {
        source: "provincial".into(),
        kind: "workorder".into(),
        source_ref: None,
        raw: "<order><broken>".into(),
        reasons: json!({ "error": "unexpected end of XML" }),
    };
    let before = now_ms();
    let id_a = store.record_import_error(a.clone()).await.unwrap();
    let id_b = store.record_import_error(b.clone()).await.unwrap();
    assert!(id_b > id_a);

    let list = store.import_errors(100).await.unwrap();
    assert_eq!(list.len(), 2);
    for (got, (id, want)) in list.iter().zip([(id_a, &a), (id_b, &b)]) {
        assert_eq!(got.id, id);
        assert_eq!(got.source, want.source);
        assert_eq!(got.kind, want.kind);
        assert_eq!(got.source_ref, want.source_ref);
        assert_eq!(got.raw, want.raw);
        assert_eq!(got.reasons, want.reasons);
        assert_eq!(got.resolved_at, None);
        assert!(got.created_at.timestamp_millis() >= before);
    }
    let first = store.import_errors(1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, id_a);
}

/// An operation that fails is rolled back alone: the others of its commit group still commit,
/// and none of the failed operation's writes survive. The failure used: a consumer's ack whose
/// effect inserts an outbox row under a message id the outbox already holds (unique
/// constraint). (A *publish* of such an id is dropped instead: see the end of the case.)
async fn case_failed_operation_is_isolated_in_its_group(store: Store) {
    ingest_petitions(&store, 0..1).await;
    let row = store.outbox_unsent(10).await.unwrap().remove(0);
    let taken: Envelope<Value> = serde_json::from_str(&row.envelope).unwrap();
    let bad_effects = vec![
        trail_effect("ext-1", "q"),
        Effect::Sql(
            Stmt::new(
                "INSERT INTO outbox (message_id, message_type, routing_key, envelope, created_at) \
                 VALUES ($1, 'x', 'x', '{}', 0)",
            )
            .bind(row.message_id.clone()),
        ),
    ];

    // Many operations in flight at once share commit groups with the failing one.
    let mut ingests = JoinSet::new();
    let mut bad = None;
    let mut errors = JoinSet::new();
    for i in 1..=60u64 {
        let s = store.clone();
        ingests.spawn(async move { ingest_new(&s, sample_petition_item(i)).await });
        if i % 10 == 0 {
            let s = store.clone();
            errors.spawn(async move {
                s.record_import_error(ImportErrorItem {
                    source: "excel".into(),
                    kind: "petition".into(),
                    source_ref: Some(format!("row {i}")),
                    raw: "{}".into(),
                    reasons: json!(["required"]),
                })
                .await
                .unwrap()
            });
        }
        if i == 30 {
            let (s, effects) = (store.clone(), bad_effects.clone());
            bad = Some(tokio::spawn(async move {
                s.ack("checker", "q", None, "ext-1", 1, effects).await
            }));
        }
    }
    let failed = bad.unwrap().await.unwrap();
    assert!(
        matches!(failed, Err(StoreError::Database(_))),
        "the ack fails: {failed:?}"
    );
    let mut receipts = Vec::new();
    while let Some(r) = ingests.join_next().await {
        receipts.push(r.unwrap());
    }
    while let Some(r) = errors.join_next().await {
        r.unwrap();
    }

    assert_eq!(receipts.len(), 60);
    assert_eq!(
        changes(&store).await.len(),
        61,
        "every other ingest committed"
    );
    assert_eq!(store.import_errors(100).await.unwrap().len(), 6);
    for r in &receipts {
        assert!(store
            .get_record(RecordKind::Petition, r.id)
            .await
            .unwrap()
            .is_some());
    }
    let unsent = unsent_ids(&store).await;
    assert_eq!(unsent.len(), 61);
    assert_eq!(unsent.iter().filter(|m| **m == row.message_id).count(), 1);
    // Nothing of the failed ack survived: no trail hop, no dedup key.
    assert!(store.trail("ext-1").await.unwrap().is_empty());
    assert_eq!(store.count_hops("consumed", "q").await.unwrap(), 0);
    assert!(
        store
            .ack(
                "checker",
                "q",
                None,
                "ext-1",
                2,
                vec![trail_effect("ext-1", "q")]
            )
            .await
            .unwrap(),
        "the failed ack left no dedup key behind"
    );
    assert_eq!(store.count_hops("consumed", "q").await.unwrap(), 1);

    // Publishing a message whose id the outbox holds is not an error: the first one stays.
    let mut again = taken.clone();
    again.payload = json!({ "other": "content" });
    assert!(store
        .ack(
            "checker",
            "q",
            None,
            "ext-2",
            1,
            vec![Effect::Publish(again)]
        )
        .await
        .unwrap());
    let kept = store.outbox_unsent(100).await.unwrap();
    let same: Vec<_> = kept
        .iter()
        .filter(|r| r.message_id == row.message_id)
        .collect();
    assert_eq!(same.len(), 1);
    assert_eq!(same[0].envelope, row.envelope);
}

/// A poison message (its envelope is not JSON) is dead-lettered as it came; the operator must
/// still be able to list the dead letters and replay it.
async fn case_dead_letter_with_unreadable_envelope_is_listed(store: Store) {
    store
        .enqueue(
            vec![],
            vec![("q".into(), "poison-1".into(), "{not json".into())],
            vec![],
        )
        .await
        .unwrap();
    let m = store.lease("q", 10, 60_000).await.unwrap().remove(0);
    assert_eq!(m.envelope, "{not json");
    store
        .dead_letter(
            "q",
            Some(m.row_id),
            "poison-1",
            &m.envelope,
            1,
            "unreadable envelope",
        )
        .await
        .unwrap();
    let dead = store
        .dead_letters(true, 10)
        .await
        .expect("dead letters are listed even when one holds an unreadable envelope");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, "poison-1");
    assert_eq!(dead[0].reason, "unreadable envelope");
    assert_eq!(dead[0].envelope, Value::String("{not json".into()));
    assert_eq!(
        store.replay_dead_letter(dead[0].id).await.unwrap(),
        Some("q".into())
    );
    let again = store.lease("q", 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].envelope, "{not json", "replayed unchanged");
}

// ---------------------------------------------------------------------------------------------
// Extension points: atomic transactions and SQL effects

async fn dedup_rows(store: &Store, consumer: &str) -> Vec<String> {
    Stmt::new("SELECT message_id FROM consumer_dedup WHERE consumer = $1 ORDER BY message_id")
        .bind(consumer)
        .query()
        .fetch_all(store.reader())
        .await
        .expect("read dedup rows")
        .iter()
        .map(|r| r.get::<String, _>("message_id"))
        .collect()
}

/// A `Txn` commits its records, rejects, messages, statements and audit entries together; when
/// one statement fails, none of it is stored.
async fn case_transact_applies_everything_or_nothing(store: Store) {
    // `consumer_dedup` stands in for a feature's own table (a connector cursor, say).
    let reject = ImportErrorItem {
        source: "provincial".into(),
        kind: "petition".into(),
        source_ref: Some("XF-1".into()),
        raw: "<xf/>".into(),
        reasons: json!([{ "path": "xfxs", "code": "unknown_code" }]),
    };
    let cause: Envelope<Value> = Envelope::new("probe.sent", "test", "430102", json!({}));
    let audit = AuditDraft {
        actor: "connector:provincial".into(),
        action: "pull".into(),
        target: "page 1".into(),
        outcome: "ok".into(),
        remote: String::new(),
        detail: String::new(),
    };
    let out = store
        .transact(Txn {
            ingests: vec![sample_petition_item(1), sample_petition_item(2), sample_petition_item(1)],
            import_errors: vec![reject.clone()],
            publish: vec![cause.clone()],
            statements: vec![
                Stmt::new("INSERT INTO consumer_dedup (consumer, message_id, processed_at) VALUES ($1, $2, $3)")
                    .bind("cursor")
                    .bind("page-1")
                    .bind(now_ms()),
                Stmt::new("UPDATE consumer_dedup SET processed_at = $1 WHERE consumer = $2")
                    .bind(Some(7_i64))
                    .bind("cursor"),
            ],
            audit: vec![audit.clone()],
        })
        .await
        .expect("transact");
    assert!(matches!(out.ingests[0], IngestOutcome::Created(_)));
    assert!(matches!(out.ingests[1], IngestOutcome::Created(_)));
    assert!(
        matches!(out.ingests[2], IngestOutcome::Duplicate(_)),
        "repeat inside one txn"
    );
    assert_eq!(out.import_errors.len(), 1);
    assert_eq!(out.rows_affected, vec![1, 1]);
    assert_eq!(out.audit.len(), 1);
    assert_eq!(changes(&store).await.len(), 2);
    let unsent = unsent_ids(&store).await;
    assert_eq!(
        unsent.len(),
        3,
        "two records' messages and the published one"
    );
    assert!(unsent.contains(&cause.message_id.to_string()));
    assert_eq!(store.import_errors(10).await.unwrap().len(), 1);
    assert_eq!(
        dedup_rows(&store, "cursor").await,
        vec!["page-1".to_owned()]
    );

    // The second statement fails (the same key again): nothing of this txn is stored.
    let err = store
        .transact(Txn {
            ingests: vec![sample_petition_item(3)],
            import_errors: vec![reject],
            publish: vec![Envelope::new("probe.sent", "test", "430102", json!({}))],
            statements: vec![
                Stmt::new("INSERT INTO consumer_dedup (consumer, message_id, processed_at) VALUES ($1, $2, $3)")
                    .bind("cursor")
                    .bind("page-2")
                    .bind(now_ms()),
                Stmt::new("INSERT INTO consumer_dedup (consumer, message_id, processed_at) VALUES ($1, $2, $3)")
                    .bind("cursor")
                    .bind("page-1")
                    .bind(now_ms()),
            ],
            audit: vec![audit],
        })
        .await;
    assert!(matches!(err, Err(StoreError::Database(_))), "{err:?}");
    assert_eq!(
        changes(&store).await.len(),
        2,
        "no record of the failed txn"
    );
    assert_eq!(
        unsent_ids(&store).await.len(),
        3,
        "no message of the failed txn"
    );
    assert_eq!(store.import_errors(10).await.unwrap().len(), 1);
    assert_eq!(
        dedup_rows(&store, "cursor").await,
        vec!["page-1".to_owned()]
    );
    assert_eq!(store.audit_page(0, 10).await.unwrap().len(), 1);
    assert!(store
        .get_record_by_source(RecordKind::Petition, "api", &sample_petition(3).source.id)
        .await
        .unwrap()
        .is_none());

    // The store goes on: the same records in a good txn commit.
    let out = store
        .transact(Txn {
            ingests: vec![sample_petition_item(3)],
            ..Txn::default()
        })
        .await
        .unwrap();
    assert!(matches!(out.ingests[0], IngestOutcome::Created(_)));
}

/// A consumer's SQL effect commits with its ack and is not applied again on redelivery.
async fn case_sql_effect_commits_with_its_ack_once(store: Store) {
    let effect = |n: i64| {
        Effect::Sql(
            Stmt::new("INSERT INTO consumer_dedup (consumer, message_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT (consumer, message_id) DO UPDATE SET processed_at = consumer_dedup.processed_at + $3")
                .bind("tags")
                .bind("m-1")
                .bind(n),
        )
    };
    assert!(store
        .ack("warning", "q", None, "m-1", 1, vec![effect(1)])
        .await
        .unwrap());
    assert!(!store
        .ack("warning", "q", None, "m-1", 2, vec![effect(10)])
        .await
        .unwrap());
    let row = Stmt::new("SELECT processed_at FROM consumer_dedup WHERE consumer = $1")
        .bind("tags")
        .query()
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>("processed_at"), 1, "applied once");
}

/// Rows of `table` in the SQLite database at `url`, counted over a connection of its own.
async fn sqlite_count(url: &str, table: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let n = sqlx::query(&format!("SELECT count(*) AS n FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    conn.close().await.unwrap();
    n
}

/// On SQLite the writer's multi-row inserts run `OR FAIL`, without a statement journal: a
/// statement that fails halfway keeps the rows it inserted before the failing one. Those must
/// never stand: the group's rollback, then the operation's savepoint in the one-by-one replay,
/// take them back. A trigger refuses the change-log row of the third of four records.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_insert_failing_halfway_leaves_nothing() {
    let (store, dir) = common::sqlite_store().await;
    let url = common::sqlite_url(&dir);
    common::raw_execute(
        &url,
        "CREATE TRIGGER refuse_third BEFORE INSERT ON change_log WHEN NEW.version = 7 \
         BEGIN SELECT RAISE(FAIL, 'third row refused'); END",
    )
    .await
    .unwrap();
    let items = (1..=4)
        .map(|i| {
            let mut item = sample_petition_item(i);
            if i == 3 {
                item.version = 7;
            }
            item
        })
        .collect();
    let failed = store.transact(Txn {
        ingests: items,
        ..Txn::default()
    });
    // A record of its own, committed beside the failing operation (same group or the next).
    let beside = store.ingest(sample_petition_item(5));
    let (failed, beside) = tokio::join!(failed, beside);
    let err = failed.expect_err("the third record's change-log row is refused");
    assert!(err.to_string().contains("third row refused"), "{err}");
    assert!(matches!(beside.unwrap(), IngestOutcome::Created(_)));
    for table in ["records", "change_log", "outbox", "record_versions"] {
        assert_eq!(
            sqlite_count(&url, table).await,
            1,
            "{table}: only the record beside"
        );
    }
}
