//! The group-commit writer: one task, one connection, one transaction per group of operations.
//!
//! A group is first applied in batched statements (all its ingests in one statement per table,
//! all its acks likewise); if a statement fails, the group is rolled back and applied again one
//! operation per savepoint, so that only the failing operation fails. Answers are sent only
//! after the group's commit returned, which with `synchronous=FULL` / `synchronous_commit=on`
//! means after the disk sync.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use xfhub_schemas::{Envelope, Record};

use crate::ext::{Stmt, Txn, TxnOutcome};
use crate::nonces::NonceCache;
use crate::security::{AuditDraft, ClientRecord, ResealTable};
use crate::{from_ms, now_ms, parse_uuid, RecordKind, Result, Store, StoreError};

type Tx = Transaction<'static, Any>;
type Reply<T> = oneshot::Sender<Result<T>>;

/// A write waiting for the writer.
pub(crate) enum Job {
    Ingest(Box<IngestItem>, Reply<IngestOutcome>),
    Enqueue(EnqueueBatch, Reply<()>),
    Lease(LeaseRequest, Reply<Vec<LeasedMessage>>),
    ResetLeases(String, Reply<u64>),
    Release(Vec<(i64, String, String)>, Reply<u64>),
    Ack(AckRequest, Reply<bool>),
    Retry(RetryRequest, Reply<()>),
    DeadLetter(DeadLetterRequest, Reply<()>),
    Replay(i64, Reply<Option<String>>),
    ImportError(ImportErrorItem, Reply<i64>),
    Audit(AuditDraft, Reply<i64>),
    UseNonce(String, String, i64, Reply<bool>),
    PutClient(Box<ClientRecord>, AuditDraft, Reply<()>),
    Reseal(ResealTable, Vec<(String, String, String)>, Reply<u64>),
    RotationCursor(ResealTable, String, String, Reply<()>),
    Txn(Box<Txn>, Reply<TxnOutcome>),
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
    /// Canonical payload (`Petition` or `WorkOrder`), sealed, as JSON text: the record's body
    /// and its message's data. Serialized by whoever builds the item, not by the writer, whose
    /// thread every commit waits for (serializing and freeing documents there held up every
    /// commit of an import).
    pub data: Box<RawValue>,
    /// Correlation id of the inbound request, carried by the message.
    pub correlation_id: Option<Uuid>,
    /// Blind-index entries (field, keyed digest) of the personal data in `data`.
    pub blind: Vec<(String, String)>,
    /// Audit entry written with the outcome, in the same transaction.
    pub audit: Option<AuditDraft>,
    /// (app key, nonce, expires at ms) of the signed request, recorded in the same transaction:
    /// a replay is refused atomically and costs no commit of its own.
    pub nonce: Option<(String, String, i64)>,
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
    /// The request's nonce was used before: a replayed request, nothing stored.
    Replayed,
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
    /// Publish a new message through the outbox (not again if its id is there already).
    Publish(Envelope<Value>),
    /// Write to the consumer's own tables (see [`crate::ext`]).
    Sql(Stmt),
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
    /// The input as received. It may hold personal data: callers store it sealed
    /// (`KeyRing::seal_bytes`); the admin listing opens it only for `pii:read`.
    pub raw: String,
    /// Every reason, as field errors; never personal data.
    pub reasons: Value,
}

/// The answer of one operation.
enum Output {
    Ingest(IngestOutcome),
    Unit,
    Leased(Vec<LeasedMessage>),
    Count(u64),
    Bool(bool),
    Queue(Option<String>),
    Id(i64),
    Txn(TxnOutcome),
}

fn deliver(job: Job, result: Result<Output>) {
    // A caller that went away (timeout, disconnect) gets no answer; its change stands regardless.
    macro_rules! send {
        ($r:expr, $pat:pat => $v:expr) => {{
            let _ = $r.send(result.and_then(|o| match o {
                $pat => Ok($v),
                _ => Err(StoreError::Corrupt(
                    "writer answered with the wrong kind".into(),
                )),
            }));
        }};
    }
    match job {
        Job::Ingest(_, r) => send!(r, Output::Ingest(v) => v),
        Job::Enqueue(_, r)
        | Job::Retry(_, r)
        | Job::DeadLetter(_, r)
        | Job::PutClient(_, _, r)
        | Job::RotationCursor(_, _, _, r) => send!(r, Output::Unit => ()),
        Job::Audit(_, r) => send!(r, Output::Id(v) => v),
        Job::UseNonce(_, _, _, r) => send!(r, Output::Bool(v) => v),
        Job::Reseal(_, _, r) => send!(r, Output::Count(v) => v),
        Job::Lease(_, r) => send!(r, Output::Leased(v) => v),
        Job::ResetLeases(_, r) | Job::Release(_, r) => send!(r, Output::Count(v) => v),
        Job::Ack(_, r) => send!(r, Output::Bool(v) => v),
        Job::Replay(_, r) => send!(r, Output::Queue(v) => v),
        Job::ImportError(_, r) => send!(r, Output::Id(v) => v),
        Job::Txn(_, r) => send!(r, Output::Txn(v) => v),
    }
}

/// What the writer remembers between groups: the next change-log sequence. The writer assigns
/// sequences itself (one writer), so a whole group's change-log rows go in one statement and
/// every receipt still knows its sequence.
#[derive(Debug, Clone, Default)]
struct WriterState {
    next_change_seq: Option<i64>,
    /// (seq, hash) of the last audit entry: the chain continues from it.
    audit_head: Option<(i64, String)>,
    /// SQLite: the replay cache of nonces (see `nonces.rs`); shared by the clones a group
    /// makes, undone through its journal when a transaction fails. None on PostgreSQL.
    nonces: Option<Arc<Mutex<NonceCache>>>,
}

impl WriterState {
    fn new(sqlite: bool) -> Self {
        WriterState {
            nonces: sqlite.then(Default::default),
            ..WriterState::default()
        }
    }

    /// Forgets what may be ahead of the database after a failed commit.
    fn reset(&mut self) {
        self.next_change_seq = None;
        self.audit_head = None;
    }

    fn nonce_mark(&self) -> usize {
        self.nonces.as_ref().map_or(0, |n| lock(n).mark())
    }

    fn nonce_rollback(&self, mark: usize) {
        if let Some(n) = &self.nonces {
            lock(n).rollback_to(mark);
        }
    }

    fn nonce_commit(&self) {
        if let Some(n) = &self.nonces {
            lock(n).commit();
        }
    }

