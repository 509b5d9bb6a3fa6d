//! Writing an exchange package as a stream.
//!
//! The zip is written by `zip`'s streaming writer (data descriptors, no seeking) into a
//! [`ChannelWriter`] whose 256 KiB chunks are the HTTP body; a bounded channel holds back the
//! writer when the client reads slowly. Records are read 1,000 at a time from the change log
//! joined with the records (one query per page). Each data file (10,000 records) is converted
//! to canonical XML, hashed (SM3 and SHA-256 of the uncompressed bytes, for the manifest) and
//! compressed on a worker thread, one per core, into a one-entry zip in memory whose compressed
//! bytes are then copied into the stream in order; at most `workers + 1` files are held at
//! once, so memory does not grow with the number of records. The writer runs on a blocking
//! thread and reads the store through the runtime's handle.
//!
//! Which records: change-log entries of the info set after `since`, up to the log's end when the
//! pull started, whose version is still the record's current version (an entry superseded by a
//! later version is left to that later entry, which comes after it in the log). Pulling the same
//! cursor again therefore returns the same records unless they changed since; a change shows up
//! again after the cursor.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sm3::Sm3;
use sqlx::Row;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use uuid::Uuid;
use xfhub_schemas::{Petition, ProcessEvent, WorkOrder};
use xfhub_security::keys::KeyRing;
use xfhub_store::{AuditDraft, Stmt, Store, Txn};
use xfhub_transforms::exchange::{
    self as fmt, FileEntry, Header, InfoSet, Manifest, Op, Signature, RECORDS_PER_FILE,
};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Records read per query.
const PAGE: u64 = 1_000;
/// Bytes per chunk of the HTTP body.
const CHUNK: usize = 256 * 1024;

/// What to export, for whom.
pub struct ExportParams {
    pub infoset: InfoSet,
    pub since: i64,
    pub limit: u64,
    pub sender: String,
    /// App key of the puller (header receiver, signature signer).
    pub receiver: String,
    /// The puller's secret: the signature key.
    pub secret: zeroize::Zeroizing<Vec<u8>>,
    /// Only these divisions (the puller's scope); None = all.
    pub divisions: Option<Vec<String>>,
    /// Mask personal numbers (a puller without `pii:read`).
    pub mask: bool,
    pub remote: String,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub serial: String,
    pub records: u64,
    pub cursor_to: i64,
    pub more: bool,
}

/// A new package serial: `XF` and a time-ordered UUID.
pub fn new_serial() -> String {
    format!("XF{}", Uuid::now_v7().simple()).to_ascii_uppercase()
}

