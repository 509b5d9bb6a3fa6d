//! Checking and applying an exchange package.
//!
//! [`verify`] runs every check before anything is applied, and reports every problem it finds
//! in a stage before it stops: (1) the zip itself: entry count, entry names (no `..`, no
//! absolute or unknown names, no duplicates), declared sizes and compression ratios (zip bombs);
//! (2) the HMAC-SM3 signature over `manifest.xml` with the pusher's secret; (3) the manifest:
//! every file listed is present and every present file listed, each file's size, SM3 and
//! SHA-256 match (reading never goes past the declared size); (4) the schema of every file
//! (hardened XML reading, namespaces, the typed shapes of `exchange.xsd` and `xfhub.xsd`),
//! record counts per file and in all, and header and manifest agreeing. Only a package that
//! passes all four is applied ([`import`]).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};

use axum::http::StatusCode;
use chrono::Utc;
use sha2::{Digest, Sha256};
use sm3::Sm3;
use tokio::runtime::Handle;
use xfhub_schemas::{validate_petition, validate_workorder, FieldError, ProcessEvent};
use xfhub_store::{intake, AuditDraft, ImportErrorItem, IngestOutcome, RecordKind, Stmt, Txn};
use xfhub_transforms::exchange::{
    self as fmt, DataRecord, EntryKind, Header, InfoSet, Manifest, Op, Payload, Signature,
};
use xfhub_transforms::xml_guard::{self, GuardError, Limits};
use zip::ZipArchive;

use super::persons::{PersonBook, Rules};
use super::{ImportReport, RejectedRecord};
use crate::app::AppState;
use crate::auth::{info_set_denied, Caller};
use crate::error::{ApiError, ApiFieldError};

/// Limits on a package.
#[derive(Debug, Clone, Copy)]
pub struct PackageLimits {
    pub max_entries: usize,
    pub max_entry_bytes: u64,
    pub max_total_bytes: u64,
    pub max_ratio: u64,
}

/// One reason a package is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry concerned (empty for the package as a whole).
    pub entry: String,
    pub code: &'static str,
    pub message: String,
    pub message_zh: String,
}

fn problem(
    entry: &str,
    code: &'static str,
    message: impl Into<String>,
    zh: impl Into<String>,
) -> Problem {
    Problem {
        entry: entry.to_owned(),
        code,
        message: message.into(),
        message_zh: zh.into(),
    }
}

/// Every problem as one 422 answer: `package_invalid`, a field per problem (path = entry).
pub fn rejection(problems: Vec<Problem>) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "package_invalid",
        format!(
            "the package was refused, nothing was imported: {}",
            problems.first().map(|p| p.message.as_str()).unwrap_or("")
        ),
        format!(
            "数据包不符合交换标准，未导入任何数据（{} 个问题）",
            problems.len()
        ),
    );
    for p in problems {
        e = e.with_field(&p.entry, p.code, p.message, p.message_zh);
    }
    e
}

/// A package that passed every check.
#[derive(Debug)]
pub struct Verified {
    pub header: Header,
    pub manifest: Manifest,
    pub infoset: InfoSet,
    /// Names of the data files, in order.
    pub data: Vec<String>,
}

/// XML limits of one package file: its size may be up to the entry limit; no depth beyond 40.
fn xml_limits(limits: &PackageLimits) -> Limits {
    Limits {
        max_bytes: usize::try_from(limits.max_entry_bytes).unwrap_or(usize::MAX),
        max_depth: 40,
        max_elements: usize::MAX,
    }
}

