//! Excel for staff (issue 7): templates, imports as jobs with row-level validation and error
//! reports, and exports.
//!
//! - `templates.rs`: the workbooks the hub writes (templates, error reports).
//! - `book.rs`: safe opening of uploads (size, type, password, zip bomb) and row streaming.
//! - `jobs.rs`: the import pipeline: a blocking reader thread maps and validates rows
//!   (`xfhub_transforms::excel`), an async committer writes each batch of records, rejects and
//!   job counters in one `Store::transact`.
//! - `export.rs`: time-range exports of petitions and work orders, masked unless `pii:read`.
//! - `api.rs`: the REST routes; `cli.rs`: `xfhub import` and `xfhub export`.

pub mod api;
pub mod book;
pub mod cli;
pub mod export;
pub mod jobs;
pub mod templates;

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::excel::book::FileLimits;

/// `[excel]`: limits of Excel imports and exports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExcelConfig {
    /// Largest uploaded workbook, in bytes (413 `excel_too_large` beyond). Default 10 MiB.
    pub max_upload_bytes: usize,
    /// Most data rows per uploaded sheet (`excel_too_many_rows` beyond; nothing is imported).
    pub max_rows: usize,
    /// Most bytes the zip entries of an .xlsx may inflate to, all together (`excel_zip_bomb`).
    pub max_inflated_bytes: u64,
    /// Largest inflation ratio of one zip entry above 1 MiB (`excel_zip_bomb`).
    pub max_inflation_ratio: u64,
    /// Rows committed per transaction of an import. Default 2,000: each commit rewrites the
    /// random-keyed index pages its rows touch, so fewer, larger commits write less; 2,000 was
    /// 8 % faster than 1,000 at about 45 MB more peak memory, 4,000 no faster again and over
    /// 200 MB (BENCHMARKS.md, runs of 2026-12-05).
    pub batch_rows: usize,
    /// Import jobs running at once; more wait their turn (status `running`, no rows read yet).
    pub concurrent_jobs: usize,
    /// Most rows one export may hold (`export_too_large` beyond: narrow the range).
    pub max_export_rows: usize,
}

impl Default for ExcelConfig {
    fn default() -> Self {
        ExcelConfig {
            max_upload_bytes: 10 * 1024 * 1024,
            max_rows: 200_000,
            max_inflated_bytes: 1024 * 1024 * 1024,
            max_inflation_ratio: 200,
            batch_rows: 2000,
            concurrent_jobs: 2,
            max_export_rows: 500_000,
        }
    }
}

impl ExcelConfig {
    /// Every problem of the section.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut positive = |name: &str, v: u64| {
            if v == 0 {
                out.push(format!("excel.{name}: must be at least 1"));
            }
        };
        positive("max_upload_bytes", self.max_upload_bytes as u64);
        positive("max_rows", self.max_rows as u64);
        positive("max_inflated_bytes", self.max_inflated_bytes);
        positive("max_inflation_ratio", self.max_inflation_ratio);
        positive("batch_rows", self.batch_rows as u64);
        positive("concurrent_jobs", self.concurrent_jobs as u64);
        positive("max_export_rows", self.max_export_rows as u64);
        out
    }

    pub fn file_limits(&self) -> FileLimits {
        FileLimits {
            max_bytes: self.max_upload_bytes,
            max_rows: self.max_rows,
            max_inflated_bytes: self.max_inflated_bytes,
            max_ratio: self.max_inflation_ratio,
            max_entries: 10_000,
        }
    }

    /// The body limit of the upload route: the file plus room for the multipart framing.
    pub fn upload_body_limit(&self) -> usize {
        self.max_upload_bytes + 64 * 1024
    }
}

/// What the Excel routes share: settings and the job slots.
#[derive(Clone)]
pub struct ExcelState {
    pub config: ExcelConfig,
    pub slots: Arc<Semaphore>,
    pub live: jobs::LiveJobs,
}

impl ExcelState {
    pub fn new(config: ExcelConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.concurrent_jobs.max(1)));
        ExcelState {
            config,
            slots,
            live: Default::default(),
        }
    }
}

impl Default for ExcelState {
    fn default() -> Self {
        ExcelState::new(ExcelConfig::default())
    }
}
