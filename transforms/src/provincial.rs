//! The provincial sharing site's petition records (national column style, DOMAIN.md §2) to
//! canonical [`Petition`]s and [`ProcessEvent`]s.
//!
//! A response of the site's `QueryChangedPetitions` operation is a SOAP 1.1 document declared
//! UTF-8 or GBK. [`parse_response`] reads the envelope (cursor, more pages, or a SOAP fault)
//! and cuts out every `<xfj>` record as bytes, each decoded on its own: one record in a wrong
//! encoding or with broken XML fails alone and the rest of the page still maps.
//! [`map_record`] maps one record's XML, collecting every error (an unknown code is an
//! `unknown_code` error naming the column and the value).
//!
//! Record shape (columns the hub reads; others are ignored):
//!
//! ```xml
//! <xfj>
//!   <xfjbh>XF430100202400000001</xfjbh><bbh>2</bbh><gxsj>2024-03-05 10:22:00</gxsj>
//!   <xfrq>2024-03-05</xfrq><djsj>2024-03-05 10:22:00</djsj><djjgdm>430102</djjgdm><djjgmc>芙蓉区信访局</djjgmc>
//!   <xfxs>03</xfxs><xfmddm>2</xfmddm><nrfldm>040101</nrfldm><wtsddm>430102</wtsddm>
//!   <xfrs>1</xfrs><sjrs>3</sjrs><tsgk>…</tsgk><gjc>拖欠工资,农民工</gjc><bz>…</bz>
//!   <xbjzrq>2024-05-04</xbjzrq><bjbz>0</bjbz><cfxfbz>0</cfxfbz><yjfbz>0</yjfbz><yybz>0</yybz>
//!   <sfssbz>0</sfssbz><sjjbbz>0</sjjbbz><nmbz>0</nmbz><dddj>3</dddj>
//!   <blfs>4</blfs><zrdw>…</zrdw><slsj>…</slsj><dfsj>…</dfsj>
//!   <tsrxx><tsr><xm>王建国</xm><zjlx>111</zjlx><zjhm>…</zjhm><sjh>…</sjh><dz>…</dz><xxdz>…</xxdz></tsr></tsrxx>
//!   <pjxx><pjjg>3</pjjg><pjsj>…</pjsj><bmyyy>问题未解决</bmyyy><zrbm>…</zrbm><bmybm>…</bmybm></pjxx>
//!   <blgc><jd><jdlx>0200</jdlx><fssj>…</fssj><czjg>…</czjg><mbjg>…</mbjg><bz>…</bz></jd></blgc>
//! </xfj>
//! ```
//!
//! Times are `yyyy-MM-dd HH:mm:ss` in China time (+08:00); dates `yyyy-MM-dd`; flags `0`/`1`.

use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use quick_xml::events::Event;
use quick_xml::Reader;
use xfhub_schemas::{
    Acceptance, Appeal, Complainant, Evaluation, FieldError, Flags, Handling, LevelReached,
    Petition, ProcessEvent, ProcessEventKind, SourceRef,
};

use crate::codemap::{field_error, CodeMap, Mapping};

/// Source system name of records from the provincial site.
pub const SOURCE_SYSTEM: &str = "provincial";
/// The embedded code map (`transforms/data/provincial.toml`).
pub const EMBEDDED_MAP: &str = include_str!("../data/provincial.toml");
/// Tables every provincial map must have.
pub const MAP_TABLES: &[&str] = &["xfxs", "xfmddm", "zjlx", "blfs", "pjjg", "dddj", "jdlx"];
/// Namespace of the site's operations and response elements.
pub const NAMESPACE: &str = "urn:hunan:zwgx:xfxx:v1";
/// Largest page the site serves.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The embedded provincial code map, parsed once.
pub fn embedded_map() -> &'static CodeMap {
    static MAP: OnceLock<CodeMap> = OnceLock::new();
    MAP.get_or_init(|| {
        CodeMap::parse(SOURCE_SYSTEM, EMBEDDED_MAP, MAP_TABLES)
            .expect("the embedded provincial code map is valid")
    })
}

