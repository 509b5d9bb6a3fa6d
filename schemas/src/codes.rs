//! Code tables (DOMAIN.md §3): data, not enums, because the provincial tables change.
//!
//! Each table is one TOML file under `schemas/data/`, compiled in with `include_str!` (this crate
//! does no I/O) and parsed once by [`CodeTables::embedded`]. A deployment that must load a newer
//! table (for example the full national content class list) parses its file with
//! [`CodeTable::parse`] and swaps it in with [`CodeTables::replace`], which validates the whole set
//! again. Every record is tagged with [`CodeTables::version`] so that a code can always be read
//! against the table it was checked with.
//!
//! File format:
//!
//! ```toml
//! name = "forms"
//! version = "2024.1"
//! description = "信访形式 petition form"
//! [[entries]]
//! code = "0001"
//! name_zh = "来信"
//! name_en = "letter"
//! # optional: parent = "010000", replaced_by = "430112", active = false
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Names of the tables every [`CodeTables`] must hold; validation refers to all of them.
pub const REQUIRED_TABLES: &[&str] = &[
    "forms",
    "purposes",
    "handling_methods",
    "content_classes",
    "divisions",
    "evaluations",
    "id_types",
    "registration_levels",
    "order_types",
    "order_states",
    "order_results",
    "urgencies",
];

/// The compiled-in table files, in [`REQUIRED_TABLES`] order.
const EMBEDDED: &[(&str, &str)] = &[
    ("forms.toml", include_str!("../data/forms.toml")),
    ("purposes.toml", include_str!("../data/purposes.toml")),
    (
        "handling_methods.toml",
        include_str!("../data/handling_methods.toml"),
    ),
    (
        "content_classes.toml",
        include_str!("../data/content_classes.toml"),
    ),
    ("divisions.toml", include_str!("../data/divisions.toml")),
    ("evaluations.toml", include_str!("../data/evaluations.toml")),
    ("id_types.toml", include_str!("../data/id_types.toml")),
    (
        "registration_levels.toml",
        include_str!("../data/registration_levels.toml"),
    ),
    ("order_types.toml", include_str!("../data/order_types.toml")),
    (
        "order_states.toml",
        include_str!("../data/order_states.toml"),
    ),
    (
        "order_results.toml",
        include_str!("../data/order_results.toml"),
    ),
    ("urgencies.toml", include_str!("../data/urgencies.toml")),
];

/// Longest `replaced_by` chain followed before it is called a cycle.
const MAX_REPLACEMENT_HOPS: usize = 16;

/// Why a table file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodeTableError {
    /// Not TOML, or not the shape of a table file (missing key, unknown key, wrong type).
    #[error("code table is not valid: {0}")]
    Toml(#[from] toml::de::Error),
}

/// One code of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeEntry {
    /// The code as it appears in records (`0001`, `430112`, `complaint`).
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    /// Code of the parent entry in the same table (content class levels, divisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For a historical code: the code that replaced it, in the same table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// Inactive codes are kept for history; new records may not use them.
    #[serde(default = "default_true")]
    pub active: bool,
}

fn default_true() -> bool {
    true
}

impl CodeEntry {
    /// An active entry without parent or replacement.
    pub fn new(code: &str, name_zh: &str, name_en: &str) -> Self {
        CodeEntry {
            code: code.to_owned(),
            name_zh: name_zh.to_owned(),
            name_en: name_en.to_owned(),
            parent: None,
            replaced_by: None,
            active: true,
        }
    }

    /// Sets the parent code.
    pub fn with_parent(mut self, parent: &str) -> Self {
        self.parent = Some(parent.to_owned());
        self
    }

    /// Marks the entry historical, replaced by `code`.
    pub fn replaced_by(mut self, code: &str) -> Self {
        self.replaced_by = Some(code.to_owned());
        self.active = false;
        self
    }
}

/// The serialized shape of a [`CodeTable`]; deserialization goes through it to build the index.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeTableData {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    entries: Vec<CodeEntry>,
}

impl From<CodeTableData> for CodeTable {
    fn from(d: CodeTableData) -> Self {
        CodeTable::new(&d.name, &d.version, &d.description, d.entries)
    }
}

/// One code table: a name, a version and its entries in file order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(from = "CodeTableData")]
pub struct CodeTable {
    pub name: String,
    pub version: String,
    pub description: String,
    pub entries: Vec<CodeEntry>,
    /// code -> position in `entries` (the first one, if a code is duplicated).
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl PartialEq for CodeTable {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.version == other.version
            && self.description == other.description
            && self.entries == other.entries
    }
}

impl Eq for CodeTable {}

impl CodeTable {
    /// A table from its parts. It is not validated: [`CodeTables::from_tables`] does that for the
    /// whole set.
    pub fn new(name: &str, version: &str, description: &str, entries: Vec<CodeEntry>) -> Self {
        let mut table = CodeTable {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            entries,
            index: HashMap::new(),
        };
        table.reindex();
        table
    }

