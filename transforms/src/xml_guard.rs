//! Hardened reading of untrusted XML (SOAP envelopes, XML bodies, exchange package files).
//!
//! quick-xml never expands entities from a DTD, but it still hands a DOCTYPE through and leaves
//! size, depth and encoding to the caller. This module is that caller's side, written once for
//! every XML surface of the hub:
//!
//! - a document over the size limit is refused before it is parsed;
//! - a DOCTYPE (and so any entity declaration: billion laughs, XXE) is refused outright, and an
//!   entity reference other than the five predefined ones and character references is refused;
//! - nesting deeper than the depth limit, or more elements than the element limit, is refused;
//! - the encoding is UTF-8, or GBK / GB2312 / GB18030 when the declaration says so (decoded with
//!   encoding_rs); any other declared encoding, a UTF-16 byte-order mark or bytes that are not
//!   valid in the declared encoding are refused with a clear reason;
//! - names are resolved to (namespace, local name), so callers check namespaces, and
//!   [`Element::to_plain_xml`] writes the same content without prefixes or attributes for the
//!   canonical serde reader ([`xfhub_schemas::from_xml`]).
//!
//! Large files are read with [`parse_streaming`], which hands over the elements of one depth one
//! at a time (one record of a 10,000-record data file), so memory stays bounded by one record.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// Limits of one document.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Default for Limits {
    /// Limits for one request body: 2 MiB, 32 levels, 50,000 elements.
    fn default() -> Self {
        Limits {
            max_bytes: 2 * 1024 * 1024,
            max_depth: 32,
            max_elements: 50_000,
        }
    }
}

/// Why a document was refused. [`GuardError::code`] is the stable code the gateway answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("the document is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("document type declarations (DOCTYPE, entities) are not accepted")]
    Dtd,
    #[error("entity reference &{0}; is not accepted (only the five predefined XML entities and character references)")]
    Entity(String),
    #[error("elements are nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("the document has more than {limit} elements")]
    TooManyElements { limit: usize },
    #[error(
        "encoding {0:?} is not accepted; send UTF-8 (GBK and GB18030 are decoded when declared)"
    )]
    EncodingUnsupported(String),
    #[error("the bytes are not valid {0}")]
    EncodingInvalid(String),
    #[error("the document is not well-formed XML: {0}")]
    Malformed(String),
    #[error("the document has no root element")]
    Empty,
}

impl GuardError {
    pub fn code(&self) -> &'static str {
        match self {
            GuardError::TooLarge { .. } => "xml_too_large",
            GuardError::Dtd => "xml_dtd_forbidden",
            GuardError::Entity(_) => "xml_entity_forbidden",
            GuardError::TooDeep { .. } => "xml_too_deep",
            GuardError::TooManyElements { .. } => "xml_too_many_elements",
            GuardError::EncodingUnsupported(_) => "xml_encoding_unsupported",
            GuardError::EncodingInvalid(_) => "xml_encoding_invalid",
            GuardError::Malformed(_) | GuardError::Empty => "malformed_xml",
        }
    }

    /// Chinese text for staff and partners.
    pub fn message_zh(&self) -> String {
        match self {
            GuardError::TooLarge { limit } => format!("XML 文档超过 {limit} 字节"),
            GuardError::Dtd => "不接受文档类型声明（DOCTYPE、实体定义）".to_owned(),
            GuardError::Entity(e) => format!("不接受实体引用 &{e};"),
            GuardError::TooDeep { limit } => format!("元素嵌套超过 {limit} 层"),
            GuardError::TooManyElements { limit } => format!("元素数量超过 {limit} 个"),
            GuardError::EncodingUnsupported(e) => {
                format!("不支持的字符编码 {e}，请使用 UTF-8（声明为 GBK/GB18030 的文档可以解码）")
            }
            GuardError::EncodingInvalid(e) => format!("内容不是有效的 {e} 编码"),
            GuardError::Malformed(_) | GuardError::Empty => "XML 格式错误".to_owned(),
        }
    }
}

/// An element: resolved namespace, local name, attributes (other than namespace declarations,
/// by local name), child elements and its text (concatenated, trimmed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child with this local name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first element (this one or below, depth first) whose namespace is not `ns`, as a
    /// path (`petition/appeal/division`) and the namespace it has.
    pub fn foreign_namespace(&self, ns: &str) -> Option<(String, Option<String>)> {
        if self.ns.as_deref() != Some(ns) {
            return Some((self.name.clone(), self.ns.clone()));
        }
        for c in &self.children {
            if let Some((path, found)) = c.foreign_namespace(ns) {
                return Some((format!("{}/{path}", self.name), found));
            }
        }
        None
    }

    /// The element written without namespaces or attributes, under another root name: the
    /// shape [`xfhub_schemas::from_xml`] reads.
    pub fn to_plain_xml(&self, root: &str) -> String {
        let mut out = String::with_capacity(256);
        self.write_plain(root, &mut out);
        out
    }

    fn write_plain(&self, name: &str, out: &mut String) {
        out.push('<');
        out.push_str(name);
        out.push('>');
        out.push_str(&quick_xml::escape::escape(self.text.as_str()));
        for c in &self.children {
            c.write_plain(&c.name, out);
        }
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
}

