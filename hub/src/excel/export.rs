//! Exports of petitions and 12345 work orders as .xlsx, by time range and scope (spec 5.1.4-2).
//!
//! The rows use the import template's columns (codes as `code 名称`), so an export can be
//! edited and imported again; three columns follow: 平台编号 (hub id), 状态, 接收时间.
//! Identity and phone numbers are opened and then masked unless the caller holds `pii:read`.
//! Records are read in one streaming query (no pages), converted to rows on one blocking
//! thread and written by another in rust_xlsxwriter's constant-memory mode into an unlinked
//! temporary file, which the response then streams: memory stays flat whatever the row count.

use std::io::{Seek, SeekFrom};

use futures::TryStreamExt;
use rust_xlsxwriter::{Workbook, XlsxError};
use sqlx::Row as _;
use tokio::sync::mpsc;
use xfhub_schemas::{CodeTables, Petition, WorkOrder};
use xfhub_security::keys::KeyRing;
use xfhub_store::{RecordKind, Stmt, Store, StoreError};
use xfhub_transforms::excel::{petition_to_cells, workorder_to_cells, Cell, SheetKind};

use super::templates::header_format;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    pub kind: RecordKind,
    /// Inclusive `YYYY-MM-DD` bounds on the complaint (call) date.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Only this division.
    pub division: Option<String>,
    /// Only these divisions (the caller's scope); None = every division.
    pub divisions: Option<Vec<String>>,
    /// Only this status.
    pub status: Option<String>,
    /// Show identity and phone numbers in clear.
    pub clear_pii: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{rows} rows match; at most {limit} can be exported at once")]
    TooLarge { rows: u64, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the workbook failed: {0}")]
    Write(String),
}

impl From<XlsxError> for ExportError {
    fn from(e: XlsxError) -> Self {
        ExportError::Write(e.to_string())
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Write(e.to_string())
    }
}

impl From<sqlx::Error> for ExportError {
    fn from(e: sqlx::Error) -> Self {
        ExportError::Store(e.into())
    }
}

/// The WHERE clause and its binds.
fn filter(spec: &ExportSpec) -> (String, Vec<String>) {
    let mut sql = String::from(" FROM records WHERE kind = $1");
    let mut args = vec![spec.kind.as_str().to_owned()];
    let mut push = |clause: &str, v: &str, sql: &mut String| {
        args.push(v.to_owned());
        sql.push_str(&format!(" AND {clause} ${}", args.len()));
    };
    if let Some(v) = &spec.from {
        push("occurred_on >=", v, &mut sql);
    }
    if let Some(v) = &spec.to {
        push("occurred_on <=", v, &mut sql);
    }
    if let Some(v) = &spec.division {
        push("division =", v, &mut sql);
    }
    if let Some(v) = &spec.status {
        push("status =", v, &mut sql);
    }
    if let Some(ds) = &spec.divisions {
        if ds.is_empty() {
            sql.push_str(" AND 1 = 0");
        } else {
            let mut marks = Vec::new();
            for d in ds {
                args.push(d.clone());
                marks.push(format!("${}", args.len()));
            }
            sql.push_str(&format!(" AND division IN ({})", marks.join(", ")));
        }
    }
    (sql, args)
}

fn stmt(sql: String, args: &[String]) -> Stmt {
    args.iter().fold(Stmt::new(sql), |s, a| s.bind(a.as_str()))
}

/// Rows matching `spec`.
pub async fn count(store: &Store, spec: &ExportSpec) -> Result<u64, ExportError> {
    let (where_sql, args) = filter(spec);
    let s = stmt(format!("SELECT COUNT(*) AS n{where_sql}"), &args);
    let row = s.query().fetch_one(store.reader()).await?;
    Ok(row.try_get::<i64, _>("n")? as u64)
}

/// One stored record as read: its hub id, status, receipt time and canonical body (sealed).
struct Raw {
    id: String,
    status: String,
    received_at: i64,
    body: String,
}

/// One worksheet row, converted and ready to write.
struct Line {
    cells: Vec<Cell>,
    id: String,
    status: String,
    received_at: String,
}

/// Records per batch handed from one stage to the next.
const BATCH: usize = 500;

/// Writes the export into an unlinked temporary file; returns it (positioned at its start)
/// and the number of rows.
///
/// Three stages run at once: this task reads the rows, a converter thread turns each body into
/// its worksheet cells (read straight into the canonical type, numbers opened and masked there,
/// see [`crate::typed_pii`]), and a writer thread only writes cells. With conversion and
/// writing on one thread, 100,000 petitions took 30-34 % longer (BENCHMARKS.md, 2026-12-04);
/// the workbook's compression at save still runs alone, at the end (rust_xlsxwriter 0.96 has
/// no setting for its level).
pub async fn write(
    store: &Store,
    ring: std::sync::Arc<KeyRing>,
    tables: &'static CodeTables,
    spec: &ExportSpec,
    limit: usize,
) -> Result<(std::fs::File, u64), ExportError> {
    let n = count(store, spec).await?;
    if n > limit as u64 {
        return Err(ExportError::TooLarge { rows: n, limit });
    }
    let (raw_tx, raw_rx) = mpsc::channel::<Vec<Raw>>(4);
    let (line_tx, line_rx) = std::sync::mpsc::sync_channel::<Vec<Line>>(4);
    let kind = spec.kind;
    let mask = !spec.clear_pii;
    let converter =
        tokio::task::spawn_blocking(move || convert(kind, tables, &ring, mask, raw_rx, line_tx));
    let writer = tokio::task::spawn_blocking(move || write_book(kind, line_rx));
    let (where_sql, args) = filter(spec);
    let s = stmt(
        format!("SELECT id, status, received_at, body{where_sql} ORDER BY occurred_on, id"),
        &args,
    );
    let result: Result<(), ExportError> = async {
        let mut rows = s.query().fetch(store.reader());
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(r) = rows.try_next().await? {
            batch.push(Raw {
                id: r.try_get("id")?,
                status: r.try_get("status")?,
                received_at: r.try_get("received_at")?,
                body: r.try_get("body")?,
            });
            if batch.len() == BATCH && raw_tx.send(std::mem::take(&mut batch)).await.is_err() {
                break;
            }
        }
        if !batch.is_empty() {
            let _ = raw_tx.send(batch).await;
        }
        Ok(())
    }
    .await;
    drop(raw_tx);
    converter
        .await
        .map_err(|e| ExportError::Write(e.to_string()))?;
    let written = writer
        .await
        .map_err(|e| ExportError::Write(e.to_string()))?;
    result?;
    written
}