/// The HTTP body of a package being written.
pub fn stream(store: Store, ring: Arc<KeyRing>, params: ExportParams, serial: String) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let rt = Handle::current();
    tokio::task::spawn_blocking(move || {
        let sink = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        match write_package(&rt, &store, &ring, &params, &serial, sink) {
            Ok(sum) => {
                metrics::counter!("xfhub_exchange_records_exported_total", "infoset" => params.infoset.as_str()).increment(sum.records);
                tracing::info!(serial = %sum.serial, records = sum.records, cursor_to = sum.cursor_to, "PackageExported");
            }
            Err(e) => {
                tracing::warn!(error = %e, serial = %serial, "PackageExportError");
                // The client sees a broken body, never a package that looks complete.
                let _ = tx.blocking_send(Err(io::Error::other("export failed")));
            }
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// A `Write` whose bytes go to a channel in chunks; fails once the receiver is gone (the client
/// disconnected), which stops the export.
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// SM3 and SHA-256 of a file as it is written.
struct FileDigest {
    name: String,
    sm3: Sm3,
    sha: Sha256,
    size: u64,
    records: u64,
}

impl FileDigest {
    fn new(name: String) -> Self {
        FileDigest {
            name,
            sm3: Sm3::new(),
            sha: Sha256::new(),
            size: 0,
            records: 0,
        }
    }

    fn write<W: Write + io::Seek>(
        &mut self,
        zip: &mut ZipWriter<W>,
        bytes: &[u8],
    ) -> io::Result<()> {
        self.sm3.update(bytes);
        self.sha.update(bytes);
        self.size += bytes.len() as u64;
        zip.write_all(bytes)
    }

    fn finish(self) -> FileEntry {
        FileEntry {
            name: self.name,
            size: self.size,
            records: self.records,
            sm3: hex::encode(self.sm3.finalize()),
            sha256: hex::encode(self.sha.finalize()),
        }
    }
}

/// HMAC-SM3 of the manifest's bytes, lowercase hex.
pub fn sign_manifest(secret: &[u8], manifest: &[u8]) -> String {
    let mut mac = <Hmac<Sm3> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(manifest);
    hex::encode(mac.finalize().into_bytes())
}

fn options() -> SimpleFileOptions {
    // Fast deflate: XML compresses ~10x even at level 1; higher levels cost throughput.
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(false)
}

/// One row of a page: (cursor, op, id, stored body).
type Row4 = (i64, String, String, String);

async fn page(
    store: &Store,
    infoset: InfoSet,
    after: i64,
    upto: i64,
    n: u64,
    divisions: &Option<Vec<String>>,
) -> anyhow::Result<Vec<Row4>> {
    let (mut sql, mut stmt_args): (String, Vec<String>) = match infoset {
        InfoSet::ProcessEvent => (
            "SELECT seq, 'I' AS op, petition_id AS id, body FROM process_events \
             WHERE seq > $1 AND seq <= $2"
                .to_owned(),
            Vec::new(),
        ),
        kind => (
            "SELECT c.seq AS seq, c.op AS op, r.id AS id, r.body AS body FROM change_log c \
             JOIN records r ON r.id = c.record_id \
             WHERE c.seq > $1 AND c.seq <= $2 AND c.kind = $3 AND r.version = c.version"
                .to_owned(),
            vec![kind.as_str().to_owned()],
        ),
    };
    if let Some(divs) = divisions {
        let col = if infoset == InfoSet::ProcessEvent {
            "division"
        } else {
            "r.division"
        };
        if divs.is_empty() {
            sql.push_str(" AND 1 = 0");
        } else {
            let first = 3 + stmt_args.len();
            let marks: Vec<String> = (0..divs.len()).map(|i| format!("${}", first + i)).collect();
            sql.push_str(&format!(" AND {col} IN ({})", marks.join(", ")));
            stmt_args.extend(divs.iter().cloned());
        }
    }
    let order = if infoset == InfoSet::ProcessEvent {
        "seq"
    } else {
        "c.seq"
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT {n}"));
    let mut stmt = Stmt::new(sql).bind(after).bind(upto);
    for a in stmt_args {
        stmt = stmt.bind(a);
    }
    let rows = stmt.query().fetch_all(store.reader()).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>("seq")?,
                r.try_get::<String, _>("op")?,
                r.try_get::<String, _>("id")?,
                r.try_get::<String, _>("body")?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(Into::into)
}

async fn high_water(store: &Store, infoset: InfoSet) -> anyhow::Result<i64> {
    let table = if infoset == InfoSet::ProcessEvent {
        "process_events"
    } else {
        "change_log"
    };
    let row = Stmt::new(format!("SELECT COALESCE(MAX(seq), 0) AS m FROM {table}"))
        .query()
        .fetch_one(store.reader())
        .await?;
    Ok(row.try_get::<i64, _>("m")?)
}

/// The canonical XML of a stored body: personal numbers opened, masked unless allowed. The
/// body is read straight into its canonical type and the personal slots opened there
/// (`crate::typed_pii`), the same result as `pii::open_document` + `mask_document` on the JSON
/// (a test below holds the two equal).
fn payload(ring: &KeyRing, infoset: InfoSet, body: &str, mask: bool) -> anyhow::Result<String> {
    Ok(match infoset {
        InfoSet::Petition => {
            let mut p: Petition = serde_json::from_str(body)?;
            crate::typed_pii::open_petition(ring, &mut p, mask)?;
            fmt::payload_xml("petition", &p)?
        }
        InfoSet::Workorder => {
            let mut w: WorkOrder = serde_json::from_str(body)?;
            crate::typed_pii::open_workorder(ring, &mut w, mask)?;
            fmt::payload_xml("workorder", &w)?
        }
        InfoSet::ProcessEvent => fmt::payload_xml(
            "process_event",
            &serde_json::from_str::<ProcessEvent>(body)?,
        )?,
    })
}

/// One data file's records, to be converted and compressed on a worker thread.
struct FileJob {
    no: u32,
    rows: Vec<Row4>,
    done: std_mpsc::SyncSender<anyhow::Result<EncodedFile>>,
}

/// A data file converted, digested and compressed: a one-entry zip in memory whose entry is
/// copied into the package without recompression.
struct EncodedFile {
    zip: Vec<u8>,
    entry: FileEntry,
}

/// Converts, digests and compresses one data file. Data files are independent (each has its
/// own deflate stream and digests), so several are encoded at once, one per core; the package
/// writer only copies the compressed bytes in order (`ZipWriter::raw_copy_file_rename`).
fn encode_file(
    ring: &KeyRing,
    p: &ExportParams,
    serial: &str,
    no: u32,
    rows: Vec<Row4>,
) -> anyhow::Result<EncodedFile> {
    let name = fmt::data_file_name(no);
    let mut zip = ZipWriter::new(io::Cursor::new(Vec::with_capacity(rows.len() * 256)));
    zip.start_file(name.clone(), options())?;
    let mut d = FileDigest::new(name);
    d.write(&mut zip, fmt::DATA_OPEN.as_bytes())?;
    let mut buf = String::with_capacity(8 * 1024);
    for (seq, op, id, body) in rows {
        let op = Op::parse(&op).unwrap_or(Op::Update);
        let id = Uuid::parse_str(&id)?;
        buf.clear();
        let xml = payload(ring, p.infoset, &body, p.mask)?;
        fmt::write_record(&mut buf, op, serial, seq, id, &xml);
        d.write(&mut zip, buf.as_bytes())?;
        d.records += 1;
    }
    d.write(&mut zip, fmt::DATA_CLOSE.as_bytes())?;
    Ok(EncodedFile {
        zip: zip.finish()?.into_inner(),
        entry: d.finish(),
    })
}

/// Copies an encoded data file into the package.
fn append_file<W: Write>(
    zip: &mut ZipWriter<zip::write::StreamWriter<W>>,
    files: &mut Vec<FileEntry>,
    encoded: EncodedFile,
) -> anyhow::Result<()> {
    let mut one = zip::ZipArchive::new(io::Cursor::new(encoded.zip))?;
    let entry = one.by_index_raw(0)?;
    zip.raw_copy_file_rename(entry, encoded.entry.name.clone())?;
    files.push(encoded.entry);
    Ok(())
}

/// Writes the whole package into `sink`, then records it (exchange_packages, audit).
///
/// This thread reads the records page by page and hands each data file's records to a worker;
/// the workers (one per core) convert, digest and compress whole data files; this thread copies
/// the finished files into the stream in order. At most `workers + 1` files are held at once,
/// so memory stays bounded whatever the number of records.
pub fn write_package<W: Write>(
    rt: &Handle,
    store: &Store,
    ring: &KeyRing,
    p: &ExportParams,
    serial: &str,
    sink: W,
) -> anyhow::Result<ExportSummary> {
    let hi = rt.block_on(high_water(store, p.infoset))?.max(p.since);
    let mut zip = ZipWriter::new_stream(sink);
    let mut files = Vec::new();

    let header = Header {
        format_version: fmt::FORMAT_VERSION,
        sender: p.sender.clone(),
        receiver: p.receiver.clone(),
        business_code: p.infoset.business_code().to_owned(),
        package_serial: serial.to_owned(),
        created_at: Utc::now().fixed_offset(),
        infoset: p.infoset.as_str().to_owned(),
    };
    let text = fmt::document("header", &header)?;
    zip.start_file(fmt::HEADER, options())?;
    let mut d = FileDigest::new(fmt::HEADER.to_owned());
    d.write(&mut zip, text.as_bytes())?;
    files.push(d.finish());

    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut cursor = p.since;
    let mut emitted = 0u64;
    let mut exhausted = false;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (job_tx, job_rx) = std_mpsc::sync_channel::<FileJob>(workers);
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..workers {
            let job_rx = job_rx.clone();
            scope.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                // A closed result channel means the writer gave up; nothing to report to.
                let _ = job
                    .done
                    .send(encode_file(ring, p, serial, job.no, job.rows));
            });
        }
        let mut pending = VecDeque::new();
        let mut file_no = 0u32;
        let mut rows: Vec<Row4> = Vec::new();
        let submit = |no: u32, rows: Vec<Row4>, pending: &mut VecDeque<_>| {
            let (done, result) = std_mpsc::sync_channel(1);
            job_tx
                .send(FileJob { no, rows, done })
                .map_err(|_| anyhow::anyhow!("export workers stopped"))?;
            pending.push_back(result);
            anyhow::Ok(())
        };
        let mut collect =
            |pending: &mut VecDeque<std_mpsc::Receiver<anyhow::Result<EncodedFile>>>| {
                let result = pending.pop_front().expect("a pending file");
                let encoded = result
                    .recv()
                    .map_err(|_| anyhow::anyhow!("an export worker stopped"))??;
                append_file(&mut zip, &mut files, encoded)
            };
        while emitted < p.limit {
            let want = PAGE.min(p.limit - emitted);
            let page_rows = rt.block_on(page(store, p.infoset, cursor, hi, want, &p.divisions))?;
            let n = page_rows.len() as u64;
            for row in page_rows {
                cursor = row.0;
                rows.push(row);
                if rows.len() == RECORDS_PER_FILE {
                    file_no += 1;
                    submit(file_no, std::mem::take(&mut rows), &mut pending)?;
                    while pending.len() > workers {
                        collect(&mut pending)?;
                    }
                }
            }
            emitted += n;
            if n < want {
                exhausted = true;
                break;
            }
        }
        // The last, partial file; an empty package still has one (empty) data file.
        if !rows.is_empty() || file_no == 0 {
            file_no += 1;
            submit(file_no, rows, &mut pending)?;
        }
        drop(job_tx);
        while !pending.is_empty() {
            collect(&mut pending)?;
        }
        Ok(())
    })?;
    let cursor_to = if exhausted { hi } else { cursor };
    let manifest = Manifest {
        package_serial: serial.to_owned(),
        infoset: p.infoset.as_str().to_owned(),
        record_count: emitted,
        cursor_from: p.since,
        cursor_to,
        more: cursor_to < hi,
        file: files,
    };
    let manifest_text = fmt::document("manifest", &manifest)?;
    zip.start_file(fmt::MANIFEST, options())?;
    zip.write_all(manifest_text.as_bytes())?;
    let signature = Signature {
        algorithm: fmt::ALGORITHM.to_owned(),
        signer: p.receiver.clone(),
        signed_file: fmt::MANIFEST.to_owned(),
        value: sign_manifest(&p.secret, manifest_text.as_bytes()),
    };
    zip.start_file(fmt::SIGNATURE, options())?;
    zip.write_all(fmt::document("signature", &signature)?.as_bytes())?;
    let mut sink = zip.finish()?.into_inner();
    sink.flush()?;

    let now = xfhub_store::now_ms();
    let txn = Txn {
        statements: vec![Stmt::new(
            "INSERT INTO exchange_packages (serial, direction, infoset, counterpart, cursor_from, \
             cursor_to, records, report, created_at, finished_at) \
             VALUES ($1, 'export', $2, $3, $4, $5, $6, NULL, $7, $7)",
        )
        .bind(serial)
        .bind(p.infoset.as_str())
        .bind(p.receiver.as_str())
        .bind(p.since)
        .bind(cursor_to)
        .bind(emitted as i64)
        .bind(now)],
        audit: vec![AuditDraft {
            actor: p.receiver.clone(),
            action: "exchange.export".to_owned(),
            target: serial.to_owned(),
            outcome: format!(
                "{} {} records, cursor {} -> {cursor_to}",
                p.infoset.as_str(),
                emitted,
                p.since
            ),
            remote: p.remote.clone(),
            detail: String::new(),
        }],
        ..Txn::default()
    };
    rt.block_on(store.transact(txn))?;
    Ok(ExportSummary {
        serial: serial.to_owned(),
        records: emitted,
        cursor_to,
        more: cursor_to < hi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use xfhub_schemas::{sample_petition, sample_workorder};
    use xfhub_security::pii::{self, DocKind};

    /// The JSON path the export used before: open, mask, then the typed conversion.
    fn via_json(ring: &KeyRing, kind: DocKind, body: &str, mask: bool) -> Value {
        let mut v: Value = serde_json::from_str(body).unwrap();
        pii::open_document(ring, kind, &mut v).unwrap();
        if mask {
            pii::mask_document(kind, &mut v);
        }
        v
    }

    #[test]
    fn typed_opening_equals_the_json_path() {
        let ring = KeyRing::generate();
        for k in 0..50 {
            let mut p = sample_petition(k);
            if k % 3 == 0 {
                p.complainants[0].mobile = None;
            }
            if k % 5 == 0 {
                p.complainants[0].id_number = Some(String::new());
            }
            let mut stored = serde_json::to_value(&p).unwrap();
            pii::seal_document(&ring, DocKind::Petition, &mut stored);
            let body = stored.to_string();
            if k % 15 != 0 {
                assert!(
                    body.contains("enc:"),
                    "k={k}: the sample must carry sealed values"
                );
            }
            for mask in [false, true] {
                let want: Petition =
                    serde_json::from_value(via_json(&ring, DocKind::Petition, &body, mask))
                        .unwrap();
                let got = payload(&ring, InfoSet::Petition, &body, mask).unwrap();
                assert_eq!(
                    got,
                    fmt::payload_xml("petition", &want).unwrap(),
                    "k={k} mask={mask}"
                );
            }

            let w = sample_workorder(k);
            let mut stored = serde_json::to_value(&w).unwrap();
            pii::seal_document(&ring, DocKind::WorkOrder, &mut stored);
            let body = stored.to_string();
            for mask in [false, true] {
                let want: WorkOrder =
                    serde_json::from_value(via_json(&ring, DocKind::WorkOrder, &body, mask))
                        .unwrap();
                let got = payload(&ring, InfoSet::Workorder, &body, mask).unwrap();
                assert_eq!(
                    got,
                    fmt::payload_xml("workorder", &want).unwrap(),
                    "k={k} mask={mask}"
                );
            }
        }
    }
}
