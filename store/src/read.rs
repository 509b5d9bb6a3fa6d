//! Reads: records with filters and cursor paging, outbox, trail, dead letters, import errors.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::writer::OUTBOX_ENVELOPE;
use crate::{from_ms, parse_uuid, RecordKind, Result, Store};

/// A stored record with its bookkeeping, canonical data as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub id: Uuid,
    pub kind: String,
    pub source_system: String,
    pub source_id: String,
    pub version: i64,
    pub status: String,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub data: Value,
}

/// Filters over the indexed key columns. Every filter is optional; they combine with AND.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub division: Option<String>,
    pub form: Option<String>,
    pub purpose: Option<String>,
    /// Matches content classes starting with this prefix (`03` = every 城乡建设 class).
    pub content_class_prefix: Option<String>,
    /// Inclusive `YYYY-MM-DD` bounds on the complaint (or call) date.
    pub from: Option<String>,
    pub to: Option<String>,
    pub status: Option<String>,
    /// Return records with ids below this one (ids are time-ordered UUIDv7; newest first).
    pub before: Option<Uuid>,
    /// Only records of these divisions (a caller's division scope); None = no restriction.
    pub divisions: Option<Vec<String>>,
    /// Only records whose blind index has this (field, digest): exact look-up of an identity
    /// or phone number without storing it in clear.
    pub blind: Option<(String, String)>,
    pub limit: u32,
}

/// A page of records and the cursor of the next page, if any.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<StoredRecord>,
    pub next: Option<Uuid>,
}

/// A row of the outbox not yet published.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub seq: i64,
    pub message_id: String,
    pub message_type: String,
    pub routing_key: String,
    pub envelope: String,
}

