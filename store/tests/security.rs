//! The store's security data, on SQLite and on PostgreSQL (see `common::backend_tests`):
//! partner clients, nonces, the audit chain (and its append-only table), audit entries written
//! with ingests, the blind index, division scopes of listings, and the rows walked by
//! re-encryption under a new key.

#[macro_use]
mod common;

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};
use tokio::task::JoinSet;
use uuid::Uuid;
use xfhub_schemas::{sample_petition, Envelope};
use xfhub_security::audit::{verify_chain, verify_chain_from, GENESIS};
use xfhub_store::{
    AuditDraft, AuditRow, ClientRecord, Effect, ImportErrorItem, IngestItem, IngestOutcome,
    ListQuery, RecordKind, ResealTable, Stmt, Store, StoreError, Txn,
};

use common::{
    ingest_new, ingest_petitions, petition_item, raw_execute, sample_petition_item,
    sample_workorder_item, sqlite_url, PgDb,
};

backend_tests!(
    case_ingest_refuses_a_reused_nonce_atomically,
    case_clients_round_trip,
    case_nonce_is_used_once_per_app_key,
    case_audit_entries_are_numbered_and_chained,
    case_concurrent_audit_keeps_one_chain,
    case_failed_operation_leaves_the_chain_unbroken,
    case_ingest_writes_one_audit_entry_per_item,
    case_blind_index_finds_records_and_follows_updates,
    case_division_scope_restricts_listings,
    case_reseal_scan_pages_every_table_in_key_order,
    case_reseal_is_compare_and_set,
    case_rotation_cursor_round_trip,
);

backend_tests_with_url!(
    case_audit_log_is_append_only,
    case_blind_index_keeps_the_first_128_bits_of_a_digest,
    case_two_writers_keep_one_audit_chain,
    case_nonces_survive_a_reopen_and_failed_commits_free_them
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn draft(actor: &str, action: &str, target: &str) -> AuditDraft {
    AuditDraft {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: "ok".to_owned(),
        remote: "127.0.0.1:5000".to_owned(),
        detail: format!("{action} of {target}"),
    }
}

/// The whole audit log, read in pages of `page` entries.
async fn audit_all(store: &Store, page: u32) -> Vec<AuditRow> {
    let mut out: Vec<AuditRow> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.entry.seq);
        let rows = store.audit_page(after, page).await.expect("audit page");
        assert!(rows.len() <= page as usize, "a page is at most its limit");
        if rows.is_empty() {
            return out;
        }
        out.extend(rows);
    }
}

/// Verifies the stored chain from its first entry; returns how many entries it has.
fn verify(rows: &[AuditRow]) -> usize {
    verify_chain(
        rows.iter()
            .map(|r| (&r.entry, r.prev_hash.as_str(), r.hash.as_str())),
    )
    .unwrap_or_else(|brk| panic!("the audit chain is broken: {brk}"))
}

/// The drafts' fields of a stored entry (everything the writer does not fill in).
fn fields(r: &AuditRow) -> AuditDraft {
    AuditDraft {
        actor: r.entry.actor.clone(),
        action: r.entry.action.clone(),
        target: r.entry.target.clone(),
        outcome: r.entry.outcome.clone(),
        remote: r.entry.remote.clone(),
        detail: r.entry.detail.clone(),
    }
}

fn client(app_key: &str, name: &str, created: i64) -> ClientRecord {
    ClientRecord {
        app_key: app_key.to_owned(),
        name: name.to_owned(),
        secret_sealed: format!("enc:v1:k1:sealed-secret-of-{app_key}"),
        old_secret_sealed: None,
        old_valid_until_ms: None,
        scopes: vec!["submit".to_owned(), "read".to_owned()],
        info_sets: vec!["petition".to_owned()],
        divisions: vec!["430102".to_owned(), "430103".to_owned()],
        disabled: false,
        created_at_ms: created,
        updated_at_ms: created,
    }
}

/// Ids of every petition matching `q`, newest first, walking all pages.
async fn petition_ids(store: &Store, q: ListQuery) -> Vec<Uuid> {
    let mut q = ListQuery { limit: 3, ..q };
    let mut out = Vec::new();
    loop {
        let page = store
            .list_records(RecordKind::Petition, &q)
            .await
            .expect("list records");
        out.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(next) => q.before = Some(next),
            None => return out,
        }
    }
}

fn blind_query(field: &str, digest: &str) -> ListQuery {
    ListQuery {
        blind: Some((field.to_owned(), digest.to_owned())),
        ..ListQuery::default()
    }
}

