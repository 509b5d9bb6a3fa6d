//! Several hub processes on one database: their writers serialise group commits (PostgreSQL
//! advisory lock), so the change log and the audit chain stay single; named leases admit one
//! holder at a time and pass to another when the holder goes.

#![allow(unused_macros)] // reason: the shared test helpers define macros this suite does not use

#[macro_use]
mod common;

use std::time::Duration;

use sqlx::Row;
use tokio::task::JoinSet;
use xfhub_security::audit::verify_chain;
use xfhub_store::{AuditDraft, IngestItem, IngestOutcome, Store, StoreOptions};

use common::sample_petition_item;

async fn second_store(url: &str) -> Store {
    Store::open(StoreOptions {
        read_connections: 2,
        ..StoreOptions::new(url)
    })
    .await
    .expect("another store on the same database")
}

fn draft(actor: &str, target: &str) -> AuditDraft {
    AuditDraft {
        actor: actor.to_owned(),
        action: "petition.submit".to_owned(),
        target: target.to_owned(),
        outcome: String::new(),
        remote: "127.0.0.1:1".to_owned(),
        detail: String::new(),
    }
}

/// Three writers (three processes' stores) ingest at once with audit entries: every ingest
/// succeeds, change-log sequences are 1..=N without gap or repeat and increase in commit order,
/// and the audit log is one unbroken chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_writers_on_postgres_keep_one_change_log_and_one_audit_chain() {
    let (first, db) = common::postgres_store().await;
    let stores = vec![
        first,
        second_store(&db.url).await,
        second_store(&db.url).await,
    ];
    const PER_STORE: u64 = 200;
    let mut tasks = JoinSet::new();
    for (s, store) in stores.iter().enumerate() {
        for chunk in 0..8u64 {
            let store = store.clone();
            tasks.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..PER_STORE / 8 {
                    let n = s as u64 * 10_000 + chunk * 1_000 + i;
                    let outcome = store
                        .ingest(IngestItem {
                            audit: Some(draft(&format!("hub{s}"), "")),
                            ..sample_petition_item(n)
                        })
                        .await
                        .expect("ingest succeeds whatever the other writers do");
                    match outcome {
                        IngestOutcome::Created(r) => seqs.push(r.change_seq),
                        other => panic!("{other:?}"),
                    }
                    // Plain audit entries too, through the same writers.
                    store
                        .audit(draft(&format!("hub{s}"), &format!("x{n}")))
                        .await
                        .expect("audit append");
                }
                seqs
            });
        }
    }
    let mut seqs = Vec::new();
    while let Some(r) = tasks.join_next().await {
        seqs.extend(r.expect("writer task"));
    }
    let total = 3 * PER_STORE as i64;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "receipts' sequences");
    let stored: Vec<i64> = sqlx::query("SELECT seq FROM change_log ORDER BY seq")
        .fetch_all(stores[0].reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<i64, _>("seq").unwrap())
        .collect();
    assert_eq!(stored, (1..=total).collect::<Vec<_>>(), "change log");

    let mut rows = Vec::new();
    loop {
        let after = rows
            .last()
            .map_or(0, |r: &xfhub_store::AuditRow| r.entry.seq);
        let page = stores[0].audit_page(after, 500).await.unwrap();
        if page.is_empty() {
            break;
        }
        rows.extend(page);
    }
    assert_eq!(rows.len() as i64, 2 * total);
    let checked = verify_chain(
        rows.iter()
            .map(|r| (&r.entry, r.prev_hash.as_str(), r.hash.as_str())),
    )
    .unwrap_or_else(|brk| panic!("the audit chain is broken: {brk}"));
    assert_eq!(checked as i64, 2 * total);
    for s in stores {
        s.close().await;
    }
}

/// One holder at a time; released, or its process gone (its connection closed), another takes
/// the lease at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_lease_has_one_holder_and_passes_on_when_it_goes() {
    let (a, db) = common::postgres_store().await;
    let b = second_store(&db.url).await;
    let lease = a
        .try_lease("connector:x")
        .await
        .unwrap()
        .expect("free lease");
    assert!(lease.is_held());
    assert!(
        b.try_lease("connector:x").await.unwrap().is_none(),
        "held by a"
    );
    assert!(
        a.try_lease("connector:x").await.unwrap().is_none(),
        "held, even for a"
    );
    let other = b
        .try_lease("connector:y")
        .await
        .unwrap()
        .expect("another name is free");
    lease.release().await;
    let lease = b.try_lease("connector:x").await.unwrap().expect("released");
    assert!(a.try_lease("connector:x").await.unwrap().is_none());
    drop(other);

    // The holder's process dies: its sessions end (here: the holder's store and every
    // connection of its database are terminated by the server).
    let c = second_store(&db.url).await;
    drop(lease);
    let held = c.try_lease("connector:z").await.unwrap().expect("free");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND classid = 7866 AND granted AND pid <> pg_backend_pid()",
    )
    .execute(a.reader())
    .await
    .unwrap();
    let mut taken = None;
    for _ in 0..50 {
        if let Some(l) = a.try_lease("connector:z").await.unwrap() {
            taken = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        taken.is_some(),
        "the lease passed on after its holder's session ended"
    );
    // The old holder learns it lost the lease within a check or two.
    tokio::time::timeout(Duration::from_secs(10), held.lost())
        .await
        .expect("the old holder sees its lease lost");
    assert!(!held.is_held());
    for s in [a, b, c] {
        s.close().await;
    }
}

#[tokio::test]
async fn a_sqlite_lease_keeps_two_tasks_of_one_process_apart() {
    let (store, _dir) = common::sqlite_store().await;
    let (other, _dir2) = common::sqlite_store().await;
    let lease = store.try_lease("connector:x").await.unwrap().expect("free");
    assert!(store.try_lease("connector:x").await.unwrap().is_none());
    assert!(
        other.try_lease("connector:x").await.unwrap().is_some(),
        "another database has its own leases"
    );
    assert!(lease.is_held());
    drop(lease);
    assert!(store.try_lease("connector:x").await.unwrap().is_some());
}
