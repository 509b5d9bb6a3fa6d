//! The standard exchange package (spec 5.1.7.1; `contracts/xsd/exchange.xsd`): its files, their
//! names and their XML. Pure: the gateway (`hub/src/exchange`) reads and writes the zip,
//! computes digests and signatures and talks to the store.
//!
//! Entries, in this order: `header.xml`, `data/000001.xml` ... (at most
//! [`RECORDS_PER_FILE`] records each), `manifest.xml` (digests of every other file but the
//! signature), `signature.xml` (HMAC-SM3 over the manifest's bytes). No other name is valid.

use chrono::{DateTime, FixedOffset};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use xfhub_schemas::{Petition, ProcessEvent, WorkOrder};

use crate::xml_guard::{Element, GuardError};
use crate::xml_soap::{self, ShapeError};

pub const NS_EXCHANGE: &str = "urn:xfhub:exchange:v1";
pub const NS_XFHUB: &str = "urn:xfhub:v1";
pub const FORMAT_VERSION: u32 = 1;
/// Records in one data file.
pub const RECORDS_PER_FILE: usize = 10_000;
pub const HEADER: &str = "header.xml";
pub const MANIFEST: &str = "manifest.xml";
pub const SIGNATURE: &str = "signature.xml";
pub const ALGORITHM: &str = "HMAC-SM3";

/// The information sets a package carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InfoSet {
    Petition,
    Workorder,
    ProcessEvent,
}

impl InfoSet {
    pub fn parse(s: &str) -> Option<InfoSet> {
        Some(match s {
            "petition" => InfoSet::Petition,
            "workorder" => InfoSet::Workorder,
            "process_event" => InfoSet::ProcessEvent,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InfoSet::Petition => "petition",
            InfoSet::Workorder => "workorder",
            InfoSet::ProcessEvent => "process_event",
        }
    }

    /// Business code of the header.
    pub fn business_code(self) -> &'static str {
        match self {
            InfoSet::Petition => "XF-PETITION",
            InfoSet::Workorder => "XF-WORKORDER",
            InfoSet::ProcessEvent => "XF-PROCESS-EVENT",
        }
    }

    /// The element name of a record's payload.
    pub fn payload_element(self) -> &'static str {
        self.as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format_version: u32,
    pub sender: String,
    pub receiver: String,
    pub business_code: String,
    pub package_serial: String,
    pub created_at: DateTime<FixedOffset>,
    pub infoset: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub records: u64,
    pub sm3: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub package_serial: String,
    pub infoset: String,
    pub record_count: u64,
    pub cursor_from: i64,
    pub cursor_to: i64,
    pub more: bool,
    #[serde(default)]
    pub file: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub algorithm: String,
    pub signer: String,
    pub signed_file: String,
    pub value: String,
}

/// Operation flag of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "I" => Op::Insert,
            "U" => Op::Update,
            "D" => Op::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
        }
    }
}

/// A record's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Petition(Box<Petition>),
    Workorder(Box<WorkOrder>),
    ProcessEvent(Box<ProcessEvent>),
}

/// One record of a data file.
#[derive(Debug, Clone, PartialEq)]
pub struct DataRecord {
    pub op: Op,
    pub batch: String,
    pub seq: i64,
    pub id: Uuid,
    /// None for `D`.
    pub payload: Option<Payload>,
}

/// What kind of entry a name is, or why it is not a valid entry name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Header,
    Manifest,
    Signature,
    Data(u32),
}

/// Classifies an entry name; anything but the four shapes (in particular `..`, absolute paths,
/// backslashes, directories) is refused.
pub fn entry_kind(name: &str) -> Option<EntryKind> {
    match name {
        HEADER => Some(EntryKind::Header),
        MANIFEST => Some(EntryKind::Manifest),
        SIGNATURE => Some(EntryKind::Signature),
        _ => {
            let n = name.strip_prefix("data/")?.strip_suffix(".xml")?;
            if n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()) {
                n.parse().ok().filter(|n| *n > 0).map(EntryKind::Data)
            } else {
                None
            }
        }
    }
}

pub fn data_file_name(n: u32) -> String {
    format!("data/{n:06}.xml")
}

/// An XML document with declaration: `value` as element `root` in the exchange namespace.
pub fn document<T: Serialize>(root: &str, value: &T) -> Result<String, xfhub_schemas::XmlError> {
    let body = xml_soap::encode(root, NS_EXCHANGE, value)?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"
    ))
}

/// Opening of a data file.
pub const DATA_OPEN: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<records xmlns=\"urn:xfhub:exchange:v1\">";
/// Closing of a data file.
pub const DATA_CLOSE: &str = "</records>\n";

/// Appends one `<record>` to `out`. `payload` is the canonical document already written
/// (`<petition xmlns="urn:xfhub:v1">...`), or empty for `D`.
pub fn write_record(out: &mut String, op: Op, batch: &str, seq: i64, id: Uuid, payload: &str) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "<record><op>{}</op><batch>{}</batch><seq>{seq}</seq><id>{id}</id>{payload}</record>",
        op.as_str(),
        quick_xml::escape::escape(batch)
    );
}

/// The canonical payload written for a record.
pub fn payload_xml<T: Serialize>(root: &str, value: &T) -> Result<String, xfhub_schemas::XmlError> {
    xml_soap::encode(root, NS_XFHUB, value)
}