    /// Records nonces, answering for each whether it is fresh; a nonce repeated in the list is
    /// fresh for its first use only. SQLite: checked in the cache and appended to the log;
    /// PostgreSQL: the unique index decides.
    async fn use_nonces(&mut self, tx: &mut Tx, nonces: &[(&str, &str, i64)]) -> Result<Vec<bool>> {
        if nonces.is_empty() {
            return Ok(Vec::new());
        }
        let Some(cache) = self.nonces.clone() else {
            return use_nonces_indexed(tx, nonces).await;
        };
        if !lock(&cache).loaded {
            let now = now_ms();
            let mut rows = sqlx::query(
                "SELECT app_key, nonce, expires_at FROM nonces WHERE expires_at >= $1 \
                 UNION ALL SELECT app_key, nonce, expires_at FROM nonce_log WHERE expires_at >= $1",
            )
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
            rows.sort_by_key(|r| r.try_get::<i64, _>("expires_at").unwrap_or(0));
            let mut c = lock(&cache);
            for r in &rows {
                c.load(
                    r.try_get("app_key")?,
                    r.try_get("nonce")?,
                    r.try_get("expires_at")?,
                );
            }
            c.loaded = true;
        }
        let now = now_ms();
        let (fresh, prune) = {
            let mut c = lock(&cache);
            let fresh: Vec<bool> = nonces
                .iter()
                .map(|(k, n, exp)| c.use_once(k, n, *exp, now))
                .collect();
            let prune = c.since_prune >= 4096;
            if prune {
                c.since_prune = 0;
            }
            (fresh, prune)
        };
        let rows: Vec<Vec<Arg<'_>>> = nonces
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .map(|((k, n, exp), _)| vec![Arg::Text(k), Arg::Text(n), Arg::Int(*exp)])
            .collect();
        insert_rows(
            tx,
            "INSERT INTO nonce_log (app_key, nonce, expires_at)",
            "",
            &rows,
        )
        .await?;
        if prune {
            // The log is in insertion order, which is expiry order: expired rows are at its
            // start, and the scan stops after them.
            sqlx::query(
                "DELETE FROM nonce_log WHERE id IN \
                 (SELECT id FROM nonce_log WHERE expires_at < $1 ORDER BY id LIMIT 20000)",
            )
            .bind(now)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        Ok(fresh)
    }

    async fn next_seq(&mut self, tx: &mut Tx) -> Result<i64> {
        let next = match self.next_change_seq {
            Some(n) => n,
            None => {
                sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM change_log")
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get::<i64, _>("m")?
                    + 1
            }
        };
        self.next_change_seq = Some(next + 1);
        Ok(next)
    }

    /// Appends one entry to the audit chain.
    async fn append_audit(&mut self, tx: &mut Tx, d: &AuditDraft) -> Result<i64> {
        let seqs = self.append_audits(tx, std::slice::from_ref(d)).await?;
        Ok(seqs[0])
    }

    /// Appends entries to the audit chain, hashed in order, in one statement.
    async fn append_audits(&mut self, tx: &mut Tx, drafts: &[AuditDraft]) -> Result<Vec<i64>> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let (mut seq, mut prev_hash) = match &self.audit_head {
            Some(h) => h.clone(),
            None => match sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut **tx)
                .await?
            {
                Some(row) => (row.try_get("seq")?, row.try_get("hash")?),
                None => (0, xfhub_security::audit::GENESIS.to_owned()),
            },
        };
        let now = now_ms();
        let mut rows = Vec::with_capacity(drafts.len());
        let mut seqs = Vec::with_capacity(drafts.len());
        for d in drafts {
            seq += 1;
            let entry = xfhub_security::audit::AuditEntry {
                seq,
                at_ms: now,
                actor: d.actor.clone(),
                action: d.action.clone(),
                target: d.target.clone(),
                outcome: d.outcome.clone(),
                remote: d.remote.clone(),
                detail: d.detail.clone(),
            };
            let hash = xfhub_security::audit::chain_hash(&prev_hash, &entry);
            rows.push(vec![
                Arg::Int(entry.seq),
                Arg::Int(entry.at_ms),
                Arg::Owned(entry.actor),
                Arg::Owned(entry.action),
                Arg::Owned(entry.target),
                Arg::Owned(entry.outcome),
                Arg::Owned(entry.remote),
                Arg::Owned(entry.detail),
                Arg::Owned(std::mem::replace(&mut prev_hash, hash.clone())),
                Arg::Owned(hash),
            ]);
            seqs.push(seq);
        }
        insert_rows(
            tx,
            "INSERT INTO audit_log (seq, at, actor, action, target, outcome, remote, detail, prev_hash, hash)",
            "",
            &rows,
        )
        .await?;
        self.audit_head = Some((seq, prev_hash));
        Ok(seqs)
    }
}

tokio::task_local! {
    /// True when the writer talks to SQLite: batched statements then use anonymous `?`
    /// placeholders, which sqlx binds by position; `$N` names make SQLite search its parameter
    /// list for every bind, quadratic in a statement with thousands of them.
    static ANONYMOUS_PLACEHOLDERS: bool;
}

/// Writes `rows` tuples of `width` placeholders, numbered from 1: `($1, $2), ($3, $4)`.
fn push_tuples(sql: &mut String, rows: usize, width: usize) {
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 1..=width {
            if c > 1 {
                sql.push_str(", ");
            }
            placeholder(sql, r * width + c);
        }
        sql.push(')');
    }
}

/// Whether the writer talks to SQLite (see [`ANONYMOUS_PLACEHOLDERS`]).
fn sqlite_dialect() -> bool {
    ANONYMOUS_PLACEHOLDERS.try_with(|a| *a).unwrap_or(false)
}

fn placeholder(sql: &mut String, n: usize) {
    if sqlite_dialect() {
        sql.push('?');
    } else {
        sql.push('$');
        sql.push_str(&n.to_string());
    }
}

/// Most rows in one multi-row statement. Each statement kind is split into power-of-two row
/// counts up to this (45 rows: 32 + 8 + 4 + 1), so it has at most seven shapes, all of which
/// stay prepared in the connection's statement cache. With one statement per group size, a
/// busy writer met a new text at nearly every group: it prepared statements of hundreds of
/// placeholders again and again, and its cache evicted the small, fixed statements too.
const MAX_ROWS_PER_STATEMENT: usize = 64;

/// The row count of the next statement over `remaining` rows of `width` values: the largest
/// power of two not above `remaining`, [`MAX_ROWS_PER_STATEMENT`] or the bind limit.
fn shape_rows(remaining: usize, width: usize) -> usize {
    let cap = (MAX_BINDS / width.max(1)).clamp(1, MAX_ROWS_PER_STATEMENT);
    let n = remaining.min(cap).max(1);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// `chunk` (not empty) followed by copies of its last item up to `len` items: an IN list padded
/// to one of few shapes (a repeated item changes nothing in an IN list).
fn padded_to<T>(chunk: &[T], len: usize) -> impl Iterator<Item = &T> {
    let last = &chunk[chunk.len() - 1];
    chunk
        .iter()
        .chain(std::iter::repeat_n(last, len.saturating_sub(chunk.len())))
}

/// A statement whose text is used once (values formatted into it, such as a list of row ids):
/// not kept in the connection's statement cache, where it would only push out the statements
/// that are used again.
fn once(sql: &str) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(sql).persistent(false)
}

pub(crate) async fn run(
    pool: AnyPool,
    rx: mpsc::Receiver<Job>,
    max_batch: usize,
    sqlite: bool,
    activity: crate::Activity,
) {
    ANONYMOUS_PLACEHOLDERS
        .scope(sqlite, run_loop(pool, rx, max_batch, activity, !sqlite))
        .await
}

/// Key of the PostgreSQL advisory lock every hub process's writer takes at the start of each
/// group transaction (single-key space; store leases use the two-key space, which is apart).
const WRITER_LOCK_KEY: i64 = 7_866_000_001;

/// On a database several processes may write (PostgreSQL), serialises group transactions
/// across processes: takes the transaction-scoped writer lock, held until commit or rollback,
/// and forgets the cached change-log sequence and audit head, which another process's writer
/// may have moved since this one last committed; they are read again, under the lock, when the
/// group needs them. So change-log sequences stay strictly increasing in commit order and the
/// audit chain stays one chain whatever the number of instances.
async fn lock_writers(tx: &mut Tx, shared: bool, state: &mut WriterState) -> Result<()> {
    if shared {
        sqlx::query(&format!("SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})"))
            .execute(&mut **tx)
            .await?;
        *state = WriterState::default();
    }
    Ok(())
}

