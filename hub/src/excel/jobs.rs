//! Import jobs: an uploaded sheet becomes committed records, published messages, and rejected
//! rows with every reason.
//!
//! [`prepare`] runs before a job exists: it opens the file (see `book.rs`), finds the header
//! row and checks the row count, so that a bad file is refused whole with a clear error and
//! nothing is imported. [`run`] then streams the rows on a blocking thread, which maps and
//! validates each row (`xfhub_transforms::excel`) and seals it into an `IngestItem`; an async
//! committer writes each batch (default 2,000 rows) in one `Store::transact`: the records with
//! their outbox messages, the rejected rows (original cells sealed in `import_errors`, reasons
//! in `excel_job_rows`) and the job's counters. Outcomes known only after a commit (created,
//! repeat, version conflict) are counted in the next batch's transaction, and the last
//! transaction settles them, so a finished job always has
//! `rows_read = imported + duplicates + rejected`.
//!
//! Re-uploading is idempotent: a row's source id is its 来源编号 (工单编号 for work orders), or
//! else a keyed digest of its content, so the same row uploaded again is a repeat
//! (`duplicates`), and a fixed row from an error report is new.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row as _;
use tokio::sync::{mpsc, watch};
use utoipa::ToSchema;
use uuid::Uuid;
use xfhub_routes::Relay;
use xfhub_schemas::{CodeTables, FieldError};
use xfhub_security::keys::KeyRing;
use xfhub_store::{
    intake, now_ms, AuditDraft, ImportErrorItem, IngestItem, IngestOutcome, Stmt, Store,
    StoreError, Txn,
};
use xfhub_transforms::excel::{
    find_layout, key_person_from_row, petition_from_row, word_from_row, workorder_from_row, Cell,
    KeyPersonRow, Layout, Row, RowError, SheetKind, WordRow, HEADER_SEARCH_ROWS,
};

use super::book::{self, Book, BookError};
use super::ExcelConfig;

/// What an import needs of the hub.
#[derive(Clone)]
pub struct ImportContext {
    pub store: Store,
    pub ring: Arc<KeyRing>,
    pub tables: &'static CodeTables,
    /// Woken after each commit so messages go out at once (None in the CLI: the serving hub's
    /// relay polls the outbox).
    pub relay: Option<Relay>,
    pub config: ExcelConfig,
    /// Progress of the jobs running in this process.
    pub live: LiveJobs,
}

/// Progress of running jobs, by id.
pub type LiveJobs = Arc<Mutex<HashMap<Uuid, watch::Receiver<Progress>>>>;

/// Counters of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Progress {
    /// Data rows the sheet announces (its dimension), when it does.
    pub rows_total: Option<u64>,
    /// Non-empty data rows read so far.
    pub rows_read: u64,
    /// Rows stored as new records or as new versions (their messages are published).
    pub imported: u64,
    /// Rows already stored with the same content: nothing changed.
    pub duplicates: u64,
    /// Rows refused, each with every reason (see the error report).
    pub rejected: u64,
}

/// A checked file, ready to import.
pub struct Prepared {
    pub book: Book,
    pub sheet: String,
    pub layout: Layout,
    /// 0-based sheet row of the header; data rows follow it.
    pub header_row: usize,
    /// Data rows the sheet announces, when it does.
    pub rows_total: Option<usize>,
}

