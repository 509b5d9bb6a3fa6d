//! External-to-canonical code maps, loaded from data files (`transforms/data/*.toml`).
//!
//! A map file has a `version` and one TOML table per external field, each mapping the
//! partner's code (or Chinese value) to the canonical code of xfhub:
//!
//! ```toml
//! version = "2024.1"
//! [xfmddm]
//! "1" = "01"
//! ```
//!
//! An unknown code is never guessed: [`Mapping::map`] records a mapping error naming the field
//! and the value, and the record goes to the import-error store.

use std::collections::BTreeMap;

use xfhub_schemas::FieldError;

/// A parsed code map: table name -> (external code -> canonical code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeMap {
    /// Which partner the map is for (`provincial`, `hotline12345`).
    pub partner: String,
    pub version: String,
    tables: BTreeMap<String, BTreeMap<String, String>>,
}

impl CodeMap {
    /// Parses a map file and checks that every table in `required` is present and non-empty.
    /// Errors name the partner, the table and the problem.
    pub fn parse(partner: &str, text: &str, required: &[&str]) -> Result<CodeMap, String> {
        let value: toml::Table =
            toml::from_str(text).map_err(|e| format!("{partner} code map: {e}"))?;
        let mut version = None;
        let mut tables = BTreeMap::new();
        for (key, v) in value {
            match (key.as_str(), v) {
                ("version", toml::Value::String(s)) => version = Some(s),
                (_, toml::Value::Table(t)) => {
                    let mut entries = BTreeMap::new();
                    for (code, target) in t {
                        let toml::Value::String(target) = target else {
                            return Err(format!(
                                "{partner} code map: [{key}] \"{code}\" must map to a string"
                            ));
                        };
                        entries.insert(code, target);
                    }
                    tables.insert(key, entries);
                }
                (k, _) => {
                    return Err(format!(
                        "{partner} code map: `{k}` is neither `version` nor a table"
                    ))
                }
            }
        }
        let version = version.ok_or_else(|| format!("{partner} code map: `version` missing"))?;
        for name in required {
            if tables.get(*name).is_none_or(BTreeMap::is_empty) {
                return Err(format!(
                    "{partner} code map: table [{name}] missing or empty"
                ));
            }
        }
        Ok(CodeMap {
            partner: partner.to_owned(),
            version,
            tables,
        })
    }

    /// The canonical code of `code` in `table`.
    pub fn get(&self, table: &str, code: &str) -> Option<&str> {
        self.tables.get(table)?.get(code).map(String::as_str)
    }

    /// The external code of canonical `code` in `table` (the first one when several map to
    /// it); used by the mock partners to render canonical records in the partner's codes.
    pub fn external(&self, table: &str, canonical: &str) -> Option<&str> {
        self.tables
            .get(table)?
            .iter()
            .find(|(_, c)| *c == canonical)
            .map(|(e, _)| e.as_str())
    }

    /// Every (external, canonical) pair of `table`.
    pub fn entries(&self, table: &str) -> impl Iterator<Item = (&str, &str)> {
        self.tables
            .get(table)
            .into_iter()
            .flat_map(|t| t.iter().map(|(a, b)| (a.as_str(), b.as_str())))
    }
}

/// Collects every error of one record's mapping.
#[derive(Debug)]
pub struct Mapping<'a> {
    pub map: &'a CodeMap,
    pub errors: Vec<FieldError>,
}

impl<'a> Mapping<'a> {
    pub fn new(map: &'a CodeMap) -> Self {
        Mapping {
            map,
            errors: Vec::new(),
        }
    }

    /// The canonical code of `value` in `table`; records `unknown_code` for `path` otherwise.
    pub fn map(&mut self, path: &str, table: &str, value: &str) -> Option<String> {
        match self.map.get(table, value) {
            Some(c) => Some(c.to_owned()),
            None => {
                self.errors.push(field_error(
                    path,
                    "unknown_code",
                    &format!(
                        "unknown code: {path} = \"{value}\" is not in the {} code map (table [{table}], version {})",
                        self.map.partner, self.map.version
                    ),
                    &format!(
                        "代码不存在：{path} = \"{value}\" 不在{}代码对照表 [{table}]（版本 {}）中",
                        self.map.partner, self.map.version
                    ),
                ));
                None
            }
        }
    }

    pub fn push(&mut self, e: FieldError) {
        self.errors.push(e);
    }

    /// A required field that is absent or empty.
    pub fn required(&mut self, path: &str) {
        self.errors.push(field_error(
            path,
            "required",
            &format!("a value is required: {path}"),
            &format!("必填项不能为空：{path}"),
        ));
    }

    /// A value that does not parse as `what`.
    pub fn bad_format(&mut self, path: &str, code: &str, value: &str, what: &str, what_zh: &str) {
        self.errors.push(field_error(
            path,
            code,
            &format!("{path} = \"{}\" is not {what}", clip(value)),
            &format!("{path} = \"{}\" 不是{what_zh}", clip(value)),
        ));
    }
}

/// A field error with explicit messages.
pub fn field_error(path: &str, code: &str, message: &str, message_zh: &str) -> FieldError {
    FieldError {
        path: path.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
        message_zh: message_zh.to_owned(),
    }
}

/// At most 40 characters of a value for an error message (values are never personal data
/// here: personal fields are checked by validation, whose messages carry no value).
fn clip(v: &str) -> String {
    v.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_shape_and_required_tables() {
        let m = CodeMap::parse("p", "version = \"1\"\n[a]\n\"1\" = \"01\"\n", &["a"]).unwrap();
        assert_eq!(m.get("a", "1"), Some("01"));
        assert_eq!(m.external("a", "01"), Some("1"));
        assert_eq!(m.get("a", "2"), None);
        for (text, err) in [
            ("[a]\n\"1\" = \"01\"\n", "`version` missing"),
            ("version = \"1\"\n", "table [a] missing"),
            ("version = \"1\"\n[a]\n\"1\" = 1\n", "must map to a string"),
            (
                "version = \"1\"\nx = 1\n[a]\n\"1\" = \"2\"\n",
                "`x` is neither",
            ),
            ("version = \"1\"\n[a\n", "p code map"),
        ] {
            let e = CodeMap::parse("p", text, &["a"]).unwrap_err();
            assert!(e.contains(err), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_codes_name_field_and_value() {
        let m =
            CodeMap::parse("provincial", "version = \"7\"\n[t]\n\"1\" = \"01\"\n", &[]).unwrap();
        let mut mapping = Mapping::new(&m);
        assert_eq!(mapping.map("xfmddm", "t", "1").as_deref(), Some("01"));
        assert_eq!(mapping.map("xfmddm", "t", "5"), None);
        let e = &mapping.errors[0];
        assert_eq!(
            (e.path.as_str(), e.code.as_str()),
            ("xfmddm", "unknown_code")
        );
        assert!(e.message.contains("xfmddm = \"5\""), "{}", e.message);
        assert!(e.message.contains("version 7"), "{}", e.message);
        assert!(e.message_zh.contains("xfmddm = \"5\""), "{}", e.message_zh);
    }
}