/// Reads an entry, never more than its declared size (a lying header is a bomb).
fn read_entry<R: Read + Seek>(archive: &mut ZipArchive<R>, name: &str) -> Result<Vec<u8>, Problem> {
    let f = archive.by_name(name).map_err(|e| {
        problem(
            name,
            "package_corrupt",
            format!("cannot read {name}: {e}"),
            format!("无法读取 {name}"),
        )
    })?;
    let declared = f.size();
    let mut out = Vec::with_capacity(usize::try_from(declared.min(64 << 20)).unwrap_or(0));
    f.take(declared + 1).read_to_end(&mut out).map_err(|e| {
        problem(
            name,
            "package_corrupt",
            format!("cannot read {name}: {e}"),
            format!("无法读取 {name}"),
        )
    })?;
    if out.len() as u64 != declared {
        return Err(problem(
            name,
            "package_zip_bomb",
            format!("{name} holds more or less data than its header declares"),
            format!("{name} 的实际大小与声明不符"),
        ));
    }
    Ok(out)
}

fn xml_problem(entry: &str, e: impl std::fmt::Display) -> Problem {
    problem(
        entry,
        "package_schema",
        format!("{entry} does not follow the exchange schema: {e}"),
        format!("{entry} 不符合交换标准的 XML 结构"),
    )
}

