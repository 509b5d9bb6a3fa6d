//! `xfhub import FILE --kind petition` and `xfhub export`: the same pipeline as the REST
//! routes, run on the store directly (like `xfhub clients`), with a progress bar.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use uuid::Uuid;
use xfhub_schemas::CodeTables;
use xfhub_store::{AuditDraft, RecordKind};
use xfhub_transforms::excel::SheetKind;

use super::export::{self, ExportSpec};
use super::jobs::{self, ImportContext, JobMeta, Progress};
use crate::config::Config;

/// Exit status of `xfhub import`: 0 every row imported or a repeat, 2 some rows rejected
/// (error report written), 1 the file was refused or the job failed.
pub async fn import(
    cfg: &Config,
    file: &Path,
    kind: &str,
    errors_out: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<i32> {
    let kind = SheetKind::parse(kind).ok_or_else(|| {
        anyhow::anyhow!("--kind: one of petition, workorder, key_person, word_list")
    })?;
    let limit = cfg.excel.max_upload_bytes;
    let bytes = super::book::read_file(file, limit)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let config = cfg.excel.clone();
    let prepared =
        match tokio::task::spawn_blocking(move || jobs::prepare(bytes, kind, &config)).await? {
            Ok(p) => p,
            Err(e) => {
                eprintln!(
                    "{}: refused [{}]: {}",
                    file.display(),
                    e.code(),
                    e.message_zh()
                );
                eprintln!("  {e}");
                return Ok(1);
            }
        };
    let (store, keys) = crate::admin_cli::open(cfg).await?;
    let ctx = ImportContext {
        store: store.clone(),
        ring: keys.current(),
        tables: CodeTables::embedded(),
        relay: None,
        config: cfg.excel.clone(),
        live: Default::default(),
    };
    let meta = JobMeta {
        id: Uuid::now_v7(),
        kind,
        actor: "cli".to_owned(),
        remote: "local".to_owned(),
        file_name: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        file_sha256: sha,
        divisions: None,
    };
    let total = prepared.rows_total.unwrap_or(0) as u64;
    jobs::create(&ctx, &meta, &prepared).await?;
    let (tx, mut rx) = watch::channel(Progress::default());
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} rows  {per_sec}  {msg}",
        )
        .expect("progress template")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let job = tokio::spawn(jobs::run_prepared(ctx.clone(), meta.clone(), prepared, tx));
    let watcher = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = *rx.borrow();
                bar.set_position(p.rows_read);
                bar.set_message(format!(
                    "imported {}  repeats {}  rejected {}",
                    p.imported, p.duplicates, p.rejected
                ));
            }
        })
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    let summary = job.await?;
    let _ = watcher.await;
    bar.finish_and_clear();
    let p = summary.progress;
    let secs = started.elapsed().as_secs_f64();
    println!("job {} ({}): {}", summary.id, kind.as_str(), summary.status);
    println!(
        "  rows read {}  imported {}  repeats {}  rejected {}  in {:.2} s ({:.0} rows/s)",
        p.rows_read,
        p.imported,
        p.duplicates,
        p.rejected,
        secs,
        p.rows_read as f64 / secs.max(1e-9)
    );
    if let (Some(code), Some(msg)) = (&summary.error_code, &summary.error_message_zh) {
        println!("  error [{code}]: {msg}");
    }
    if p.rejected > 0 {
        let out = errors_out.unwrap_or_else(|| {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "import".to_owned());
            file.with_file_name(format!("{stem}.errors.xlsx"))
        });
        let view = jobs::get(&store, &ctx.live, summary.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("job {} vanished", summary.id))?;
        let stored = jobs::rejects(&store, summary.id).await?;
        let bytes = super::api::report_bytes(&ctx.ring, kind, &view.headers, stored, true)
            .map_err(|e| anyhow::anyhow!("error report: {}", e.body.message))?;
        std::fs::write(&out, bytes)?;
        println!(
            "  error report: {} (fix the rows and import it again)",
            out.display()
        );
    }
    store.close().await;
    Ok(match summary.status.as_str() {
        "completed" => 0,
        "partial" => 2,
        _ => 1,
    })
}

/// Arguments of `xfhub export`.
#[derive(Debug, Clone)]
pub struct ExportArgs {
    pub kind: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub division: Option<String>,
    pub status: Option<String>,
    pub out: PathBuf,
    pub clear_pii: bool,
}

pub async fn export(cfg: &Config, a: ExportArgs) -> anyhow::Result<()> {
    let kind = match a.kind.as_str() {
        "petition" => RecordKind::Petition,
        "workorder" => RecordKind::Workorder,
        _ => anyhow::bail!("--kind: petition or workorder"),
    };
    for (name, v) in [("--from", &a.from), ("--to", &a.to)] {
        if let Some(d) = v {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| anyhow::anyhow!("{name}: use YYYY-MM-DD"))?;
        }
    }
    let tables = CodeTables::embedded();
    let division = match &a.division {
        Some(d) => Some(
            tables
                .current_division(d)
                .ok_or_else(|| anyhow::anyhow!("--division: unknown division code {d}"))?,
        ),
        None => None,
    };
    let (store, keys) = crate::admin_cli::open(cfg).await?;
    let spec = ExportSpec {
        kind,
        from: a.from.clone(),
        to: a.to.clone(),
        division,
        divisions: None,
        status: a.status.clone(),
        clear_pii: a.clear_pii,
    };
    let started = Instant::now();
    let (mut file, rows) = export::write(
        &store,
        keys.current(),
        tables,
        &spec,
        cfg.excel.max_export_rows,
    )
    .await?;
    let mut out = std::fs::File::create(&a.out)?;
    std::io::copy(&mut file, &mut out)?;
    store
        .audit(AuditDraft {
            actor: "cli".to_owned(),
            action: "excel.export".to_owned(),
            target: kind.as_str().to_owned(),
            outcome: "ok".to_owned(),
            remote: "local".to_owned(),
            detail: format!(
                "from={} to={} division={} status={} rows={rows} pii={}",
                a.from.as_deref().unwrap_or("-"),
                a.to.as_deref().unwrap_or("-"),
                spec.division.as_deref().unwrap_or("-"),
                a.status.as_deref().unwrap_or("-"),
                if a.clear_pii { "clear" } else { "masked" }
            ),
        })
        .await?;
    store.close().await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "exported {rows} {} rows to {} in {secs:.2} s ({:.0} rows/s)",
        kind.as_str(),
        a.out.display(),
        rows as f64 / secs.max(1e-9)
    );
    Ok(())
}
