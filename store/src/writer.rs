//! The group-commit writer: one task, one connection, one transaction per group of operations.
//!
//! Each operation runs inside a savepoint, so an operation that fails is rolled back alone and
//! the others of its group still commit. Answers are sent only after the group's commit returned,
//! which with `synchronous=FULL` / `synchronous_commit=on` means after the disk sync.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use xfhub_schemas::{Envelope, Record};

use crate::{from_ms, now_ms, parse_uuid, RecordKind, Result, Store, StoreError};

type Tx = Transaction<'static, Any>;
type Reply<T> = oneshot::Sender<Result<T>>;

/// A write waiting for the writer.
pub(crate) enum Job {
    Ingest(Box<IngestItem>, Reply<IngestOutcome>),
    Enqueue(EnqueueBatch, Reply<()>),
    Lease(LeaseRequest, Reply<Vec<LeasedMessage>>),
    ResetLeases(String, Reply<u64>),
    Ack(AckRequest, Reply<bool>),
    Retry(RetryRequest, Reply<()>),
    DeadLetter(DeadLetterRequest, Reply<()>),
    Replay(i64, Reply<Option<String>>),
    ImportError(ImportErrorItem, Reply<i64>),
}

/// A validated canonical record to store, with the key columns the hub indexes.
#[derive(Debug, Clone)]
pub struct IngestItem {
    pub kind: RecordKind,
    pub source_system: String,
    pub source_id: String,
    pub version: i64,
    /// SHA-256 of the canonical JSON: the same version with another digest is a conflict.
    pub digest: String,
    pub division: String,
    pub form: Option<String>,
    pub purpose: Option<String>,
    pub content_class: Option<String>,
    pub status: String,
    /// `YYYY-MM-DD`: complaint date of a petition, call date of a work order.
    pub occurred_on: String,
    /// Canonical payload (`Petition` or `WorkOrder`) as JSON.
    pub data: Value,
    /// Correlation id of the inbound request, carried by the message.
    pub correlation_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    Created,
    Updated,
}

/// What the hub answers for a stored submission; a repeat gets the same receipt again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    /// Hub id of the record.
    pub id: Uuid,
    pub kind: String,
    pub source_system: String,
    pub source_id: String,
    pub version: i64,
    pub status: ReceiptStatus,
    /// Id of the message published for this version.
    pub message_id: Uuid,
    /// Position of this change in the change log.
    pub change_seq: i64,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// Outcome of an ingest: only `Created` and `Updated` changed anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Created(Receipt),
    Updated(Receipt),
    /// Same source, version and content as before: the first receipt.
    Duplicate(Receipt),
    /// Same source and version with different content.
    Conflict {
        version: i64,
    },
    /// An older version than the one stored.
    Stale {
        current_version: i64,
    },
}

pub(crate) struct EnqueueBatch {
    pub outbox_seqs: Vec<i64>,
    /// (queue, message id, envelope JSON)
    pub deliveries: Vec<(String, String, String)>,
    /// Message ids that matched no queue (recorded in the trail).
    pub unrouted: Vec<String>,
}

pub(crate) struct LeaseRequest {
    pub queue: String,
    pub max: usize,
    pub lease_ms: i64,
}

/// A message leased to a consumer of the embedded bus.
#[derive(Debug, Clone)]
pub struct LeasedMessage {
    pub row_id: i64,
    pub queue: String,
    pub message_id: String,
    pub envelope: String,
    /// Delivery number of this lease, starting at 1.
    pub attempt: i64,
}

/// A write a consumer makes in the transaction that acks its message.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Record a hop in the message trail.
    Trail {
        message_id: String,
        hop: String,
        queue: Option<String>,
        detail: Option<String>,
    },
    /// Publish a new message through the outbox.
    Publish(Envelope<Value>),
}

pub(crate) struct AckRequest {
    pub consumer: String,
    pub queue: String,
    /// Embedded bus queue row to delete; None when the message came from elsewhere (AMQP).
    pub row_id: Option<i64>,
    pub message_id: String,
    pub attempt: i64,
    pub effects: Vec<Effect>,
}