/// Parses a provincial code map file (same format as the embedded one).
pub fn parse_map(text: &str) -> Result<CodeMap, String> {
    CodeMap::parse(SOURCE_SYSTEM, text, MAP_TABLES)
}

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

// ---------------------------------------------------------------------------------------------
// Minimal element tree

/// An element: name (local, without prefix), its own text, its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    /// First child called `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Trimmed text of the first child called `name`, when present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn local(name: &[u8]) -> String {
    let name = match name.iter().position(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(name).into_owned()
}

/// Parses well-formed XML text into a tree of its root element. DTDs are refused (no entity
/// expansion of partner input); end tags must match.
pub fn parse_tree(xml: &str) -> Result<Node, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let pos = reader.buffer_position();
        match reader.read_event() {
            Err(e) => return Err(format!("at byte {pos}: {e}")),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => stack.push(Node {
                name: local(e.name().as_ref()),
                ..Node::default()
            }),
            Ok(Event::Empty(e)) => {
                let node = Node {
                    name: local(e.name().as_ref()),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("more than one root element".to_owned()),
                }
            }
            Ok(Event::End(_)) => {
                let node = stack.pop().ok_or("end tag without start tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("more than one root element".to_owned()),
                }
            }
            Ok(Event::Text(t)) => {
                let text = t.unescape().map_err(|e| format!("at byte {pos}: {e}"))?;
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err("text outside the root element".to_owned()),
                }
            }
            Ok(Event::CData(t)) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Ok(Event::DocType(_)) => return Err("a DOCTYPE is not accepted".to_owned()),
            Ok(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("element <{}> is not closed", open.name));
    }
    root.ok_or_else(|| "no element".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Response envelope

/// One record of a page, cut out of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's bytes as served, in the document's encoding.
    pub bytes: Vec<u8>,
    /// The record decoded from the document's encoding, or the encoding error.
    pub text: Result<String, FieldError>,
}

impl RawRecord {
    /// `(xfjbh, bbh)` read without parsing, for records that do not parse.
    pub fn source_ref(&self) -> (Option<String>, Option<i64>) {
        let text = match &self.text {
            Ok(t) => std::borrow::Cow::Borrowed(t.as_str()),
            Err(_) => String::from_utf8_lossy(&self.bytes),
        };
        let id = between(&text, "<xfjbh>", "</xfjbh>").map(|s| s.trim().to_owned());
        let version = between(&text, "<bbh>", "</bbh>").and_then(|s| s.trim().parse().ok());
        (id.filter(|s| !s.is_empty() && s.len() <= 64), version)
    }
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

/// A page of changed records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePage {
    /// The cursor to ask with next (the position of the page's last record).
    pub next_cursor: String,
    /// More records wait after this page.
    pub has_more: bool,
    /// The encoding the document declared (`UTF-8`, `GBK`, ...).
    pub encoding: &'static str,
    pub records: Vec<RawRecord>,
}

/// Why a response is not a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// A SOAP fault: `faultcode` (`soap:Client.SignatureExpired`, `soap:Server.Busy`, ...),
    /// `faultstring`, and the `retryAfter` seconds of a rate-limit fault.
    Fault {
        code: String,
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// Not a readable response envelope.
    Malformed(String),
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseError::Fault { code, message, .. } => write!(f, "SOAP fault {code}: {message}"),
            ResponseError::Malformed(m) => write!(f, "malformed response: {m}"),
        }
    }
}

