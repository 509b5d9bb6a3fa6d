//! Personal fields of canonical documents: seal, open, mask, re-seal.
//!
//! The personal fields are known by document kind:
//!
//! | kind | path | blind-index field |
//! | --- | --- | --- |
//! | petition | `complainants[*].id_number` | `id_number` (value upper-cased) |
//! | petition | `complainants[*].mobile` | `mobile` |
//! | work order | `caller_phone` | `phone` |
//!
//! The `*_document` functions take the bare document (`Petition` or `WorkOrder` JSON); the
//! `*_record` functions take a `Record` JSON (`{id, kind, version, status, received_at,
//! updated_at, data}`) and work on its `data`. Missing fields, `null` and empty strings are
//! left alone. A number found where a personal field belongs is sealed as its decimal text
//! (the canonical schema types these fields as strings; sealing wins over keeping the type).
//!
//! [`open_document`] and [`reseal_document`] are all-or-nothing: on error the document is left
//! as it was.

use serde_json::Value;

use crate::keys::KeyRing;
use crate::seal::SealError;

/// The kind of a canonical document, which decides where its personal fields are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// `Petition` (信访件): complainants' identity and mobile numbers.
    Petition,
    /// `WorkOrder` (12345 工单): the caller's phone number.
    WorkOrder,
}

impl DocKind {
    /// The kind named by a record's `kind` field (`petition`, `workorder`).
    pub fn from_record_kind(kind: &str) -> Option<DocKind> {
        match kind {
            "petition" => Some(DocKind::Petition),
            "workorder" => Some(DocKind::WorkOrder),
            _ => None,
        }
    }

    /// The kind of a record JSON, from its `kind` field.
    pub fn of_record(record: &Value) -> Option<DocKind> {
        record
            .get("kind")
            .and_then(Value::as_str)
            .and_then(Self::from_record_kind)
    }
}

/// A blind-index entry of a personal value, for exact lookup without the clear value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindEntry {
    /// `id_number`, `mobile` or `phone`.
    pub field: &'static str,
    /// [`KeyRing::blind_index`] of the (normalized) value under `field`.
    pub digest: String,
}

