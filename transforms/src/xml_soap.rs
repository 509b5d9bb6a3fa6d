//! SOAP 1.1 and 1.2 envelopes (document/literal) and the canonical XML documents of the XML
//! interface: reading a request down to its operation element, writing answers and faults.
//! Pure functions; the gateway (`hub/src/soap`) does the I/O.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::xml_guard::{self, Element, GuardError, Limits};

pub const SOAP11_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";

/// The SOAP version of a request, told by its content type (`text/xml` is 1.1,
/// `application/soap+xml` is 1.2) and checked against its envelope's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    /// The version a content type announces; None for anything else.
    pub fn from_content_type(ct: &str) -> Option<SoapVersion> {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "text/xml" => Some(SoapVersion::V11),
            "application/soap+xml" => Some(SoapVersion::V12),
            _ => None,
        }
    }

    pub fn envelope_ns(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_ENV,
            SoapVersion::V12 => SOAP12_ENV,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::V11 => "text/xml; charset=utf-8",
            SoapVersion::V12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// Why a request could not be read down to an operation. [`ReadError::code`] is the stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("the root element is not a SOAP Envelope")]
    NotEnvelope,
    #[error("the envelope namespace {found:?} does not match the content type (SOAP {expected})")]
    VersionMismatch {
        found: String,
        expected: &'static str,
    },
    #[error("the envelope has no Body, or its Body holds no operation element")]
    NoOperation,
    #[error("the Body holds more than one element; send one operation per request")]
    SeveralOperations,
    #[error("header {0} is marked mustUnderstand and this service does not understand it")]
    MustUnderstand(String),
    #[error("element {path} is in namespace {found:?}; the service's namespace is {expected}")]
    WrongNamespace {
        path: String,
        found: Option<String>,
        expected: String,
    },
}

impl ReadError {
    pub fn code(&self) -> &'static str {
        match self {
            ReadError::Guard(g) => g.code(),
            ReadError::NotEnvelope | ReadError::NoOperation | ReadError::SeveralOperations => {
                "soap_malformed"
            }
            ReadError::VersionMismatch { .. } => "soap_version_mismatch",
            ReadError::MustUnderstand(_) => "soap_must_understand",
            ReadError::WrongNamespace { .. } => "xml_wrong_namespace",
        }
    }

    pub fn message_zh(&self) -> String {
        match self {
            ReadError::Guard(g) => g.message_zh(),
            ReadError::NotEnvelope => "根元素不是 SOAP Envelope".to_owned(),
            ReadError::VersionMismatch { .. } => {
                "SOAP 信封命名空间与 Content-Type 不一致".to_owned()
            }
            ReadError::NoOperation => "SOAP Body 中没有操作元素".to_owned(),
            ReadError::SeveralOperations => "SOAP Body 中只能有一个操作元素".to_owned(),
            ReadError::MustUnderstand(h) => format!("无法处理标记为 mustUnderstand 的报头 {h}"),
            ReadError::WrongNamespace { path, expected, .. } => {
                format!("元素 {path} 的命名空间错误，应为 {expected}")
            }
        }
    }
}

/// The operation element of a SOAP request (the only child of its Body), after the hardening
/// checks of [`xml_guard`] and a check that the operation and everything in it is in `ns`.
pub fn read_request(
    bytes: &[u8],
    version: SoapVersion,
    ns: &str,
    limits: &Limits,
) -> Result<Element, ReadError> {
    let root = xml_guard::parse(bytes, limits)?;
    if root.name != "Envelope" {
        return Err(ReadError::NotEnvelope);
    }
    if root.ns.as_deref() != Some(version.envelope_ns()) {
        return match root.ns.as_deref() {
            Some(SOAP11_ENV) | Some(SOAP12_ENV) => Err(ReadError::VersionMismatch {
                found: root.ns.clone().unwrap_or_default(),
                expected: match version {
                    SoapVersion::V11 => "1.1 (text/xml)",
                    SoapVersion::V12 => "1.2 (application/soap+xml)",
                },
            }),
            _ => Err(ReadError::NotEnvelope),
        };
    }
    let env_ns = version.envelope_ns();
    let mut body = None;
    for part in root.children {
        if part.ns.as_deref() != Some(env_ns) {
            return Err(ReadError::NotEnvelope);
        }
        match part.name.as_str() {
            "Header" => {
                for h in &part.children {
                    let must = h
                        .attrs
                        .iter()
                        .any(|(k, v)| k == "mustUnderstand" && (v == "1" || v == "true"));
                    if must {
                        return Err(ReadError::MustUnderstand(h.name.clone()));
                    }
                }
            }
            "Body" => body = Some(part),
            _ => return Err(ReadError::NotEnvelope),
        }
    }
    let mut body = body.ok_or(ReadError::NoOperation)?;
    if body.children.len() > 1 {
        return Err(ReadError::SeveralOperations);
    }
    let op = body.children.pop().ok_or(ReadError::NoOperation)?;
    check_namespace(&op, ns)?;
    Ok(op)
}

/// Refuses an element (or a descendant) outside namespace `ns`.
pub fn check_namespace(e: &Element, ns: &str) -> Result<(), ReadError> {
    match e.foreign_namespace(ns) {
        None => Ok(()),
        Some((path, found)) => Err(ReadError::WrongNamespace {
            path,
            found,
            expected: ns.to_owned(),
        }),
    }
}