/// The encoding named in the XML declaration (UTF-8 when there is none).
pub fn declared_encoding(doc: &[u8]) -> Result<&'static encoding_rs::Encoding, ResponseError> {
    let head = &doc[..doc.len().min(200)];
    if !head.starts_with(b"<?xml") {
        return Ok(encoding_rs::UTF_8);
    }
    let end = head
        .windows(2)
        .position(|w| w == b"?>")
        .unwrap_or(head.len());
    let decl = String::from_utf8_lossy(&head[..end]);
    let Some(i) = decl.find("encoding") else {
        return Ok(encoding_rs::UTF_8);
    };
    let rest = decl[i + "encoding".len()..]
        .trim_start()
        .trim_start_matches('=');
    let rest = rest.trim_start();
    let quote = rest.chars().next().unwrap_or('"');
    let label = rest
        .trim_start_matches(quote)
        .split(quote)
        .next()
        .unwrap_or("");
    encoding_rs::Encoding::for_label(label.as_bytes()).ok_or_else(|| {
        ResponseError::Malformed(format!(
            "unsupported encoding \"{label}\" in the XML declaration"
        ))
    })
}

/// Decodes `bytes` strictly (no replacement characters).
fn decode(enc: &'static encoding_rs::Encoding, bytes: &[u8]) -> Option<String> {
    enc.decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
}

const RECORD_OPEN: &[u8] = b"<xfj>";
const RECORD_CLOSE: &[u8] = b"</xfj>";

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Reads a `QueryChangedPetitions` response: the envelope strictly, each record on its own.
///
/// Records are found by their `<xfj>` / `</xfj>` tags at the byte level, which is sound for
/// UTF-8 and for GBK (no GBK trail byte is below 0x40, so `<`, `/` and `>` never occur inside a
/// multi-byte character).
pub fn parse_response(doc: &[u8]) -> Result<ResponsePage, ResponseError> {
    let enc = declared_encoding(doc)?;
    let mut records = Vec::new();
    let mut envelope = Vec::with_capacity(1024);
    let mut at = 0;
    while let Some(start) = find(doc, RECORD_OPEN, at) {
        let end = find(doc, RECORD_CLOSE, start)
            .ok_or_else(|| ResponseError::Malformed("a record <xfj> is not closed".to_owned()))?
            + RECORD_CLOSE.len();
        envelope.extend_from_slice(&doc[at..start]);
        let bytes = doc[start..end].to_vec();
        let text = decode(enc, &bytes).ok_or_else(|| {
            field_error(
                "xfj",
                "encoding",
                &format!(
                    "the record is not valid {} (the encoding the document declares)",
                    enc.name()
                ),
                &format!("记录内容不符合文档声明的字符编码 {}", enc.name()),
            )
        });
        records.push(RawRecord { bytes, text });
        at = end;
    }
    envelope.extend_from_slice(&doc[at..]);
    let text = decode(enc, &envelope).ok_or_else(|| {
        ResponseError::Malformed(format!("the envelope is not valid {}", enc.name()))
    })?;
    // The declaration names the original encoding; the text is UTF-8 now.
    let text = match text.find("?>") {
        Some(i) if text.starts_with("<?xml") => &text[i + 2..],
        _ => &text[..],
    };
    let root = parse_tree(text).map_err(ResponseError::Malformed)?;
    if root.name != "Envelope" {
        return Err(ResponseError::Malformed(format!(
            "the root element is <{}>, not a SOAP Envelope",
            root.name
        )));
    }
    let body = root
        .child("Body")
        .ok_or_else(|| ResponseError::Malformed("no SOAP Body".to_owned()))?;
    if let Some(fault) = body.child("Fault") {
        return Err(ResponseError::Fault {
            code: fault.get("faultcode").unwrap_or("").to_owned(),
            message: fault.get("faultstring").unwrap_or("").to_owned(),
            retry_after_secs: fault
                .child("detail")
                .and_then(|d| d.get("retryAfter"))
                .and_then(|s| s.parse().ok()),
        });
    }
    let result = body
        .child("QueryChangedPetitionsResponse")
        .and_then(|r| r.child("result"))
        .ok_or_else(|| {
            ResponseError::Malformed("no QueryChangedPetitionsResponse/result".to_owned())
        })?;
    let next_cursor = result
        .get("nextCursor")
        .ok_or_else(|| ResponseError::Malformed("no nextCursor".to_owned()))?
        .to_owned();
    let has_more = match result.get("hasMore") {
        Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        other => {
            return Err(ResponseError::Malformed(format!(
                "hasMore is {other:?}, not true or false"
            )))
        }
    };
    if let Some(n) = result.get("count") {
        if n.parse::<usize>().ok() != Some(records.len()) {
            return Err(ResponseError::Malformed(format!(
                "count says {n} records, the page holds {}",
                records.len()
            )));
        }
    }
    Ok(ResponsePage {
        next_cursor,
        has_more,
        encoding: enc.name(),
        records,
    })
}