/// Reads a whole document into a tree of elements.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Element, GuardError> {
    parse_streaming(bytes, limits, usize::MAX, |_| Ok(()))
}

/// Reads a document and hands each element at depth `emit_depth` (the root is depth 0) to
/// `each` as soon as it is complete, instead of keeping it in the tree; returns the root with
/// the other elements. The element limit counts every element, emitted or not.
pub fn parse_streaming(
    bytes: &[u8],
    limits: &Limits,
    emit_depth: usize,
    mut each: impl FnMut(Element) -> Result<(), GuardError>,
) -> Result<Element, GuardError> {
    if bytes.len() > limits.max_bytes {
        return Err(GuardError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let text = decode(bytes)?;
    let mut reader = NsReader::from_str(&text);
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| GuardError::Malformed(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(GuardError::Dtd),
            Event::Start(start) => {
                if root.is_some() {
                    return Err(GuardError::Malformed(
                        "content after the root element".to_owned(),
                    ));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(GuardError::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                if stack.len() >= limits.max_depth {
                    return Err(GuardError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                let ns = resolved(ns)?;
                let name = utf8(start.local_name().as_ref())?;
                let mut attrs = Vec::new();
                for a in start.attributes() {
                    let a = a.map_err(|e| GuardError::Malformed(e.to_string()))?;
                    let key = a.key;
                    if key.as_ref() == b"xmlns" || key.as_ref().starts_with(b"xmlns:") {
                        continue;
                    }
                    let value = a.unescape_value().map_err(entity_error)?;
                    attrs.push((utf8(key.local_name().as_ref())?, value.into_owned()));
                }
                stack.push(Element {
                    ns,
                    name,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                });
            }
            Event::End(_) => {
                let mut done = stack
                    .pop()
                    .ok_or_else(|| GuardError::Malformed("unbalanced end tag".to_owned()))?;
                let trimmed = done.text.trim();
                if trimmed.len() != done.text.len() {
                    done.text = trimmed.to_owned();
                }
                // The depth of `done`: the root is 0.
                let depth = stack.len();
                match stack.last_mut() {
                    None => root = Some(done),
                    Some(_) if depth == emit_depth => each(done)?,
                    Some(parent) => parent.children.push(done),
                }
            }
            Event::Text(t) => {
                let Some(top) = stack.last_mut() else {
                    // White space around the root is fine; anything else is not XML.
                    if t.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Err(GuardError::Malformed(
                        "text outside the root element".to_owned(),
                    ));
                };
                let s = t.unescape().map_err(entity_error)?;
                top.text.push_str(&s);
            }
            Event::CData(c) => {
                let Some(top) = stack.last_mut() else {
                    return Err(GuardError::Malformed(
                        "CDATA outside the root element".to_owned(),
                    ));
                };
                let s = c
                    .decode()
                    .map_err(|e| GuardError::Malformed(e.to_string()))?;
                top.text.push_str(&s);
            }
            // `expand_empty_elements` turns `<a/>` into Start and End.
            Event::Empty(_) => {
                return Err(GuardError::Malformed(
                    "unexpected empty element event".to_owned(),
                ))
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(GuardError::Malformed(
            "the document ends inside an element".to_owned(),
        ));
    }
    root.ok_or(GuardError::Empty)
}

fn resolved(ns: ResolveResult<'_>) -> Result<Option<String>, GuardError> {
    match ns {
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Bound(n) => Ok(Some(utf8(n.as_ref())?)),
        ResolveResult::Unknown(p) => Err(GuardError::Malformed(format!(
            "namespace prefix {:?} is not declared",
            String::from_utf8_lossy(&p)
        ))),
    }
}

fn utf8(b: &[u8]) -> Result<String, GuardError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| GuardError::EncodingInvalid("UTF-8".to_owned()))
}

/// An unescape failure: an unknown entity is named as such, anything else is malformed.
fn entity_error(e: quick_xml::Error) -> GuardError {
    match e {
        quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(_, name)) => {
            GuardError::Entity(name)
        }
        other => GuardError::Malformed(other.to_string()),
    }
}

/// The document as UTF-8 text: a UTF-8 BOM is dropped; a declaration naming GBK, GB2312 or
/// GB18030 is decoded; other declared encodings and UTF-16 are refused.
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, GuardError> {
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return Err(GuardError::EncodingUnsupported("UTF-16".to_owned()));
    }
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    let label = declared_encoding(bytes);
    let encoding = match label.as_deref() {
        None => encoding_rs::UTF_8,
        Some(l) => match encoding_rs::Encoding::for_label(l.as_bytes()) {
            Some(e)
                if e == encoding_rs::UTF_8
                    || e == encoding_rs::GBK
                    || e == encoding_rs::GB18030 =>
            {
                e
            }
            _ => return Err(GuardError::EncodingUnsupported(l.to_owned())),
        },
    };
    if encoding == encoding_rs::UTF_8 {
        return std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|_| GuardError::EncodingInvalid("UTF-8".to_owned()));
    }
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .ok_or_else(|| GuardError::EncodingInvalid(encoding.name().to_owned()))
}

/// The `encoding` pseudo-attribute of the XML declaration, if any.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = bytes.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    let close = value.find(quote)?;
    Some(value[..close].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Result<&str, &str>) {
        let got = parse(input, &Limits::default());
        match (got, expected) {
            (Ok(e), Ok(name)) => assert_eq!(e.name, name),
            (Err(e), Err(code)) => assert_eq!(e.code(), code, "{e}"),
            (got, want) => panic!(
                "{}: got {got:?}, want {want:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    #[test]
    fn hostile_and_odd_documents() {
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><a>&lol2;</a>"#;
        check(laughs, Err("xml_dtd_forbidden"));
        let xxe = br#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><a>&xxe;</a>"#;
        check(xxe, Err("xml_dtd_forbidden"));
        check(b"<a>&xxe;</a>", Err("xml_entity_forbidden"));
        check(b"<a>&amp;&lt;&#x4E2D;</a>", Ok("a"));
        check(b"<a><b></a>", Err("malformed_xml"));
        check(b"", Err("malformed_xml"));
        check(b"<a/><b/>", Err("malformed_xml"));
        check(b"<p:a>x</p:a>", Err("malformed_xml"));
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        check(deep.as_bytes(), Err("xml_too_deep"));
        check(
            b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
            Err("xml_encoding_unsupported"),
        );
        check(b"\xFF\xFE<\0a\0/\0>\0", Err("xml_encoding_unsupported"));
        check(b"<a>\xC0\xC0</a>", Err("xml_encoding_invalid"));
        let big = vec![b' '; 3 * 1024 * 1024];
        check(&big, Err("xml_too_large"));
    }

    #[test]
    fn gbk_declared_document_is_decoded() {
        let (gbk, _, _) =
            encoding_rs::GBK.encode("<?xml version=\"1.0\" encoding=\"GBK\"?><a>芙蓉区</a>");
        let e = parse(&gbk, &Limits::default()).expect("GBK decodes");
        assert_eq!(e.text, "芙蓉区");
        // The same bytes declared as UTF-8 are not valid UTF-8.
        let mut lie = gbk.into_owned();
        let pos = lie.windows(3).position(|w| w == b"GBK").expect("label");
        lie.splice(pos..pos + 3, b"UTF-8".iter().copied());
        check(&lie, Err("xml_encoding_invalid"));
    }

    #[test]
    fn namespaces_resolve_and_plain_form_drops_them() {
        let doc = br#"<x:a xmlns:x="urn:t" xmlns="urn:t" q="1"><b>1 &amp; 2</b><c/></x:a>"#;
        let e = parse(doc, &Limits::default()).expect("parses");
        assert_eq!(e.ns.as_deref(), Some("urn:t"));
        assert_eq!(e.attr("q"), Some("1"));
        assert_eq!(e.foreign_namespace("urn:t"), None);
        assert_eq!(e.to_plain_xml("r"), "<r><b>1 &amp; 2</b><c></c></r>");
        let mixed = parse(
            br#"<a xmlns="urn:t"><b xmlns="urn:u"/></a>"#,
            &Limits::default(),
        )
        .expect("parses");
        assert_eq!(
            mixed.foreign_namespace("urn:t"),
            Some(("a/b".to_owned(), Some("urn:u".to_owned())))
        );
    }

    #[test]
    fn streaming_emits_one_record_at_a_time() {
        let doc = b"<r><h>x</h><rec><v>1</v></rec><rec><v>2</v></rec></r>";
        let mut seen = Vec::new();
        let root = parse_streaming(doc, &Limits::default(), 1, |e| {
            seen.push(e.name.clone());
            Ok(())
        })
        .expect("parses");
        assert_eq!(seen, ["h", "rec", "rec"]);
        assert!(root.children.is_empty());
    }
}
