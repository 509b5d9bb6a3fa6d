//! Checks shared by the connector suites (`connectors/tests/pull_faults.rs`, and
//! `hub/tests/connectors.rs`, which includes this file by path): the store against the ledger
//! of what a mock served.
#![allow(dead_code)] // reason: each suite uses a subset

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;
use xfhub_mocks::feed::Served;
use xfhub_mocks::provincial::ProvincialMock;
use xfhub_store::{Stmt, Store};

pub async fn stored(store: &Store, system: &str) -> BTreeMap<String, i64> {
    Stmt::new("SELECT source_id, version FROM records WHERE source_system = $1")
        .bind(system)
        .query()
        .fetch_all(store.reader())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>("source_id"), r.get::<i64, _>("version")))
        .collect()
}

/// (source id, version) -> number of messages published for it.
pub async fn published(store: &Store, system: &str) -> HashMap<(String, i64), usize> {
    let rows = Stmt::new("SELECT envelope FROM outbox_messages")
        .query()
        .fetch_all(store.reader())
        .await
        .unwrap();
    let mut out = HashMap::new();
    for r in rows {
        let env: serde_json::Value = serde_json::from_str(&r.get::<String, _>("envelope")).unwrap();
        if env["source_system"] != system {
            continue;
        }
        let id = env["payload"]["data"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let version = env["payload"]["version"].as_i64().unwrap();
        *out.entry((id, version)).or_default() += 1;
    }
    out
}

pub async fn import_errors(
    store: &Store,
    system: &str,
) -> Vec<(Option<String>, serde_json::Value)> {
    Stmt::new(
        "SELECT source_ref, reasons FROM import_errors WHERE source = $1 AND resolved_at IS NULL",
    )
    .bind(system)
    .query()
    .fetch_all(store.reader())
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get::<Option<String>, _>("source_ref"),
            serde_json::from_str(&r.get::<String, _>("reasons")).unwrap(),
        )
    })
    .collect()
}

/// The store holds what the ledger says was served well: (valid records, malformed versions).
pub async fn verify(
    store: &Store,
    system: &str,
    ledger: &BTreeMap<String, Served>,
) -> (usize, usize) {
    let stored = stored(store, system).await;
    let expected: BTreeMap<String, i64> = ledger
        .iter()
        .filter_map(|(id, s)| s.max_valid.map(|v| (id.clone(), i64::from(v))))
        .collect();
    assert_eq!(
        stored.len(),
        expected.len(),
        "{system}: stored {} records, the mock served {} valid ones",
        stored.len(),
        expected.len()
    );
    for (id, v) in &expected {
        assert_eq!(
            stored.get(id),
            Some(v),
            "{system}: {id} should be stored at version {v}"
        );
    }
    let messages = published(store, system).await;
    for ((id, v), n) in &messages {
        assert_eq!(*n, 1, "{system}: {id} v{v} was published {n} times");
    }
    for (id, v) in &expected {
        assert!(
            messages.contains_key(&(id.clone(), *v)),
            "{system}: no message for the stored {id} v{v}"
        );
    }
    let errors = import_errors(store, system).await;
    let mut want: Vec<String> = ledger
        .iter()
        .flat_map(|(id, s)| s.malformed.iter().map(move |v| format!("{id}#{v}")))
        .collect();
    want.sort();
    let mut got: Vec<String> = errors
        .iter()
        .map(|(r, _)| r.clone().unwrap_or_default())
        .collect();
    got.sort();
    assert_eq!(
        got, want,
        "{system}: import errors are exactly the malformed records, once each"
    );
    for (r, reasons) in &errors {
        let list = reasons.as_array().unwrap();
        assert!(!list.is_empty(), "{r:?} has reasons");
        for reason in list {
            for field in ["path", "code", "message", "message_zh"] {
                assert!(
                    reason[field].as_str().is_some_and(|s| !s.is_empty()),
                    "{r:?}: {reason}"
                );
            }
        }
    }
    (expected.len(), want.len())
}

/// The process events of every stored petition are in `process_events`, once each.
pub async fn verify_events(store: &Store, mock: &ProvincialMock) {
    let mut want = 0;
    for (id, v) in stored(store, "provincial").await {
        let index: u64 = id[id.len() - 8..].parse().unwrap();
        want += mock.generator().petition(index, v as u32).events.len() as i64;
    }
    let got: i64 = Stmt::new("SELECT COUNT(*) AS n FROM process_events WHERE actor = 'provincial'")
        .query()
        .fetch_one(store.reader())
        .await
        .unwrap()
        .get("n");
    assert_eq!(got, want, "process events of the stored petitions");
    let sealed: i64 = Stmt::new(
        "SELECT COUNT(*) AS n FROM import_errors WHERE source IN ('provincial', 'hotline12345') \
         AND raw NOT LIKE 'enc:v1:%'",
    )
    .query()
    .fetch_one(store.reader())
    .await
    .unwrap()
    .get("n");
    assert_eq!(sealed, 0, "every stored raw record is sealed");
}
