//! `xfhub routes test`: sample messages run through a routing table and their destinations
//! compared with the expected ones, like `vector test`.
//!
//! ```toml
//! [[case]]
//! name = "a group petition reaches decision support"
//! type = "petition.received"
//! division = "430102"
//! payload = { data = { flags = { group = true } } }   # optional
//! expect = ["trail", "decision"]
//! ```

use std::fmt;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::table::RouteTable;

/// One sample message and the queues it must reach (in any order).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// Message type, e.g. `petition.received`.
    #[serde(rename = "type")]
    pub message_type: String,
    /// Six-digit division code; the routing key is `<type>.<division>`.
    pub division: String,
    /// The envelope's payload (default: an empty table).
    #[serde(default)]
    pub payload: Option<toml::Table>,
    pub expect: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

/// Parses a cases file.
pub fn parse_cases(text: &str) -> Result<Vec<Case>, String> {
    let file: CaseFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.cases.is_empty() {
        return Err("no [[case]] in the file".to_owned());
    }
    Ok(file.cases)
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub got: Vec<String>,
    /// Expected but not routed to.
    pub missing: Vec<String>,
    /// Routed to but not expected.
    pub unexpected: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            return write!(f, "PASS {} -> {:?}", self.name, self.got);
        }
        write!(f, "FAIL {}: got {:?}", self.name, self.got)?;
        if !self.missing.is_empty() {
            write!(f, "; missing {:?}", self.missing)?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; unexpected {:?}", self.unexpected)?;
        }
        Ok(())
    }
}

impl Case {
    /// The envelope (JSON) the case stands for.
    pub fn envelope(&self) -> Value {
        let payload = self
            .payload
            .as_ref()
            .and_then(|p| serde_json::to_value(p).ok())
            .unwrap_or_else(|| json!({}));
        json!({
            "type": self.message_type,
            "division": self.division,
            "payload": payload,
        })
    }

    pub fn run(&self, table: &RouteTable) -> CaseResult {
        let key = format!("{}.{}", self.message_type, self.division);
        let got = table.route(&key, Some(&self.envelope()));
        CaseResult {
            name: self.name.clone(),
            missing: self
                .expect
                .iter()
                .filter(|q| !got.contains(q))
                .cloned()
                .collect(),
            unexpected: got
                .iter()
                .filter(|q| !self.expect.contains(q))
                .cloned()
                .collect(),
            got,
        }
    }
}

/// Runs every case through `table`.
pub fn run_cases(table: &RouteTable, cases: &[Case]) -> Vec<CaseResult> {
    cases.iter().map(|c| c.run(table)).collect()
}