pub(crate) struct RetryRequest {
    pub row_id: i64,
    pub queue: String,
    pub message_id: String,
    pub attempt: i64,
    pub reason: String,
    pub available_at: i64,
}

pub(crate) struct DeadLetterRequest {
    pub row_id: Option<i64>,
    pub queue: String,
    pub message_id: String,
    pub envelope: String,
    pub attempt: i64,
    pub reason: String,
}

/// A record that could not be mapped or validated, kept with every reason.
#[derive(Debug, Clone)]
pub struct ImportErrorItem {
    pub source: String,
    pub kind: String,
    pub source_ref: Option<String>,
    pub raw: String,
    pub reasons: Value,
}

/// Sends the answer of one operation once its group's fate is known.
type Completion = Box<dyn FnOnce(Option<StoreError>) + Send>;

fn complete<T: Send + 'static>(reply: Reply<T>, result: Result<T>) -> Completion {
    Box::new(move |commit_error| {
        let answer = match (result, commit_error) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(e)) => Err(e),
            (Ok(v), None) => Ok(v),
        };
        // The caller may have gone away (timeout, disconnect); its change stands regardless.
        let _ = reply.send(answer);
    })
}

pub(crate) async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut jobs = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let size = jobs.len();
        commit_group(&pool, jobs.drain(..)).await;
        metrics::histogram!("xfhub_store_group_size").record(size as f64);
        metrics::counter!("xfhub_store_commits_total").increment(1);
    }
    pool.close().await;
    tracing::info!("StoreWriterStopped");
}

async fn commit_group(pool: &AnyPool, jobs: impl Iterator<Item = Job>) {
    let mut completions: Vec<Completion> = Vec::new();
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let err = StoreError::from(e);
            tracing::error!(error = %err, "StoreBeginError");
            for job in jobs {
                fail(job, err.clone());
            }
            return;
        }
    };
    for job in jobs {
        completions.push(apply_in_savepoint(&mut tx, job).await);
    }
    match tx.commit().await {
        Ok(()) => completions.into_iter().for_each(|c| c(None)),
        Err(e) => {
            let err = StoreError::from(e);
            tracing::error!(error = %err, "StoreCommitError");
            completions.into_iter().for_each(|c| c(Some(err.clone())));
        }
    }
}

fn fail(job: Job, err: StoreError) {
    let c = match job {
        Job::Ingest(_, r) => complete(r, Err(err)),
        Job::Enqueue(_, r) => complete(r, Err(err)),
        Job::Lease(_, r) => complete(r, Err(err)),
        Job::ResetLeases(_, r) => complete(r, Err(err)),
        Job::Ack(_, r) => complete(r, Err(err)),
        Job::Retry(_, r) => complete(r, Err(err)),
        Job::DeadLetter(_, r) => complete(r, Err(err)),
        Job::Replay(_, r) => complete(r, Err(err)),
        Job::ImportError(_, r) => complete(r, Err(err)),
    };
    c(None);
}

async fn apply_in_savepoint(tx: &mut Tx, job: Job) -> Completion {
    if let Err(e) = sqlx::query("SAVEPOINT op").execute(&mut **tx).await {
        let err = StoreError::from(e);
        fail(job, err);
        return Box::new(|_| {});
    }
    let (ok, completion) = match job {
        Job::Ingest(item, r) => finish(ingest(tx, *item).await, r),
        Job::Enqueue(b, r) => finish(enqueue(tx, b).await, r),
        Job::Lease(l, r) => finish(lease(tx, l).await, r),
        Job::ResetLeases(q, r) => finish(reset_leases(tx, &q).await, r),
        Job::Ack(a, r) => finish(ack(tx, a).await, r),
        Job::Retry(a, r) => finish(retry(tx, a).await, r),
        Job::DeadLetter(a, r) => finish(dead_letter(tx, a).await, r),
        Job::Replay(id, r) => finish(replay(tx, id).await, r),
        Job::ImportError(i, r) => finish(import_error(tx, i).await, r),
    };
    let end = if ok {
        "RELEASE SAVEPOINT op"
    } else {
        "ROLLBACK TO SAVEPOINT op"
    };
    if let Err(e) = sqlx::query(end).execute(&mut **tx).await {
        // The transaction is in an unknown state: the commit will fail and report to everyone.
        tracing::error!(error = %e, "StoreSavepointError");
    }
    if !ok {
        // A rolled-back savepoint still needs releasing on PostgreSQL to keep nesting flat.
        let _ = sqlx::query("RELEASE SAVEPOINT op").execute(&mut **tx).await;
    }
    completion
}

