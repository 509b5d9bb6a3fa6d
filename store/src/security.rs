//! Security data: partner clients, the audit chain, blind-index look-ups, and the rows that
//! re-encryption under a new key walks through. Writes go through the writer (`writer.rs`).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use xfhub_security::audit::AuditEntry;

use crate::ext::SqlValue;
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

/// Columns whose text holds sealed values, walked by key rotation: whole JSON documents with
/// sealed strings inside (records, messages, rejected rows) and single sealed values (the
/// personal numbers of key persons, exchange persons, app accounts, role holders and SMS
/// recipients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResealTable {
    Records,
    Outbox,
    BusQueue,
    DeadLetters,
    ImportErrors,
    KeyPersonIdNumbers,
    KeyPersonMobiles,
    PersonIdNumbers,
    PersonMobiles,
    AppUserIdNumbers,
    AppUserMobiles,
    RoleHolderMobiles,
    SmsRecipientPhones,
}

/// How a reseal column's rows are keyed, for paging and for compare-and-set updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResealKey {
    /// One text column; the cursor is its value.
    Text(&'static str),
    /// One integer column; the cursor is its decimal value.
    Int(&'static str),
    /// Two text columns; the cursor is a JSON array of both values.
    Pair(&'static str, &'static str),
}

impl ResealTable {
    /// In this order: `records` before `outbox`, because rewriting a record's body gives the
    /// outbox message borrowing it its own copy (migration 0011), which the outbox pass then
    /// reseals.
    pub const ALL: [ResealTable; 13] = [
        ResealTable::Records,
        ResealTable::Outbox,
        ResealTable::BusQueue,
        ResealTable::DeadLetters,
        ResealTable::ImportErrors,
        ResealTable::KeyPersonIdNumbers,
        ResealTable::KeyPersonMobiles,
        ResealTable::PersonIdNumbers,
        ResealTable::PersonMobiles,
        ResealTable::AppUserIdNumbers,
        ResealTable::AppUserMobiles,
        ResealTable::RoleHolderMobiles,
        ResealTable::SmsRecipientPhones,
    ];

    /// Name of the walk, unique per column: the table's name where it has one sealed column
    /// (the names rotation cursors were first stored under), `table.column` otherwise.
    pub fn name(self) -> &'static str {
        match self {
            ResealTable::Records => "records",
            ResealTable::Outbox => "outbox",
            ResealTable::BusQueue => "bus_queue",
            ResealTable::DeadLetters => "dead_letters",
            ResealTable::ImportErrors => "import_errors",
            ResealTable::KeyPersonIdNumbers => "key_persons.id_number_sealed",
            ResealTable::KeyPersonMobiles => "key_persons.mobile_sealed",
            ResealTable::PersonIdNumbers => "persons.id_number_sealed",
            ResealTable::PersonMobiles => "persons.mobile_sealed",
            ResealTable::AppUserIdNumbers => "app_users.id_number_sealed",
            ResealTable::AppUserMobiles => "app_users.mobile_sealed",
            ResealTable::RoleHolderMobiles => "role_holders.mobile_sealed",
            ResealTable::SmsRecipientPhones => "sms_recipients.phone_sealed",
        }
    }

    /// (table, key, text column)
    pub(crate) fn columns(self) -> (&'static str, ResealKey, &'static str) {
        use ResealKey::{Int, Pair, Text};
        match self {
            ResealTable::Records => ("records", Text("id"), "body"),
            ResealTable::Outbox => ("outbox", Int("seq"), "envelope"),
            ResealTable::BusQueue => ("bus_queue", Int("id"), "envelope"),
            ResealTable::DeadLetters => ("dead_letters", Int("id"), "envelope"),
            ResealTable::ImportErrors => ("import_errors", Int("id"), "raw"),
            ResealTable::KeyPersonIdNumbers => {
                ("key_persons", Text("id_digest"), "id_number_sealed")
            }
            ResealTable::KeyPersonMobiles => ("key_persons", Text("id_digest"), "mobile_sealed"),
            ResealTable::PersonIdNumbers => ("persons", Text("id"), "id_number_sealed"),
            ResealTable::PersonMobiles => ("persons", Text("id"), "mobile_sealed"),
            ResealTable::AppUserIdNumbers => ("app_users", Text("id"), "id_number_sealed"),
            ResealTable::AppUserMobiles => ("app_users", Text("id"), "mobile_sealed"),
            ResealTable::RoleHolderMobiles => ("role_holders", Text("id"), "mobile_sealed"),
            ResealTable::SmsRecipientPhones => (
                "sms_recipients",
                Pair("message_id", "phone_digest"),
                "phone_sealed",
            ),
        }
    }
}

impl ResealKey {
    /// `key = $n` (and `second = $n+1`) for a row's key, with the values to bind in order.
    pub(crate) fn matching(self, first: usize, cursor: &str) -> Result<(String, Vec<SqlValue>)> {
        Ok(match self {
            ResealKey::Text(c) => (format!("{c} = ${first}"), vec![cursor.into()]),
            ResealKey::Int(c) => (format!("{c} = ${first}"), vec![int_key(cursor)?.into()]),
            ResealKey::Pair(a, b) => {
                let (x, y) = pair_key(cursor)?;
                (
                    format!("{a} = ${first} AND {b} = ${}", first + 1),
                    vec![x.into(), y.into()],
                )
            }
        })
    }
}

fn int_key(k: &str) -> Result<i64> {
    k.parse::<i64>()
        .map_err(|_| StoreError::Corrupt(format!("bad key {k}")))
}

fn pair_key(k: &str) -> Result<(String, String)> {
    serde_json::from_str::<(String, String)>(k)
        .map_err(|_| StoreError::Corrupt(format!("bad key {k}")))
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
        let (tbl, key, col) = table.columns();
        let rows = match key {
            ResealKey::Text(k) | ResealKey::Int(k) => {
                let sql = format!(
                    "SELECT {k} AS k, {col} AS t FROM {tbl} WHERE {k} > $1 AND {col} IS NOT NULL ORDER BY {k} LIMIT $2"
                );
                let q = sqlx::query(&sql);
                let q = match key {
                    ResealKey::Int(_) if after.is_empty() => q.bind(i64::MIN),
                    ResealKey::Int(_) => q.bind(int_key(after)?),
                    _ => q.bind(after),
                };
                q.bind(i64::from(limit)).fetch_all(&self.read).await?
            }
            ResealKey::Pair(a, b) => {
                // Row-value comparison (both backends), on the primary key's index.
                let sql = format!(
                    "SELECT {a} AS k, {b} AS k2, {col} AS t FROM {tbl} \
                     WHERE ({a}, {b}) > ($1, $2) AND {col} IS NOT NULL ORDER BY {a}, {b} LIMIT $3"
                );
                let (x, y) = if after.is_empty() {
                    (String::new(), String::new())
                } else {
                    pair_key(after)?
                };
                sqlx::query(&sql)
                    .bind(x)
                    .bind(y)
                    .bind(i64::from(limit))
                    .fetch_all(&self.read)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                let k = match key {
                    ResealKey::Text(_) => r.try_get::<String, _>("k")?,
                    ResealKey::Int(_) => r.try_get::<i64, _>("k")?.to_string(),
                    ResealKey::Pair(..) => serde_json::to_string(&(
                        r.try_get::<String, _>("k")?,
                        r.try_get::<String, _>("k2")?,
                    ))?,
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