/// Opens and checks a file for an import of `kind`: type, password, zip bomb, header row and
/// row count. Blocking (run it on a blocking thread).
pub fn prepare(bytes: Bytes, kind: SheetKind, config: &ExcelConfig) -> Result<Prepared, BookError> {
    let limits = config.file_limits();
    let mut book = book::open(bytes, &limits)?;
    let sheet = book::pick_sheet(&book, kind.title_zh())?;
    let mut top: Vec<(usize, Vec<Cell>)> = Vec::new();
    let announced = book::rows(&mut book, &sheet, |r, cells| {
        top.push((r, cells));
        if top.len() >= HEADER_SEARCH_ROWS {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let rows: Vec<Vec<Cell>> = top.iter().map(|(_, c)| c.clone()).collect();
    let layout = find_layout(kind, &rows).map_err(BookError::Layout)?;
    let header_row = top[layout.header_row].0;
    let rows_total = match announced {
        Some(end) => end.saturating_sub(header_row + 1),
        None => {
            // No dimension in the file: count the rows before importing any.
            let mut n = 0usize;
            book::rows(&mut book, &sheet, |r, _| {
                if r > header_row {
                    n += 1;
                }
                if n > limits.max_rows {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            n
        }
    };
    if rows_total > limits.max_rows {
        return Err(BookError::TooManyRows {
            rows: rows_total,
            limit: limits.max_rows,
        });
    }
    if rows_total == 0 && top.iter().all(|(r, _)| *r <= header_row) {
        return Err(BookError::NoRows);
    }
    Ok(Prepared {
        book,
        sheet,
        layout,
        header_row,
        rows_total: Some(rows_total),
    })
}

/// Who started a job, and on what.
#[derive(Debug, Clone)]
pub struct JobMeta {
    pub id: Uuid,
    pub kind: SheetKind,
    pub actor: String,
    pub remote: String,
    pub file_name: String,
    pub file_sha256: String,
    /// The divisions the uploader may use; None = all. Rows of other divisions are rejected.
    pub divisions: Option<Vec<String>>,
}

/// Records a new job (status `running`) and its audit entry.
pub async fn create(ctx: &ImportContext, meta: &JobMeta, p: &Prepared) -> Result<(), StoreError> {
    let now = now_ms();
    let headers = serde_json::to_string(&p.layout.headers)?;
    let txn = Txn {
        statements: vec![Stmt::new(
            "INSERT INTO excel_jobs (id, kind, actor, file_name, file_sha256, sheet, headers, \
             status, rows_total, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $9)",
        )
        .bind(meta.id.to_string())
        .bind(meta.kind.as_str())
        .bind(&meta.actor)
        .bind(&meta.file_name)
        .bind(&meta.file_sha256)
        .bind(&p.sheet)
        .bind(headers)
        .bind(p.rows_total.map(|n| n as i64))
        .bind(now)],
        audit: vec![AuditDraft {
            actor: meta.actor.clone(),
            action: "excel.import.start".to_owned(),
            target: meta.id.to_string(),
            outcome: "accepted".to_owned(),
            remote: meta.remote.clone(),
            detail: format!(
                "kind={} file_sha256={}",
                meta.kind.as_str(),
                meta.file_sha256
            ),
        }],
        ..Default::default()
    };
    ctx.store.transact(txn).await.map(|_| ())
}

/// What one row became.
enum Mapped {
    Record(Box<IngestItem>),
    KeyPerson(Box<KeyPersonRow>),
    Word(WordRow),
    Rejected(Vec<RowError>),
}

struct RowOut {
    row_no: i64,
    cells: Vec<Cell>,
    mapped: Mapped,
}

enum Msg {
    Batch(Vec<RowOut>),
    /// The reader stopped: Ok at the end of the sheet, or why it could not go on.
    End(Result<(), BookError>),
}

/// Why a job stopped early: stable code, English and Chinese messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub message_zh: String,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSummary {
    pub id: Uuid,
    pub status: String,
    pub progress: Progress,
    pub error_code: Option<String>,
    pub error_message_zh: Option<String>,
}

/// Runs a created job to its end; `progress` sees every committed batch.
pub async fn run(
    ctx: ImportContext,
    meta: JobMeta,
    prepared: Prepared,
    progress: watch::Sender<Progress>,
) -> JobSummary {
    let (tx, mut rx) = mpsc::channel::<Msg>(2);
    let rows_total = prepared.rows_total.map(|n| n as u64);
    let kind = meta.kind;
    let job_id = meta.id;
    let reader = {
        let (ring, tables, config) = (ctx.ring.clone(), ctx.tables, ctx.config.clone());
        let divisions = meta.divisions.clone();
        tokio::task::spawn_blocking(move || {
            read_rows(prepared, kind, ring, tables, config, divisions, tx)
        })
    };
    let mut c = Committer {
        ctx: &ctx,
        meta: &meta,
        committed: Progress {
            rows_total,
            ..Default::default()
        },
        pending: Pending::default(),
        rows_total,
    };
    let mut failure: Option<Failure> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Batch(rows) => {
                if let Err(e) = c.commit(rows).await {
                    tracing::error!(job = %job_id, error = %e, "ExcelImportCommitError");
                    failure = Some(Failure {
                        code: "store_unavailable".to_owned(),
                        message: format!("the store failed: {e}"),
                        message_zh: "数据保存失败，已导入的批次保留，其余行未导入；请稍后重新上传（已导入的行不会重复登记）".to_owned(),
                    });
                    break;
                }
                let _ = progress.send(c.live());
            }
            Msg::End(Ok(())) => break,
            Msg::End(Err(e)) => {
                failure = Some(Failure {
                    code: e.code().to_owned(),
                    message: e.to_string(),
                    message_zh: e.message_zh(),
                });
                break;
            }
        }
    }
    drop(rx);
    let _ = reader.await;
    let summary = c.finish(failure).await;
    let _ = progress.send(summary.progress);
    summary
}

/// Sheet row -> mapped row, on the blocking thread.
fn read_rows(
    mut p: Prepared,
    kind: SheetKind,
    ring: Arc<KeyRing>,
    tables: &'static CodeTables,
    config: ExcelConfig,
    divisions: Option<Vec<String>>,
    tx: mpsc::Sender<Msg>,
) {
    let now = Utc::now();
    let source_id_of = |fp: &[u8]| format!("xls-{}", &ring.keyed_digest(fp)[..32]);
    let mut batch = Vec::with_capacity(config.batch_rows);
    let mut seen = 0usize;
    let mut stop: Option<BookError> = None;
    let mut gone = false;
    let header_row = p.header_row;
    let layout = p.layout.clone();
    let result = book::rows(&mut p.book, &p.sheet, |r, cells| {
        if r <= header_row {
            return ControlFlow::Continue(());
        }
        seen += 1;
        if seen > config.max_rows {
            stop = Some(BookError::TooManyRows {
                rows: seen,
                limit: config.max_rows,
            });
            return ControlFlow::Break(());
        }
        let row = Row::new(&layout, &cells);
        let mapped = match kind {
            SheetKind::Petition => petition_from_row(&row, tables, now, &source_id_of)
                .and_then(|p| intake::petition_item(&p, &ring).map_err(store_row_error))
                .map(|i| Mapped::Record(Box::new(i))),
            SheetKind::WorkOrder => workorder_from_row(&row, tables, now)
                .and_then(|w| intake::workorder_item(&w, &ring).map_err(store_row_error))
                .map(|i| Mapped::Record(Box::new(i))),
            SheetKind::KeyPerson => {
                key_person_from_row(&row, tables).map(|k| Mapped::KeyPerson(Box::new(k)))
            }
            SheetKind::WordList => word_from_row(&row, tables).map(Mapped::Word),
        };
        let mapped = match (mapped, &divisions) {
            (Ok(m), Some(allowed)) => match division_of(&m) {
                Some(d) if !allowed.iter().any(|a| a == d) => {
                    Mapped::Rejected(vec![division_denied(kind)])
                }
                _ => m,
            },
            (Ok(m), None) => m,
            (Err(e), _) => Mapped::Rejected(e),
        };
        batch.push(RowOut {
            row_no: r as i64 + 1,
            mapped,
            cells,
        });
        if batch.len() >= config.batch_rows {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(config.batch_rows));
            if tx.blocking_send(Msg::Batch(full)).is_err() {
                gone = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if gone {
        return;
    }
    if !batch.is_empty() && tx.blocking_send(Msg::Batch(batch)).is_err() {
        return;
    }
    let end = match (result, stop) {
        (Err(e), _) | (Ok(_), Some(e)) => Err(e),
        (Ok(_), None) => Ok(()),
    };
    let _ = tx.blocking_send(Msg::End(end));
}

fn division_of(m: &Mapped) -> Option<&str> {
    match m {
        Mapped::Record(item) => Some(&item.division),
        Mapped::KeyPerson(k) => Some(&k.division),
        _ => None,
    }
}

fn division_denied(kind: SheetKind) -> RowError {
    let column = kind.columns().iter().find(|c| c.key == "division");
    RowError {
        column: column.map(|c| c.header),
        error: FieldError {
            path: column.map_or("division", |c| c.path).to_owned(),
            code: "auth_division_denied".to_owned(),
            message: "outside the divisions this client may use".to_owned(),
            message_zh: "超出本接入系统的授权区划".to_owned(),
        },
    }
}

fn store_row_error(e: StoreError) -> Vec<RowError> {
    tracing::error!(error = %e, "ExcelRowEncodeError");
    vec![RowError {
        column: None,
        error: FieldError {
            path: String::new(),
            code: "encode_failed".to_owned(),
            message: "the row could not be encoded".to_owned(),
            message_zh: "该行无法编码保存".to_owned(),
        },
    }]
}

/// Outcomes learned from the last commit, written with the next one.
#[derive(Default)]
struct Pending {
    imported: u64,
    duplicates: u64,
    /// Rows refused by the store (version conflicts), with their cells.
    rejects: Vec<(i64, Vec<Cell>, Vec<RowError>)>,
}

struct Committer<'a> {
    ctx: &'a ImportContext,
    meta: &'a JobMeta,
    /// What the job row holds.
    committed: Progress,
    pending: Pending,
    rows_total: Option<u64>,
}

impl Committer<'_> {
    /// Committed counters plus the outcomes still to be written.
    fn live(&self) -> Progress {
        Progress {
            rows_total: self.rows_total,
            rows_read: self.committed.rows_read,
            imported: self.committed.imported + self.pending.imported,
            duplicates: self.committed.duplicates + self.pending.duplicates,
            rejected: self.committed.rejected + self.pending.rejects.len() as u64,
        }
    }

    fn reject(&self, txn: &mut Txn, row_no: i64, cells: &[Cell], errors: &[RowError]) {
        let job = self.meta.id.to_string();
        let reference = format!("{job}:{row_no}");
        let texts: Vec<String> = cells.iter().map(Cell::display).collect();
        let raw = json!({ "job": job, "row": row_no, "cells": texts });
        let reasons = Value::Array(
            errors
                .iter()
                .map(|e| {
                    json!({
                        "column": e.column,
                        "path": e.error.path,
                        "code": e.error.code,
                        "message": e.error.message,
                        "message_zh": e.error.message_zh,
                    })
                })
                .collect(),
        );
        txn.import_errors.push(ImportErrorItem {
            source: "excel".to_owned(),
            kind: self.meta.kind.as_str().to_owned(),
            source_ref: Some(reference.clone()),
            // The cells may hold identity and phone numbers: sealed.
            raw: self.ctx.ring.seal_bytes(raw.to_string().as_bytes()),
            reasons: reasons.clone(),
        });
        txn.statements.push(
            Stmt::new(
                "INSERT INTO excel_job_rows (job_id, row_no, ref, reasons) VALUES ($1, $2, $3, $4)",
            )
            .bind(job)
            .bind(row_no)
            .bind(reference)
            .bind(reasons.to_string()),
        );
    }

    /// Adds the pending outcomes to `txn`; returns (imported, duplicates, rejected) it adds.
    fn settle(&self, txn: &mut Txn) -> (u64, u64, u64) {
        for (row_no, cells, errors) in &self.pending.rejects {
            self.reject(txn, *row_no, cells, errors);
        }
        (
            self.pending.imported,
            self.pending.duplicates,
            self.pending.rejects.len() as u64,
        )
    }

    async fn commit(&mut self, rows: Vec<RowOut>) -> Result<(), StoreError> {
        let mut txn = Txn::default();
        let mut stored: Vec<(i64, Vec<Cell>)> = Vec::new();
        let mut upserts = 0usize;
        let mut rejects = Vec::new();
        let n = rows.len() as u64;
        for row in rows {
            match row.mapped {
                Mapped::Record(item) => {
                    txn.ingests.push(*item);
                    stored.push((row.row_no, row.cells));
                }
                // Upserts come first among the statements: their rows_affected lead the outcome.
                Mapped::KeyPerson(k) => {
                    txn.statements
                        .push(key_person_upsert(&k, &self.ctx.ring, self.meta.id));
                    upserts += 1;
                }
                Mapped::Word(w) => {
                    txn.statements.push(word_upsert(&w));
                    upserts += 1;
                }
                Mapped::Rejected(errors) => rejects.push((row.row_no, row.cells, errors)),
            }
        }
        for (row_no, cells, errors) in &rejects {
            self.reject(&mut txn, *row_no, cells, errors);
        }
        let (imported, duplicates, late_rejects) = self.settle(&mut txn);
        let rejected = rejects.len() as u64 + late_rejects;
        txn.statements.push(counters(
            self.meta.id,
            n,
            imported,
            duplicates,
            rejected,
            None,
        ));
        let outcome = self.ctx.store.transact(txn).await?;
        self.pending = Pending::default();
        self.committed.rows_read += n;
        self.committed.imported += imported;
        self.committed.duplicates += duplicates;
        self.committed.rejected += rejected;
        let mut changed = false;
        for (o, (row_no, cells)) in outcome.ingests.iter().zip(stored) {
            match o {
                IngestOutcome::Created(_) | IngestOutcome::Updated(_) => {
                    changed = true;
                    self.pending.imported += 1;
                }
                IngestOutcome::Duplicate(_) | IngestOutcome::Replayed => {
                    self.pending.duplicates += 1
                }
                IngestOutcome::Conflict { version } => {
                    let e = version_error(
                        self.meta.kind,
                        "version_conflict",
                        format!("version {version} of this source record was already imported with different content; raise the version to update it"),
                        format!("该编号的版本 {version} 已以不同内容导入；如需更新请填写更大的版本号"),
                    );
                    self.pending.rejects.push((row_no, cells, vec![e]));
                }
                IngestOutcome::Stale { current_version } => {
                    let e = version_error(
                        self.meta.kind,
                        "version_stale",
                        format!("a newer version ({current_version}) is already stored"),
                        format!("已保存更新的版本 {current_version}，本行版本较旧"),
                    );
                    self.pending.rejects.push((row_no, cells, vec![e]));
                }
            }
        }
        for affected in outcome.rows_affected.iter().take(upserts) {
            if *affected > 0 {
                self.pending.imported += 1;
            } else {
                self.pending.duplicates += 1;
            }
        }
        if changed {
            if let Some(r) = &self.ctx.relay {
                r.notify();
            }
        }
        metrics::counter!("xfhub_excel_rows_total", "kind" => self.meta.kind.as_str()).increment(n);
        Ok(())
    }

    /// Writes the last outcomes, the final status and the audit entry.
    async fn finish(&mut self, failure: Option<Failure>) -> JobSummary {
        let mut txn = Txn::default();
        let (imported, duplicates, rejected) = self.settle(&mut txn);
        let status = match (&failure, self.committed.rejected + rejected) {
            (Some(_), _) => "failed",
            (None, 0) => "completed",
            (None, _) => "partial",
        };
        txn.statements.push(counters(
            self.meta.id,
            0,
            imported,
            duplicates,
            rejected,
            Some((status, failure.as_ref())),
        ));
        let mut summary = JobSummary {
            id: self.meta.id,
            status: status.to_owned(),
            progress: self.live(),
            error_code: failure.as_ref().map(|f| f.code.clone()),
            error_message_zh: failure.as_ref().map(|f| f.message_zh.clone()),
        };
        let p = summary.progress;
        txn.audit.push(AuditDraft {
            actor: self.meta.actor.clone(),
            action: "excel.import".to_owned(),
            target: self.meta.id.to_string(),
            outcome: status.to_owned(),
            remote: self.meta.remote.clone(),
            detail: format!(
                "kind={} rows_read={} imported={} duplicates={} rejected={}{}",
                self.meta.kind.as_str(),
                p.rows_read,
                p.imported,
                p.duplicates,
                p.rejected,
                failure
                    .as_ref()
                    .map(|f| format!(" error={}", f.code))
                    .unwrap_or_default()
            ),
        });
        if let Err(e) = self.ctx.store.transact(txn).await {
            tracing::error!(job = %self.meta.id, error = %e, "ExcelImportFinishError");
            summary.status = "failed".to_owned();
            summary.error_code = Some("store_unavailable".to_owned());
        } else {
            self.committed = p;
            self.pending = Pending::default();
        }
        tracing::info!(
            job = %self.meta.id,
            kind = self.meta.kind.as_str(),
            status = %summary.status,
            rows_read = p.rows_read,
            imported = p.imported,
            duplicates = p.duplicates,
            rejected = p.rejected,
            "ExcelImportFinished"
        );
        summary
    }
}

fn version_error(kind: SheetKind, code: &str, en: String, zh: String) -> RowError {
    let key = if kind == SheetKind::WorkOrder {
        "order_no"
    } else {
        "source_id"
    };
    let column = kind.columns().iter().find(|c| c.key == key);
    RowError {
        column: column.map(|c| c.header),
        error: FieldError {
            path: "source.version".to_owned(),
            code: code.to_owned(),
            message: en,
            message_zh: zh,
        },
    }
}

/// The job's counter update (and, at the end, its status).
fn counters(
    id: Uuid,
    read: u64,
    imported: u64,
    duplicates: u64,
    rejected: u64,
    end: Option<(&str, Option<&Failure>)>,
) -> Stmt {
    let now = now_ms();
    let base = Stmt::new(match end {
        None => {
            "UPDATE excel_jobs SET rows_read = rows_read + $1, imported = imported + $2, \
             duplicates = duplicates + $3, rejected = rejected + $4, updated_at = $5 WHERE id = $6"
        }
        Some(_) => {
            "UPDATE excel_jobs SET rows_read = rows_read + $1, imported = imported + $2, \
             duplicates = duplicates + $3, rejected = rejected + $4, updated_at = $5, \
             status = $7, error_code = $8, error_message = $9, error_message_zh = $10, \
             finished_at = $5 WHERE id = $6"
        }
    })
    .bind(read as i64)
    .bind(imported as i64)
    .bind(duplicates as i64)
    .bind(rejected as i64)
    .bind(now)
    .bind(id.to_string());
    match end {
        None => base,
        Some((status, failure)) => base
            .bind(status)
            .bind(failure.map(|f| f.code.clone()))
            .bind(failure.map(|f| f.message.clone()))
            .bind(failure.map(|f| f.message_zh.clone())),
    }
}

fn key_person_upsert(k: &KeyPersonRow, ring: &KeyRing, job: Uuid) -> Stmt {
    let id_digest = ring.blind_index("id_number", &k.id_number);
    let mobile_digest = k.mobile.as_ref().map(|m| ring.blind_index("mobile", m));
    // Sealed values differ on every write (random IV): a repeat is recognized on the clear
    // columns and the blind-index digests.
    Stmt::new(
        "INSERT INTO key_persons (id_digest, name, id_number_sealed, mobile_sealed, mobile_digest, \
         division, category, risk_level, responsible_unit, remarks, job_id, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id_digest) DO UPDATE SET name = excluded.name, \
         id_number_sealed = excluded.id_number_sealed, mobile_sealed = excluded.mobile_sealed, \
         mobile_digest = excluded.mobile_digest, division = excluded.division, \
         category = excluded.category, risk_level = excluded.risk_level, \
         responsible_unit = excluded.responsible_unit, remarks = excluded.remarks, \
         job_id = excluded.job_id, updated_at = excluded.updated_at \
         WHERE key_persons.name <> excluded.name \
         OR key_persons.mobile_digest IS DISTINCT FROM excluded.mobile_digest \
         OR key_persons.division <> excluded.division \
         OR key_persons.category IS DISTINCT FROM excluded.category \
         OR key_persons.risk_level IS DISTINCT FROM excluded.risk_level \
         OR key_persons.responsible_unit IS DISTINCT FROM excluded.responsible_unit \
         OR key_persons.remarks IS DISTINCT FROM excluded.remarks",
    )
    .bind(id_digest)
    .bind(&k.name)
    .bind(ring.seal(&k.id_number))
    .bind(k.mobile.as_ref().map(|m| ring.seal(m)))
    .bind(mobile_digest)
    .bind(&k.division)
    .bind(k.category.clone())
    .bind(k.risk_level.clone())
    .bind(k.responsible_unit.clone())
    .bind(k.remarks.clone())
    .bind(job.to_string())
    .bind(now_ms())
}

fn word_upsert(w: &WordRow) -> Stmt {
    Stmt::new(
        "INSERT INTO word_lists (list, word, category) VALUES ($1, $2, $3) \
         ON CONFLICT (list, word) DO UPDATE SET category = excluded.category \
         WHERE word_lists.category IS DISTINCT FROM excluded.category",
    )
    .bind(&w.list)
    .bind(&w.word)
    .bind(w.category.clone())
}

/// Creates the job, then runs it in the background (one of `slots` at a time). Returns the
/// job id at once.
pub async fn start(
    ctx: ImportContext,
    meta: JobMeta,
    prepared: Prepared,
    slots: Arc<tokio::sync::Semaphore>,
) -> Result<Uuid, StoreError> {
    create(&ctx, &meta, &prepared).await?;
    let id = meta.id;
    let (tx, rx) = watch::channel(Progress {
        rows_total: prepared.rows_total.map(|n| n as u64),
        ..Default::default()
    });
    ctx.live.lock().expect("live jobs").insert(id, rx);
    tokio::spawn(async move {
        let _permit = slots.acquire_owned().await;
        let live = ctx.live.clone();
        run_prepared(ctx, meta, prepared, tx).await;
        live.lock().expect("live jobs").remove(&id);
    });
    Ok(id)
}

/// Runs a created job (the CLI calls this directly, watching `progress`).
pub async fn run_prepared(
    ctx: ImportContext,
    meta: JobMeta,
    prepared: Prepared,
    progress: watch::Sender<Progress>,
) -> JobSummary {
    run(ctx, meta, prepared, progress).await
}

/// Marks jobs left `running` by a stopped process as failed (`job_interrupted`): their
/// committed batches stand and are counted; uploading the file again imports the rest.
pub async fn mark_interrupted(store: &Store) -> Result<u64, StoreError> {
    let out = store
        .transact(Txn {
            statements: vec![Stmt::new(
                "UPDATE excel_jobs SET status = 'failed', error_code = 'job_interrupted', \
                 error_message = 'the hub stopped while the job ran; committed rows are counted, upload the file again to import the rest', \
                 error_message_zh = '导入过程中系统停止；已导入的行已计数，请重新上传文件导入其余行（已导入的行不会重复登记）', \
                 finished_at = $1, updated_at = $1 WHERE status = 'running'",
            )
            .bind(now_ms())],
            ..Default::default()
        })
        .await?;
    Ok(out.rows_affected.first().copied().unwrap_or(0))
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    /// `petition` | `workorder` | `key_person` | `word_list`
    pub kind: String,
    /// `running` | `completed` (every row imported or a repeat) | `partial` (some
    /// rows rejected: see the error report) | `failed` (the file could not be read on, or the
    /// store failed; committed rows are counted)
    pub status: String,
    pub file_name: String,
    pub sheet: String,
    #[serde(flatten)]
    pub progress: Progress,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_message_zh: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
    pub finished_at: Option<chrono::DateTime<Utc>>,
    /// Where the error report is, when rows were rejected.
    pub error_report: Option<String>,
    #[serde(skip)]
    pub actor: String,
    #[serde(skip)]
    pub headers: Vec<String>,
}

fn time(ms: i64) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Reads a job; running jobs of this process show their live progress.
pub async fn get(store: &Store, live: &LiveJobs, id: Uuid) -> Result<Option<JobView>, StoreError> {
    let row = Stmt::new(
        "SELECT id, kind, actor, file_name, sheet, headers, status, rows_total, rows_read, \
         imported, duplicates, rejected, error_code, error_message, error_message_zh, \
         created_at, finished_at FROM excel_jobs WHERE id = $1",
    )
    .bind(id.to_string())
    .query()
    .fetch_optional(store.reader())
    .await?;
    let Some(r) = row else { return Ok(None) };
    let get_i = |name: &str| -> Result<i64, StoreError> { Ok(r.try_get::<i64, _>(name)?) };
    let mut progress = Progress {
        rows_total: r.try_get::<Option<i64>, _>("rows_total")?.map(|n| n as u64),
        rows_read: get_i("rows_read")? as u64,
        imported: get_i("imported")? as u64,
        duplicates: get_i("duplicates")? as u64,
        rejected: get_i("rejected")? as u64,
    };
    let status: String = r.try_get("status")?;
    if status == "running" {
        if let Some(rx) = live.lock().expect("live jobs").get(&id) {
            progress = *rx.borrow();
        }
    }
    let headers: Vec<String> = serde_json::from_str(&r.try_get::<String, _>("headers")?)?;
    Ok(Some(JobView {
        id,
        kind: r.try_get("kind")?,
        error_report: (progress.rejected > 0).then(|| format!("/api/v1/imports/{id}/errors.xlsx")),
        status,
        file_name: r.try_get("file_name")?,
        sheet: r.try_get("sheet")?,
        progress,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        error_message_zh: r.try_get("error_message_zh")?,
        created_at: time(r.try_get("created_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(time),
        actor: r.try_get("actor")?,
        headers,
    }))
}

/// A rejected row as stored: row number, sealed cells, reasons.
pub struct StoredReject {
    pub row_no: i64,
    pub raw_sealed: String,
    pub reasons: Value,
}

/// The rejected rows of a job, in sheet order.
pub async fn rejects(store: &Store, id: Uuid) -> Result<Vec<StoredReject>, StoreError> {
    let rows = Stmt::new(
        "SELECT r.row_no, r.reasons, e.raw FROM excel_job_rows r \
         JOIN import_errors e ON e.source_ref = r.ref AND e.source = 'excel' \
         WHERE r.job_id = $1 ORDER BY r.row_no",
    )
    .bind(id.to_string())
    .query()
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredReject {
                row_no: r.try_get("row_no")?,
                raw_sealed: r.try_get("raw")?,
                reasons: serde_json::from_str(&r.try_get::<String, _>("reasons")?)?,
            })
        })
        .collect()
}