fn newest_first(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

fn with_blind(mut item: IngestItem, blind: &[(&str, &str)]) -> IngestItem {
    item.blind = blind
        .iter()
        .map(|(f, d)| ((*f).to_owned(), (*d).to_owned()))
        .collect();
    item
}

// ---------------------------------------------------------------------------------------------
// Clients and nonces

async fn case_clients_round_trip(store: Store) {
    assert_eq!(store.get_client("xf-none").await.unwrap(), None);
    assert!(store.list_clients().await.unwrap().is_empty());

    let a = client("xfa0000000000000001", "市12345热线", 1_000);
    let mut b = client("xfb0000000000000002", "区信访局", 2_000);
    b.old_secret_sealed = Some("enc:v1:k1:previous-secret".to_owned());
    b.old_valid_until_ms = Some(1_900_000_000_000);
    b.scopes = vec!["admin".to_owned(), "pii:read".to_owned()];
    b.info_sets = vec!["*".to_owned()];
    b.divisions = vec!["*".to_owned()];
    b.disabled = true;
    // Created in the reverse order of their creation times: the listing orders by time.
    store
        .put_client(b.clone(), draft("cli", "client.add", &b.app_key))
        .await
        .unwrap();
    store
        .put_client(a.clone(), draft("cli", "client.add", &a.app_key))
        .await
        .unwrap();
    assert_eq!(store.get_client(&a.app_key).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_client(&b.app_key).await.unwrap(), Some(b.clone()));
    assert_eq!(
        store.list_clients().await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    // A second put replaces every field but the creation time.
    let mut b2 = b.clone();
    b2.name = "区信访局（新）".to_owned();
    b2.secret_sealed = "enc:v1:k2:new-secret".to_owned();
    b2.old_secret_sealed = None;
    b2.old_valid_until_ms = None;
    b2.scopes = vec!["read".to_owned()];
    b2.info_sets = vec!["workorder".to_owned(), "process_event".to_owned()];
    b2.divisions = vec!["430104".to_owned()];
    b2.disabled = false;
    b2.created_at_ms = 9_999;
    b2.updated_at_ms = 3_000;
    store
        .put_client(b2.clone(), draft("cli", "client.enable", &b.app_key))
        .await
        .unwrap();
    let stored = store.get_client(&b.app_key).await.unwrap().unwrap();
    assert_eq!(
        stored,
        ClientRecord {
            created_at_ms: b.created_at_ms,
            ..b2.clone()
        },
        "created_at stays"
    );
    assert_eq!(store.list_clients().await.unwrap().len(), 2);

    // Every put wrote its audit entry, in order.
    let log = audit_all(&store, 100).await;
    assert_eq!(verify(&log), 3);
    let actions: Vec<(String, String)> = log
        .iter()
        .map(|r| (r.entry.action.clone(), r.entry.target.clone()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("client.add".to_owned(), b.app_key.clone()),
            ("client.add".to_owned(), a.app_key.clone()),
            ("client.enable".to_owned(), b.app_key.clone()),
        ]
    );
}

async fn case_nonce_is_used_once_per_app_key(store: Store) {
    let later = xfhub_store::now_ms() + 600_000;
    assert!(store.use_nonce("xfa", "n-1", later).await.unwrap());
    assert!(
        !store.use_nonce("xfa", "n-1", later).await.unwrap(),
        "replay"
    );
    assert!(
        !store.use_nonce("xfa", "n-1", later + 1).await.unwrap(),
        "replay with another expiry"
    );
    assert!(
        store.use_nonce("xfb", "n-1", later).await.unwrap(),
        "another app key has nonces of its own"
    );
    assert!(!store.use_nonce("xfb", "n-1", later).await.unwrap());
    assert!(store.use_nonce("xfa", "n-2", later).await.unwrap());

    // Concurrent uses of one nonce: exactly one wins, even within one commit group.
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let s = store.clone();
        tasks.spawn(async move { s.use_nonce("xfc", "n-race", later).await.unwrap() });
    }
    let mut wins = 0;
    while let Some(r) = tasks.join_next().await {
        wins += usize::from(r.unwrap());
    }
    assert_eq!(wins, 1, "one concurrent use of a nonce succeeds");
}

// ---------------------------------------------------------------------------------------------
// Audit chain

async fn case_audit_entries_are_numbered_and_chained(store: Store) {
    assert!(store.audit_page(0, 10).await.unwrap().is_empty());
    let drafts: Vec<AuditDraft> = (0..10)
        .map(|i| draft(&format!("xf{i}"), "record.read", &format!("r-{i}")))
        .collect();
    let before = xfhub_store::now_ms();
    let mut seqs = Vec::new();
    for d in &drafts {
        seqs.push(store.audit(d.clone()).await.unwrap());
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<i64>>(), "sequential seq");

    let log = audit_all(&store, 3).await;
    assert_eq!(log.len(), 10);
    assert_eq!(verify(&log), 10);
    assert_eq!(log[0].prev_hash, GENESIS);
    for (row, (d, seq)) in log.iter().zip(drafts.iter().zip(&seqs)) {
        assert_eq!(row.entry.seq, *seq);
        assert_eq!(&fields(row), d);
        assert!(row.entry.at_ms >= before);
    }
    // A page verifies from the hash of the entry before it.
    let page = store.audit_page(4, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.entry.seq).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert_eq!(
        verify_chain_from(
            &log[3].hash,
            page.iter()
                .map(|r| (&r.entry, r.prev_hash.as_str(), r.hash.as_str()))
        ),
        Ok(3)
    );
    // The check has teeth: an altered entry breaks the chain where it was altered.
    let mut altered = log.clone();
    altered[6].entry.detail = "nothing happened".to_owned();
    let brk = verify_chain(
        altered
            .iter()
            .map(|r| (&r.entry, r.prev_hash.as_str(), r.hash.as_str())),
    )
    .unwrap_err();
    assert_eq!(brk.seq, 7);

    // The chain continues after a reopen-free pause and after other writes.
    ingest_petitions(&store, 0..2).await;
    assert_eq!(
        store
            .audit(draft("cli", "keys.rotate", "k2"))
            .await
            .unwrap(),
        11
    );
    assert_eq!(verify(&audit_all(&store, 100).await), 11);
}

async fn case_concurrent_audit_keeps_one_chain(store: Store) {
    const N: usize = 100;
    let mut tasks = JoinSet::new();
    for i in 0..N {
        let s = store.clone();
        tasks.spawn(async move {
            let d = draft(&format!("xf{i:03}"), "auth.failed", &format!("POST /x/{i}"));
            (s.audit(d.clone()).await.unwrap(), d)
        });
    }
    let mut by_seq = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (seq, d) = r.unwrap();
        assert!(by_seq.insert(seq, d).is_none(), "seq {seq} given twice");
    }
    let seqs: BTreeSet<i64> = by_seq.keys().copied().collect();
    assert_eq!(seqs, (1..=N as i64).collect(), "no gaps, no repeats");

    let log = audit_all(&store, 17).await;
    assert_eq!(verify(&log), N);
    for row in &log {
        assert_eq!(
            &fields(row),
            &by_seq[&row.entry.seq],
            "seq {}",
            row.entry.seq
        );
    }
}

