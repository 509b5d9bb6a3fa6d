//! The type of an attachment, read from its content (magic bytes), never from its name.
//!
//! Written by hand rather than with `infer`: `infer` tells "a ZIP" or "an OLE compound file"
//! but the accepted types (schemas' `ATTACHMENT_TYPES`: PDF, Word, Excel) need one more step
//! that it does not take for legacy Office files: OOXML is told by its part names (read with
//! the `zip` crate), legacy Word and Excel by their OLE stream names.

use std::io::Cursor;

/// PDF: `%PDF-`.
const PDF: &[u8] = b"%PDF-";
/// OLE2 compound file (legacy .doc / .xls).
const OLE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
/// ZIP local file header (OOXML .docx / .xlsx).
const ZIP: &[u8] = b"PK\x03\x04";

pub const PDF_TYPE: &str = "application/pdf";
pub const DOC_TYPE: &str = "application/msword";
pub const DOCX_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
pub const XLS_TYPE: &str = "application/vnd.ms-excel";
pub const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The accepted type of `bytes`, or `None` when the content is none of them.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(PDF) {
        return Some(PDF_TYPE);
    }
    if bytes.starts_with(OLE) {
        // Stream names are UTF-16LE in the compound file's directory.
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        if contains(bytes, &utf16("WordDocument")) {
            return Some(DOC_TYPE);
        }
        if contains(bytes, &utf16("Workbook")) || contains(bytes, &utf16("Book")) {
            return Some(XLS_TYPE);
        }
        return None;
    }
    if bytes.starts_with(ZIP) {
        let archive = zip::ZipArchive::new(Cursor::new(bytes)).ok()?;
        let has = |name: &str| archive.index_for_name(name).is_some();
        if !has("[Content_Types].xml") {
            return None;
        }
        if has("word/document.xml") {
            return Some(DOCX_TYPE);
        }
        if has("xl/workbook.xml") {
            return Some(XLSX_TYPE);
        }
    }
    None
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The file name without any directory part, trimmed; `None` when nothing is left.
pub fn clean_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    (!base.is_empty() && base != "." && base != "..").then(|| base.to_owned())
}

/// The extensions a type allows (from the schemas' table).
pub fn extensions_of(content_type: &str) -> &'static [&'static str] {
    xfhub_schemas::validate::ATTACHMENT_TYPES
        .iter()
        .find(|(t, _)| *t == content_type)
        .map(|(_, e)| *e)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_not_name_decides() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), Some(PDF_TYPE));
        assert_eq!(sniff(b"MZ\x90\x00 an executable"), None);
        assert_eq!(sniff(b"PK\x03\x04 not really a zip"), None);
        let mut ole = OLE.to_vec();
        ole.extend("WordDocument".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(sniff(&ole), Some(DOC_TYPE));
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_name("a\\b\\材料.pdf").as_deref(), Some("材料.pdf"));
        assert_eq!(clean_name("/"), None);
    }
}