    /// Parses one table file. Only the shape is checked here; duplicates and dangling references
    /// are reported by [`CodeTables::from_tables`].
    pub fn parse(toml_text: &str) -> Result<CodeTable, CodeTableError> {
        Ok(toml::from_str(toml_text)?)
    }

    /// Rebuilds the lookup index; call it after changing `entries` by hand.
    pub fn reindex(&mut self) {
        let mut index = HashMap::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            index.entry(e.code.clone()).or_insert(i);
        }
        self.index = index;
    }

    /// The entry of `code`, active or not.
    pub fn get(&self, code: &str) -> Option<&CodeEntry> {
        match self.index.get(code).and_then(|&i| self.entries.get(i)) {
            Some(e) if e.code == code => Some(e),
            // The index is stale (entries changed without reindex) or the code is absent:
            // fall back to a scan, which is always right.
            _ => self.entries.iter().find(|e| e.code == code),
        }
    }

    /// The entries whose parent is `code`.
    pub fn children<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a CodeEntry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.parent.as_deref() == Some(code))
    }

    /// Every problem of this table taken alone, each as a readable line.
    fn problems(&self, out: &mut Vec<String>) {
        let t = &self.name;
        if self.name.trim().is_empty() {
            out.push("a table has an empty name".to_owned());
        }
        if self.version.trim().is_empty() {
            out.push(format!("table `{t}`: empty version"));
        }
        if self.entries.is_empty() {
            out.push(format!("table `{t}`: no entries"));
        }
        let mut first_at: HashMap<&str, usize> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.code.trim().is_empty() || e.code.trim() != e.code {
                out.push(format!(
                    "table `{t}`: entry {}: code `{}` is blank or has surrounding spaces",
                    i + 1,
                    e.code
                ));
            }
            if e.name_zh.trim().is_empty() {
                out.push(format!("table `{t}`: code `{}`: empty name_zh", e.code));
            }
            if e.name_en.trim().is_empty() {
                out.push(format!("table `{t}`: code `{}`: empty name_en", e.code));
            }
            if let Some(&j) = first_at.get(e.code.as_str()) {
                out.push(format!(
                    "table `{t}`: duplicate code `{}` (entries {} and {})",
                    e.code,
                    j + 1,
                    i + 1
                ));
            } else {
                first_at.insert(&e.code, i);
            }
            if let Some(p) = &e.parent {
                if p == &e.code {
                    out.push(format!("table `{t}`: code `{}` is its own parent", e.code));
                } else if self.get(p).is_none() {
                    out.push(format!(
                        "table `{t}`: code `{}`: parent `{p}` not found",
                        e.code
                    ));
                }
            }
            if let Some(r) = &e.replaced_by {
                if e.active {
                    out.push(format!(
                        "table `{t}`: code `{}` has replaced_by `{r}` but is active; set active = false",
                        e.code
                    ));
                }
                if self.get(r).is_none() {
                    out.push(format!(
                        "table `{t}`: code `{}`: replaced_by `{r}` not found",
                        e.code
                    ));
                } else if self.follow_replacements(&e.code).is_none() {
                    out.push(format!(
                        "table `{t}`: code `{}`: replaced_by chain is a cycle or ends at an inactive code",
                        e.code
                    ));
                }
            }
        }
        // Parent cycles (a -> b -> a) would make level walks loop.
        for e in &self.entries {
            let mut cur = e.parent.as_deref();
            let mut hops = 0;
            while let Some(p) = cur {
                hops += 1;
                if p == e.code || hops > self.entries.len() {
                    out.push(format!(
                        "table `{t}`: code `{}`: parent chain is a cycle",
                        e.code
                    ));
                    break;
                }
                cur = self.get(p).and_then(|x| x.parent.as_deref());
            }
        }
    }

    /// The active code `code` stands for today: itself if active, else the end of its
    /// `replaced_by` chain. None if unknown, withdrawn without successor, or a cycle.
    fn follow_replacements(&self, code: &str) -> Option<&CodeEntry> {
        let mut entry = self.get(code)?;
        for _ in 0..MAX_REPLACEMENT_HOPS {
            if entry.active {
                return Some(entry);
            }
            entry = self.get(entry.replaced_by.as_deref()?)?;
        }
        None
    }
}

/// A validated set of code tables, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeTables {
    tables: BTreeMap<String, CodeTable>,
}