fn finish<T: Send + 'static>(result: Result<T>, reply: Reply<T>) -> (bool, Completion) {
    (result.is_ok(), complete(reply, result))
}

async fn ingest(tx: &mut Tx, item: IngestItem) -> Result<IngestOutcome> {
    let kind = item.kind.as_str();
    let seen = sqlx::query(
        "SELECT digest, receipt FROM record_versions \
         WHERE kind = $1 AND source_system = $2 AND source_id = $3 AND version = $4",
    )
    .bind(kind)
    .bind(&item.source_system)
    .bind(&item.source_id)
    .bind(item.version)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = seen {
        let digest: String = row.try_get("digest")?;
        if digest != item.digest {
            return Ok(IngestOutcome::Conflict {
                version: item.version,
            });
        }
        let receipt: String = row.try_get("receipt")?;
        return Ok(IngestOutcome::Duplicate(serde_json::from_str(&receipt)?));
    }
    let current = sqlx::query(
        "SELECT id, version, received_at FROM records \
         WHERE kind = $1 AND source_system = $2 AND source_id = $3",
    )
    .bind(kind)
    .bind(&item.source_system)
    .bind(&item.source_id)
    .fetch_optional(&mut **tx)
    .await?;
    let now = now_ms();
    let body = serde_json::to_string(&item.data)?;
    let (id, received_at, status) = match current {
        Some(row) => {
            let version: i64 = row.try_get("version")?;
            if version > item.version {
                return Ok(IngestOutcome::Stale {
                    current_version: version,
                });
            }
            let id = parse_uuid(&row.try_get::<String, _>("id")?)?;
            let received_at: i64 = row.try_get("received_at")?;
            sqlx::query(
                "UPDATE records SET version = $1, division = $2, form = $3, purpose = $4, \
                 content_class = $5, status = $6, occurred_on = $7, body = $8, updated_at = $9 \
                 WHERE id = $10",
            )
            .bind(item.version)
            .bind(&item.division)
            .bind(&item.form)
            .bind(&item.purpose)
            .bind(&item.content_class)
            .bind(&item.status)
            .bind(&item.occurred_on)
            .bind(&body)
            .bind(now)
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
            (id, received_at, ReceiptStatus::Updated)
        }
        None => {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO records (id, kind, source_system, source_id, version, division, form, \
                 purpose, content_class, status, occurred_on, body, received_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(id.to_string())
            .bind(kind)
            .bind(&item.source_system)
            .bind(&item.source_id)
            .bind(item.version)
            .bind(&item.division)
            .bind(&item.form)
            .bind(&item.purpose)
            .bind(&item.content_class)
            .bind(&item.status)
            .bind(&item.occurred_on)
            .bind(&body)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            (id, now, ReceiptStatus::Created)
        }
    };
    let op = match status {
        ReceiptStatus::Created => "I",
        ReceiptStatus::Updated => "U",
    };
    let seq: i64 = sqlx::query(
        "INSERT INTO change_log (record_id, kind, op, version, changed_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
    )
    .bind(id.to_string())
    .bind(kind)
    .bind(op)
    .bind(item.version)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("seq")?;

    let message_type = match status {
        ReceiptStatus::Created => format!("{kind}.received"),
        ReceiptStatus::Updated => format!("{kind}.updated"),
    };
    let record = Record {
        id,
        kind: kind.to_owned(),
        version: item.version,
        status: item.status.clone(),
        received_at: from_ms(received_at),
        updated_at: from_ms(now),
        data: item.data,
    };
    let mut envelope = Envelope::new(
        &message_type,
        &item.source_system,
        &item.division,
        serde_json::to_value(&record)?,
    );
    if let Some(c) = item.correlation_id {
        envelope.correlation_id = c;
    }
    insert_outbox(tx, &envelope).await?;

    let receipt = Receipt {
        id,
        kind: kind.to_owned(),
        source_system: item.source_system.clone(),
        source_id: item.source_id.clone(),
        version: item.version,
        status,
        message_id: envelope.message_id,
        change_seq: seq,
        received_at: from_ms(now),
    };
    sqlx::query(
        "INSERT INTO record_versions (kind, source_system, source_id, version, digest, receipt) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(kind)
    .bind(&item.source_system)
    .bind(&item.source_id)
    .bind(item.version)
    .bind(&item.digest)
    .bind(serde_json::to_string(&receipt)?)
    .execute(&mut **tx)
    .await?;
    Ok(match status {
        ReceiptStatus::Created => IngestOutcome::Created(receipt),
        ReceiptStatus::Updated => IngestOutcome::Updated(receipt),
    })
}

async fn insert_outbox(tx: &mut Tx, envelope: &Envelope<Value>) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (message_id, message_type, routing_key, envelope, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(envelope.message_id.to_string())
    .bind(&envelope.message_type)
    .bind(envelope.routing_key())
    .bind(serde_json::to_string(envelope)?)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn trail(
    tx: &mut Tx,
    message_id: &str,
    hop: &str,
    queue: Option<&str>,
    attempt: Option<i64>,
    detail: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_trail (message_id, hop, queue, attempt, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(message_id)
    .bind(hop)
    .bind(queue)
    .bind(attempt)
    .bind(detail)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn enqueue(tx: &mut Tx, batch: EnqueueBatch) -> Result<()> {
    let now = now_ms();
    for (queue, message_id, envelope) in &batch.deliveries {
        sqlx::query(
            "INSERT INTO bus_queue (queue, message_id, envelope, attempts, available_at, enqueued_at) \
             VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (queue, message_id) DO NOTHING",
        )
        .bind(queue)
        .bind(message_id)
        .bind(envelope)
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        trail(tx, message_id, "published", Some(queue), None, None).await?;
    }
    for message_id in &batch.unrouted {
        trail(tx, message_id, "published", None, None, Some("no route")).await?;
    }
    if !batch.outbox_seqs.is_empty() {
        // Integers only: formatting them into the statement cannot inject anything.
        let ids: Vec<String> = batch.outbox_seqs.iter().map(i64::to_string).collect();
        sqlx::query(&format!(
            "UPDATE outbox SET sent_at = $1 WHERE seq IN ({})",
            ids.join(",")
        ))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn leased(row: &AnyRow, queue: &str) -> Result<LeasedMessage> {
    Ok(LeasedMessage {
        row_id: row.try_get("id")?,
        queue: queue.to_owned(),
        message_id: row.try_get("message_id")?,
        envelope: row.try_get("envelope")?,
        attempt: row.try_get::<i64, _>("attempts")? + 1,
    })
}

async fn lease(tx: &mut Tx, req: LeaseRequest) -> Result<Vec<LeasedMessage>> {
    let now = now_ms();
    let rows = sqlx::query(
        "SELECT id, message_id, envelope, attempts FROM bus_queue \
         WHERE queue = $1 AND available_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
         ORDER BY available_at, id LIMIT $3",
    )
    .bind(&req.queue)
    .bind(now)
    .bind(req.max as i64)
    .fetch_all(&mut **tx)
    .await?;
    let out = rows
        .iter()
        .map(|r| leased(r, &req.queue))
        .collect::<Result<Vec<_>>>()?;
    if out.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = out.iter().map(|m| m.row_id.to_string()).collect();
    sqlx::query(&format!(
        "UPDATE bus_queue SET attempts = attempts + 1, lease_until = $1 WHERE id IN ({})",
        ids.join(",")
    ))
    .bind(now + req.lease_ms)
    .execute(&mut **tx)
    .await?;
    for m in &out {
        trail(
            tx,
            &m.message_id,
            "delivered",
            Some(&m.queue),
            Some(m.attempt),
            None,
        )
        .await?;
    }
    Ok(out)
}

async fn reset_leases(tx: &mut Tx, queue: &str) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE bus_queue SET lease_until = NULL WHERE queue = $1 AND lease_until IS NOT NULL",
    )
    .bind(queue)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

async fn ack(tx: &mut Tx, req: AckRequest) -> Result<bool> {
    let fresh = sqlx::query(
        "INSERT INTO consumer_dedup (consumer, message_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, message_id) DO NOTHING",
    )
    .bind(&req.consumer)
    .bind(&req.message_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if fresh {
        for effect in &req.effects {
            match effect {
                Effect::Trail {
                    message_id,
                    hop,
                    queue,
                    detail,
                } => {
                    trail(
                        tx,
                        message_id,
                        hop,
                        queue.as_deref(),
                        Some(req.attempt),
                        detail.as_deref(),
                    )
                    .await?
                }
                Effect::Publish(envelope) => insert_outbox(tx, envelope).await?,
            }
        }
    }
    if let Some(row_id) = req.row_id {
        sqlx::query("DELETE FROM bus_queue WHERE id = $1")
            .bind(row_id)
            .execute(&mut **tx)
            .await?;
    }
    let detail = if fresh {
        None
    } else {
        Some("duplicate: no second effect")
    };
    trail(
        tx,
        &req.message_id,
        "acked",
        Some(&req.queue),
        Some(req.attempt),
        detail,
    )
    .await?;
    Ok(fresh)
}

async fn retry(tx: &mut Tx, req: RetryRequest) -> Result<()> {
    sqlx::query(
        "UPDATE bus_queue SET available_at = $1, lease_until = NULL, last_error = $2 WHERE id = $3",
    )
    .bind(req.available_at)
    .bind(&req.reason)
    .bind(req.row_id)
    .execute(&mut **tx)
    .await?;
    trail(
        tx,
        &req.message_id,
        "retry_scheduled",
        Some(&req.queue),
        Some(req.attempt),
        Some(&req.reason),
    )
    .await
}

async fn dead_letter(tx: &mut Tx, req: DeadLetterRequest) -> Result<()> {
    sqlx::query(
        "INSERT INTO dead_letters (queue, message_id, envelope, reason, attempts, failed_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&req.queue)
    .bind(&req.message_id)
    .bind(&req.envelope)
    .bind(&req.reason)
    .bind(req.attempt)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    if let Some(row_id) = req.row_id {
        sqlx::query("DELETE FROM bus_queue WHERE id = $1")
            .bind(row_id)
            .execute(&mut **tx)
            .await?;
    }
    trail(
        tx,
        &req.message_id,
        "dead_lettered",
        Some(&req.queue),
        Some(req.attempt),
        Some(&req.reason),
    )
    .await
}

async fn replay(tx: &mut Tx, id: i64) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT queue, message_id, envelope FROM dead_letters WHERE id = $1 AND replayed_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let queue: String = row.try_get("queue")?;
    let message_id: String = row.try_get("message_id")?;
    let envelope: String = row.try_get("envelope")?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO bus_queue (queue, message_id, envelope, attempts, available_at, enqueued_at) \
         VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (queue, message_id) DO NOTHING",
    )
    .bind(&queue)
    .bind(&message_id)
    .bind(&envelope)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE dead_letters SET replayed_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    trail(
        tx,
        &message_id,
        "replayed",
        Some(&queue),
        None,
        Some(&format!("dead letter {id}")),
    )
    .await?;
    Ok(Some(queue))
}

async fn import_error(tx: &mut Tx, item: ImportErrorItem) -> Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO import_errors (source, kind, source_ref, raw, reasons, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&item.source)
    .bind(&item.kind)
    .bind(&item.source_ref)
    .bind(&item.raw)
    .bind(serde_json::to_string(&item.reasons)?)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?)
}

/// Write operations. Each returns once its group has committed.
impl Store {
    /// Stores a validated record and its outbox message, idempotently by source and version.
    pub async fn ingest(&self, item: IngestItem) -> Result<IngestOutcome> {
        self.submit(|r| Job::Ingest(Box::new(item), r)).await
    }

    /// Moves relayed outbox rows into embedded-bus queues and marks them sent, atomically.
    pub async fn enqueue(
        &self,
        outbox_seqs: Vec<i64>,
        deliveries: Vec<(String, String, String)>,
        unrouted: Vec<String>,
    ) -> Result<()> {
        let batch = EnqueueBatch {
            outbox_seqs,
            deliveries,
            unrouted,
        };
        self.submit(|r| Job::Enqueue(batch, r)).await
    }

    /// Leases up to `max` ready messages of `queue` for `lease_ms`.
    pub async fn lease(
        &self,
        queue: &str,
        max: usize,
        lease_ms: i64,
    ) -> Result<Vec<LeasedMessage>> {
        let req = LeaseRequest {
            queue: queue.to_owned(),
            max,
            lease_ms,
        };
        self.submit(|r| Job::Lease(req, r)).await
    }

    /// Releases every lease of `queue` (at consumer start-up: the previous holder is gone).
    pub async fn reset_leases(&self, queue: &str) -> Result<u64> {
        let q = queue.to_owned();
        self.submit(|r| Job::ResetLeases(q, r)).await
    }

    /// Records (consumer, message), applies the effects unless that pair was already recorded,
    /// and removes the message from its queue: one transaction. Returns false for a duplicate.
    pub async fn ack(
        &self,
        consumer: &str,
        queue: &str,
        row_id: Option<i64>,
        message_id: &str,
        attempt: i64,
        effects: Vec<Effect>,
    ) -> Result<bool> {
        let req = AckRequest {
            consumer: consumer.to_owned(),
            queue: queue.to_owned(),
            row_id,
            message_id: message_id.to_owned(),
            attempt,
            effects,
        };
        self.submit(|r| Job::Ack(req, r)).await
    }

    /// Makes a leased message available again at `available_at` (ms), recording the reason.
    pub async fn retry_later(
        &self,
        msg: &LeasedMessage,
        reason: &str,
        available_at: i64,
    ) -> Result<()> {
        let req = RetryRequest {
            row_id: msg.row_id,
            queue: msg.queue.clone(),
            message_id: msg.message_id.clone(),
            attempt: msg.attempt,
            reason: reason.to_owned(),
            available_at,
        };
        self.submit(|r| Job::Retry(req, r)).await
    }

    /// Moves a message to the dead letters with its reason.
    pub async fn dead_letter(
        &self,
        queue: &str,
        row_id: Option<i64>,
        message_id: &str,
        envelope: &str,
        attempt: i64,
        reason: &str,
    ) -> Result<()> {
        let req = DeadLetterRequest {
            row_id,
            queue: queue.to_owned(),
            message_id: message_id.to_owned(),
            envelope: envelope.to_owned(),
            attempt,
            reason: reason.to_owned(),
        };
        self.submit(|r| Job::DeadLetter(req, r)).await
    }

    /// Puts a dead letter back on its queue. Returns the queue, or None if there is no such
    /// dead letter or it was replayed already.
    pub async fn replay_dead_letter(&self, id: i64) -> Result<Option<String>> {
        self.submit(|r| Job::Replay(id, r)).await
    }

    /// Keeps a record that failed mapping or validation, with its raw form and every reason.
    pub async fn record_import_error(&self, item: ImportErrorItem) -> Result<i64> {
        self.submit(|r| Job::ImportError(item, r)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completion_reports_commit_error_over_success() {
        let (tx, rx) = oneshot::channel::<Result<u8>>();
        complete(tx, Ok(1))(Some(StoreError::Closed));
        assert!(matches!(rx.await.unwrap(), Err(StoreError::Closed)));
    }
}