/// One hop of a message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrailHop {
    pub hop: String,
    pub queue: Option<String>,
    pub attempt: Option<i64>,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub queue: String,
    pub message_id: String,
    pub reason: String,
    pub attempts: i64,
    pub failed_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
    /// The message as it was when it failed; a JSON string holding the raw text when it was not
    /// JSON (a poison message).
    #[schema(value_type = Object)]
    pub envelope: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportError {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub source_ref: Option<String>,
    pub raw: String,
    #[schema(value_type = Object)]
    pub reasons: Value,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

const RECORD_COLUMNS: &str =
    "id, kind, source_system, source_id, version, status, received_at, updated_at, body";

fn record(row: &AnyRow) -> Result<StoredRecord> {
    Ok(StoredRecord {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        kind: row.try_get("kind")?,
        source_system: row.try_get("source_system")?,
        source_id: row.try_get("source_id")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        received_at: from_ms(row.try_get("received_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
        data: serde_json::from_str(&row.try_get::<String, _>("body")?)?,
    })
}

/// A dead letter's envelope as JSON; a poison message's unreadable text as a JSON string, so
/// that one poison message does not make every dead letter unlistable.
fn envelope_value(raw: String) -> Value {
    serde_json::from_str(&raw).unwrap_or(Value::String(raw))
}

fn opt_time(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(from_ms))
}

impl Store {
    pub async fn get_record(&self, kind: RecordKind, id: Uuid) -> Result<Option<StoredRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE id = $1 AND kind = $2"
        ))
        .bind(id.to_string())
        .bind(kind.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(record).transpose()
    }

    pub async fn get_record_by_source(
        &self,
        kind: RecordKind,
        source_system: &str,
        source_id: &str,
    ) -> Result<Option<StoredRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM records \
             WHERE kind = $1 AND source_system = $2 AND source_id = $3"
        ))
        .bind(kind.as_str())
        .bind(source_system)
        .bind(source_id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(record).transpose()
    }

    /// Records of `kind`, newest first, filtered, one page at a time.
    pub async fn list_records(&self, kind: RecordKind, q: &ListQuery) -> Result<Page> {
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE kind = $1");
        let mut args: Vec<String> = vec![kind.as_str().to_owned()];
        let mut push = |clause: &str, value: String| {
            args.push(value);
            sql.push_str(&format!(" AND {clause} ${}", args.len()));
        };
        if let Some(v) = &q.division {
            push("division =", v.clone());
        }
        if let Some(v) = &q.form {
            push("form =", v.clone());
        }
        if let Some(v) = &q.purpose {
            push("purpose =", v.clone());
        }
        if let Some(v) = &q.content_class_prefix {
            // Prefixes are digits only (checked at the edge). Not a range `>= v AND < v||'\x7f'`:
            // under a language collation (PostgreSQL with en_US or ICU) DEL sorts before digits
            // and the range matches nothing.
            let len = v.chars().count();
            push(&format!("substr(content_class, 1, {len}) ="), v.clone());
        }
        if let Some(v) = &q.from {
            push("occurred_on >=", v.clone());
        }
        if let Some(v) = &q.to {
            push("occurred_on <=", v.clone());
        }
        if let Some(v) = &q.status {
            push("status =", v.clone());
        }
        if let Some(v) = &q.before {
            push("id <", v.to_string());
        }
        if let Some(divisions) = &q.divisions {
            if divisions.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                let mut marks = Vec::new();
                for d in divisions {
                    args.push(d.clone());
                    marks.push(format!("${}", args.len()));
                }
                sql.push_str(&format!(" AND division IN ({})", marks.join(", ")));
            }
        }
        if let Some((field, digest)) = &q.blind {
            args.push(field.clone());
            args.push(crate::pii_key(digest).to_owned());
            sql.push_str(&format!(
                " AND id IN (SELECT record_id FROM pii_index WHERE field = ${} AND digest = ${})",
                args.len() - 1,
                args.len()
            ));
        }
        let limit = q.limit.clamp(1, 500);
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
        let mut query = sqlx::query(&sql);
        for a in &args {
            query = query.bind(a);
        }
        let rows = query.fetch_all(&self.read).await?;
        let mut items = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Unpublished outbox rows, oldest first.
    pub async fn outbox_unsent(&self, limit: u32) -> Result<Vec<OutboxRow>> {
        self.outbox_unsent_after(0, limit).await
    }

    /// Like [`Store::outbox_unsent`], only rows after sequence `after` (the relay skips the
    /// rows whose publish it has started and not finished).
    pub async fn outbox_unsent_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        // Built once: the relay polls with it.
        static UNSENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT o.seq, o.message_id, o.message_type, o.routing_key, {OUTBOX_ENVELOPE} AS envelope \
                 FROM outbox o LEFT JOIN records r ON r.id = o.body_record \
                 WHERE o.sent_at IS NULL AND o.seq > $2 ORDER BY o.seq LIMIT $1",
            )
        });
        let rows = sqlx::query(&UNSENT)
            .bind(i64::from(limit))
            .bind(after)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    seq: r.try_get("seq")?,
                    message_id: r.try_get("message_id")?,
                    message_type: r.try_get("message_type")?,
                    routing_key: r.try_get("routing_key")?,
                    envelope: r.try_get("envelope")?,
                })
            })
            .collect()
    }

    /// Every hop of a message, in order.
    pub async fn trail(&self, message_id: &str) -> Result<Vec<TrailHop>> {
        let rows = sqlx::query(
            "SELECT hop, queue, attempt, detail, at FROM message_trail \
             WHERE message_id = $1 ORDER BY id",
        )
        .bind(message_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrailHop {
                    hop: r.try_get("hop")?,
                    queue: r.try_get("queue")?,
                    attempt: r.try_get("attempt")?,
                    detail: r.try_get("detail")?,
                    at: from_ms(r.try_get("at")?),
                })
            })
            .collect()
    }

    /// Count of trail hops named `hop` for `queue` (used to prove effects happened once).
    pub async fn count_hops(&self, hop: &str, queue: &str) -> Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM message_trail WHERE hop = $1 AND queue = $2")
                .bind(hop)
                .bind(queue)
                .fetch_one(&self.read)
                .await?
                .try_get("n")?,
        )
    }

    /// Dead letters, newest first; `open_only` hides replayed ones.
    pub async fn dead_letters(&self, open_only: bool, limit: u32) -> Result<Vec<DeadLetter>> {
        let filter = if open_only {
            "WHERE replayed_at IS NULL"
        } else {
            ""
        };
        let rows = sqlx::query(&format!(
            "SELECT id, queue, message_id, envelope, reason, attempts, failed_at, replayed_at \
             FROM dead_letters {filter} ORDER BY id DESC LIMIT $1"
        ))
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    queue: r.try_get("queue")?,
                    message_id: r.try_get("message_id")?,
                    reason: r.try_get("reason")?,
                    attempts: r.try_get("attempts")?,
                    failed_at: from_ms(r.try_get("failed_at")?),
                    replayed_at: opt_time(r, "replayed_at")?,
                    envelope: envelope_value(r.try_get("envelope")?),
                })
            })
            .collect()
    }

    /// Import errors not yet resolved, oldest first.
    pub async fn import_errors(&self, limit: u32) -> Result<Vec<ImportError>> {
        let rows = sqlx::query(
            "SELECT id, source, kind, source_ref, raw, reasons, created_at, resolved_at \
             FROM import_errors WHERE resolved_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ImportError {
                    id: r.try_get("id")?,
                    source: r.try_get("source")?,
                    kind: r.try_get("kind")?,
                    source_ref: r.try_get("source_ref")?,
                    raw: r.try_get("raw")?,
                    reasons: serde_json::from_str(&r.try_get::<String, _>("reasons")?)?,
                    created_at: from_ms(r.try_get("created_at")?),
                    resolved_at: opt_time(r, "resolved_at")?,
                })
            })
            .collect()
    }

    /// Change log entries after `seq`, in order: (seq, record id, kind, op, version).
    pub async fn changes_since(
        &self,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Uuid, String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT seq, record_id, kind, op, version FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("seq")?,
                    parse_uuid(&r.try_get::<String, _>("record_id")?)?,
                    r.try_get("kind")?,
                    r.try_get("op")?,
                    r.try_get("version")?,
                ))
            })
            .collect()
    }

    /// Messages waiting in each embedded-bus queue (ready or leased), and unsent outbox rows.
    pub async fn depths(&self) -> Result<(Vec<(String, i64)>, i64)> {
        let rows = sqlx::query("SELECT queue, COUNT(*) AS n FROM bus_queue GROUP BY queue")
            .fetch_all(&self.read)
            .await?;
        let queues = rows
            .iter()
            .map(|r| Ok((r.try_get("queue")?, r.try_get("n")?)))
            .collect::<Result<Vec<_>>>()?;
        let outbox: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&self.read)
            .await?
            .try_get("n")?;
        Ok((queues, outbox))
    }

    /// Earliest time (ms) a message of `queue` becomes ready, if any waits.
    pub async fn next_ready_at(&self, queue: &str) -> Result<Option<i64>> {
        Ok(sqlx::query(
            "SELECT MIN(CASE WHEN lease_until IS NULL OR lease_until < available_at \
             THEN available_at ELSE lease_until END) AS t FROM bus_queue WHERE queue = $1",
        )
        .bind(queue)
        .fetch_one(&self.read)
        .await?
        .try_get("t")?)
    }
}