/// Runs every check (see the module documentation). `secret` is the key the signature must
/// verify with.
pub fn verify<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    secret: &[u8],
    limits: &PackageLimits,
) -> Result<Verified, Vec<Problem>> {
    // (1) The zip.
    if archive.len() > limits.max_entries {
        return Err(vec![problem(
            "",
            "package_too_many_entries",
            format!(
                "the package has {} entries; at most {} are accepted",
                archive.len(),
                limits.max_entries
            ),
            format!(
                "数据包包含 {} 个文件，超过上限 {}",
                archive.len(),
                limits.max_entries
            ),
        )]);
    }
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    let mut data = Vec::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let f = match archive.by_index_raw(i) {
            Ok(f) => f,
            Err(e) => {
                problems.push(problem(
                    "",
                    "package_corrupt",
                    format!("entry {i} cannot be read: {e}"),
                    "数据包文件损坏",
                ));
                continue;
            }
        };
        let name = f.name().to_owned();
        let kind = fmt::entry_kind(&name);
        if kind.is_none() {
            problems.push(problem(
                &name,
                "package_bad_entry_name",
                format!("entry name {name:?} is not allowed (header.xml, manifest.xml, signature.xml, data/NNNNNN.xml only)"),
                format!("数据包中不允许的文件名 {name:?}"),
            ));
        }
        if !names.insert(name.clone()) {
            problems.push(problem(
                &name,
                "package_duplicate_entry",
                format!("{name} appears twice"),
                format!("{name} 重复出现"),
            ));
        }
        let (size, packed) = (f.size(), f.compressed_size());
        total = total.saturating_add(size);
        if size > limits.max_entry_bytes {
            problems.push(problem(
                &name,
                "package_zip_bomb",
                format!(
                    "{name} unpacks to {size} bytes, over the limit of {}",
                    limits.max_entry_bytes
                ),
                format!("{name} 解压后超过大小上限"),
            ));
        } else if size > 1024 * 1024 && size / packed.max(1) > limits.max_ratio {
            problems.push(problem(
                &name,
                "package_zip_bomb",
                format!(
                    "{name} is compressed {}:1, over the limit of {}:1",
                    size / packed.max(1),
                    limits.max_ratio
                ),
                format!("{name} 压缩比异常（疑似压缩炸弹）"),
            ));
        }
        if let Some(EntryKind::Data(_)) = kind {
            data.push(name);
        }
    }
    if total > limits.max_total_bytes {
        problems.push(problem(
            "",
            "package_zip_bomb",
            format!(
                "the package unpacks to {total} bytes, over the limit of {}",
                limits.max_total_bytes
            ),
            "数据包解压后超过总大小上限",
        ));
    }
    for required in [fmt::HEADER, fmt::MANIFEST, fmt::SIGNATURE] {
        if !names.contains(required) {
            problems.push(problem(
                required,
                "package_missing_entry",
                format!("{required} is missing"),
                format!("缺少 {required}"),
            ));
        }
    }
    if data.is_empty() {
        problems.push(problem(
            "data/000001.xml",
            "package_missing_entry",
            "the package has no data file",
            "数据包中没有数据文件",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    data.sort();

    // (2) The signature over the manifest's bytes.
    let xl = xml_limits(limits);
    let manifest_bytes = read_entry(archive, fmt::MANIFEST).map_err(|p| vec![p])?;
    let sig_bytes = read_entry(archive, fmt::SIGNATURE).map_err(|p| vec![p])?;
    let signature: Signature = xml_guard::parse(&sig_bytes, &xl)
        .map_err(|e| e.to_string())
        .and_then(|root| fmt::read_document(&root, "signature").map_err(|e| e.to_string()))
        .map_err(|e| vec![xml_problem(fmt::SIGNATURE, e)])?;
    if signature.algorithm != fmt::ALGORITHM || signature.signed_file != fmt::MANIFEST {
        return Err(vec![problem(
            fmt::SIGNATURE,
            "package_bad_signature",
            format!(
                "signature algorithm {:?} over {:?}: only HMAC-SM3 over manifest.xml is accepted",
                signature.algorithm, signature.signed_file
            ),
            "签名算法或签名文件不符合交换标准",
        )]);
    }
    let expected = super::export::sign_manifest(secret, &manifest_bytes);
    let given = signature.value.to_ascii_lowercase();
    let same = given.len() == expected.len() && subtle_eq(given.as_bytes(), expected.as_bytes());
    if !same {
        return Err(vec![problem(fmt::SIGNATURE, "package_bad_signature", "the signature does not verify with this client's secret: the manifest was changed or signed by someone else", "数据包签名校验失败")]);
    }

    // (3) The manifest and the digest of every file.
    let manifest: Manifest = xml_guard::parse(&manifest_bytes, &xl)
        .map_err(|e| e.to_string())
        .and_then(|root| fmt::read_document(&root, "manifest").map_err(|e| e.to_string()))
        .map_err(|e| vec![xml_problem(fmt::MANIFEST, e)])?;
    let listed: HashMap<&str, &fmt::FileEntry> =
        manifest.file.iter().map(|f| (f.name.as_str(), f)).collect();
    for name in names
        .iter()
        .filter(|n| *n != fmt::MANIFEST && *n != fmt::SIGNATURE)
    {
        if !listed.contains_key(name.as_str()) {
            problems.push(problem(
                name,
                "package_unlisted_entry",
                format!("{name} is not listed in the manifest"),
                format!("{name} 未在清单中登记"),
            ));
        }
    }
    for f in &manifest.file {
        if !names.contains(&f.name) {
            problems.push(problem(
                &f.name,
                "package_missing_entry",
                format!("{} is listed in the manifest but missing", f.name),
                format!("清单中的 {} 不存在", f.name),
            ));
            continue;
        }
        match digest_entry(archive, &f.name) {
            Err(p) => problems.push(p),
            Ok((size, sm3, sha)) => {
                if size != f.size
                    || sm3 != f.sm3.to_ascii_lowercase()
                    || sha != f.sha256.to_ascii_lowercase()
                {
                    problems.push(problem(
                        &f.name,
                        "package_digest_mismatch",
                        format!(
                            "{} does not match its manifest entry (size, SM3 or SHA-256)",
                            f.name
                        ),
                        format!("{} 的大小或摘要（SM3/SHA-256）与清单不符", f.name),
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    // (4) The schema of every file, and the counts.
    let header_bytes = read_entry(archive, fmt::HEADER).map_err(|p| vec![p])?;
    let header: Header = xml_guard::parse(&header_bytes, &xl)
        .map_err(|e| e.to_string())
        .and_then(|root| fmt::read_document(&root, "header").map_err(|e| e.to_string()))
        .map_err(|e| vec![xml_problem(fmt::HEADER, e)])?;
    let Some(infoset) = InfoSet::parse(&manifest.infoset) else {
        return Err(vec![xml_problem(
            fmt::MANIFEST,
            format!("unknown info set {:?}", manifest.infoset),
        )]);
    };
    if header.infoset != manifest.infoset || header.package_serial != manifest.package_serial {
        problems.push(problem(
            fmt::HEADER,
            "package_inconsistent",
            "header and manifest name another info set or package serial",
            "报头与清单的信息集或包序号不一致",
        ));
    }
    if header.format_version != fmt::FORMAT_VERSION {
        problems.push(problem(
            fmt::HEADER,
            "package_version_unsupported",
            format!(
                "format version {} is not supported (1 is)",
                header.format_version
            ),
            "不支持的交换格式版本",
        ));
    }
    let mut count = 0u64;
    for name in &data {
        let mut n = 0u64;
        let result = read_entry(archive, name).and_then(|bytes| {
            for_each_in(&bytes, infoset, &xl, |_| {
                n += 1;
                Ok(())
            })
            .map_err(|e| xml_problem(name, e))
        });
        if let Err(p) = result {
            problems.push(p);
            continue;
        }
        if listed.get(name.as_str()).map(|f| f.records) != Some(n) {
            problems.push(problem(
                name,
                "package_count_mismatch",
                format!("{name} holds {n} records, the manifest says otherwise"),
                format!("{name} 的记录数与清单不符"),
            ));
        }
        count += n;
    }
    if problems.is_empty() && count != manifest.record_count {
        problems.push(problem(
            fmt::MANIFEST,
            "package_count_mismatch",
            format!(
                "the data files hold {count} records, the manifest says {}",
                manifest.record_count
            ),
            "数据记录总数与清单不符",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Verified {
        header,
        manifest,
        infoset,
        data,
    })
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Size, SM3 and SHA-256 of an entry's uncompressed bytes, read in 64 KiB pieces.
fn digest_entry<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    name: &str,
) -> Result<(u64, String, String), Problem> {
    let f = archive.by_name(name).map_err(|e| {
        problem(
            name,
            "package_corrupt",
            format!("cannot read {name}: {e}"),
            format!("无法读取 {name}"),
        )
    })?;
    let declared = f.size();
    let mut r = f.take(declared + 1);
    let (mut sm3, mut sha, mut size) = (Sm3::new(), Sha256::new(), 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).map_err(|e| {
            problem(
                name,
                "package_corrupt",
                format!("cannot read {name}: {e}"),
                format!("无法读取 {name}"),
            )
        })?;
        if n == 0 {
            break;
        }
        sm3.update(&buf[..n]);
        sha.update(&buf[..n]);
        size += n as u64;
    }
    if size > declared {
        return Err(problem(
            name,
            "package_zip_bomb",
            format!("{name} holds more data than its header declares"),
            format!("{name} 的实际大小超过声明"),
        ));
    }
    Ok((
        size,
        hex::encode(sm3.finalize()),
        hex::encode(sha.finalize()),
    ))
}

/// Reads the records of a data file one at a time.
fn for_each_in(
    bytes: &[u8],
    infoset: InfoSet,
    limits: &Limits,
    mut f: impl FnMut(DataRecord) -> Result<(), String>,
) -> Result<(), String> {
    let mut failure = None;
    let root = xml_guard::parse_streaming(bytes, limits, 1, |e| {
        let rec =
            fmt::read_record(&e, infoset).map_err(|e| GuardError::Malformed(e.to_string()))?;
        f(rec).map_err(|e| {
            failure = Some(e.clone());
            GuardError::Malformed(e)
        })
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let root = root.map_err(|e| e.to_string())?;
    if root.name != "records"
        || root.ns.as_deref() != Some(fmt::NS_EXCHANGE)
        || !root.children.is_empty()
    {
        return Err("the root element must be <records> in urn:xfhub:exchange:v1 holding <record> elements only".to_owned());
    }
    Ok(())
}

fn field(e: FieldError) -> ApiFieldError {
    ApiFieldError::from(e)
}

fn reason(path: &str, code: &str, en: &str, zh: &str) -> ApiFieldError {
    ApiFieldError {
        path: path.to_owned(),
        code: code.to_owned(),
        message: en.to_owned(),
        message_zh: zh.to_owned(),
    }
}

/// Records applied per transaction.
const BATCH: usize = 500;

/// One record waiting in a batch, with what the report needs to know about it.
enum Pending {
    /// Index into the batch's ingests.
    Ingest {
        seq: i64,
        source_id: String,
    },
    /// Index into the batch's statements (a process event insert).
    Event {
        seq: i64,
        source_id: String,
    },
    Skipped,
    Rejected(RejectedRecord),
}

struct Applier<'a> {
    rt: &'a Handle,
    s: &'a AppState,
    caller: &'a Caller,
    infoset: InfoSet,
    serial: String,
    book: PersonBook<'a>,
    txn: Txn,
    pending: Vec<Pending>,
    report: ImportReport,
}

impl Applier<'_> {
    fn reject(
        &mut self,
        seq: i64,
        source_id: Option<String>,
        raw: String,
        reasons: Vec<ApiFieldError>,
    ) {
        self.txn.import_errors.push(ImportErrorItem {
            source: format!("exchange:{}", self.caller.app_key),
            kind: self.infoset.as_str().to_owned(),
            source_ref: source_id.clone(),
            // The input holds personal data: stored sealed, like every import error.
            raw: self.s.keys.current().seal(&raw),
            reasons: serde_json::to_value(&reasons).unwrap_or_default(),
        });
        self.pending.push(Pending::Rejected(RejectedRecord {
            seq,
            source_id,
            reasons,
        }));
    }

    fn add(&mut self, rec: DataRecord) -> Result<(), ApiError> {
        self.report.records += 1;
        let now = Utc::now();
        match (rec.op, rec.payload) {
            (Op::Delete, _) | (_, None) => self.pending.push(Pending::Skipped),
            (_, Some(Payload::Petition(p))) => {
                let raw = serde_json::to_string(&p).unwrap_or_default();
                let source_id = p.source.id.clone();
                match validate_petition(*p, self.s.tables, now) {
                    Err(errs) => self.reject(
                        rec.seq,
                        Some(source_id),
                        raw,
                        errs.into_iter().map(field).collect(),
                    ),
                    Ok(p) if !self.caller.may_see_division(&p.appeal.division) => self.reject(
                        rec.seq,
                        Some(source_id),
                        raw,
                        vec![reason(
                            "appeal.division",
                            "auth_division_denied",
                            "outside the divisions this client may import",
                            "超出本接入系统可导入的行政区划",
                        )],
                    ),
                    Ok(p) => {
                        let seen = p.acceptance.registered_at.timestamp_millis();
                        for c in &p.complainants {
                            self.book
                                .observe(c, seen, &self.serial)
                                .map_err(|e| ApiError::internal("person register", &e))?;
                        }
                        let mut item = intake::petition_item(&p, &self.s.keys.current())
                            .map_err(|e| ApiError::internal("encode petition", &e))?;
                        item.audit = None;
                        self.txn.ingests.push(item);
                        self.pending.push(Pending::Ingest {
                            seq: rec.seq,
                            source_id,
                        });
                    }
                }
            }
            (_, Some(Payload::Workorder(w))) => {
                let raw = serde_json::to_string(&w).unwrap_or_default();
                let source_id = w.source.id.clone();
                match validate_workorder(*w, self.s.tables, now) {
                    Err(errs) => self.reject(
                        rec.seq,
                        Some(source_id),
                        raw,
                        errs.into_iter().map(field).collect(),
                    ),
                    Ok(w) if !self.caller.may_see_division(&w.division) => self.reject(
                        rec.seq,
                        Some(source_id),
                        raw,
                        vec![reason(
                            "division",
                            "auth_division_denied",
                            "outside the divisions this client may import",
                            "超出本接入系统可导入的行政区划",
                        )],
                    ),
                    Ok(w) => {
                        let item = intake::workorder_item(&w, &self.s.keys.current())
                            .map_err(|e| ApiError::internal("encode work order", &e))?;
                        self.txn.ingests.push(item);
                        self.pending.push(Pending::Ingest {
                            seq: rec.seq,
                            source_id,
                        });
                    }
                }
            }
            (_, Some(Payload::ProcessEvent(ev))) => self.add_event(rec.seq, *ev)?,
        }
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn add_event(&mut self, seq: i64, ev: ProcessEvent) -> Result<(), ApiError> {
        let raw = serde_json::to_string(&ev).unwrap_or_default();
        let src = &ev.petition_source;
        let found = self
            .rt
            .block_on(
                self.s
                    .store
                    .get_record_by_source(RecordKind::Petition, &src.system, &src.id),
            )
            .map_err(|e| ApiError::internal("find petition", &e))?;
        let Some(rec) = found else {
            self.reject(
                seq,
                Some(src.id.clone()),
                raw,
                vec![reason(
                    "petition_source",
                    "petition_unknown",
                    "no petition with this source is stored; import the petition first",
                    "本系统中没有该信访件，请先导入信访件",
                )],
            );
            return Ok(());
        };
        let division = rec
            .data
            .get("appeal")
            .and_then(|a| a.get("division"))
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_owned();
        if !self.caller.may_see_division(&division) {
            self.reject(
                seq,
                Some(src.id.clone()),
                raw,
                vec![reason(
                    "petition_source",
                    "auth_division_denied",
                    "outside the divisions this client may import",
                    "超出本接入系统可导入的行政区划",
                )],
            );
            return Ok(());
        }
        let kind = serde_json::to_value(ev.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.txn.statements.push(
            Stmt::new(
                "INSERT INTO process_events (petition_id, kind, occurred_at, division, body, actor, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (petition_id, kind, occurred_at) DO NOTHING",
            )
            .bind(rec.id.to_string())
            .bind(kind)
            .bind(ev.occurred_at.to_rfc3339())
            .bind(division)
            .bind(raw)
            .bind(self.caller.app_key.as_str())
            .bind(xfhub_store::now_ms()),
        );
        self.pending.push(Pending::Event {
            seq,
            source_id: src.id.clone(),
        });
        Ok(())
    }

    /// Applies the batch in one transaction and counts what happened.
    fn flush(&mut self) -> Result<(), ApiError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (persons, inserted, updated) = self.book.statements();
        let mut txn = std::mem::take(&mut self.txn);
        // Person rows first in the statement list would shift the event indexes: append them.
        let events_end = txn.statements.len();
        txn.statements.extend(persons);
        let out = self
            .rt
            .block_on(self.s.store.transact(txn))
            .map_err(|e| ApiError::internal("import batch", &e))?;
        self.s.relay.notify();
        self.report.persons_inserted += inserted;
        self.report.persons_updated += updated;
        let mut ingests = out.ingests.into_iter();
        let mut events = out.rows_affected.into_iter().take(events_end);
        for p in std::mem::take(&mut self.pending) {
            match p {
                Pending::Skipped => self.report.skipped += 1,
                Pending::Rejected(r) => self.rejected(r),
                Pending::Event { seq, source_id } => match events.next() {
                    Some(0) => self.report.skipped += 1,
                    Some(_) => self.report.inserted += 1,
                    None => self.rejected(RejectedRecord {
                        seq,
                        source_id: Some(source_id),
                        reasons: vec![],
                    }),
                },
                Pending::Ingest { seq, source_id } => match ingests.next() {
                    Some(IngestOutcome::Created(_)) => self.report.inserted += 1,
                    Some(IngestOutcome::Updated(_)) => self.report.updated += 1,
                    Some(IngestOutcome::Duplicate(_)) | Some(IngestOutcome::Stale { .. }) => {
                        self.report.skipped += 1
                    }
                    Some(IngestOutcome::Conflict { version }) => self.rejected(RejectedRecord {
                        seq,
                        source_id: Some(source_id),
                        reasons: vec![reason(
                            "source.version",
                            "version_conflict",
                            &format!(
                                "version {version} was already received with different content"
                            ),
                            "同一版本内容不一致",
                        )],
                    }),
                    Some(IngestOutcome::Replayed) | None => self.rejected(RejectedRecord {
                        seq,
                        source_id: Some(source_id),
                        reasons: vec![],
                    }),
                },
            }
        }
        Ok(())
    }

    fn rejected(&mut self, r: RejectedRecord) {
        self.report.rejected += 1;
        if self.report.rejects.len() < 100 {
            self.report.rejects.push(r);
        }
    }
}

/// Verifies a package and, when valid, applies it; the report says what happened to every
/// record. Runs on a blocking thread (zip reading, hashing); store calls go through `rt`.
#[allow(clippy::too_many_arguments)] // reason: one entry point shared by HTTP and tests
pub fn import<R: Read + Seek>(
    rt: &Handle,
    s: &AppState,
    caller: &Caller,
    reader: R,
    secret: &[u8],
    limits: &PackageLimits,
    rules: &Rules,
    remote: &str,
) -> Result<ImportReport, ApiError> {
    let mut archive = ZipArchive::new(reader).map_err(|e| {
        rejection(vec![problem(
            "",
            "package_not_zip",
            format!("the body is not a readable zip file: {e}"),
            "上传的内容不是有效的 zip 数据包",
        )])
    })?;
    let v = verify(&mut archive, secret, limits).map_err(rejection)?;
    if !caller.has_info_set(v.infoset.as_str()) {
        return Err(info_set_denied(v.infoset.as_str()));
    }
    let xl = xml_limits(limits);
    let mut a = Applier {
        rt,
        s,
        caller,
        infoset: v.infoset,
        serial: v.manifest.package_serial.clone(),
        book: PersonBook::new(rt, &s.store, s.keys.current(), *rules),
        txn: Txn::default(),
        pending: Vec::new(),
        report: ImportReport {
            package_serial: v.manifest.package_serial.clone(),
            infoset: v.infoset.as_str().to_owned(),
            ..ImportReport::default()
        },
    };
    for name in &v.data {
        let bytes = read_entry(&mut archive, name).map_err(|p| rejection(vec![p]))?;
        let mut failed = None;
        let walked = for_each_in(&bytes, v.infoset, &xl, |rec| {
            a.add(rec).map_err(|e| {
                let msg = e.body.code.clone();
                failed = Some(e);
                msg
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        walked.map_err(|e| rejection(vec![xml_problem(name, e)]))?;
    }
    a.flush()?;
    let report = a.report;
    let now = xfhub_store::now_ms();
    let txn = Txn {
        statements: vec![Stmt::new(
            "INSERT INTO exchange_packages (serial, direction, infoset, counterpart, cursor_from, \
             cursor_to, records, report, created_at, finished_at) \
             VALUES ($1, 'import', $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (serial, direction) DO UPDATE SET report = $7, finished_at = $8",
        )
        .bind(report.package_serial.as_str())
        .bind(report.infoset.as_str())
        .bind(caller.app_key.as_str())
        .bind(v.manifest.cursor_from)
        .bind(v.manifest.cursor_to)
        .bind(report.records as i64)
        .bind(serde_json::to_string(&report).unwrap_or_default())
        .bind(now)],
        audit: vec![AuditDraft {
            actor: caller.app_key.clone(),
            action: "exchange.import".to_owned(),
            target: report.package_serial.clone(),
            outcome: format!(
                "{}: {} inserted, {} updated, {} skipped, {} rejected",
                report.infoset, report.inserted, report.updated, report.skipped, report.rejected
            ),
            remote: remote.to_owned(),
            detail: String::new(),
        }],
        ..Txn::default()
    };
    rt.block_on(s.store.transact(txn))
        .map_err(|e| ApiError::internal("record import", &e))?;
    let _ = &v.header;
    Ok(report)
}