async fn run_loop(
    pool: AnyPool,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    activity: crate::Activity,
    shared: bool,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    let mut state = WriterState::new(sqlite_dialect());
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let size = jobs.len();
        commit_group(&pool, std::mem::take(&mut jobs), &mut state, shared).await;
        activity.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        metrics::histogram!("xfhub_store_group_size").record(size as f64);
        metrics::counter!("xfhub_store_commits_total").increment(1);
    }
    pool.close().await;
    tracing::info!("StoreWriterStopped");
}

/// Commits a group. Fast path: the whole group in batched statements (one statement for all
/// ingests' records, one for their change-log rows, ...). If any statement fails, the group is
/// rolled back and replayed one operation per savepoint, so that only the failing operation
/// fails and the others still commit.
async fn commit_group(pool: &AnyPool, jobs: Vec<Job>, state: &mut WriterState, shared: bool) {
    let mut fast_state = state.clone();
    let mark = state.nonce_mark();
    let fast = async {
        let mut tx = pool.begin().await?;
        lock_writers(&mut tx, shared, &mut fast_state).await?;
        let ops: Vec<&Job> = jobs.iter().collect();
        let outputs = apply_batched(&mut tx, &ops, &mut fast_state).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(outputs)
    }
    .await;
    match fast {
        Ok(outputs) => {
            *state = fast_state;
            state.nonce_commit();
            for (job, out) in jobs.into_iter().zip(outputs) {
                deliver(job, Ok(out));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, group = jobs.len(), "StoreGroupFallback");
            // The sequence counter may be ahead of what committed: read it again.
            state.reset();
            state.nonce_rollback(mark);
            commit_one_by_one(pool, jobs, state, shared).await;
        }
    }
}

async fn commit_one_by_one(pool: &AnyPool, jobs: Vec<Job>, state: &mut WriterState, shared: bool) {
    let begun = async {
        let mut tx = pool.begin().await?;
        lock_writers(&mut tx, shared, state).await?;
        Ok::<_, StoreError>(tx)
    };
    let mut tx = match begun.await {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "StoreBeginError");
            jobs.into_iter().for_each(|j| deliver(j, Err(e.clone())));
            return;
        }
    };
    let mut results = Vec::with_capacity(jobs.len());
    let mut tentative = state.clone();
    for job in &jobs {
        let before = tentative.clone();
        let mark = tentative.nonce_mark();
        let r = match sqlx::query("SAVEPOINT op").execute(&mut *tx).await {
            Err(e) => Err(StoreError::from(e)),
            Ok(_) => {
                let r = apply_batched(&mut tx, &[job], &mut tentative)
                    .await
                    .map(|mut v| v.pop().expect("one output per operation"));
                let end = if r.is_ok() {
                    "RELEASE SAVEPOINT op"
                } else {
                    "ROLLBACK TO SAVEPOINT op"
                };
                if let Err(e) = sqlx::query(end).execute(&mut *tx).await {
                    // The transaction is in an unknown state: the commit fails and says so.
                    tracing::error!(error = %e, "StoreSavepointError");
                }
                if r.is_err() {
                    tentative = before;
                    tentative.nonce_rollback(mark);
                    // Keep savepoint nesting flat on PostgreSQL.
                    let _ = sqlx::query("RELEASE SAVEPOINT op").execute(&mut *tx).await;
                }
                r
            }
        };
        results.push(r);
    }
    match tx.commit().await {
        Ok(()) => {
            *state = tentative;
            state.nonce_commit();
            for (job, r) in jobs.into_iter().zip(results) {
                deliver(job, r);
            }
        }
        Err(e) => {
            let err = StoreError::from(e);
            tracing::error!(error = %err, "StoreCommitError");
            state.reset();
            state.nonce_rollback(0);
            jobs.into_iter().for_each(|j| deliver(j, Err(err.clone())));
        }
    }
}

/// Applies operations inside the current transaction, ingests and acks each as one batch.
async fn apply_batched(tx: &mut Tx, jobs: &[&Job], state: &mut WriterState) -> Result<Vec<Output>> {
    let mut outputs: Vec<Option<Output>> = jobs.iter().map(|_| None).collect();
    let ingests: Vec<(usize, &IngestItem)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| match j {
            Job::Ingest(item, _) => Some((i, item.as_ref())),
            _ => None,
        })
        .collect();
    if !ingests.is_empty() {
        let items: Vec<&IngestItem> = ingests.iter().map(|(_, it)| *it).collect();
        for ((i, _), out) in ingests.iter().zip(ingest_batch(tx, &items, state).await?) {
            outputs[*i] = Some(Output::Ingest(out));
        }
    }
    let acks: Vec<(usize, &AckRequest)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| match j {
            Job::Ack(a, _) => Some((i, a)),
            _ => None,
        })
        .collect();
    if !acks.is_empty() {
        let reqs: Vec<&AckRequest> = acks.iter().map(|(_, a)| *a).collect();
        for ((i, _), fresh) in acks.iter().zip(ack_batch(tx, &reqs).await?) {
            outputs[*i] = Some(Output::Bool(fresh));
        }
    }
    for (i, job) in jobs.iter().enumerate() {
        let out = match job {
            Job::Ingest(..) | Job::Ack(..) => continue,
            Job::Enqueue(b, _) => enqueue(tx, b).await.map(|_| Output::Unit)?,
            Job::Lease(l, _) => Output::Leased(lease(tx, l).await?),
            Job::ResetLeases(q, _) => Output::Count(reset_leases(tx, q).await?),
            Job::Release(rows, _) => Output::Count(release(tx, rows).await?),
            Job::Retry(r, _) => retry(tx, r).await.map(|_| Output::Unit)?,
            Job::DeadLetter(d, _) => dead_letter(tx, d).await.map(|_| Output::Unit)?,
            Job::Replay(id, _) => Output::Queue(replay(tx, *id).await?),
            Job::ImportError(item, _) => Output::Id(import_error(tx, item).await?),
            Job::Audit(d, _) => Output::Id(state.append_audit(tx, d).await?),
            Job::UseNonce(app_key, nonce, expires_at, _) => {
                let fresh = state
                    .use_nonces(tx, &[(app_key, nonce, *expires_at)])
                    .await?;
                Output::Bool(fresh[0])
            }
            Job::PutClient(c, d, _) => {
                put_client(tx, c).await?;
                state.append_audit(tx, d).await?;
                Output::Unit
            }
            Job::Reseal(table, updates, _) => Output::Count(reseal(tx, *table, updates).await?),
            Job::RotationCursor(table, key, cursor, _) => {
                rotation_cursor(tx, *table, key, cursor).await?;
                Output::Unit
            }
            Job::Txn(txn, _) => Output::Txn(apply_txn(tx, txn, state).await?),
        };
        outputs[i] = Some(out);
    }
    Ok(outputs
        .into_iter()
        .map(|o| o.expect("every operation produced an output"))
        .collect())
}

/// A bind value of a batched statement.
enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Owned(String),
}

/// Most bind parameters in one statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_BINDS: usize = 30_000;