/// Calls `f(field, value)` for each personal field slot of the document that holds a value.
fn for_each_pii(kind: DocKind, doc: &mut Value, mut f: impl FnMut(&'static str, &mut Value)) {
    match kind {
        DocKind::Petition => {
            if let Some(list) = doc.get_mut("complainants").and_then(Value::as_array_mut) {
                for c in list {
                    if let Some(v) = c.get_mut("id_number") {
                        f("id_number", v);
                    }
                    if let Some(v) = c.get_mut("mobile") {
                        f("mobile", v);
                    }
                }
            }
        }
        DocKind::WorkOrder => {
            if let Some(v) = doc.get_mut("caller_phone") {
                f("phone", v);
            }
        }
    }
}

/// The clear text of a slot, `None` for null, empty strings and other non-text values.
fn clear_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Seals every clear personal value in place with the active key (already sealed values are
/// skipped) and returns the blind-index entries of the values it sealed, in document order.
/// Identity numbers are upper-cased for the index (the check character `X`); mobiles and
/// phones are indexed as given, so callers normalize them first.
pub fn seal_document(ring: &KeyRing, kind: DocKind, doc: &mut Value) -> Vec<BlindEntry> {
    let mut entries = Vec::new();
    for_each_pii(kind, doc, |field, v| {
        if let Value::String(s) = v {
            if KeyRing::is_sealed(s) {
                return;
            }
        }
        let Some(text) = clear_text(v) else { return };
        let normalized = if field == "id_number" {
            text.to_uppercase()
        } else {
            text.clone()
        };
        entries.push(BlindEntry {
            field,
            digest: ring.blind_index(field, &normalized),
        });
        *v = Value::String(ring.seal(&text));
    });
    entries
}

/// Opens every sealed personal value in place; clear values are left as they are. On error
/// (unknown key, tampered or malformed value) the document is unchanged.
pub fn open_document(ring: &KeyRing, kind: DocKind, doc: &mut Value) -> Result<(), SealError> {
    // Two passes instead of working on a copy (a copy of the whole document per record was a
    // measurable share of an export): open every sealed value first, change nothing unless all
    // of them opened. `for_each_pii` visits the same values in the same order both times.
    let mut opened = Vec::new();
    let mut result = Ok(());
    for_each_pii(kind, doc, |_, v| {
        if result.is_err() {
            return;
        }
        if let Value::String(s) = v {
            if s.starts_with("enc:") {
                match ring.open(s) {
                    Ok(clear) => opened.push(clear),
                    Err(e) => result = Err(e),
                }
            }
        }
    });
    result?;
    let mut opened = opened.into_iter();
    for_each_pii(kind, doc, |_, v| {
        if matches!(v, Value::String(s) if s.starts_with("enc:")) {
            if let Some(clear) = opened.next() {
                *v = Value::String(clear);
            }
        }
    });
    Ok(())
}

/// Which personal value a typed slot holds (for [`open_slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// An identity number (masked with [`mask_id_number`]).
    IdNumber,
    /// A mobile or phone number (masked with [`mask_phone`]).
    Phone,
}

/// The typed form of [`open_document`] followed by [`mask_document`] for one slot of a
/// document already deserialised into its canonical type (an export converts a million records:
/// going through `serde_json::Value` and back cost a third of its time). A sealed value is
/// opened; with `mask`, the clear value is then masked as `mask_document` does. An empty value
/// is left alone.
pub fn open_slot(
    ring: &KeyRing,
    slot: Slot,
    value: &mut Option<String>,
    mask: bool,
) -> Result<(), SealError> {
    let Some(text) = value.as_mut() else {
        return Ok(());
    };
    if text.is_empty() {
        return Ok(());
    }
    if text.starts_with("enc:") {
        *text = ring.open(text)?;
    }
    if mask {
        *text = match slot {
            Slot::IdNumber => mask_id_number(text),
            Slot::Phone => mask_phone(text),
        };
    }
    Ok(())
}

/// Masks personal values in place for display: clear identity numbers with
/// [`mask_id_number`], clear mobiles and phones with [`mask_phone`], sealed values become
/// `***`.
pub fn mask_document(kind: DocKind, doc: &mut Value) {
    for_each_pii(kind, doc, |field, v| {
        let Some(text) = clear_text(v) else { return };
        let masked = if text.starts_with("enc:") {
            "***".to_string()
        } else if field == "id_number" {
            mask_id_number(&text)
        } else {
            mask_phone(&text)
        };
        *v = Value::String(masked);
    });
}

/// Re-encrypts with the active key every personal value sealed under another key (key
/// rotation). Clear values are left as they are. Returns whether anything changed; on error
/// the document is unchanged.
pub fn reseal_document(ring: &KeyRing, kind: DocKind, doc: &mut Value) -> Result<bool, SealError> {
    let mut copy = doc.clone();
    let mut result = Ok(false);
    for_each_pii(kind, &mut copy, |_, v| {
        if result.is_err() {
            return;
        }
        let Value::String(s) = v else { return };
        if !s.starts_with("enc:") || KeyRing::key_id_of(s) == Some(ring.active_id()) {
            return;
        }
        match ring.open(s) {
            Ok(clear) => {
                *v = Value::String(ring.seal(&clear));
                result = Ok(true);
            }
            Err(e) => result = Err(e),
        }
    });
    let changed = result?;
    if changed {
        *doc = copy;
    }
    Ok(changed)
}

/// [`seal_document`] on the `data` of a record JSON (no entries when there is no `data`).
pub fn seal_record(ring: &KeyRing, kind: DocKind, record: &mut Value) -> Vec<BlindEntry> {
    match record.get_mut("data") {
        Some(data) => seal_document(ring, kind, data),
        None => Vec::new(),
    }
}

/// [`open_document`] on the `data` of a record JSON.
pub fn open_record(ring: &KeyRing, kind: DocKind, record: &mut Value) -> Result<(), SealError> {
    match record.get_mut("data") {
        Some(data) => open_document(ring, kind, data),
        None => Ok(()),
    }
}

/// [`mask_document`] on the `data` of a record JSON.
pub fn mask_record(kind: DocKind, record: &mut Value) {
    if let Some(data) = record.get_mut("data") {
        mask_document(kind, data);
    }
}

/// [`reseal_document`] on the `data` of a record JSON.
pub fn reseal_record(ring: &KeyRing, kind: DocKind, record: &mut Value) -> Result<bool, SealError> {
    match record.get_mut("data") {
        Some(data) => reseal_document(ring, kind, data),
        None => Ok(false),
    }
}

/// Masks an identity number for display (counted in characters):
///
/// - 18 characters (current resident identity card): first 6 (area code) + 8 `*` + last 4,
///   `430102********1234`;
/// - 15 characters (first-generation card, `AAAAAAYYMMDDSSS`): first 6 + 6 `*` + last 3, so
///   the birth date is hidden as in the 18-character form, `430102******123`;
/// - other lengths of 3 or more: first and last character kept, the rest `*`;
/// - 1 or 2 characters: all `*`.
pub fn mask_id_number(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        18 => (6, 4),
        15 => (6, 3),
        0..=2 => (0, 0),
        _ => (1, 1),
    };
    keep_ends(&chars, head, tail)
}