// ---------------------------------------------------------------------------------------------
// Record mapping

/// A mapped record: the petition and its process events (in the record's order).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub petition: Petition,
    pub events: Vec<ProcessEvent>,
}

/// Parses `yyyy-MM-dd HH:mm:ss` (China time), or RFC 3339.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return china().from_local_datetime(&t).single();
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// Formats a time as the site does: `yyyy-MM-dd HH:mm:ss` in China time.
pub fn format_time(t: &DateTime<FixedOffset>) -> String {
    t.with_timezone(&china())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

struct Fields<'n, 'm, 'a> {
    node: &'n Node,
    prefix: String,
    m: &'m mut Mapping<'a>,
}

impl Fields<'_, '_, '_> {
    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn opt(&self, name: &str) -> Option<String> {
        self.node.get(name).map(str::to_owned)
    }

    fn req(&mut self, name: &str) -> Option<String> {
        let v = self.opt(name);
        if v.is_none() {
            let p = self.path(name);
            self.m.required(&p);
        }
        v
    }

    fn code(&mut self, name: &str, table: &str, required: bool) -> Option<String> {
        let v = if required {
            self.req(name)?
        } else {
            self.opt(name)?
        };
        let p = self.path(name);
        self.m.map(&p, table, &v)
    }

    fn time(&mut self, name: &str, required: bool) -> Option<DateTime<FixedOffset>> {
        let v = if required {
            self.req(name)?
        } else {
            self.opt(name)?
        };
        let t = parse_time(&v);
        if t.is_none() {
            let p = self.path(name);
            self.m.bad_format(
                &p,
                "time_format",
                &v,
                "a time yyyy-MM-dd HH:mm:ss",
                "时间（yyyy-MM-dd HH:mm:ss）",
            );
        }
        t
    }

    fn date(&mut self, name: &str, required: bool) -> Option<NaiveDate> {
        let v = if required {
            self.req(name)?
        } else {
            self.opt(name)?
        };
        let d = NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok();
        if d.is_none() {
            let p = self.path(name);
            self.m.bad_format(
                &p,
                "date_format",
                &v,
                "a date yyyy-MM-dd",
                "日期（yyyy-MM-dd）",
            );
        }
        d
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        let v = self.req(name)?;
        let n = v.parse().ok();
        if n.is_none() {
            let p = self.path(name);
            self.m
                .bad_format(&p, "number_format", &v, "a whole number", "整数");
        }
        n
    }

    fn flag(&mut self, name: &str) -> bool {
        match self.opt(name).as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(v) => {
                let p = self.path(name);
                self.m
                    .bad_format(&p, "flag_format", v, "a flag 0 or 1", "标志（0 或 1）");
                false
            }
        }
    }
}