/// Runs `head VALUES (...), (...) tail` over `rows` in as few statements as the bind limit
/// allows, returning every row a `RETURNING` tail produced.
async fn insert_rows(
    tx: &mut Tx,
    head: &str,
    tail: &str,
    rows: &[Vec<Arg<'_>>],
) -> Result<Vec<AnyRow>> {
    insert_rows_with(tx, head, "", tail, rows).await
}

/// Like [`insert_rows`], with each row written as `row_template` (its `?` marks numbered in
/// order) instead of a plain list of placeholders.
async fn insert_rows_with(
    tx: &mut Tx,
    head: &str,
    row_template: &str,
    tail: &str,
    rows: &[Vec<Arg<'_>>],
) -> Result<Vec<AnyRow>> {
    let mut out = Vec::new();
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(out);
    };
    let mut rest = rows;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(shape_rows(rest.len(), width));
        rest = after;
        let mut sql = String::with_capacity(head.len() + tail.len() + chunk.len() * width * 6);
        match head.strip_prefix("INSERT INTO ") {
            // SQLite keeps a statement journal (the pages' old contents, to undo a statement
            // that stops halfway) for every multi-row insert whose constraints abort; it was 7 %
            // of the writer thread's time in an import. OR FAIL needs none: a failing
            // statement keeps the rows it already inserted, and that never stands, since every
            // failure in a group rolls back the whole transaction, or the operation's
            // savepoint in the one-by-one replay (`commit_one_by_one`).
            Some(rest) if sqlite_dialect() => {
                sql.push_str("INSERT OR FAIL INTO ");
                sql.push_str(rest);
            }
            _ => sql.push_str(head),
        }
        sql.push_str(" VALUES ");
        if row_template.is_empty() {
            push_tuples(&mut sql, chunk.len(), width);
        } else {
            let mut n = 0;
            for r in 0..chunk.len() {
                if r > 0 {
                    sql.push_str(", ");
                }
                for part in row_template.split_inclusive('?') {
                    match part.strip_suffix('?') {
                        Some(text) => {
                            sql.push_str(text);
                            n += 1;
                            placeholder(&mut sql, n);
                        }
                        None => sql.push_str(part),
                    }
                }
            }
        }
        sql.push(' ');
        sql.push_str(tail);
        let mut q = sqlx::query(&sql);
        for row in chunk {
            for a in row {
                q = match a {
                    Arg::Text(s) => q.bind(*s),
                    Arg::OptText(s) => q.bind(*s),
                    Arg::Int(i) => q.bind(*i),
                    Arg::OptInt(i) => q.bind(*i),
                    Arg::Owned(s) => q.bind(s.as_str()),
                };
            }
        }
        if tail.contains("RETURNING") {
            out.extend(q.fetch_all(&mut **tx).await?);
        } else {
            q.execute(&mut **tx).await?;
        }
    }
    Ok(out)
}

/// A row of the message trail.
struct Hop<'a> {
    message_id: &'a str,
    hop: &'a str,
    queue: Option<&'a str>,
    attempt: Option<i64>,
    detail: Option<&'a str>,
}

async fn insert_hops(tx: &mut Tx, hops: &[Hop<'_>]) -> Result<()> {
    let now = now_ms();
    let rows: Vec<Vec<Arg<'_>>> = hops
        .iter()
        .map(|h| {
            vec![
                Arg::Text(h.message_id),
                Arg::Text(h.hop),
                Arg::OptText(h.queue),
                Arg::OptInt(h.attempt),
                Arg::OptText(h.detail),
                Arg::Int(now),
            ]
        })
        .collect();
    insert_rows(
        tx,
        "INSERT INTO message_trail (message_id, hop, queue, attempt, detail, at)",
        "",
        &rows,
    )
    .await?;
    Ok(())
}

fn outbox_row<T: Serialize>(envelope: &Envelope<T>, now: i64) -> Result<Vec<Arg<'static>>> {
    Ok(vec![
        Arg::Owned(envelope.message_id.to_string()),
        Arg::Owned(envelope.message_type.clone()),
        Arg::Owned(envelope.routing_key()),
        Arg::Owned(serde_json::to_string(envelope)?),
        Arg::Int(now),
        Arg::OptText(None),
        Arg::OptInt(None),
    ])
}

/// The outbox row of a record version's message that borrows the record's body (migration
/// 0011): the envelope is stored without the document, which readers splice back in from
/// `records.body` (see [`OUTBOX_ENVELOPE`]).
fn borrowing_outbox_row(
    envelope: &Envelope<Record<&RawValue>>,
    now: i64,
) -> Result<Vec<Arg<'static>>> {
    // The document is the last value of the envelope (`payload` is the envelope's last field,
    // `data` the record's): serialized with `null` in its place, the text ends `null}}`.
    let placeholder = envelope.clone().map(|record| Record {
        data: RawValue::NULL,
        ..record
    });
    let mut text = serde_json::to_string(&placeholder)?;
    let Some(before) = text.strip_suffix("null}}").map(str::len) else {
        return Err(StoreError::Corrupt(
            "envelope does not end with its record's data".into(),
        ));
    };
    let body_at = text[..before].chars().count() as i64;
    text.replace_range(before..before + 4, "");
    Ok(vec![
        Arg::Owned(envelope.message_id.to_string()),
        Arg::Owned(envelope.message_type.clone()),
        Arg::Owned(envelope.routing_key()),
        Arg::Owned(text),
        Arg::Int(now),
        Arg::Owned(envelope.payload.id.to_string()),
        Arg::OptInt(Some(body_at)),
    ])
}

const OUTBOX_INSERT: &str = "INSERT INTO outbox (message_id, message_type, routing_key, envelope, \
     created_at, body_record, body_at)";

/// Messages published by features and consumers: a message whose id is in the outbox already
/// is not published again (ids named after what they announce, such as an alert's dedup key,
/// make a repeated publish a no-op).
const PUBLISH_ONCE: &str = "ON CONFLICT (message_id) DO NOTHING";

/// An outbox row's whole envelope, over `outbox o LEFT JOIN records r ON r.id = o.body_record`:
/// a row that borrows its record's body gets it spliced back in (migration 0011, whose
/// `outbox_messages` view has the same expression). `body_at` counts characters, as `substr`
/// does on both backends.
pub(crate) const OUTBOX_ENVELOPE: &str = "CASE WHEN o.body_record IS NULL THEN o.envelope \
     ELSE substr(o.envelope, 1, CAST(o.body_at AS INTEGER)) || r.body \
     || substr(o.envelope, CAST(o.body_at AS INTEGER) + 1) END";

type SourceKey = (String, String, String);

/// The final state of a record a group writes: the item it comes from, its hub id, first
/// receipt time, whether it existed before the group, and the message that borrows its body.
struct Final {
    idx: usize,
    id: Uuid,
    received_at: i64,
    existed: bool,
    message_id: Uuid,
}

