//! Security data: partner clients, the audit chain, blind-index look-ups, and the rows that
//! re-encryption under a new key walks through. Writes go through the writer (`writer.rs`).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use xfhub_security::audit::AuditEntry;

use crate::{Result, Store, StoreError};

/// A partner system allowed to call the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub app_key: String,
    pub name: String,
    /// The signing secret, sealed with the key ring (never stored in clear).
    pub secret_sealed: String,
    /// The previous secret after a rotation, valid until `old_valid_until_ms`.
    pub old_secret_sealed: Option<String>,
    pub old_valid_until_ms: Option<i64>,
    pub scopes: Vec<String>,
    pub info_sets: Vec<String>,
    /// Division codes; `*` = all.
    pub divisions: Vec<String>,
    pub disabled: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An audit entry before the writer numbers and chains it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDraft {
    /// Who: an app key, `cli`, or `anonymous`.
    pub actor: String,
    /// What: `petition.submit`, `client.add`, `auth.denied`, ...
    pub action: String,
    /// On what: a record id, an app key, a route.
    pub target: String,
    /// How it ended: `created`, `ok`, `denied: bad signature`, ...
    pub outcome: String,
    /// From where: the peer address.
    pub remote: String,
    /// Anything else worth keeping; never personal data.
    pub detail: String,
}

/// A stored audit entry with the hashes that chain it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// Tables whose text holds sealed values, walked by key rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResealTable {
    Records,
    Outbox,
    BusQueue,
    DeadLetters,
    ImportErrors,
}

impl ResealTable {
    pub const ALL: [ResealTable; 5] = [
        ResealTable::Records,
        ResealTable::Outbox,
        ResealTable::BusQueue,
        ResealTable::DeadLetters,
        ResealTable::ImportErrors,
    ];

    pub fn name(self) -> &'static str {
        self.columns().0
    }

    /// (table, key column, text column, key is an integer)
    pub(crate) fn columns(self) -> (&'static str, &'static str, &'static str, bool) {
        match self {
            ResealTable::Records => ("records", "id", "body", false),
            ResealTable::Outbox => ("outbox", "seq", "envelope", true),
            ResealTable::BusQueue => ("bus_queue", "id", "envelope", true),
            ResealTable::DeadLetters => ("dead_letters", "id", "envelope", true),
            ResealTable::ImportErrors => ("import_errors", "id", "raw", true),
        }
    }
}

fn client(row: &AnyRow) -> Result<ClientRecord> {
    let list = |col: &str| -> Result<Vec<String>> {
        Ok(serde_json::from_str(&row.try_get::<String, _>(col)?)?)
    };
    Ok(ClientRecord {
        app_key: row.try_get("app_key")?,
        name: row.try_get("name")?,
        secret_sealed: row.try_get("secret_sealed")?,
        old_secret_sealed: row.try_get("old_secret_sealed")?,
        old_valid_until_ms: row.try_get("old_valid_until")?,
        scopes: list("scopes")?,
        info_sets: list("info_sets")?,
        divisions: list("divisions")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

const CLIENT_COLUMNS: &str = "app_key, name, secret_sealed, old_secret_sealed, old_valid_until, \
                              scopes, info_sets, divisions, disabled, created_at, updated_at";

impl Store {
    pub async fn get_client(&self, app_key: &str) -> Result<Option<ClientRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE app_key = $1"
        ))
        .bind(app_key)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(client).transpose()
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY created_at, app_key"
        ))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(client).collect()
    }

    /// Audit entries after `after_seq`, in order, at most `limit`.
    pub async fn audit_page(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, outcome, remote, detail, prev_hash, hash \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    entry: AuditEntry {
                        seq: r.try_get("seq")?,
                        at_ms: r.try_get("at")?,
                        actor: r.try_get("actor")?,
                        action: r.try_get("action")?,
                        target: r.try_get("target")?,
                        outcome: r.try_get("outcome")?,
                        remote: r.try_get("remote")?,
                        detail: r.try_get("detail")?,
                    },
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Rows of `table` with keys after `after` (in key order), with their sealed text column.
    pub async fn reseal_scan(
        &self,
        table: ResealTable,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>> {
        let (tbl, key, col, int_key) = table.columns();
        let sql = format!(
            "SELECT {key} AS k, {col} AS t FROM {tbl} WHERE {key} > $1 AND {col} IS NOT NULL ORDER BY {key} LIMIT $2"
        );
        let q = sqlx::query(&sql);
        let q = if int_key {
            q.bind(if after.is_empty() {
                i64::MIN
            } else {
                after
                    .parse::<i64>()
                    .map_err(|_| StoreError::Corrupt(format!("bad cursor {after}")))?
            })
        } else {
            q.bind(after)
        };
        let rows = q.bind(i64::from(limit)).fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let k = if int_key {
                    r.try_get::<i64, _>("k")?.to_string()
                } else {
                    r.try_get::<String, _>("k")?
                };
                Ok((k, r.try_get("t")?))
            })
            .collect()
    }

    /// Where re-encryption of `table` stopped: (target key id, cursor).
    pub async fn rotation_cursor(&self, table: ResealTable) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT target_key, cursor FROM key_rotation WHERE table_name = $1")
            .bind(table.name())
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| Ok((r.try_get("target_key")?, r.try_get("cursor")?)))
            .transpose()
    }
}
