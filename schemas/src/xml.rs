//! Canonical XML: the canonical types written as XML elements, one element per field, named as the
//! JSON fields are (quick-xml's serde support).
//!
//! - A struct is an element whose children are its fields, in declaration order.
//! - A `Vec` is the field's element repeated once per item (`<keywords>a</keywords><keywords>b</keywords>`);
//!   an empty `Vec` writes nothing and reads back empty (every `Vec` field has `#[serde(default)]`).
//! - `None` writes nothing where the field is skipped when `None` (as in the JSON), otherwise an
//!   empty element; both read back as `None`.
//! - Enums are their snake_case names as text; times are RFC 3339 with their offset
//!   (`2024-03-01T09:30:00+08:00`); dates are `YYYY-MM-DD`.
//! - Text is escaped; leading and trailing white space of a text is not kept (validation trims it
//!   anyway).
//!
//! [`from_xml`] ignores the root element's name, an XML declaration, comments and a DOCTYPE (no
//! entity is ever expanded from a DTD). Limits on size and depth are the gateway's job.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

/// Why a value could not be written or read as XML.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("cannot write XML: {0}")]
    Serialize(#[from] quick_xml::SeError),
    #[error("cannot read XML: {0}")]
    Deserialize(#[from] quick_xml::DeError),
}

/// Writes `value` as an element named `root`, without XML declaration (so that it can be embedded,
/// in a SOAP body for example).
pub fn to_xml<T: Serialize>(root: &str, value: &T) -> Result<String, XmlError> {
    Ok(quick_xml::se::to_string_with_root(root, value)?)
}

/// [`to_xml`] preceded by `<?xml version="1.0" encoding="UTF-8"?>`: a standalone document.
pub fn to_xml_document<T: Serialize>(root: &str, value: &T) -> Result<String, XmlError> {
    let body = to_xml(root, value)?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"
    ))
}

/// Reads a value from XML written by [`to_xml`] (or by a partner following the same shape).
pub fn from_xml<T: DeserializeOwned>(text: &str) -> Result<T, XmlError> {
    Ok(quick_xml::de::from_str(text)?)
}

/// `deserialize_with` for an `Option<T>` that is written even when `None` (so JSON carries
/// `null`): XML writes `None` as an empty element, read back here as `None` instead of as an
/// empty string to parse.
pub(crate) fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<String>::deserialize(d)?.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(D::Error::custom),
    }
}