/// Ingests a group of records: two look-ups for the whole group, then one statement per table.
/// Items are decided in order, so a repeat or a newer version of a record earlier in the same
/// group is treated exactly as if it had come in a later group.
async fn ingest_batch(
    tx: &mut Tx,
    items: &[&IngestItem],
    state: &mut WriterState,
) -> Result<Vec<IngestOutcome>> {
    let key = |it: &IngestItem| -> SourceKey {
        (
            it.kind.as_str().to_owned(),
            it.source_system.clone(),
            it.source_id.clone(),
        )
    };
    let mut keys: Vec<SourceKey> = items.iter().map(|it| key(it)).collect();
    keys.sort();
    keys.dedup();

    // Current state of every record the group touches.
    let mut current: std::collections::HashMap<SourceKey, (Uuid, i64, i64)> = Default::default();
    // Key lists are padded with their last key to a power of two (a repeated key changes
    // nothing in an IN list), so that these look-ups have few shapes (see `shape_rows`).
    for chunk in keys.chunks(MAX_ROWS_PER_STATEMENT) {
        let padded = chunk.len().next_power_of_two();
        let mut sql = String::from(
            "SELECT id, kind, source_system, source_id, version, received_at FROM records \
             WHERE (kind, source_system, source_id) IN (VALUES ",
        );
        push_tuples(&mut sql, padded, 3);
        sql.push(')');
        let mut q = sqlx::query(&sql);
        for (k, s, i) in padded_to(chunk, padded) {
            q = q.bind(k.as_str()).bind(s.as_str()).bind(i.as_str());
        }
        for row in q.fetch_all(&mut **tx).await? {
            current.insert(
                (
                    row.try_get("kind")?,
                    row.try_get("source_system")?,
                    row.try_get("source_id")?,
                ),
                (
                    parse_uuid(&row.try_get::<String, _>("id")?)?,
                    row.try_get("version")?,
                    row.try_get("received_at")?,
                ),
            );
        }
    }
    // Versions already received of the records the group touches, with their digest and
    // first receipt, looked up by (record id, version): a record not stored yet has none, so a
    // group of new records (an import batch) reads nothing here.
    let mut seen: std::collections::HashMap<(Uuid, i64), (String, String)> = Default::default();
    let stored_versions: Vec<(String, i64)> = items
        .iter()
        .filter_map(|it| {
            current
                .get(&key(it))
                .map(|(id, _, _)| (id.to_string(), it.version))
        })
        .collect();
    for chunk in stored_versions.chunks(MAX_ROWS_PER_STATEMENT) {
        let padded = chunk.len().next_power_of_two();
        let mut sql = String::from(
            "SELECT record_id, version, digest, receipt FROM record_versions \
             WHERE (record_id, version) IN (VALUES ",
        );
        push_tuples(&mut sql, padded, 2);
        sql.push(')');
        let mut q = sqlx::query(&sql);
        for (id, version) in padded_to(chunk, padded) {
            q = q.bind(id.as_str()).bind(*version);
        }
        for row in q.fetch_all(&mut **tx).await? {
            seen.insert(
                (
                    parse_uuid(&row.try_get::<String, _>("record_id")?)?,
                    row.try_get("version")?,
                ),
                (row.try_get("digest")?, row.try_get("receipt")?),
            );
        }
    }

    // Nonces of signed requests: one statement records them all and tells which are new.
    let nonces: Vec<(&str, &str, i64)> = items
        .iter()
        .filter_map(|it| it.nonce.as_ref())
        .map(|(k, n, exp)| (k.as_str(), n.as_str(), *exp))
        .collect();
    let mut nonce_fresh = state.use_nonces(tx, &nonces).await?.into_iter();

    let now = now_ms();
    let mut outcomes = Vec::with_capacity(items.len());
    // Final state of each record written by this group, and whether it existed before: slots
    // in decision order, the superseded ones emptied, and where each key's slot is (a linear
    // search here was quadratic in the group: 2 % of a 1,000-row import batch).
    let mut finals: Vec<Option<Final>> = Vec::new();
    let mut final_of: std::collections::HashMap<SourceKey, usize> = Default::default();
    let mut changes = Vec::new();
    // Messages in decision order, each with its record's slot in `finals`: a message whose
    // record version is still final when the group is decided borrows the record's body.
    let mut messages = Vec::new();
    let mut versions = Vec::new();
    for (idx, it) in items.iter().enumerate() {
        if it.nonce.is_some() {
            // A nonce repeated inside one group is fresh for its first request only.
            if !nonce_fresh.next().unwrap_or(false) {
                outcomes.push(IngestOutcome::Replayed);
                continue;
            }
        }
        let k = key(it);
        let known = current
            .get(&k)
            .and_then(|&(id, _, _)| seen.get(&(id, it.version)));
        if let Some((digest, receipt)) = known {
            outcomes.push(if *digest == it.digest {
                IngestOutcome::Duplicate(serde_json::from_str(receipt)?)
            } else {
                IngestOutcome::Conflict {
                    version: it.version,
                }
            });
            continue;
        }
        let (id, received_at, status) = match current.get(&k) {
            Some(&(_, version, _)) if version > it.version => {
                outcomes.push(IngestOutcome::Stale {
                    current_version: version,
                });
                continue;
            }
            Some(&(id, _, received_at)) => (id, received_at, ReceiptStatus::Updated),
            None => (Uuid::now_v7(), now, ReceiptStatus::Created),
        };
        let existed_before = match final_of.get(&k).and_then(|&p| finals[p].take()) {
            Some(superseded) => superseded.existed,
            None => current.contains_key(&k),
        };
        let slot = finals.len();
        final_of.insert(k.clone(), slot);
        current.insert(k, (id, it.version, received_at));

        let seq = state.next_seq(tx).await?;
        let kind = it.kind.as_str();
        let (op, message_type) = match status {
            ReceiptStatus::Created => ("I", format!("{kind}.received")),
            ReceiptStatus::Updated => ("U", format!("{kind}.updated")),
        };
        changes.push(vec![
            Arg::Int(seq),
            Arg::Owned(id.to_string()),
            Arg::Text(kind),
            Arg::Text(op),
            Arg::Int(it.version),
            Arg::Int(now),
        ]);
        // The record's body is the data of its message (which borrows it from the record
        // unless a later version in this group supersedes it: see `borrowing_outbox_row`).
        let body = &it.data;
        let record = Record {
            id,
            kind: kind.to_owned(),
            version: it.version,
            status: it.status.clone(),
            received_at: from_ms(received_at),
            updated_at: from_ms(now),
            data: &**body,
        };
        // Serialized straight from the borrowed record: no copy of the document.
        let mut envelope = Envelope::new(&message_type, &it.source_system, &it.division, record);
        if let Some(c) = it.correlation_id {
            envelope.correlation_id = c;
        }
        finals.push(Some(Final {
            idx,
            id,
            received_at,
            existed: existed_before,
            message_id: envelope.message_id,
        }));
        let message_id = envelope.message_id;
        messages.push((slot, envelope));
        let receipt = Receipt {
            id,
            kind: kind.to_owned(),
            source_system: it.source_system.clone(),
            source_id: it.source_id.clone(),
            version: it.version,
            status,
            message_id,
            change_seq: seq,
            received_at: from_ms(now),
        };
        let receipt_json = serde_json::to_string(&receipt)?;
        versions.push(vec![
            Arg::Owned(id.to_string()),
            Arg::Int(it.version),
            Arg::Text(&it.digest),
            Arg::Owned(receipt_json.clone()),
        ]);
        seen.insert((id, it.version), (it.digest.clone(), receipt_json));
        outcomes.push(match status {
            ReceiptStatus::Created => IngestOutcome::Created(receipt),
            ReceiptStatus::Updated => IngestOutcome::Updated(receipt),
        });
    }

    // A message superseded within the group keeps its own copy of the document: the record
    // will hold the later version's body.
    let outbox = messages
        .iter()
        .map(|(slot, envelope)| match finals[*slot] {
            Some(_) => borrowing_outbox_row(envelope, now),
            None => outbox_row(envelope, now),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut inserts = Vec::new();
    let finals: Vec<Final> = finals.into_iter().flatten().collect();
    for &Final {
        idx,
        id,
        received_at,
        existed,
        message_id,
    } in &finals
    {
        let it = items[idx];
        let body = it.data.get();
        if existed {
            sqlx::query(
                "UPDATE records SET version = $1, division = $2, form = $3, purpose = $4, \
                 content_class = $5, status = $6, occurred_on = $7, body = $8, updated_at = $9, \
                 body_message = $10 WHERE id = $11",
            )
            .bind(it.version)
            .bind(&it.division)
            .bind(&it.form)
            .bind(&it.purpose)
            .bind(&it.content_class)
            .bind(&it.status)
            .bind(&it.occurred_on)
            .bind(body)
            .bind(now)
            .bind(message_id.to_string())
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
        } else {
            inserts.push(vec![
                Arg::Owned(id.to_string()),
                Arg::Text(it.kind.as_str()),
                Arg::Text(&it.source_system),
                Arg::Text(&it.source_id),
                Arg::Int(it.version),
                Arg::Text(&it.division),
                Arg::OptText(it.form.as_deref()),
                Arg::OptText(it.purpose.as_deref()),
                Arg::OptText(it.content_class.as_deref()),
                Arg::Text(&it.status),
                Arg::Text(&it.occurred_on),
                Arg::Text(body),
                Arg::Int(received_at),
                Arg::Int(now),
                Arg::Owned(message_id.to_string()),
            ]);
        }
    }
    insert_rows(
        tx,
        "INSERT INTO records (id, kind, source_system, source_id, version, division, form, purpose, \
         content_class, status, occurred_on, body, received_at, updated_at, body_message)",
        "",
        &inserts,
    )
    .await?;
    insert_rows(
        tx,
        "INSERT INTO change_log (seq, record_id, kind, op, version, changed_at)",
        "",
        &changes,
    )
    .await?;
    insert_rows(tx, OUTBOX_INSERT, "", &outbox).await?;
    insert_rows(
        tx,
        "INSERT INTO record_versions (record_id, version, digest, receipt)",
        "",
        &versions,
    )
    .await?;

    // Blind index: the personal data of each record as it now stands.
    let replaced: Vec<String> = finals
        .iter()
        .filter(|f| f.existed)
        .map(|f| format!("'{}'", f.id))
        .collect();
    if !replaced.is_empty() {
        // Hub-made UUIDs only: formatting them into the statement cannot inject anything.
        once(&format!(
            "DELETE FROM pii_index WHERE record_id IN ({})",
            replaced.join(",")
        ))
        .execute(&mut **tx)
        .await?;
    }
    let mut blind = Vec::new();
    for &Final { idx, id, .. } in &finals {
        for (field, digest) in &items[idx].blind {
            blind.push(vec![
                Arg::Text(field),
                Arg::Text(crate::pii_key(digest)),
                Arg::Owned(id.to_string()),
            ]);
        }
    }
    insert_rows(
        tx,
        "INSERT INTO pii_index (field, digest, record_id)",
        "ON CONFLICT (field, digest, record_id) DO NOTHING",
        &blind,
    )
    .await?;

    // Audit: one entry per submission, with its outcome, in this transaction.
    let mut drafts = Vec::new();
    for (it, outcome) in items.iter().zip(&outcomes) {
        if let Some(draft) = &it.audit {
            let (label, target) = match outcome {
                IngestOutcome::Created(r) => ("created", r.id.to_string()),
                IngestOutcome::Updated(r) => ("updated", r.id.to_string()),
                IngestOutcome::Duplicate(r) => ("duplicate", r.id.to_string()),
                IngestOutcome::Conflict { .. } => ("rejected: version conflict", String::new()),
                IngestOutcome::Stale { .. } => ("rejected: stale version", String::new()),
                IngestOutcome::Replayed => ("rejected: nonce reused", String::new()),
            };
            let mut d = draft.clone();
            d.outcome = label.to_owned();
            if d.target.is_empty() {
                d.target = target;
            }
            drafts.push(d);
        }
    }
    state.append_audits(tx, &drafts).await?;
    Ok(outcomes)
}

/// PostgreSQL: the unique index on (app key, nonce) decides which nonces are fresh.
async fn use_nonces_indexed(tx: &mut Tx, nonces: &[(&str, &str, i64)]) -> Result<Vec<bool>> {
    // Forget expired nonces now and then; a replay of one is refused by its timestamp anyway.
    static USES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if USES.fetch_add(nonces.len() as u64, std::sync::atomic::Ordering::Relaxed) % 1024
        < nonces.len() as u64
    {
        sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
    }
    let rows: Vec<Vec<Arg<'_>>> = nonces
        .iter()
        .map(|(k, n, exp)| vec![Arg::Text(k), Arg::Text(n), Arg::Int(*exp)])
        .collect();
    let mut inserted = std::collections::HashSet::new();
    // An expired nonce may be used again (its old request fails the timestamp check anyway);
    // `now` is an integer: formatting it into the statement cannot inject anything.
    let tail = format!(
        "ON CONFLICT (app_key, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at \
         WHERE nonces.expires_at < {} RETURNING app_key, nonce",
        now_ms()
    );
    for row in insert_rows(
        tx,
        "INSERT INTO nonces (app_key, nonce, expires_at)",
        &tail,
        &rows,
    )
    .await?
    {
        inserted.insert((
            row.try_get::<String, _>("app_key")?,
            row.try_get::<String, _>("nonce")?,
        ));
    }
    // A nonce repeated in the list is fresh for its first use only.
    Ok(nonces
        .iter()
        .map(|(k, n, _)| inserted.remove(&((*k).to_owned(), (*n).to_owned())))
        .collect())
}

async fn put_client(tx: &mut Tx, c: &ClientRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO clients (app_key, name, secret_sealed, old_secret_sealed, old_valid_until, \
         scopes, info_sets, divisions, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (app_key) DO UPDATE SET name = excluded.name, \
         secret_sealed = excluded.secret_sealed, old_secret_sealed = excluded.old_secret_sealed, \
         old_valid_until = excluded.old_valid_until, scopes = excluded.scopes, \
         info_sets = excluded.info_sets, divisions = excluded.divisions, \
         disabled = excluded.disabled, updated_at = excluded.updated_at",
    )
    .bind(&c.app_key)
    .bind(&c.name)
    .bind(&c.secret_sealed)
    .bind(&c.old_secret_sealed)
    .bind(c.old_valid_until_ms)
    .bind(serde_json::to_string(&c.scopes)?)
    .bind(serde_json::to_string(&c.info_sets)?)
    .bind(serde_json::to_string(&c.divisions)?)
    .bind(i64::from(c.disabled))
    .bind(c.created_at_ms)
    .bind(c.updated_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces sealed text only where it is still what was read (compare and set), so a row
/// changed meanwhile is left for the next pass.
async fn reseal(
    tx: &mut Tx,
    table: ResealTable,
    updates: &[(String, String, String)],
) -> Result<u64> {
    let (tbl, key, col) = table.columns();
    let mut n = 0;
    for (k, old, new) in updates {
        let (matching, values) = key.matching(2, k)?;
        let sql = format!(
            "UPDATE {tbl} SET {col} = $1 WHERE {matching} AND {col} = ${}",
            2 + values.len()
        );
        let stmt = values
            .into_iter()
            .fold(Stmt::new(sql).bind(new.as_str()), Stmt::bind)
            .bind(old.as_str());
        n += execute(tx, &stmt).await?;
    }
    Ok(n)
}

async fn rotation_cursor(
    tx: &mut Tx,
    table: ResealTable,
    target_key: &str,
    cursor: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO key_rotation (table_name, target_key, cursor, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (table_name) DO UPDATE SET target_key = excluded.target_key, \
         cursor = excluded.cursor, updated_at = excluded.updated_at",
    )
    .bind(table.name())
    .bind(target_key)
    .bind(cursor)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn enqueue(tx: &mut Tx, batch: &EnqueueBatch) -> Result<()> {
    let now = now_ms();
    // The envelope is stored only when it is not in the outbox already (a message that did not
    // come through the outbox); otherwise the lease reads it from there.
    let rows: Vec<Vec<Arg<'_>>> = batch
        .deliveries
        .iter()
        .map(|(queue, message_id, envelope)| {
            vec![
                Arg::Text(queue),
                Arg::Text(message_id),
                Arg::Text(message_id),
                Arg::Text(envelope),
                Arg::Int(0),
                Arg::Int(now),
                Arg::Int(now),
            ]
        })
        .collect();
    insert_rows_with(
        tx,
        "INSERT INTO bus_queue (queue, message_id, envelope, attempts, available_at, enqueued_at)",
        "(?, ?, CASE WHEN EXISTS (SELECT 1 FROM outbox WHERE message_id = ?) THEN NULL ELSE ? END, ?, ?, ?)",
        "ON CONFLICT (queue, message_id) DO NOTHING",
        &rows,
    )
    .await?;
    let mut hops: Vec<Hop<'_>> = batch
        .deliveries
        .iter()
        .map(|(queue, message_id, _)| Hop {
            message_id,
            hop: "published",
            queue: Some(queue),
            attempt: None,
            detail: None,
        })
        .collect();
    hops.extend(batch.unrouted.iter().map(|message_id| Hop {
        message_id,
        hop: "published",
        queue: None,
        attempt: None,
        detail: Some("no route"),
    }));
    insert_hops(tx, &hops).await?;
    if !batch.outbox_seqs.is_empty() {
        // Integers only: formatting them into the statement cannot inject anything.
        let ids: Vec<String> = batch.outbox_seqs.iter().map(i64::to_string).collect();
        once(&format!(
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

async fn lease(tx: &mut Tx, req: &LeaseRequest) -> Result<Vec<LeasedMessage>> {
    let now = now_ms();
    // Built once: leases are on the writer's path, every commit group may hold some.
    static LEASE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT q.id, q.message_id, COALESCE(q.envelope, {OUTBOX_ENVELOPE}) AS envelope, q.attempts \
             FROM bus_queue q LEFT JOIN outbox o ON o.message_id = q.message_id \
             LEFT JOIN records r ON r.id = o.body_record \
             WHERE q.queue = $1 AND q.available_at <= $2 AND (q.lease_until IS NULL OR q.lease_until < $2) \
             ORDER BY q.available_at, q.id LIMIT $3",
        )
    });
    let rows = sqlx::query(&LEASE)
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
    once(&format!(
        "UPDATE bus_queue SET attempts = attempts + 1, lease_until = $1 WHERE id IN ({})",
        ids.join(",")
    ))
    .bind(now + req.lease_ms)
    .execute(&mut **tx)
    .await?;
    let hops: Vec<Hop<'_>> = out
        .iter()
        .map(|m| Hop {
            message_id: &m.message_id,
            hop: "delivered",
            queue: Some(&m.queue),
            attempt: Some(m.attempt),
            detail: None,
        })
        .collect();
    insert_hops(tx, &hops).await?;
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

/// Gives leased messages back unhandled (a consumer stopping gracefully): the lease ends and
/// the delivery does not count as an attempt.
async fn release(tx: &mut Tx, rows: &[(i64, String, String)]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    // Integers only: formatting them into the statement cannot inject anything.
    let ids: Vec<String> = rows.iter().map(|(id, _, _)| id.to_string()).collect();
    let n = once(&format!(
        "UPDATE bus_queue SET attempts = attempts - 1, lease_until = NULL \
         WHERE id IN ({}) AND lease_until IS NOT NULL AND attempts > 0",
        ids.join(",")
    ))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let hops: Vec<Hop<'_>> = rows
        .iter()
        .map(|(_, queue, message_id)| Hop {
            message_id,
            hop: "released",
            queue: Some(queue),
            attempt: None,
            detail: Some("consumer stopped before handling it"),
        })
        .collect();
    insert_hops(tx, &hops).await?;
    Ok(n)
}

/// Acks a group: one statement records every (consumer, message) pair and tells which are new;
/// only those get their effects; then one delete and one trail insert for the whole group.
async fn ack_batch(tx: &mut Tx, reqs: &[&AckRequest]) -> Result<Vec<bool>> {
    let now = now_ms();
    let dedup: Vec<Vec<Arg<'_>>> = reqs
        .iter()
        .map(|r| {
            vec![
                Arg::Text(&r.consumer),
                Arg::Text(&r.message_id),
                Arg::Int(now),
            ]
        })
        .collect();
    let inserted = insert_rows(
        tx,
        "INSERT INTO consumer_dedup (consumer, message_id, processed_at)",
        "ON CONFLICT (consumer, message_id) DO NOTHING RETURNING consumer, message_id",
        &dedup,
    )
    .await?;
    let mut fresh_keys = std::collections::HashSet::new();
    for row in &inserted {
        fresh_keys.insert((
            row.try_get::<String, _>("consumer")?,
            row.try_get::<String, _>("message_id")?,
        ));
    }
    let mut fresh = Vec::with_capacity(reqs.len());
    let mut hops = Vec::new();
    let mut outbox = Vec::new();
    let mut statements = Vec::new();
    for r in reqs {
        // A pair repeated inside one group is fresh for its first ack only.
        let is_fresh = fresh_keys.remove(&(r.consumer.clone(), r.message_id.clone()));
        fresh.push(is_fresh);
        if is_fresh {
            for effect in &r.effects {
                match effect {
                    Effect::Trail {
                        message_id,
                        hop,
                        queue,
                        detail,
                    } => hops.push(Hop {
                        message_id,
                        hop,
                        queue: queue.as_deref(),
                        attempt: Some(r.attempt),
                        detail: detail.as_deref(),
                    }),
                    Effect::Publish(envelope) => outbox.push(outbox_row(envelope, now)?),
                    Effect::Sql(stmt) => statements.push(stmt),
                }
            }
        }
        hops.push(Hop {
            message_id: &r.message_id,
            hop: "acked",
            queue: Some(&r.queue),
            attempt: Some(r.attempt),
            detail: if is_fresh {
                None
            } else {
                Some("duplicate: no second effect")
            },
        });
    }
    insert_rows(tx, OUTBOX_INSERT, PUBLISH_ONCE, &outbox).await?;
    for stmt in statements {
        execute(tx, stmt).await?;
    }
    let ids: Vec<String> = reqs
        .iter()
        .filter_map(|r| r.row_id)
        .map(|i| i.to_string())
        .collect();
    if !ids.is_empty() {
        // Integers only: formatting them into the statement cannot inject anything.
        once(&format!(
            "DELETE FROM bus_queue WHERE id IN ({})",
            ids.join(",")
        ))
        .execute(&mut **tx)
        .await?;
    }
    insert_hops(tx, &hops).await?;
    Ok(fresh)
}

async fn one_hop(
    tx: &mut Tx,
    message_id: &str,
    hop: &str,
    queue: &str,
    attempt: Option<i64>,
    detail: &str,
) -> Result<()> {
    insert_hops(
        tx,
        &[Hop {
            message_id,
            hop,
            queue: Some(queue),
            attempt,
            detail: Some(detail),
        }],
    )
    .await
}

async fn retry(tx: &mut Tx, req: &RetryRequest) -> Result<()> {
    sqlx::query(
        "UPDATE bus_queue SET available_at = $1, lease_until = NULL, last_error = $2 WHERE id = $3",
    )
    .bind(req.available_at)
    .bind(&req.reason)
    .bind(req.row_id)
    .execute(&mut **tx)
    .await?;
    one_hop(
        tx,
        &req.message_id,
        "retry_scheduled",
        &req.queue,
        Some(req.attempt),
        &req.reason,
    )
    .await
}

async fn dead_letter(tx: &mut Tx, req: &DeadLetterRequest) -> Result<()> {
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
    one_hop(
        tx,
        &req.message_id,
        "dead_lettered",
        &req.queue,
        Some(req.attempt),
        &req.reason,
    )
    .await
}

async fn replay(tx: &mut Tx, id: i64) -> Result<Option<String>> {
    let row = sqlx::query("SELECT queue, message_id, envelope FROM dead_letters WHERE id = $1 AND replayed_at IS NULL")
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
    one_hop(
        tx,
        &message_id,
        "replayed",
        &queue,
        None,
        &format!("dead letter {id}"),
    )
    .await?;
    Ok(Some(queue))
}

async fn import_error(tx: &mut Tx, item: &ImportErrorItem) -> Result<i64> {
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

    /// Ends the leases of messages a consumer took but did not handle, without counting the
    /// delivery as an attempt. `rows` are (queue row id, queue, message id).
    pub async fn release(&self, rows: Vec<(i64, String, String)>) -> Result<u64> {
        self.submit(|r| Job::Release(rows, r)).await
    }

    /// Appends an entry to the audit chain; returns its sequence number.
    pub async fn audit(&self, draft: AuditDraft) -> Result<i64> {
        self.submit(|r| Job::Audit(draft, r)).await
    }

    /// Records a nonce until `expires_at` (ms); false when it was already used (a replay).
    pub async fn use_nonce(&self, app_key: &str, nonce: &str, expires_at: i64) -> Result<bool> {
        let (k, n) = (app_key.to_owned(), nonce.to_owned());
        self.submit(|r| Job::UseNonce(k, n, expires_at, r)).await
    }

    /// Creates or replaces a client, with its audit entry in the same transaction.
    pub async fn put_client(&self, client: ClientRecord, audit: AuditDraft) -> Result<()> {
        self.submit(|r| Job::PutClient(Box::new(client), audit, r))
            .await
    }

    /// Writes re-sealed values: (row key, text read, new text); returns rows changed.
    pub async fn reseal(
        &self,
        table: ResealTable,
        updates: Vec<(String, String, String)>,
    ) -> Result<u64> {
        self.submit(|r| Job::Reseal(table, updates, r)).await
    }

    /// Records how far re-encryption of `table` under `target_key` has come.
    pub async fn set_rotation_cursor(
        &self,
        table: ResealTable,
        target_key: &str,
        cursor: &str,
    ) -> Result<()> {
        let (k, c) = (target_key.to_owned(), cursor.to_owned());
        self.submit(|r| Job::RotationCursor(table, k, c, r)).await
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

/// Runs one caller-written statement in the writer's transaction.
async fn execute(tx: &mut Tx, stmt: &Stmt) -> Result<u64> {
    // A feature's statement may carry hundreds of `$N` placeholders (the process events of a
    // pulled page: six per event); on SQLite those become anonymous `?`, bound by position.
    let positional = (stmt.args().len() > POSITIONAL_FROM && sqlite_dialect())
        .then(|| to_positional(stmt.sql()))
        .flatten();
    let Some((sql, order)) = &positional else {
        let q = stmt.query();
        return Ok(q.execute(&mut **tx).await?.rows_affected());
    };
    let mut q = once(sql);
    for n in order {
        let Some(a) = stmt.args().get(n - 1) else {
            return Err(crate::StoreError::Database(format!(
                "statement placeholder ${n} has no bound value"
            )));
        };
        q = a.bind_to(q);
    }
    Ok(q.execute(&mut **tx).await?.rows_affected())
}

/// Statements with more bind values than this are rewritten to anonymous placeholders on
/// SQLite (below it the named lookup costs nothing worth a rewrite).
const POSITIONAL_FROM: usize = 16;

/// Rewrites `$N` placeholders to `?` and returns the 1-based argument number of each `?` in
/// order (a placeholder used twice binds its value twice). SQLite resolves a named parameter
/// by a linear search of the statement's parameter list for every bind, quadratic in a
/// statement with thousands of them; anonymous ones are bound by position. Text inside quotes
/// is left alone. `None` when the statement has no `$N` to rewrite.
fn to_positional(sql: &str) -> Option<(String, Vec<usize>)> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut order = Vec::new();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'$' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let n: usize = sql[i + 1..i + 1 + digits].parse().ok()?;
                    if n == 0 {
                        return None;
                    }
                    out.push_str(&sql[copied..i]);
                    out.push('?');
                    order.push(n);
                    i += 1 + digits;
                    copied = i;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    if order.is_empty() {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some((out, order))
}

/// Applies the parts of a [`Txn`] in order; an error fails the whole of it.
async fn apply_txn(tx: &mut Tx, txn: &Txn, state: &mut WriterState) -> Result<TxnOutcome> {
    let items: Vec<&IngestItem> = txn.ingests.iter().collect();
    let ingests = if items.is_empty() {
        Vec::new()
    } else {
        ingest_batch(tx, &items, state).await?
    };
    let mut import_errors = Vec::with_capacity(txn.import_errors.len());
    for item in &txn.import_errors {
        import_errors.push(import_error(tx, item).await?);
    }
    let now = now_ms();
    let outbox = txn
        .publish
        .iter()
        .map(|e| outbox_row(e, now))
        .collect::<Result<Vec<_>>>()?;
    insert_rows(tx, OUTBOX_INSERT, PUBLISH_ONCE, &outbox).await?;
    let mut rows_affected = Vec::with_capacity(txn.statements.len());
    for stmt in &txn.statements {
        rows_affected.push(execute(tx, stmt).await?);
    }
    let audit = state.append_audits(tx, &txn.audit).await?;
    Ok(TxnOutcome {
        ingests,
        import_errors,
        rows_affected,
        audit,
    })
}

fn lock(m: &Mutex<NonceCache>) -> MutexGuard<'_, NonceCache> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::{shape_rows, to_positional, MAX_BINDS, MAX_ROWS_PER_STATEMENT};

    /// The row counts `shape_rows` splits `total` rows of `width` values into.
    fn shapes(total: usize, width: usize) -> Vec<usize> {
        let mut left = total;
        let mut out = Vec::new();
        while left > 0 {
            let n = shape_rows(left, width);
            out.push(n);
            left -= n;
        }
        out
    }

    #[test]
    fn multi_row_statements_come_in_few_power_of_two_shapes() {
        assert_eq!(shapes(45, 6), vec![32, 8, 4, 1]);
        assert_eq!(shapes(1, 14), vec![1]);
        assert_eq!(shapes(64, 3), vec![64]);
        assert_eq!(shapes(130, 3), vec![64, 64, 2]);
        // Every group size from 1 to 1,000 uses at most seven distinct shapes in all.
        let mut seen = std::collections::BTreeSet::new();
        for total in 1..=1000 {
            let s = shapes(total, 14);
            assert_eq!(s.iter().sum::<usize>(), total);
            seen.extend(s);
        }
        assert_eq!(seen.len(), 7, "{seen:?}");
        assert!(seen.iter().all(|&n| n <= MAX_ROWS_PER_STATEMENT));
        // A row too wide for the cap still stays under the bind limit.
        let wide = MAX_BINDS / 10;
        assert!(shapes(100, wide).iter().all(|&n| n * wide <= MAX_BINDS));
    }

    #[test]
    fn named_placeholders_become_positional_in_order_of_use() {
        let (sql, order) =
            to_positional("INSERT INTO t (a, b, c) SELECT $2, $1, $2 WHERE x = $10").unwrap();
        assert_eq!(sql, "INSERT INTO t (a, b, c) SELECT ?, ?, ? WHERE x = ?");
        assert_eq!(order, vec![2, 1, 2, 10]);
    }

    #[test]
    fn quoted_text_and_bare_dollars_are_left_alone() {
        let (sql, order) =
            to_positional("SELECT '$1 it''s $2', \"$3\", $ , $4 FROM t WHERE a = $1").unwrap();
        assert_eq!(
            sql,
            "SELECT '$1 it''s $2', \"$3\", $ , ? FROM t WHERE a = ?"
        );
        assert_eq!(order, vec![4, 1]);
        assert_eq!(to_positional("SELECT 1"), None);
        assert_eq!(to_positional("SELECT $0"), None);
    }
}