fn split_list(s: Option<String>) -> Vec<String> {
    s.map(|s| {
        s.split([',', '，', ';', '；', '、'])
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// Maps one `<xfj>` record. Every error is reported: XML that does not parse
/// (`xml_malformed`), missing columns (`required`), unparseable values, and codes missing from
/// the code map (`unknown_code`, naming the column and the value). The petition is not yet
/// validated against the canonical tables (`validate_petition` does that).
pub fn map_record(xml: &str, map: &CodeMap) -> Result<Mapped, Vec<FieldError>> {
    let root = parse_tree(xml).map_err(|e| {
        vec![field_error(
            "xfj",
            "xml_malformed",
            &format!("the record is not well-formed XML: {e}"),
            &format!("记录不是格式正确的 XML：{e}"),
        )]
    })?;
    if root.name != "xfj" {
        return Err(vec![field_error(
            "xfj",
            "xml_malformed",
            &format!("the record element is <{}>, not <xfj>", root.name),
            &format!("记录元素为 <{}>，应为 <xfj>", root.name),
        )]);
    }
    let mut m = Mapping::new(map);
    let mut f = Fields {
        node: &root,
        prefix: String::new(),
        m: &mut m,
    };
    let id = f.req("xfjbh");
    let version: Option<i64> = f.number("bbh");
    let complaint_date = f.date("xfrq", true);
    let registered_at = f.time("djsj", true);
    let form = f.code("xfxs", "xfxs", true);
    let purpose = f.code("xfmddm", "xfmddm", true);
    let content_class = f.req("nrfldm");
    let division = f.req("wtsddm");
    let complainant_count: Option<u32> = f.number("xfrs");
    let people_involved: Option<u32> = f.number("sjrs");
    let summary = f.req("tsgk");
    let keywords = split_list(f.opt("gjc"));
    let remarks = f.opt("bz");
    let anonymous = f.flag("nmbz");
    let flags = Flags {
        repeat: f.flag("cfxfbz"),
        group: complainant_count.is_some_and(|n| n >= 5),
        beyond_level: f.flag("yjfbz"),
        threat: f.flag("yybz"),
        law_related: f.flag("sfssbz"),
        superior_assigned: f.flag("sjjbbz"),
        level_reached: f
            .code("dddj", "dddj", false)
            .and_then(|l| serde_json::from_value::<LevelReached>(l.into()).ok()),
    };
    let handling = Handling {
        registering_org: f.opt("djjgmc").or_else(|| f.opt("djjgdm")),
        accepted_at: f.time("slsj", false),
        method: f.code("blfs", "blfs", false),
        responsible_unit: f.opt("zrdw"),
        deadline: f.date("xbjzrq", false),
        replied_at: f.time("dfsj", false),
        concluded: f.flag("bjbz"),
    };

    let mut complainants = Vec::new();
    if let Some(list) = root.child("tsrxx") {
        for (i, person) in list.children_named("tsr").enumerate() {
            let mut f = Fields {
                node: person,
                prefix: format!("tsrxx.tsr[{i}]."),
                m: &mut m,
            };
            complainants.push(Complainant {
                name: f.opt("xm"),
                mobile: f.opt("sjh"),
                id_type: f.code("zjlx", "zjlx", false),
                id_number: f.opt("zjhm"),
                address: f.opt("dz"),
                detailed_address: f.opt("xxdz"),
            });
        }
    }

    let evaluation = match root.child("pjxx") {
        Some(node) => {
            let mut f = Fields {
                node,
                prefix: "pjxx.".to_owned(),
                m: &mut m,
            };
            let result = f.code("pjjg", "pjjg", true);
            let evaluated_at = f.time("pjsj", true);
            let reasons = split_list(f.opt("bmyyy"));
            let responsible_department = f.opt("zrbm");
            let unsatisfied_departments = split_list(f.opt("bmybm"));
            match (result, evaluated_at) {
                (Some(result), Some(evaluated_at)) => Some(Evaluation {
                    result,
                    reasons,
                    responsible_department,
                    unsatisfied_departments,
                    evaluated_at,
                }),
                _ => None,
            }
        }
        None => None,
    };

    let mut events = Vec::new();
    let mut event_parts = Vec::new();
    if let Some(list) = root.child("blgc") {
        for (i, node) in list.children_named("jd").enumerate() {
            let mut f = Fields {
                node,
                prefix: format!("blgc.jd[{i}]."),
                m: &mut m,
            };
            let kind = f
                .code("jdlx", "jdlx", true)
                .and_then(|k| serde_json::from_value::<ProcessEventKind>(k.into()).ok());
            let occurred_at = f.time("fssj", true);
            event_parts.push((kind, occurred_at, f.opt("czjg"), f.opt("mbjg"), f.opt("bz")));
        }
    }

    let errors = std::mem::take(&mut m.errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    // With no error every required value is present.
    let (
        Some(id),
        Some(version),
        Some(complaint_date),
        Some(registered_at),
        Some(form),
        Some(purpose),
        Some(content_class),
        Some(division),
        Some(complainant_count),
        Some(people_involved),
        Some(summary),
    ) = (
        id,
        version,
        complaint_date,
        registered_at,
        form,
        purpose,
        content_class,
        division,
        complainant_count,
        people_involved,
        summary,
    )
    else {
        // Not reached: a missing required value is recorded as an error above.
        return Err(vec![field_error(
            "xfj",
            "required",
            "a required column is missing",
            "缺少必填字段",
        )]);
    };
    let source = SourceRef {
        system: SOURCE_SYSTEM.to_owned(),
        id,
        version,
    };
    for (kind, occurred_at, org, target_org, note) in event_parts {
        if let (Some(kind), Some(occurred_at)) = (kind, occurred_at) {
            events.push(ProcessEvent {
                petition_source: source.clone(),
                kind,
                occurred_at,
                org,
                target_org,
                note,
            });
        }
    }
    Ok(Mapped {
        petition: Petition {
            source,
            anonymous,
            complainants,
            appeal: Appeal {
                division,
                content_class,
                purpose,
                form,
                summary,
                keywords,
                materials: Vec::new(),
            },
            acceptance: Acceptance {
                complainant_count,
                people_involved,
                complaint_date,
                registered_at,
                remarks,
            },
            handling,
            flags,
            evaluation,
        },
        events,
    })
}

// ---------------------------------------------------------------------------------------------
// Request

/// SOAPAction of the `QueryChangedPetitions` operation.
pub const SOAP_ACTION: &str = "urn:hunan:zwgx:xfxx:v1#QueryChangedPetitions";

/// The SOAP 1.1 request of `QueryChangedPetitions`: records of `region` changed after
/// `cursor` (`0` at the start), at most `page_size` of them.
pub fn request_xml(region: &str, cursor: &str, page_size: u32) -> String {
    let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xf=\"{NAMESPACE}\">\
         <soap:Body><xf:QueryChangedPetitions><xf:regionCode>{}</xf:regionCode>\
         <xf:cursor>{}</xf:cursor><xf:pageSize>{page_size}</xf:pageSize>\
         </xf:QueryChangedPetitions></soap:Body></soap:Envelope>",
        esc(region),
        esc(cursor)
    )
}

/// `(regionCode, cursor, pageSize)` of a `QueryChangedPetitions` request (the mock's side).
pub fn parse_request(body: &[u8]) -> Result<(String, String, String), String> {
    let text = std::str::from_utf8(body).map_err(|_| "the request is not UTF-8".to_owned())?;
    let text = match text.find("?>") {
        Some(i) if text.starts_with("<?xml") => &text[i + 2..],
        _ => text,
    };
    let root = parse_tree(text)?;
    let op = root
        .child("Body")
        .and_then(|b| b.child("QueryChangedPetitions"))
        .ok_or("no Body/QueryChangedPetitions")?;
    let get = |n: &str| op.get(n).unwrap_or("").to_owned();
    Ok((get("regionCode"), get("cursor"), get("pageSize")))
}