/// Why an element's content does not fit the type it should hold: the path of the field (as
/// in the JSON error answers, `appeal.division`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    pub path: String,
    pub reason: String,
}

/// Reads a canonical value from an element (namespaces already checked).
pub fn decode<T: DeserializeOwned>(e: &Element) -> Result<T, ShapeError> {
    let plain = e.to_plain_xml(&e.name);
    let mut de = quick_xml::de::Deserializer::from_str(&plain);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let reason = err.into_inner().to_string();
        let mut path = if path == "." { String::new() } else { path };
        // serde names a missing field in its message, not in the path.
        if let Some(field) = reason
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            path = if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
        }
        ShapeError { path, reason }
    })
}

/// `value` as the element `root` in namespace `ns` (a default namespace declaration on the root,
/// so every child element is in it too).
pub fn encode<T: Serialize>(
    root: &str,
    ns: &str,
    value: &T,
) -> Result<String, xfhub_schemas::XmlError> {
    Ok(qualify(&xfhub_schemas::to_xml(root, value)?, ns))
}

/// Puts `xmlns="ns"` on the root element of an XML fragment without declaration.
pub fn qualify(xml: &str, ns: &str) -> String {
    let end = xml[1..].find([' ', '>', '/']).map_or(xml.len(), |i| i + 1);
    let mut out = String::with_capacity(xml.len() + ns.len() + 10);
    out.push_str(&xml[..end]);
    out.push_str(" xmlns=\"");
    out.push_str(&quick_xml::escape::escape(ns));
    out.push('"');
    out.push_str(&xml[end..]);
    out
}

/// A SOAP envelope around a body fragment.
pub fn envelope(version: SoapVersion, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"{}\"><soap:Body>{body}</soap:Body></soap:Envelope>",
        version.envelope_ns()
    )
}

/// A SOAP fault. `sender` is true for a fault of the request (soap:Client / Sender), false for
/// one of the service (soap:Server / Receiver); `detail` is an element in its own namespace.
pub fn fault(
    version: SoapVersion,
    sender: bool,
    reason: &str,
    reason_zh: &str,
    detail: &str,
) -> String {
    let reason = quick_xml::escape::escape(reason);
    let reason_zh = quick_xml::escape::escape(reason_zh);
    let body = match version {
        SoapVersion::V11 => format!(
            "<soap:Fault><faultcode>soap:{}</faultcode><faultstring>{reason}</faultstring><detail>{detail}</detail></soap:Fault>",
            if sender { "Client" } else { "Server" }
        ),
        SoapVersion::V12 => format!(
            "<soap:Fault><soap:Code><soap:Value>soap:{}</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"en\">{reason}</soap:Text><soap:Text xml:lang=\"zh\">{reason_zh}</soap:Text></soap:Reason><soap:Detail>{detail}</soap:Detail></soap:Fault>",
            if sender { "Sender" } else { "Receiver" }
        ),
    };
    envelope(version, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "urn:xfhub:v1";

    fn env11(body: &str) -> String {
        format!(
            "<s:Envelope xmlns:s=\"{SOAP11_ENV}\"><s:Header/><s:Body>{body}</s:Body></s:Envelope>"
        )
    }

    fn check(input: &str, version: SoapVersion, expected: Result<&str, &str>) {
        let got = read_request(input.as_bytes(), version, NS, &Limits::default());
        match (got, expected) {
            (Ok(op), Ok(name)) => assert_eq!(op.name, name),
            (Err(e), Err(code)) => assert_eq!(e.code(), code, "{e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn requests() {
        let ok = env11(&format!(
            "<GetCodeTable xmlns=\"{NS}\"><name>forms</name></GetCodeTable>"
        ));
        check(&ok, SoapVersion::V11, Ok("GetCodeTable"));
        check(&ok, SoapVersion::V12, Err("soap_version_mismatch"));
        let wrong = env11("<GetCodeTable xmlns=\"urn:other\"><name>forms</name></GetCodeTable>");
        check(&wrong, SoapVersion::V11, Err("xml_wrong_namespace"));
        let inner = env11(&format!(
            "<GetCodeTable xmlns=\"{NS}\"><name xmlns=\"\">forms</name></GetCodeTable>"
        ));
        check(&inner, SoapVersion::V11, Err("xml_wrong_namespace"));
        check(&env11(""), SoapVersion::V11, Err("soap_malformed"));
        check("<a/>", SoapVersion::V11, Err("soap_malformed"));
        let must = format!(
            "<s:Envelope xmlns:s=\"{SOAP11_ENV}\"><s:Header><x:Sec xmlns:x=\"urn:x\" s:mustUnderstand=\"1\"/></s:Header><s:Body/></s:Envelope>"
        );
        check(&must, SoapVersion::V11, Err("soap_must_understand"));
    }

    #[test]
    fn qualify_puts_the_namespace_on_the_root() {
        assert_eq!(
            qualify("<a><b/></a>", NS),
            format!("<a xmlns=\"{NS}\"><b/></a>")
        );
        assert_eq!(qualify("<a/>", NS), format!("<a xmlns=\"{NS}\"/>"));
    }
}
