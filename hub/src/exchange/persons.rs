//! The person register (DOMAIN.md section 4, spec 5.1.7.1.2): a complainant of an imported
//! petition is matched to a registered person by identity number (through its keyed blind
//! index: the number itself is stored sealed). A new person is inserted; an existing one is
//! updated field by field by the configured precedence rules.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use sqlx::Row;
use tokio::runtime::Handle;
use uuid::Uuid;
use xfhub_schemas::Complainant;
use xfhub_security::keys::KeyRing;
use xfhub_store::{Stmt, Store};

/// How an incoming value meets the registered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The package's value wins whenever it has one.
    Incoming,
    /// The register's value stays; an empty one is filled.
    Existing,
    /// The value of the more recently registered petition wins.
    Newer,
}

/// The rules of each field group.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub name: Rule,
    pub mobile: Rule,
    pub address: Rule,
}

impl Rules {
    pub fn from_config(c: &super::ExchangeConfig) -> Rules {
        Rules {
            name: c.person_name,
            mobile: c.person_mobile,
            address: c.person_address,
        }
    }
}

/// A person as registered (personal numbers sealed).
#[derive(Debug, Clone, PartialEq)]
struct Person {
    id: String,
    id_type: Option<String>,
    id_number_sealed: String,
    name: Option<String>,
    mobile_sealed: Option<String>,
    address: Option<String>,
    detailed_address: Option<String>,
    seen_at: i64,
    source: String,
    created_at: i64,
    /// Not in the database yet.
    new: bool,
    /// Changed since read or last written.
    dirty: bool,
}

/// Decides one field by `rule`: the new value, if it replaces the old.
fn decide(rule: Rule, old: &Option<String>, incoming: Option<&str>, newer: bool) -> Option<String> {
    let incoming = incoming.map(str::trim).filter(|v| !v.is_empty())?;
    let replace = match rule {
        Rule::Incoming => true,
        Rule::Existing => old.is_none(),
        Rule::Newer => newer || old.is_none(),
    };
    (replace && old.as_deref() != Some(incoming)).then(|| incoming.to_owned())
}

/// The register as an import sees it: rows read once, changed in memory, written with each
/// batch's transaction.
pub struct PersonBook<'a> {
    rt: &'a Handle,
    store: &'a Store,
    ring: Arc<KeyRing>,
    rules: Rules,
    rows: HashMap<String, Person>,
    inserted: u64,
    updated: u64,
}

impl<'a> PersonBook<'a> {
    pub fn new(rt: &'a Handle, store: &'a Store, ring: Arc<KeyRing>, rules: Rules) -> Self {
        PersonBook {
            rt,
            store,
            ring,
            rules,
            rows: HashMap::new(),
            inserted: 0,
            updated: 0,
        }
    }