impl CodeTables {
    /// The compiled-in tables, parsed and validated once.
    ///
    /// # Panics
    ///
    /// If the compiled-in files are invalid; the crate's tests make sure they are not.
    pub fn embedded() -> &'static CodeTables {
        static EMBEDDED_TABLES: OnceLock<CodeTables> = OnceLock::new();
        EMBEDDED_TABLES.get_or_init(|| match Self::parse_files(EMBEDDED) {
            Ok(t) => t,
            Err(errors) => panic!(
                "compiled-in code tables are invalid:\n{}",
                errors.join("\n")
            ),
        })
    }

    /// Parses and validates a set of table files, given as (origin, text) pairs; the origin (a file
    /// name) only labels errors. Every error of every file is listed.
    pub fn parse_files(files: &[(&str, &str)]) -> Result<CodeTables, Vec<String>> {
        let mut tables = Vec::with_capacity(files.len());
        let mut errors = Vec::new();
        for (origin, text) in files {
            match CodeTable::parse(text) {
                Ok(t) => tables.push(t),
                Err(e) => errors.push(format!("{origin}: {e}")),
            }
        }
        match Self::from_tables(tables) {
            Ok(t) if errors.is_empty() => Ok(t),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Validates a whole set: duplicate table names, duplicate codes, parents and replacements
    /// not found, replacement cycles, required tables missing. Every error is listed.
    pub fn from_tables(tables: Vec<CodeTable>) -> Result<CodeTables, Vec<String>> {
        let mut errors = Vec::new();
        let mut map = BTreeMap::new();
        for mut table in tables {
            table.reindex();
            table.problems(&mut errors);
            if map.contains_key(&table.name) {
                errors.push(format!("table `{}` is given more than once", table.name));
            } else {
                map.insert(table.name.clone(), table);
            }
        }
        for name in REQUIRED_TABLES {
            if !map.contains_key(*name) {
                errors.push(format!("required table `{name}` is missing"));
            }
        }
        if errors.is_empty() {
            Ok(CodeTables { tables: map })
        } else {
            Err(errors)
        }
    }

    /// A copy of this set with `table` replacing the table of the same name (or added), validated
    /// again as a whole. A bad table never replaces a good one: on error `self` is unchanged.
    pub fn replace(&self, table: CodeTable) -> Result<CodeTables, Vec<String>> {
        let mut tables: Vec<CodeTable> = self
            .tables
            .values()
            .filter(|t| t.name != table.name)
            .cloned()
            .collect();
        tables.push(table);
        Self::from_tables(tables)
    }

    pub fn table(&self, name: &str) -> Option<&CodeTable> {
        self.tables.get(name)
    }

    /// Table names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// The tables, sorted by name.
    pub fn tables(&self) -> impl Iterator<Item = &CodeTable> {
        self.tables.values()
    }

    /// The entry of `code` in `table`, active or not.
    pub fn lookup(&self, table: &str, code: &str) -> Option<&CodeEntry> {
        self.table(table)?.get(code)
    }

    /// True if `code` is an active entry of `table`.
    pub fn is_known(&self, table: &str, code: &str) -> bool {
        self.lookup(table, code).is_some_and(|e| e.active)
    }

    /// The current code of a division code: the code itself if active, the end of its
    /// `replaced_by` chain if historical (`430122` -> `430112`); None if unknown or withdrawn.
    pub fn current_division(&self, code: &str) -> Option<String> {
        self.current_code("divisions", code)
    }

    /// [`Self::current_division`] for any table.
    pub fn current_code(&self, table: &str, code: &str) -> Option<String> {
        self.table(table)?
            .follow_replacements(code)
            .map(|e| e.code.clone())
    }

    /// Combined version of the set: `name@version` of every table, sorted by name, joined by
    /// `;`. Records are tagged with it.
    pub fn version(&self) -> String {
        self.tables
            .values()
            .map(|t| format!("{}@{}", t.name, t.version))
            .collect::<Vec<_>>()
            .join(";")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn embedded_tables_are_valid_and_complete() {
        let t = CodeTables::embedded();
        let names: Vec<&str> = t.names().collect();
        let mut required = REQUIRED_TABLES.to_vec();
        required.sort_unstable();
        assert_eq!(names, required);
        for table in t.tables() {
            let mut seen = HashSet::new();
            for e in &table.entries {
                assert!(seen.insert(&e.code), "{} {}", table.name, e.code);
            }
        }
    }

    #[test]
    fn stale_index_still_finds_codes() {
        let mut t = CodeTable::new("x", "1", "", vec![CodeEntry::new("a", "甲", "a")]);
        t.entries.insert(0, CodeEntry::new("b", "乙", "b"));
        assert_eq!(t.get("a").map(|e| e.name_zh.as_str()), Some("甲"));
        assert_eq!(t.get("b").map(|e| e.name_zh.as_str()), Some("乙"));
        assert!(t.get("c").is_none());
    }

    #[test]
    fn deserializing_builds_the_index() {
        let t = CodeTable::parse(EMBEDDED[0].1).unwrap();
        assert!(!t.index.is_empty());
        let json = serde_json::to_string(&t).unwrap();
        assert!(!json.contains("index"));
        let back: CodeTable = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.index.len(), t.entries.len());
    }
}