/// A commit group in which one operation fails is replayed one operation at a time; the audit
/// entries of the other operations must still chain without a gap or a fork.
async fn case_failed_operation_leaves_the_chain_unbroken(store: Store) {
    ingest_petitions(&store, 0..1).await;
    let row = store.outbox_unsent(10).await.unwrap().remove(0);
    let taken: Envelope<Value> = serde_json::from_str(&row.envelope).unwrap();

    for round in 0..3 {
        let mut tasks = JoinSet::new();
        for i in 0..40 {
            let s = store.clone();
            tasks.spawn(async move {
                s.audit(draft("xf", "record.read", &format!("{round}-{i}")))
                    .await
                    .map(|_| ())
            });
            if i % 4 == 0 {
                let s = store.clone();
                let mut item = sample_petition_item(1000 + round * 100 + i);
                item.audit = Some(draft("xf", "petition.submit", ""));
                tasks.spawn(async move { s.ingest(item).await.map(|_| ()) });
            }
            if i == 20 {
                // An effect that breaks a constraint (the outbox keeps a message id once, so
                // a repeated publish is dropped, not an error): the operation fails.
                let (s, message_id) = (store.clone(), taken.message_id.to_string());
                tasks.spawn(async move {
                    let r = s
                        .ack(
                            "checker",
                            "q",
                            None,
                            &format!("ext-{round}"),
                            1,
                            vec![Effect::Sql(
                                Stmt::new(
                                    "INSERT INTO outbox (message_id, message_type, routing_key, \
                                     envelope, created_at) VALUES ($1, 'x', 'x', '{}', 0)",
                                )
                                .bind(message_id),
                            )],
                        )
                        .await;
                    assert!(matches!(r, Err(StoreError::Database(_))), "{r:?}");
                    Ok(())
                });
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    }
    let log = audit_all(&store, 1000).await;
    assert_eq!(verify(&log), 3 * (40 + 10));
    assert_eq!(
        log.iter().map(|r| r.entry.seq).collect::<Vec<_>>(),
        (1..=150).collect::<Vec<i64>>()
    );
}

async fn case_audit_log_is_append_only(store: Store, url: String) {
    for i in 0..3 {
        store
            .audit(draft("cli", "client.add", &format!("xf{i}")))
            .await
            .unwrap();
    }
    let before = audit_all(&store, 100).await;
    let mut attempts = vec![
        "UPDATE audit_log SET detail = 'rewritten' WHERE seq = 2",
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log WHERE seq = 3",
        "DELETE FROM audit_log",
    ];
    if url.starts_with("postgres") {
        // PostgreSQL empties a table with TRUNCATE without firing row triggers.
        attempts.push("TRUNCATE audit_log");
    }
    for sql in attempts {
        match raw_execute(&url, sql).await {
            Ok(n) => panic!("{sql}: allowed, {n} rows changed"),
            Err(e) => assert!(e.contains("audit_log is append-only"), "{sql}: {e}"),
        }
    }
    let after = audit_all(&store, 100).await;
    assert_eq!(after, before, "nothing changed");
    assert_eq!(verify(&after), 3);
    // Appending still works, through the store and (the triggers allow it) directly.
    assert_eq!(store.audit(draft("cli", "x", "y")).await.unwrap(), 4);
    assert_eq!(verify(&audit_all(&store, 100).await), 4);
}

// ---------------------------------------------------------------------------------------------
// Audit entries of ingests

async fn case_ingest_writes_one_audit_entry_per_item(store: Store) {
    let submit = |target: &str| AuditDraft {
        actor: "xf0123".to_owned(),
        action: "petition.submit".to_owned(),
        target: target.to_owned(),
        outcome: String::new(),
        remote: "10.0.0.8:5123".to_owned(),
        detail: "corr=abc".to_owned(),
    };
    let audited = |item: IngestItem| IngestItem {
        audit: Some(submit("")),
        ..item
    };

    let v1 = sample_petition(3);
    let created = match store.ingest(audited(petition_item(&v1))).await.unwrap() {
        IngestOutcome::Created(r) => r,
        other => panic!("{other:?}"),
    };
    let dup = store.ingest(audited(petition_item(&v1))).await.unwrap();
    assert_eq!(dup, IngestOutcome::Duplicate(created.clone()));
    let mut other_content = v1.clone();
    other_content.appeal.summary.push('!');
    assert_eq!(
        store
            .ingest(audited(petition_item(&other_content)))
            .await
            .unwrap(),
        IngestOutcome::Conflict { version: 1 }
    );
    let mut v2 = v1.clone();
    v2.source.version = 2;
    assert!(matches!(
        store.ingest(audited(petition_item(&v2))).await.unwrap(),
        IngestOutcome::Updated(_)
    ));
    let mut v0 = v1.clone();
    v0.source.version = 0;
    assert!(matches!(
        store.ingest(audited(petition_item(&v0))).await.unwrap(),
        IngestOutcome::Stale { .. }
    ));
    // An explicit target is kept; no draft, no entry.
    let w = match store
        .ingest(IngestItem {
            audit: Some(submit("workorder W-1")),
            ..sample_workorder_item(1)
        })
        .await
        .unwrap()
    {
        IngestOutcome::Created(r) => r,
        other => panic!("{other:?}"),
    };
    ingest_new(&store, sample_petition_item(4)).await;

    let log = audit_all(&store, 100).await;
    assert_eq!(verify(&log), 6, "one entry per audited item");
    let id = created.id.to_string();
    let got: Vec<(&str, &str)> = log
        .iter()
        .map(|r| (r.entry.outcome.as_str(), r.entry.target.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("created", id.as_str()),
            ("duplicate", id.as_str()),
            ("rejected: version conflict", ""),
            ("updated", id.as_str()),
            ("rejected: stale version", ""),
            ("created", "workorder W-1"),
        ]
    );
    assert_ne!(w.id, created.id);
    for r in &log {
        assert_eq!(r.entry.actor, "xf0123");
        assert_eq!(r.entry.remote, "10.0.0.8:5123");
        assert_eq!(r.entry.detail, "corr=abc");
    }

    // Many audited ingests at once (sharing commit groups, repeats within a group): still one
    // entry each, with the outcome each caller was told.
    let mut tasks = JoinSet::new();
    for i in 0..60u64 {
        let s = store.clone();
        let item = audited(sample_petition_item(100 + i % 30));
        tasks.spawn(async move { s.ingest(item).await.unwrap() });
    }
    let mut told: HashMap<&str, usize> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let label = match r.unwrap() {
            IngestOutcome::Created(_) => "created",
            IngestOutcome::Duplicate(_) => "duplicate",
            other => panic!("{other:?}"),
        };
        *told.entry(label).or_default() += 1;
    }
    assert_eq!(told["created"], 30);
    assert_eq!(told["duplicate"], 30);
    let log = audit_all(&store, 7).await;
    assert_eq!(verify(&log), 66);
    let mut written: HashMap<&str, usize> = HashMap::new();
    for r in &log[6..] {
        *written.entry(r.entry.outcome.as_str()).or_default() += 1;
    }
    assert_eq!(written, told);
}

// ---------------------------------------------------------------------------------------------
// Blind index and division scopes

async fn case_blind_index_finds_records_and_follows_updates(store: Store) {
    let p1 = sample_petition(1);
    let r1 = ingest_new(
        &store,
        with_blind(
            petition_item(&p1),
            &[
                ("id_number", "id-1"),
                ("mobile", "m-shared"),
                ("mobile", "m-shared"),
            ],
        ),
    )
    .await;
    let r2 = ingest_new(
        &store,
        with_blind(sample_petition_item(2), &[("id_number", "id-2")]),
    )
    .await;
    let r3 = ingest_new(
        &store,
        with_blind(
            sample_petition_item(3),
            &[("mobile", "m-shared"), ("id_number", "id-3")],
        ),
    )
    .await;
    ingest_new(&store, sample_petition_item(4)).await;
    let w = ingest_new(
        &store,
        with_blind(sample_workorder_item(1), &[("mobile", "m-shared")]),
    )
    .await;

    let find = |field: &str, digest: &str| petition_ids(&store, blind_query(field, digest));
    assert_eq!(find("id_number", "id-1").await, vec![r1.id]);
    assert_eq!(find("id_number", "id-2").await, vec![r2.id]);
    assert_eq!(
        find("mobile", "m-shared").await,
        newest_first(vec![r1.id, r3.id]),
        "petitions only, each once"
    );
    assert!(find("mobile", "id-1").await.is_empty(), "the field matters");
    assert!(find("id_number", "unknown").await.is_empty());
    let workorders = store
        .list_records(
            RecordKind::Workorder,
            &ListQuery {
                limit: 10,
                ..blind_query("mobile", "m-shared")
            },
        )
        .await
        .unwrap();
    assert_eq!(
        workorders.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![w.id]
    );
    // Combined with the other filters.
    let q = ListQuery {
        division: Some(p1.appeal.division.clone()),
        ..blind_query("mobile", "m-shared")
    };
    let in_division = petition_ids(&store, q).await;
    assert!(in_division.contains(&r1.id));

    // An update replaces the record's entries: the old digest no longer finds it.
    let mut v2 = p1.clone();
    v2.source.version = 2;
    let item = with_blind(petition_item(&v2), &[("id_number", "id-1-new")]);
    assert!(matches!(
        store.ingest(item).await.unwrap(),
        IngestOutcome::Updated(_)
    ));
    assert!(find("id_number", "id-1").await.is_empty());
    assert_eq!(find("id_number", "id-1-new").await, vec![r1.id]);
    assert_eq!(find("mobile", "m-shared").await, vec![r3.id]);
    assert_eq!(
        find("id_number", "id-3").await,
        vec![r3.id],
        "others keep theirs"
    );

    // A repeat or a stale version leaves the entries as they are.
    let repeat = with_blind(petition_item(&v2), &[("id_number", "id-ignored")]);
    assert!(matches!(
        store.ingest(repeat).await.unwrap(),
        IngestOutcome::Duplicate(_)
    ));
    let first = with_blind(petition_item(&p1), &[("id_number", "id-ignored")]);
    assert!(matches!(
        store.ingest(first).await.unwrap(),
        IngestOutcome::Duplicate(_)
    ));
    let mut v0 = p1.clone();
    v0.source.version = 0;
    let stale = with_blind(petition_item(&v0), &[("id_number", "id-ignored")]);
    assert!(matches!(
        store.ingest(stale).await.unwrap(),
        IngestOutcome::Stale { current_version: 2 }
    ));
    assert!(find("id_number", "id-ignored").await.is_empty());
    assert_eq!(find("id_number", "id-1-new").await, vec![r1.id]);

    // Several versions of one record in flight at once: the index ends as the newest says.
    let p9 = sample_petition(9);
    let mut tasks = JoinSet::new();
    for v in 1..=6i64 {
        let mut p = p9.clone();
        p.source.version = v;
        let digest = format!("id-9-v{v}");
        let item = with_blind(petition_item(&p), &[("id_number", digest.as_str())]);
        let s = store.clone();
        tasks.spawn(async move { s.ingest(item).await.unwrap() });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let stored = store
        .get_record_by_source(RecordKind::Petition, &p9.source.system, &p9.source.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 6);
    for v in 1..=5 {
        let digest = format!("id-9-v{v}");
        assert!(find("id_number", &digest).await.is_empty(), "v{v}");
    }
    assert_eq!(find("id_number", "id-9-v6").await, vec![stored.id]);
}

/// 64 hex digits, the length of a `KeyRing::blind_index` digest.
fn full_digest(seed: char) -> String {
    format!(
        "{}{}",
        seed.to_string().repeat(32),
        "0123456789abcdef".repeat(2)
    )
}

async fn case_blind_index_keeps_the_first_128_bits_of_a_digest(store: Store, url: String) {
    let a = full_digest('a');
    let r1 = ingest_new(
        &store,
        with_blind(sample_petition_item(1), &[("id_number", a.as_str())]),
    )
    .await;
    // Same last 32 digits, another first 32: another key.
    let b = full_digest('b');
    let r2 = ingest_new(
        &store,
        with_blind(sample_petition_item(2), &[("id_number", b.as_str())]),
    )
    .await;
    let rows = |sql: String| {
        let url = url.clone();
        async move { raw_execute(&url, &sql).await.unwrap() }
    };
    assert_eq!(
        rows("UPDATE pii_index SET field = field WHERE length(digest) <> 32".into()).await,
        0,
        "every entry holds 32 hex digits"
    );
    assert_eq!(
        rows(format!(
            "UPDATE pii_index SET field = field WHERE digest = '{}'",
            &a[..32]
        ))
        .await,
        1
    );
    let find = |d: String| petition_ids(&store, blind_query("id_number", &d));
    assert_eq!(
        find(a.clone()).await,
        vec![r1.id],
        "the full digest finds it"
    );
    assert_eq!(find(b.clone()).await, vec![r2.id]);
    assert_eq!(find(a[..32].to_owned()).await, vec![r1.id]);
    assert!(find(format!("{}{}", &b[..31], "c")).await.is_empty());
}

/// A store made before migrations 0012 and 0013 (full 64-digit digests in `pii_index`,
/// versions keyed by source) keeps finding its records after the upgrade, through the same
/// lookups, and still knows which versions it accepted.
async fn upgrade_keeps_blind_index_and_versions(url: &str, backend: &str) {
    let migrations = format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
    let earlier = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&migrations).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0012" {
            std::fs::copy(&path, earlier.path().join(&name)).unwrap();
        }
    }
    let before = sqlx::migrate::Migrator::new(earlier.path()).await.unwrap();
    if backend == "sqlite" {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        before.run(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        before.run(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    let id = Uuid::now_v7();
    let body = serde_json::to_string(&sample_petition(1)).unwrap();
    raw_execute(
        url,
        &format!(
            "INSERT INTO records (id, kind, source_system, source_id, version, division, status, \
             occurred_on, body, received_at, updated_at) VALUES ('{id}', 'petition', 'old', \
             '1', 1, '430102', 'received', '2026-01-05', '{}', 0, 0)",
            body.replace('\'', "''")
        ),
    )
    .await
    .unwrap();
    let receipt = json!({
        "id": id, "kind": "petition", "source_system": "old", "source_id": "1", "version": 1,
        "status": "created", "message_id": Uuid::now_v7(), "change_seq": 1,
        "received_at": "2026-01-05T00:00:00Z",
    });
    raw_execute(
        url,
        &format!(
            "INSERT INTO record_versions (kind, source_system, source_id, version, digest, \
             receipt) VALUES ('petition', 'old', '1', 1, 'digest-1', '{receipt}')"
        ),
    )
    .await
    .unwrap();
    let a = full_digest('a');
    // Two entries of the record that coincide once shortened: one is kept.
    let a_twin = format!("{}{}", &a[..32], "f".repeat(32));
    for (field, digest) in [("id_number", &a), ("id_number", &a_twin), ("mobile", &a)] {
        raw_execute(
            url,
            &format!("INSERT INTO pii_index (field, digest, record_id) VALUES ('{field}', '{digest}', '{id}')"),
        )
        .await
        .unwrap();
    }

    let store = Store::open(xfhub_store::StoreOptions::new(url))
        .await
        .unwrap();
    assert_eq!(
        raw_execute(
            url,
            "UPDATE pii_index SET field = field WHERE length(digest) = 32"
        )
        .await
        .unwrap(),
        2,
        "the twins became one entry, the other field kept its own"
    );
    for field in ["id_number", "mobile"] {
        assert_eq!(
            petition_ids(&store, blind_query(field, &a)).await,
            vec![id],
            "{field}"
        );
    }
    // The accepted version is known under the record: the same content is a repeat with the
    // first receipt, other content under that version a conflict, the next version an update.
    let mut item = petition_item(&sample_petition(1));
    item.source_system = "old".into();
    item.source_id = "1".into();
    item.version = 1;
    item.digest = "digest-1".into();
    match store.ingest(item.clone()).await.unwrap() {
        IngestOutcome::Duplicate(r) => assert_eq!(serde_json::to_value(r).unwrap(), receipt),
        other => panic!("expected the first receipt, got {other:?}"),
    }
    item.digest = "digest-other".into();
    assert_eq!(
        store.ingest(item.clone()).await.unwrap(),
        IngestOutcome::Conflict { version: 1 }
    );
    item.version = 2;
    item.blind = vec![("id_number".into(), a.clone())];
    match store.ingest(item.clone()).await.unwrap() {
        IngestOutcome::Updated(r) => assert_eq!(r.id, id),
        other => panic!("expected an update, got {other:?}"),
    }
    assert!(matches!(
        store.ingest(item).await.unwrap(),
        IngestOutcome::Duplicate(_)
    ));

    // New entries go in beside the migrated ones.
    let r = ingest_new(
        &store,
        with_blind(sample_petition_item(2), &[("id_number", a.as_str())]),
    )
    .await;
    assert_eq!(
        petition_ids(&store, blind_query("id_number", &a)).await,
        newest_first(vec![id, r.id])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_keeps_blind_index_and_versions_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    common::run_case(upgrade_keeps_blind_index_and_versions(
        &sqlite_url(&dir),
        "sqlite",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_keeps_blind_index_and_versions_postgres() {
    let db = PgDb::create("").await;
    common::run_case(upgrade_keeps_blind_index_and_versions(&db.url, "postgres")).await;
}

async fn case_division_scope_restricts_listings(store: Store) {
    let mut by_division: HashMap<String, Vec<Uuid>> = HashMap::new();
    for i in 0..24 {
        let p = sample_petition(i);
        let r = ingest_new(&store, petition_item(&p)).await;
        by_division.entry(p.appeal.division).or_default().push(r.id);
    }
    let mut divisions: Vec<String> = by_division.keys().cloned().collect();
    divisions.sort();
    assert!(
        divisions.len() >= 3,
        "samples span divisions: {divisions:?}"
    );
    let (a, b, c) = (&divisions[0], &divisions[1], &divisions[2]);
    let scoped = |ds: Vec<String>| ListQuery {
        divisions: Some(ds),
        ..ListQuery::default()
    };

    let all = petition_ids(&store, ListQuery::default()).await;
    assert_eq!(all.len(), 24);
    assert_eq!(
        petition_ids(&store, scoped(vec![a.clone()])).await,
        newest_first(by_division[a].clone())
    );
    let mut ab = by_division[a].clone();
    ab.extend(&by_division[b]);
    assert_eq!(
        petition_ids(&store, scoped(vec![a.clone(), b.clone()])).await,
        newest_first(ab)
    );
    assert!(
        petition_ids(&store, scoped(vec![])).await.is_empty(),
        "no divisions, no records"
    );
    assert!(petition_ids(&store, scoped(vec!["999999".to_owned()]))
        .await
        .is_empty());
    // The scope and a division filter combine with AND.
    let q = ListQuery {
        division: Some(c.clone()),
        ..scoped(vec![a.clone(), b.clone()])
    };
    assert!(petition_ids(&store, q).await.is_empty());
    let q = ListQuery {
        division: Some(b.clone()),
        ..scoped(vec![a.clone(), b.clone()])
    };
    assert_eq!(
        petition_ids(&store, q).await,
        newest_first(by_division[b].clone())
    );
    // A scope that looks like SQL is a value like any other.
    assert!(petition_ids(&store, scoped(vec!["' OR '1'='1".to_owned()]))
        .await
        .is_empty());
}

// ---------------------------------------------------------------------------------------------
// Re-encryption support

/// Puts rows into every table re-encryption walks; returns how many rows each scan must see.
async fn fill_reseal_tables(store: &Store) -> HashMap<&'static str, usize> {
    ingest_petitions(store, 0..7).await;
    // Five deliveries with envelopes of their own, two that reference the outbox (their
    // envelope column is empty and they are not scanned).
    let outbox = store.outbox_unsent(100).await.unwrap();
    let mut deliveries: Vec<(String, String, String)> = (0..5)
        .map(|i| {
            (
                "q".to_owned(),
                format!("ext-{i}"),
                json!({ "message_id": format!("ext-{i}"), "payload": { "n": i } }).to_string(),
            )
        })
        .collect();
    for r in &outbox[..2] {
        deliveries.push(("q".to_owned(), r.message_id.clone(), r.envelope.clone()));
    }
    store
        .enqueue(
            outbox[..2].iter().map(|r| r.seq).collect(),
            deliveries,
            vec![],
        )
        .await
        .unwrap();
    for i in 0..4 {
        store
            .dead_letter(
                "q",
                None,
                &format!("dead-{i}"),
                &json!({ "n": i }).to_string(),
                5,
                "gave up",
            )
            .await
            .unwrap();
    }
    for i in 0..3 {
        store
            .record_import_error(ImportErrorItem {
                source: "excel".into(),
                kind: "petition".into(),
                source_ref: Some(format!("row {i}")),
                raw: format!("{{\"row\":{i}}}"),
                reasons: json!(["required"]),
            })
            .await
            .unwrap();
    }
    // Single sealed values in features' tables (the store sees them as text). A key person may
    // have no mobile; SMS recipients are keyed by two columns, two of them
    // under one message.
    let now = xfhub_store::now_ms();
    let mut statements = Vec::new();
    for (i, mobile) in [Some("enc:v1:k:m0"), None, Some("enc:v1:k:m2")]
        .iter()
        .enumerate()
    {
        statements.push(
            Stmt::new(
                "INSERT INTO key_persons (id_digest, name, id_number_sealed, mobile_sealed, \
                 division, job_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(format!("digest-{i}"))
            .bind("张三")
            .bind(format!("enc:v1:k:id{i}"))
            .bind(mobile.map(str::to_owned))
            .bind("430102")
            .bind("job")
            .bind(now),
        );
    }
    for i in 0..2 {
        statements.push(
            Stmt::new(
                "INSERT INTO persons (id, id_blind, id_number_sealed, mobile_sealed, seen_at, \
                 source, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $5, $5)",
            )
            .bind(format!("person-{i}"))
            .bind(format!("blind-{i}"))
            .bind(format!("enc:v1:k:pid{i}"))
            .bind(format!("enc:v1:k:pm{i}"))
            .bind(now)
            .bind("exchange"),
        );
        statements.push(
            Stmt::new(
                "INSERT INTO app_users (id, name, id_number_sealed, id_blind, mobile_sealed, \
                 mobile_blind, address, password_hash, recovery_question, recovery_answer_hash, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
            )
            .bind(format!("user-{i}"))
            .bind("李四")
            .bind(format!("enc:v1:k:uid{i}"))
            .bind(format!("id-blind-{i}"))
            .bind(format!("enc:v1:k:um{i}"))
            .bind(format!("mobile-blind-{i}"))
            .bind("长沙")
            .bind("hash")
            .bind("question")
            .bind("answer")
            .bind(now),
        );
        statements.push(
            Stmt::new(
                "INSERT INTO role_holders (id, name, role, org, mobile_sealed, mobile_masked, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(format!("holder-{i}"))
            .bind("王五")
            .bind("handler")
            .bind("430102")
            .bind(format!("enc:v1:k:rm{i}"))
            .bind("138****0000")
            .bind(now),
        );
    }
    for (message, digest) in [("m-1", "d-b"), ("m-1", "d-a"), ("m-0", "d-c")] {
        statements.push(
            Stmt::new(
                "INSERT INTO sms_recipients (message_id, phone_digest, phone_sealed, \
                 phone_masked, status) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(message)
            .bind(digest)
            .bind(format!("enc:v1:k:{message}{digest}"))
            .bind("138****0000")
            .bind("pending"),
        );
    }
    store
        .transact(Txn {
            statements,
            ..Txn::default()
        })
        .await
        .unwrap();
    HashMap::from([
        ("records", 7),
        ("outbox", 7),
        ("bus_queue", 5),
        ("dead_letters", 4),
        ("import_errors", 3),
        ("key_persons.id_number_sealed", 3),
        ("key_persons.mobile_sealed", 2),
        ("persons.id_number_sealed", 2),
        ("persons.mobile_sealed", 2),
        ("app_users.id_number_sealed", 2),
        ("app_users.mobile_sealed", 2),
        ("role_holders.mobile_sealed", 2),
        ("sms_recipients.phone_sealed", 3),
    ])
}

/// Whether reseal key `a` comes before `b` in `table`'s key order: numerically for integer
/// keys, as a pair of texts for two-column keys (a JSON array), as text otherwise.
fn key_before(table: ResealTable, a: &str, b: &str) -> bool {
    match table {
        ResealTable::Outbox
        | ResealTable::BusQueue
        | ResealTable::DeadLetters
        | ResealTable::ImportErrors => a.parse::<i64>().unwrap() < b.parse::<i64>().unwrap(),
        ResealTable::SmsRecipientPhones => {
            let pair = |k| serde_json::from_str::<(String, String)>(k).unwrap();
            pair(a) < pair(b)
        }
        _ => a < b,
    }
}

async fn case_reseal_scan_pages_every_table_in_key_order(store: Store) {
    let expected = fill_reseal_tables(&store).await;
    for table in ResealTable::ALL {
        let everything = store.reseal_scan(table, "", 1000).await.unwrap();
        assert_eq!(
            everything.len(),
            expected[table.name()],
            "{}: rows with text",
            table.name()
        );
        // Keys strictly increase in the table's key order.
        for w in everything.windows(2) {
            assert!(
                key_before(table, &w[0].0, &w[1].0),
                "{}: {} then {}",
                table.name(),
                w[0].0,
                w[1].0
            );
        }
        // Paging by the last key of each page walks the same rows once each.
        let mut walked = Vec::new();
        let mut cursor = String::new();
        let mut pages = 0;
        loop {
            let page = store.reseal_scan(table, &cursor, 2).await.unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            cursor = last.0.clone();
            walked.extend(page);
            pages += 1;
            assert!(pages < 100, "{}: paging does not end", table.name());
        }
        assert_eq!(walked, everything, "{}", table.name());
        // The text is the stored column.
        if table == ResealTable::Records {
            for (id, text) in &walked {
                let stored = store
                    .get_record(RecordKind::Petition, id.parse().unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(serde_json::from_str::<Value>(text).unwrap(), stored.data);
            }
        }
    }
    // A cursor past the end gives nothing; a malformed integer cursor is an error.
    let last = store
        .reseal_scan(ResealTable::Outbox, "", 1000)
        .await
        .unwrap();
    let end = &last.last().unwrap().0;
    assert!(store
        .reseal_scan(ResealTable::Outbox, end, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .reseal_scan(ResealTable::Outbox, "not-a-number", 10)
        .await
        .is_err());
    assert!(store
        .reseal_scan(ResealTable::SmsRecipientPhones, "not-a-pair", 10)
        .await
        .is_err());
}

/// Text that still parses as JSON where the column holds JSON, and differs from `text`.
fn resealed(text: &str, mark: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut o)) => {
            o.insert("_resealed".to_owned(), Value::String(mark.to_owned()));
            Value::Object(o).to_string()
        }
        _ => format!("{text}{mark}"),
    }
}

async fn case_reseal_is_compare_and_set(store: Store) {
    fill_reseal_tables(&store).await;
    for table in ResealTable::ALL {
        let rows = store.reseal_scan(table, "", 1000).await.unwrap();
        let (k0, t0) = rows[0].clone();
        let (k1, t1) = rows[1].clone();
        let new0 = resealed(&t0, "a");
        let new1 = resealed(&t1, "a");
        // One update matches what is stored, one names text that is no longer there.
        let n = store
            .reseal(
                table,
                vec![
                    (k0.clone(), t0.clone(), new0.clone()),
                    (k1.clone(), format!("{t1} (stale)"), new1.clone()),
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 1, "{}: only the current text is replaced", table.name());
        let now: HashMap<String, String> = store
            .reseal_scan(table, "", 1000)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(now[&k0], new0, "{}", table.name());
        assert_eq!(
            now[&k1],
            t1,
            "{}: the stale update changed nothing",
            table.name()
        );
        // A second pass with the text read before the first is stale too.
        let again = store
            .reseal(table, vec![(k0.clone(), t0.clone(), resealed(&t0, "b"))])
            .await
            .unwrap();
        assert_eq!(again, 0, "{}", table.name());
        let row = store.reseal_scan(table, "", 1000).await.unwrap();
        assert_eq!(
            row.iter().find(|(k, _)| *k == k0).unwrap().1,
            new0,
            "{}",
            table.name()
        );
        // Every other row is untouched.
        for (k, t) in &rows[2..] {
            assert_eq!(&now[k], t, "{}", table.name());
        }
        assert_eq!(
            store.reseal(table, vec![]).await.unwrap(),
            0,
            "{}: an empty batch",
            table.name()
        );
    }
    // The record read back is the resealed body.
    let records = store
        .reseal_scan(ResealTable::Records, "", 1)
        .await
        .unwrap();
    let (id, text) = &records[0];
    let stored = store
        .get_record(RecordKind::Petition, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.data, serde_json::from_str::<Value>(text).unwrap());
    assert_eq!(stored.data["_resealed"], "a");
}

async fn case_rotation_cursor_round_trip(store: Store) {
    for table in ResealTable::ALL {
        assert_eq!(store.rotation_cursor(table).await.unwrap(), None);
    }
    store
        .set_rotation_cursor(
            ResealTable::Records,
            "k2",
            "0193f0c2-0000-7000-8000-000000000001",
        )
        .await
        .unwrap();
    store
        .set_rotation_cursor(ResealTable::Outbox, "k2", "42")
        .await
        .unwrap();
    assert_eq!(
        store.rotation_cursor(ResealTable::Records).await.unwrap(),
        Some((
            "k2".to_owned(),
            "0193f0c2-0000-7000-8000-000000000001".to_owned()
        ))
    );
    assert_eq!(
        store.rotation_cursor(ResealTable::Outbox).await.unwrap(),
        Some(("k2".to_owned(), "42".to_owned()))
    );
    assert_eq!(
        store.rotation_cursor(ResealTable::BusQueue).await.unwrap(),
        None
    );
    // Overwritten, by table: a new target key, back to the start.
    store
        .set_rotation_cursor(ResealTable::Outbox, "k3", "")
        .await
        .unwrap();
    assert_eq!(
        store.rotation_cursor(ResealTable::Outbox).await.unwrap(),
        Some(("k3".to_owned(), String::new()))
    );
    assert_eq!(
        store
            .rotation_cursor(ResealTable::Records)
            .await
            .unwrap()
            .unwrap()
            .0,
        "k2"
    );
}

// ---------------------------------------------------------------------------------------------
// Nonces recorded by ingest

async fn case_ingest_refuses_a_reused_nonce_atomically(store: Store) {
    let with_nonce = |item: IngestItem, nonce: &str| IngestItem {
        nonce: Some(("xfbench".to_owned(), nonce.to_owned(), i64::MAX)),
        ..item
    };
    let first = store
        .ingest(with_nonce(sample_petition_item(1), "n-1"))
        .await
        .unwrap();
    assert!(matches!(first, IngestOutcome::Created(_)), "{first:?}");
    // Another record under the same nonce: refused, and nothing of it is stored.
    let replay = store
        .ingest(with_nonce(sample_petition_item(2), "n-1"))
        .await
        .unwrap();
    assert_eq!(replay, IngestOutcome::Replayed);
    let p2 = sample_petition(2);
    assert!(store
        .get_record_by_source(RecordKind::Petition, &p2.source.system, &p2.source.id)
        .await
        .unwrap()
        .is_none());
    // The nonce is also taken for other requests of that client, but free for other clients.
    assert!(!store.use_nonce("xfbench", "n-1", i64::MAX).await.unwrap());
    assert!(store.use_nonce("xfother", "n-1", i64::MAX).await.unwrap());
    // Two requests with one nonce in one commit group: the first wins, the second is refused.
    let (a, b) = tokio::join!(
        store.ingest(with_nonce(sample_petition_item(3), "n-2")),
        store.ingest(with_nonce(sample_petition_item(4), "n-2")),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, IngestOutcome::Created(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == IngestOutcome::Replayed)
            .count(),
        1,
        "{outcomes:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A second writing process (the CLI while a hub runs)

/// The CLI appends audit entries through its own store while a hub's writer has the chain head
/// cached: the hub's next append conflicts on the sequence number, its group is replayed with
/// the head read again, and the chain stays one unbroken line.
async fn case_two_writers_keep_one_audit_chain(hub: Store, url: String) {
    let cli = Store::open(xfhub_store::StoreOptions {
        read_connections: 1,
        ..xfhub_store::StoreOptions::new(url)
    })
    .await
    .expect("second store on the same database");
    for round in 0..5 {
        hub.audit(draft("hub", "petition.submit", &format!("h{round}")))
            .await
            .expect("hub appends");
        cli.audit(draft("cli", "client.add", &format!("c{round}")))
            .await
            .expect("cli appends");
        // The ingest path too: its audit entry follows the other writer's.
        let outcome = hub
            .ingest(IngestItem {
                audit: Some(draft("hub", "petition.submit", "")),
                ..sample_petition_item(900 + round)
            })
            .await
            .expect("ingest after the other writer appended");
        assert!(matches!(outcome, IngestOutcome::Created(_)), "{outcome:?}");
    }
    let rows = audit_all(&hub, 1000).await;
    assert_eq!(rows.len(), 15);
    assert_eq!(verify(&rows), 15);
    cli.close().await;
}

/// Used nonces are refused again after the store is closed and opened (SQLite reloads its
/// replay cache from the log); a nonce whose transaction failed was never used.
async fn case_nonces_survive_a_reopen_and_failed_commits_free_them(store: Store, url: String) {
    let now_ms = xfhub_store::now_ms;
    let later = now_ms() + 600_000;
    assert!(store.use_nonce("xfa", "kept", later).await.unwrap());
    assert!(store
        .use_nonce("xfa", "expired", now_ms() - 1)
        .await
        .unwrap());
    let with_nonce = IngestItem {
        nonce: Some(("xfa".to_owned(), "failed".to_owned(), later)),
        ..sample_petition_item(1)
    };
    let failing = Stmt::new("INSERT INTO audit_log (seq) VALUES ($1)").bind(1_i64);
    let err = store
        .transact(Txn {
            ingests: vec![with_nonce.clone()],
            statements: vec![failing],
            ..Txn::default()
        })
        .await;
    assert!(err.is_err(), "the statement violates NOT NULL");
    store.close().await;

    let store = Store::open(xfhub_store::StoreOptions::new(url))
        .await
        .expect("reopen");
    assert!(
        !store.use_nonce("xfa", "kept", later).await.unwrap(),
        "replay after reopen"
    );
    assert!(
        store.use_nonce("xfa", "expired", later).await.unwrap(),
        "expired: forgotten"
    );
    let out = store.ingest(with_nonce).await.unwrap();
    assert!(
        matches!(out, IngestOutcome::Created(_)),
        "{out:?}: the failed use did not count"
    );
    assert!(!store.use_nonce("xfa", "failed", later).await.unwrap());
}