/// Why a file of a package does not follow the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("{0}")]
    Shape(String),
}

impl From<ShapeError> for FileError {
    fn from(e: ShapeError) -> Self {
        FileError::Shape(format!("{}: {}", e.path, e.reason))
    }
}

/// Reads a single-element file (header, manifest, signature) from its parsed root.
pub fn read_document<T: DeserializeOwned>(root: &Element, name: &str) -> Result<T, FileError> {
    if root.name != name {
        return Err(FileError::Shape(format!(
            "the root element must be <{name}>, not <{}>",
            root.name
        )));
    }
    xml_soap::check_namespace(root, NS_EXCHANGE).map_err(|e| FileError::Shape(e.to_string()))?;
    Ok(xml_soap::decode(root)?)
}

/// Reads one `<record>` element of a data file of `infoset`.
pub fn read_record(e: &Element, infoset: InfoSet) -> Result<DataRecord, FileError> {
    let shape = |m: String| FileError::Shape(m);
    if e.name != "record" || e.ns.as_deref() != Some(NS_EXCHANGE) {
        return Err(shape(format!("unexpected element <{}>", e.name)));
    }
    let mut op = None;
    let mut batch = None;
    let mut seq = None;
    let mut id = None;
    let mut payload = None;
    for c in &e.children {
        let own = c.ns.as_deref() == Some(NS_EXCHANGE);
        match c.name.as_str() {
            "op" if own && op.is_none() => {
                op = Some(
                    Op::parse(&c.text)
                        .ok_or_else(|| shape(format!("op {:?} is not I, U or D", c.text)))?,
                )
            }
            "batch" if own && batch.is_none() => batch = Some(c.text.clone()),
            "seq" if own && seq.is_none() => {
                seq = Some(
                    c.text
                        .parse::<i64>()
                        .map_err(|_| shape(format!("seq {:?} is not an integer", c.text)))?,
                )
            }
            "id" if own && id.is_none() => {
                id = Some(
                    Uuid::parse_str(&c.text)
                        .map_err(|_| shape(format!("id {:?} is not a UUID", c.text)))?,
                )
            }
            name if name == infoset.payload_element() && payload.is_none() => {
                xml_soap::check_namespace(c, NS_XFHUB).map_err(|e| shape(e.to_string()))?;
                payload = Some(match infoset {
                    InfoSet::Petition => Payload::Petition(Box::new(xml_soap::decode(c)?)),
                    InfoSet::Workorder => Payload::Workorder(Box::new(xml_soap::decode(c)?)),
                    InfoSet::ProcessEvent => Payload::ProcessEvent(Box::new(xml_soap::decode(c)?)),
                });
            }
            other => return Err(shape(format!("unexpected element <{other}> in a record"))),
        }
    }
    let op = op.ok_or_else(|| shape("a record needs <op>".to_owned()))?;
    if op != Op::Delete && payload.is_none() {
        return Err(shape(format!(
            "an {} record needs its <{}>",
            op.as_str(),
            infoset.payload_element()
        )));
    }
    Ok(DataRecord {
        op,
        batch: batch.ok_or_else(|| shape("a record needs <batch>".to_owned()))?,
        seq: seq.ok_or_else(|| shape("a record needs <seq>".to_owned()))?,
        id: id.ok_or_else(|| shape("a record needs <id>".to_owned()))?,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml_guard::{parse_streaming, Limits};
    use xfhub_schemas::sample_petition;

    #[test]
    fn entry_names() {
        for (name, want) in [
            ("header.xml", Some(EntryKind::Header)),
            ("manifest.xml", Some(EntryKind::Manifest)),
            ("signature.xml", Some(EntryKind::Signature)),
            ("data/000001.xml", Some(EntryKind::Data(1))),
            ("data/000000.xml", None),
            ("data/1.xml", None),
            ("../header.xml", None),
            ("data/../header.xml", None),
            ("/header.xml", None),
            ("data\\000001.xml", None),
            ("data/", None),
            ("evil.sh", None),
        ] {
            assert_eq!(entry_kind(name), want, "{name}");
        }
    }

    #[test]
    fn records_round_trip() {
        let p = sample_petition(3);
        let mut out = DATA_OPEN.to_owned();
        let id = Uuid::now_v7();
        write_record(
            &mut out,
            Op::Insert,
            "XF1",
            7,
            id,
            &payload_xml("petition", &p).expect("xml"),
        );
        write_record(&mut out, Op::Delete, "XF1", 8, id, "");
        out.push_str(DATA_CLOSE);
        let mut got = Vec::new();
        parse_streaming(out.as_bytes(), &Limits::default(), 1, |e| {
            got.push(
                read_record(&e, InfoSet::Petition)
                    .map_err(|e| GuardError::Malformed(e.to_string()))?,
            );
            Ok(())
        })
        .expect("reads");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload, Some(Payload::Petition(Box::new(p))));
        assert_eq!(
            (got[1].op, got[1].seq, got[1].payload.is_none()),
            (Op::Delete, 8, true)
        );
        let wrong = out.replace("<op>I</op>", "<op>X</op>");
        assert!(
            parse_streaming(wrong.as_bytes(), &Limits::default(), 1, |e| {
                read_record(&e, InfoSet::Petition)
                    .map(|_| ())
                    .map_err(|e| GuardError::Malformed(e.to_string()))
            })
            .is_err()
        );
    }
}