/// The converter stage: bodies to worksheet rows, in order. A record that cannot be opened or
/// read is logged and left out (as before: one bad record does not stop an export).
fn convert(
    kind: RecordKind,
    tables: &CodeTables,
    ring: &KeyRing,
    mask: bool,
    mut rx: mpsc::Receiver<Vec<Raw>>,
    tx: std::sync::mpsc::SyncSender<Vec<Line>>,
) {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00");
    while let Some(batch) = rx.blocking_recv() {
        let mut lines = Vec::with_capacity(batch.len());
        for raw in batch {
            let cells = match kind {
                RecordKind::Petition => cells_of::<Petition>(
                    &raw.body,
                    |p| crate::typed_pii::open_petition(ring, p, mask),
                    |p| petition_to_cells(p, tables),
                ),
                RecordKind::Workorder => cells_of::<WorkOrder>(
                    &raw.body,
                    |w| crate::typed_pii::open_workorder(ring, w, mask),
                    |w| workorder_to_cells(w, tables),
                ),
            };
            let cells = match cells {
                Ok(cells) => cells,
                Err((what, error)) => {
                    tracing::error!(record = %raw.id, error = %error, "{what}");
                    continue;
                }
            };
            let at = chrono::DateTime::from_timestamp_millis(raw.received_at)
                .unwrap_or_default()
                .with_timezone(&china);
            lines.push(Line {
                cells,
                id: raw.id,
                status: raw.status,
                received_at: at.format("%Y-%m-%d %H:%M:%S").to_string(),
            });
        }
        if tx.send(lines).is_err() {
            // The writer stopped (its error is reported by `write`).
            return;
        }
    }
}

/// One stored body as worksheet cells: read into its canonical type, personal numbers opened
/// (and masked) by `open`, then converted. The error names what failed, for the log.
fn cells_of<T: serde::de::DeserializeOwned>(
    body: &str,
    open: impl FnOnce(&mut T) -> Result<(), xfhub_security::SealError>,
    to_cells: impl FnOnce(&T) -> Vec<Cell>,
) -> Result<Vec<Cell>, (&'static str, String)> {
    let mut doc: T =
        serde_json::from_str(body).map_err(|e| ("ExportDecodeError", e.to_string()))?;
    open(&mut doc).map_err(|e| ("ExportOpenError", e.to_string()))?;
    Ok(to_cells(&doc))
}

/// The writer stage: cells into the worksheet, then the workbook into a temporary file.
fn write_book(
    kind: RecordKind,
    rx: std::sync::mpsc::Receiver<Vec<Line>>,
) -> Result<(std::fs::File, u64), ExportError> {
    let sheet_kind = match kind {
        RecordKind::Petition => SheetKind::Petition,
        RecordKind::Workorder => SheetKind::WorkOrder,
    };
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet_with_constant_memory();
    ws.set_name(sheet_kind.title_zh())?;
    let columns = sheet_kind.columns();
    let extra = ["平台编号", "状态", "接收时间"];
    for (c, col) in columns.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, col.header, &header_format(col.required))?;
        ws.set_column_width(c as u16, 14)?;
    }
    let base = columns.len() as u16;
    for (i, h) in extra.iter().enumerate() {
        ws.write_string_with_format(0, base + i as u16, *h, &header_format(false))?;
    }
    let mut r: u32 = 0;
    for lines in rx {
        for line in lines {
            r += 1;
            // The worksheet keeps each string it is given: hand over the converter's strings
            // instead of copies (a copy, and its free, per cell of the sheet).
            for (c, cell) in line.cells.into_iter().enumerate() {
                match cell {
                    Cell::Text(s) if !s.is_empty() => {
                        ws.write_string(r, c as u16, s)?;
                    }
                    Cell::Number(n) => {
                        ws.write_number(r, c as u16, n)?;
                    }
                    _ => {}
                }
            }
            ws.write_string(r, base, line.id)?;
            ws.write_string(r, base + 1, line.status)?;
            ws.write_string(r, base + 2, line.received_at)?;
        }
    }
    let mut file = tempfile::tempfile()?;
    wb.save_to_writer(&mut file)?;
    file.seek(SeekFrom::Start(0))?;
    Ok((file, u64::from(r)))
}