    fn load(&self, blind: &str) -> anyhow::Result<Option<Person>> {
        let row = self.rt.block_on(
            Stmt::new(
                "SELECT id, id_type, id_number_sealed, name, mobile_sealed, address, \
                 detailed_address, seen_at, source, created_at FROM persons WHERE id_blind = $1",
            )
            .bind(blind)
            .query()
            .fetch_optional(self.store.reader()),
        )?;
        row.map(|r| {
            Ok(Person {
                id: r.try_get("id")?,
                id_type: r.try_get("id_type")?,
                id_number_sealed: r.try_get("id_number_sealed")?,
                name: r.try_get("name")?,
                mobile_sealed: r.try_get("mobile_sealed")?,
                address: r.try_get("address")?,
                detailed_address: r.try_get("detailed_address")?,
                seen_at: r.try_get("seen_at")?,
                source: r.try_get("source")?,
                created_at: r.try_get("created_at")?,
                new: false,
                dirty: false,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Registers a (validated, normalized, unsealed) complainant seen at `seen_at` (ms) in
    /// package `source`. A complainant without identity number is not a person to match.
    pub fn observe(&mut self, c: &Complainant, seen_at: i64, source: &str) -> anyhow::Result<()> {
        let Some(number) = c.id_number.as_deref().filter(|n| !n.is_empty()) else {
            return Ok(());
        };
        let blind = self.ring.blind_index("id_number", number);
        if !self.rows.contains_key(&blind) {
            let p = match self.load(&blind)? {
                Some(p) => p,
                None => Person {
                    id: Uuid::now_v7().to_string(),
                    id_type: c.id_type.clone(),
                    id_number_sealed: self.ring.seal(number),
                    name: None,
                    mobile_sealed: None,
                    address: None,
                    detailed_address: None,
                    seen_at,
                    source: source.to_owned(),
                    created_at: xfhub_store::now_ms(),
                    new: true,
                    dirty: true,
                },
            };
            self.rows.insert(blind.clone(), p);
        }
        let rules = self.rules;
        let ring = self.ring.clone();
        let p = self.rows.get_mut(&blind).expect("just inserted");
        let newer = seen_at >= p.seen_at;
        let mut changed = false;
        if let Some(v) = decide(rules.name, &p.name, c.name.as_deref(), newer) {
            p.name = Some(v);
            changed = true;
        }
        // The mobile is compared in clear: the register holds it sealed (random IV).
        let old_mobile = p.mobile_sealed.as_deref().and_then(|m| ring.open(m).ok());
        if let Some(v) = decide(rules.mobile, &old_mobile, c.mobile.as_deref(), newer) {
            p.mobile_sealed = Some(ring.seal(&v));
            changed = true;
        }
        if let Some(v) = decide(rules.address, &p.address, c.address.as_deref(), newer) {
            p.address = Some(v);
            changed = true;
        }
        if let Some(v) = decide(
            rules.address,
            &p.detailed_address,
            c.detailed_address.as_deref(),
            newer,
        ) {
            p.detailed_address = Some(v);
            changed = true;
        }
        if newer && seen_at > p.seen_at {
            p.seen_at = seen_at;
            changed = true;
        }
        if changed {
            p.source = source.to_owned();
            p.dirty = true;
        }
        Ok(())
    }

    /// Upserts of the rows changed since the last call, and how many of them are new and how
    /// many existed (counted once per batch).
    pub fn statements(&mut self) -> (Vec<Stmt>, u64, u64) {
        let now = xfhub_store::now_ms();
        let mut out = Vec::new();
        let (mut ins, mut upd) = (0, 0);
        for (blind, p) in self.rows.iter_mut().filter(|(_, p)| p.dirty) {
            if p.new {
                ins += 1;
            } else {
                upd += 1;
            }
            out.push(
                Stmt::new(
                    "INSERT INTO persons (id, id_blind, id_type, id_number_sealed, name, \
                     mobile_sealed, address, detailed_address, seen_at, source, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (id_blind) DO UPDATE SET id_type = excluded.id_type, \
                     name = excluded.name, mobile_sealed = excluded.mobile_sealed, \
                     address = excluded.address, detailed_address = excluded.detailed_address, \
                     seen_at = excluded.seen_at, source = excluded.source, \
                     updated_at = excluded.updated_at",
                )
                .bind(p.id.as_str())
                .bind(blind.as_str())
                .bind(p.id_type.clone())
                .bind(p.id_number_sealed.as_str())
                .bind(p.name.clone())
                .bind(p.mobile_sealed.clone())
                .bind(p.address.clone())
                .bind(p.detailed_address.clone())
                .bind(p.seen_at)
                .bind(p.source.as_str())
                .bind(p.created_at)
                .bind(now),
            );
            p.new = false;
            p.dirty = false;
        }
        self.inserted += ins;
        self.updated += upd;
        (out, ins, upd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_decide_per_field() {
        let old = Some("张三".to_owned());
        assert_eq!(
            decide(Rule::Incoming, &old, Some("张叁"), false),
            Some("张叁".into())
        );
        assert_eq!(decide(Rule::Existing, &old, Some("张叁"), true), None);
        assert_eq!(
            decide(Rule::Existing, &None, Some("张叁"), false),
            Some("张叁".into())
        );
        assert_eq!(
            decide(Rule::Newer, &old, Some("张叁"), true),
            Some("张叁".into())
        );
        assert_eq!(decide(Rule::Newer, &old, Some("张叁"), false), None);
        assert_eq!(
            decide(Rule::Incoming, &old, Some("  "), true),
            None,
            "empty never overwrites"
        );
        assert_eq!(
            decide(Rule::Incoming, &old, Some("张三"), true),
            None,
            "no change"
        );
    }
}