/// Masks a phone number for display (counted in characters):
///
/// - 11 ASCII digits (mainland mobile): first 3 + `****` + last 4, `138****5678`;
/// - other values of 8 or more characters: first 3 and last 2 kept, the rest `*`
///   (`0731-84561234` gives `073********34`);
/// - shorter values: all `*`.
pub fn mask_phone(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let (head, tail) = if n == 11 && chars.iter().all(char::is_ascii_digit) {
        (3, 4)
    } else if n >= 8 {
        (3, 2)
    } else {
        (0, 0)
    };
    keep_ends(&chars, head, tail)
}

fn keep_ends(chars: &[char], head: usize, tail: usize) -> String {
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < head || i + tail >= n { *c } else { '*' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID1: &str = "43010219900307123x";
    const ID2: &str = "430103198512120021";
    const MOBILE1: &str = "13812345678";
    const MOBILE2: &str = "15973112345";

    fn petition() -> Value {
        json!({
            "source_id": "XF-2025-000001",
            "title": "路灯不亮",
            "anonymous": false,
            "complainants": [
                {"name": "张三", "id_number": ID1, "mobile": MOBILE1, "address": "芙蓉区"},
                {"name": "李四", "id_number": ID2, "mobile": MOBILE2},
                {"name": "王五", "id_number": null},
                {"name": "赵六", "mobile": ""}
            ]
        })
    }

    fn record(kind: &str, data: Value) -> Value {
        json!({
            "id": "0193f0c2-0000-7000-8000-000000000001",
            "kind": kind,
            "version": 1,
            "status": "registered",
            "received_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-01T00:00:00Z",
            "data": data
        })
    }

    #[test]
    fn seal_open_mask_petition() {
        let ring = KeyRing::generate();
        let mut doc = petition();
        let entries = seal_document(&ring, DocKind::Petition, &mut doc);
        assert_eq!(
            entries,
            vec![
                BlindEntry {
                    field: "id_number",
                    digest: ring.blind_index("id_number", &ID1.to_uppercase())
                },
                BlindEntry {
                    field: "mobile",
                    digest: ring.blind_index("mobile", MOBILE1)
                },
                BlindEntry {
                    field: "id_number",
                    digest: ring.blind_index("id_number", ID2)
                },
                BlindEntry {
                    field: "mobile",
                    digest: ring.blind_index("mobile", MOBILE2)
                },
            ]
        );
        let text = serde_json::to_string(&doc).unwrap();
        for clear in [ID1, ID2, MOBILE1, MOBILE2, &ID1.to_uppercase()] {
            assert!(!text.contains(clear), "{clear} in {text}");
        }
        // Everything else is untouched.
        assert!(text.contains("张三") && text.contains("路灯不亮") && text.contains("芙蓉区"));
        assert_eq!(doc["complainants"][2]["id_number"], Value::Null);
        assert_eq!(doc["complainants"][3]["mobile"], "");
        assert!(KeyRing::is_sealed(
            doc["complainants"][0]["id_number"].as_str().unwrap()
        ));

        // Sealing again changes nothing and reports nothing.
        let before = doc.clone();
        assert!(seal_document(&ring, DocKind::Petition, &mut doc).is_empty());
        assert_eq!(doc, before);

        // Masking sealed values hides them entirely.
        let mut masked = doc.clone();
        mask_document(DocKind::Petition, &mut masked);
        assert_eq!(masked["complainants"][0]["id_number"], "***");
        assert_eq!(masked["complainants"][1]["mobile"], "***");

        open_document(&ring, DocKind::Petition, &mut doc).unwrap();
        assert_eq!(doc, petition());

        // Masking clear values.
        mask_document(DocKind::Petition, &mut doc);
        assert_eq!(doc["complainants"][0]["id_number"], "430102********123x");
        assert_eq!(doc["complainants"][0]["mobile"], "138****5678");
        assert_eq!(doc["complainants"][1]["id_number"], "430103********0021");
        assert_eq!(doc["complainants"][1]["mobile"], "159****2345");
        assert_eq!(doc["complainants"][2]["id_number"], Value::Null);
        assert_eq!(doc["complainants"][3]["mobile"], "");
    }

    #[test]
    fn workorder_and_record_wrappers() {
        let ring = KeyRing::generate();
        let wo = json!({"source_id": "WO-1", "caller_phone": MOBILE1, "content": "噪音扰民"});
        let mut rec = record("workorder", wo.clone());
        let kind = DocKind::of_record(&rec).unwrap();
        assert_eq!(kind, DocKind::WorkOrder);
        let entries = seal_record(&ring, kind, &mut rec);
        assert_eq!(
            entries,
            vec![BlindEntry {
                field: "phone",
                digest: ring.blind_index("phone", MOBILE1)
            }]
        );
        assert!(!serde_json::to_string(&rec).unwrap().contains(MOBILE1));
        let mut masked = rec.clone();
        mask_record(kind, &mut masked);
        assert_eq!(masked["data"]["caller_phone"], "***");
        open_record(&ring, kind, &mut rec).unwrap();
        assert_eq!(rec["data"], wo);
        mask_record(kind, &mut rec);
        assert_eq!(rec["data"]["caller_phone"], "138****5678");

        let mut prec = record("petition", petition());
        assert_eq!(DocKind::of_record(&prec), Some(DocKind::Petition));
        assert_eq!(seal_record(&ring, DocKind::Petition, &mut prec).len(), 4);
        assert!(!serde_json::to_string(&prec).unwrap().contains(ID2));
        open_record(&ring, DocKind::Petition, &mut prec).unwrap();
        assert_eq!(prec["data"], petition());

        assert_eq!(DocKind::from_record_kind("event"), None);
        let mut no_data = json!({"kind": "petition"});
        assert!(seal_record(&ring, DocKind::Petition, &mut no_data).is_empty());
    }

    #[test]
    fn numbers_are_sealed_too() {
        let ring = KeyRing::generate();
        let mut wo = json!({"caller_phone": 13812345678_u64});
        seal_document(&ring, DocKind::WorkOrder, &mut wo);
        assert!(KeyRing::is_sealed(wo["caller_phone"].as_str().unwrap()));
        open_document(&ring, DocKind::WorkOrder, &mut wo).unwrap();
        assert_eq!(wo["caller_phone"], "13812345678");
    }

    #[test]
    fn reseal_after_rotation() {
        let mut ring = KeyRing::generate();
        let mut doc = petition();
        seal_document(&ring, DocKind::Petition, &mut doc);
        let old_sealed = doc.clone();
        assert_eq!(ring.rotate(), "k2");

        // Old values still open.
        let mut opened = old_sealed.clone();
        open_document(&ring, DocKind::Petition, &mut opened).unwrap();
        assert_eq!(opened, petition());

        assert!(reseal_document(&ring, DocKind::Petition, &mut doc).unwrap());
        for c in doc["complainants"].as_array().unwrap().iter().take(2) {
            for f in ["id_number", "mobile"] {
                assert_eq!(KeyRing::key_id_of(c[f].as_str().unwrap()), Some("k2"));
            }
        }
        // Nothing left to move.
        assert!(!reseal_document(&ring, DocKind::Petition, &mut doc).unwrap());
        open_document(&ring, DocKind::Petition, &mut doc).unwrap();
        assert_eq!(doc, petition());

        // Record wrapper.
        let mut rec = record("petition", old_sealed);
        assert!(reseal_record(&ring, DocKind::Petition, &mut rec).unwrap());
        open_record(&ring, DocKind::Petition, &mut rec).unwrap();
        assert_eq!(rec["data"], petition());
    }

    #[test]
    fn errors_leave_the_document_unchanged() {
        let ring = KeyRing::generate();
        let mut doc = petition();
        seal_document(&ring, DocKind::Petition, &mut doc);
        // Tamper with the second complainant's mobile only.
        let good = doc["complainants"][1]["mobile"]
            .as_str()
            .unwrap()
            .to_string();
        let mut bad: Vec<u8> = good.into_bytes();
        let i = bad.len() / 2 + 5;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        doc["complainants"][1]["mobile"] = Value::String(String::from_utf8(bad).unwrap());
        let before = doc.clone();
        assert_eq!(
            open_document(&ring, DocKind::Petition, &mut doc),
            Err(SealError::Tampered)
        );
        assert_eq!(doc, before);

        let mut other = KeyRing::generate();
        other.rotate();
        let mut doc2 = petition();
        seal_document(&ring, DocKind::Petition, &mut doc2);
        let before = doc2.clone();
        // `other` holds a different k1: the values do not open.
        assert_eq!(
            reseal_document(&other, DocKind::Petition, &mut doc2),
            Err(SealError::Tampered)
        );
        assert_eq!(doc2, before);
    }

    #[test]
    fn id_number_masks() {
        let cases = [
            ("430102199003071234", "430102********1234"),
            ("43010219900307123X", "430102********123X"),
            ("430102900307123", "430102******123"),
            ("A1234567", "A******7"),
            ("abc", "a*c"),
            ("ab", "**"),
            ("a", "*"),
            ("", ""),
            ("港澳居民来往内地通行证", "港*********证"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_id_number(input), want, "{input:?}");
        }
    }

    #[test]
    fn phone_masks() {
        let cases = [
            ("13812345678", "138****5678"),
            ("0731-84561234", "073********34"),
            ("07318456123", "073****6123"),
            ("84561234", "845***34"),
            ("8456123", "*******"),
            ("12345", "*****"),
            ("", ""),
            ("+8613812345678", "+86*********78"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_phone(input), want, "{input:?}");
        }
    }
}
