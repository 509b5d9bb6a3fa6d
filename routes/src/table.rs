//! The declarative routing table (`routes.toml`): rules that match a routing key
//! (`<type>.<division>`, AMQP topic patterns) and, optionally, a predicate on the envelope's
//! canonical JSON, and name the queues a message goes to.
//!
//! ```toml
//! version = "2026-11-28.1"
//!
//! [[rule]]
//! name = "group-petitions-furong"
//! match = "petition.*.*"                 # or a list of patterns
//! when = { all = [
//!     { path = "payload.data.flags.group", eq = true },
//!     { path = "division", in = ["430102", "430103"] },
//! ] }
//! to = ["warning"]
//! tap = false                            # a wire tap receives, but never counts as routed
//! enabled = true
//! ```
//!
//! A predicate is either a combinator (`all = [..]`, `any = [..]`, `not = {..}`) or a test of
//! one `path` (dotted, into the envelope; array elements by index) with exactly one operator:
//! `eq`, `ne`, `in`, `lt`, `le`, `gt`, `ge`, `contains`, `regex`, `exists`.
//!
//! The whole file is validated at load and every error is reported with its rule; warnings
//! (a queue nobody consumes in this build) are reported apart.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::router::topic_matches;

/// The table compiled into the binary (`routes/routes.toml`).
pub const BUILT_IN: &str = include_str!("../routes.toml");

/// A validated routing table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub version: String,
    pub rules: Vec<Rule>,
}

/// One rule of the table.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Routing-key patterns; the rule matches when any of them does.
    pub patterns: Vec<String>,
    /// The predicate as written, as JSON (for display).
    pub when_source: Option<Value>,
    pub to: Vec<String>,
    pub tap: bool,
    pub enabled: bool,
    when: Option<Predicate>,
}

impl Rule {
    /// A rule without predicate (how a code-built [`crate::Router`] subscription maps).
    pub fn new(name: &str, patterns: Vec<String>, to: Vec<String>) -> Rule {
        Rule {
            name: name.to_owned(),
            patterns,
            when_source: None,
            to,
            tap: false,
            enabled: true,
            when: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Predicate {
    All(Vec<Predicate>),
    Any(Vec<Predicate>),
    Not(Box<Predicate>),
    Test { path: Vec<String>, op: Op },
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Cmp(Ordering, bool, Value),
    Contains(Value),
    Regex(regex::Regex),
    Exists(bool),
}

/// Where a message goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// Every queue of every matching rule, each once, in rule order.
    pub queues: Vec<String>,
    /// True when a rule other than a wire tap matched.
    pub routed: bool,
}

impl RouteTable {
    /// Parses and validates a table. `known_queues`: the queues some consumer of this build
    /// reads; an enabled rule sending elsewhere gives a warning.
    pub fn parse(
        text: &str,
        known_queues: &[&str],
    ) -> Result<(RouteTable, Vec<String>), Vec<String>> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut version = String::new();
        let mut rules = Vec::new();
        let mut names: Vec<(usize, &str)> = Vec::new();
        for (key, value) in &doc {
            match key.as_str() {
                "version" => match value.as_str() {
                    Some(v) if !v.trim().is_empty() => version = v.to_owned(),
                    _ => errors.push("version: must be a non-empty string".to_owned()),
                },
                "rule" => match value.as_array() {
                    Some(list) => {
                        for (i, r) in list.iter().enumerate() {
                            if let Some(n) = r.get("name").and_then(|n| n.as_str()) {
                                names.push((i, n));
                            }
                            if let Some(rule) = parse_rule(i, r, &mut errors) {
                                rules.push((i, rule));
                            }
                        }
                    }
                    None => errors.push("rule: must be an array of tables ([[rule]])".to_owned()),
                },
                other => errors.push(format!("unknown field `{other}`")),
            }
        }
        if !doc.contains_key("version") {
            errors.push("version: missing".to_owned());
        }
        let mut seen = HashSet::new();
        for (i, name) in names {
            if !seen.insert(name) {
                errors.push(format!(
                    "rule[{i}] \"{name}\": duplicate name (each rule name must be unique)"
                ));
            }
        }
        for (i, rule) in &rules {
            if rule.enabled {
                for q in &rule.to {
                    if !known_queues.contains(&q.as_str()) {
                        warnings.push(format!(
                            "rule[{i}] \"{}\": queue `{q}` has no consumer in this build; \
                             its messages will accumulate",
                            rule.name
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            let rules = rules.into_iter().map(|(_, r)| r).collect();
            Ok((RouteTable { version, rules }, warnings))
        } else {
            Err(errors)
        }
    }

    /// The built-in table.
    pub fn built_in(known_queues: &[&str]) -> (RouteTable, Vec<String>) {
        RouteTable::parse(BUILT_IN, known_queues).expect("the built-in routing table is valid")
    }

    /// True when an enabled rule sends to `queue`.
    pub fn has_queue(&self, queue: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.enabled && r.to.iter().any(|q| q == queue))
    }

    /// True when some enabled rule matching this key has a predicate.
    pub fn needs_envelope(&self, routing_key: &str) -> bool {
        self.matching(routing_key).any(|r| r.when.is_some())
    }

    fn matching<'a>(&'a self, routing_key: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.enabled && r.patterns.iter().any(|p| topic_matches(p, routing_key)))
    }

    /// Queues a message goes to: the union of the queues of every matching rule, each once.
    pub fn route(&self, routing_key: &str, envelope: Option<&Value>) -> Vec<String> {
        self.resolve(routing_key, envelope).queues
    }

    /// Like [`route`](Self::route), and says whether a rule other than a wire tap matched.
    /// A rule with a predicate never matches without an envelope.
    pub fn resolve(&self, routing_key: &str, envelope: Option<&Value>) -> Routing {
        let mut out = Routing::default();
        for rule in self.matching(routing_key) {
            let pass = match (&rule.when, envelope) {
                (None, _) => true,
                (Some(p), Some(env)) => p.eval(env),
                (Some(_), None) => false,
            };
            if !pass {
                continue;
            }
            out.routed |= !rule.tap;
            for q in &rule.to {
                if !out.queues.contains(q) {
                    out.queues.push(q.clone());
                }
            }
        }
        out
    }

    /// Like [`resolve`](Self::resolve) with the envelope as JSON text, parsed only when a
    /// matching rule has a predicate.
    pub fn resolve_text(&self, routing_key: &str, envelope: &str) -> Routing {
        if self.needs_envelope(routing_key) {
            let parsed = serde_json::from_str::<Value>(envelope).ok();
            self.resolve(routing_key, parsed.as_ref())
        } else {
            self.resolve(routing_key, None)
        }
    }
}

/// The table in force, shared by the bus and whoever replaces it.
#[derive(Debug, Clone, Default)]
pub struct TableHandle(Arc<RwLock<Arc<RouteTable>>>);

impl TableHandle {
    pub fn new(table: RouteTable) -> Self {
        TableHandle(Arc::new(RwLock::new(Arc::new(table))))
    }

    pub fn current(&self) -> Arc<RouteTable> {
        self.0.read().expect("route table lock").clone()
    }

    pub fn replace(&self, table: RouteTable) {
        *self.0.write().expect("route table lock") = Arc::new(table);
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

const RULE_FIELDS: &[&str] = &[
    "name",
    "match",
    "when",
    "to",
    "tap",
    "enabled",
    "description",
];

fn parse_rule(i: usize, v: &toml::Value, errors: &mut Vec<String>) -> Option<Rule> {
    let Some(t) = v.as_table() else {
        errors.push(format!("rule[{i}]: must be a table"));
        return None;
    };
    let name = t.get("name").and_then(|n| n.as_str()).map(str::to_owned);
    let at = match &name {
        Some(n) => format!("rule[{i}] \"{n}\""),
        None => format!("rule[{i}]"),
    };
    let before = errors.len();
    let mut err = |msg: String| errors.push(format!("{at}: {msg}"));
    for key in t.keys() {
        if !RULE_FIELDS.contains(&key.as_str()) {
            err(format!(
                "unknown field `{key}` (expected one of {})",
                RULE_FIELDS.join(", ")
            ));
        }
    }
    match (&name, t.get("name")) {
        (Some(n), _) if n.trim().is_empty() => err("name: must not be empty".to_owned()),
        (None, Some(_)) => err("name: must be a string".to_owned()),
        (None, None) => err("name: missing".to_owned()),
        _ => {}
    }
    let mut patterns = Vec::new();
    match t.get("match") {
        None => err("match: missing".to_owned()),
        Some(toml::Value::String(p)) => patterns.push(p.clone()),
        Some(toml::Value::Array(a)) if !a.is_empty() => {
            for (j, p) in a.iter().enumerate() {
                match p.as_str() {
                    Some(p) => patterns.push(p.to_owned()),
                    None => err(format!("match[{j}]: must be a string")),
                }
            }
        }
        Some(_) => err("match: must be a pattern or a non-empty list of patterns".to_owned()),
    }
    for p in &patterns {
        if let Err(why) = check_pattern(p) {
            err(format!("match: bad pattern `{p}`: {why}"));
        }
    }
    let mut to = Vec::new();
    match t.get("to") {
        None => err("to: missing".to_owned()),
        Some(toml::Value::Array(a)) if a.is_empty() => {
            err("to: empty (a rule must name at least one queue)".to_owned())
        }
        Some(toml::Value::Array(a)) => {
            for (j, q) in a.iter().enumerate() {
                match q.as_str() {
                    Some(q) if valid_queue(q) => {
                        if !to.iter().any(|x| x == q) {
                            to.push(q.to_owned());
                        }
                    }
                    Some(q) => err(format!(
                        "to[{j}]: bad queue name `{q}` (letters, digits, `_`, `-` only)"
                    )),
                    None => err(format!("to[{j}]: must be a string")),
                }
            }
        }
        Some(_) => err("to: must be a list of queue names".to_owned()),
    }
    let mut flag = |key: &str, default: bool| match t.get(key) {
        None => default,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => {
            err(format!("{key}: must be true or false"));
            default
        }
    };
    let tap = flag("tap", false);
    let enabled = flag("enabled", true);
    if let Some(d) = t.get("description") {
        if !d.is_str() {
            err("description: must be a string".to_owned());
        }
    }
    let mut when_errors = Vec::new();
    let when = t
        .get("when")
        .and_then(|w| parse_predicate("when", w, &mut when_errors));
    errors.extend(when_errors.into_iter().map(|e| format!("{at}: {e}")));
    if errors.len() > before {
        return None;
    }
    Some(Rule {
        name: name.unwrap_or_default(),
        patterns,
        when_source: t.get("when").and_then(|w| serde_json::to_value(w).ok()),
        to,
        tap,
        enabled,
        when,
    })
}

fn check_pattern(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty");
    }
    for w in p.split('.') {
        if w.is_empty() {
            return Err("empty word (two dots, or a dot at an end)");
        }
        if w == "*" || w == "#" {
            continue;
        }
        if w.contains(['*', '#']) {
            return Err("`*` and `#` must be whole words");
        }
        if !w
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err("words hold letters, digits, `_` and `-` only");
        }
    }
    Ok(())
}

fn valid_queue(q: &str) -> bool {
    !q.is_empty()
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

const OPERATORS: &[&str] = &[
    "eq", "ne", "in", "lt", "le", "gt", "ge", "contains", "regex", "exists",
];

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) | toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

fn scalar(v: &toml::Value) -> Option<Value> {
    match v {
        toml::Value::String(s) => Some(Value::String(s.clone())),
        toml::Value::Integer(i) => Some(Value::from(*i)),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        toml::Value::Boolean(b) => Some(Value::Bool(*b)),
        _ => None,
    }
}

fn parse_predicate(at: &str, v: &toml::Value, errors: &mut Vec<String>) -> Option<Predicate> {
    let Some(t) = v.as_table() else {
        errors.push(format!("{at}: must be a table (a test or all/any/not)"));
        return None;
    };
    let combinators: Vec<&str> = ["all", "any", "not"]
        .into_iter()
        .filter(|k| t.contains_key(*k))
        .collect();
    if let Some(&comb) = combinators.first() {
        if t.len() != 1 {
            let others: Vec<&str> = t
                .keys()
                .map(String::as_str)
                .filter(|k| *k != comb)
                .collect();
            errors.push(format!(
                "{at}: `{comb}` stands alone in its table (also found: {})",
                others.join(", ")
            ));
            return None;
        }
        let inner = &t[comb];
        let here = format!("{at}.{comb}");
        return if comb == "not" {
            parse_predicate(&here, inner, errors).map(|p| Predicate::Not(Box::new(p)))
        } else {
            let Some(list) = inner.as_array().filter(|l| !l.is_empty()) else {
                errors.push(format!("{here}: must be a non-empty list of predicates"));
                return None;
            };
            let before = errors.len();
            let parts: Vec<Predicate> = list
                .iter()
                .enumerate()
                .filter_map(|(j, p)| parse_predicate(&format!("{here}[{j}]"), p, errors))
                .collect();
            if errors.len() > before {
                return None;
            }
            Some(if comb == "all" {
                Predicate::All(parts)
            } else {
                Predicate::Any(parts)
            })
        };
    }
    let before = errors.len();
    let path = match t.get("path") {
        Some(toml::Value::String(p)) if !p.is_empty() && p.split('.').all(|s| !s.is_empty()) => {
            Some(p.split('.').map(str::to_owned).collect::<Vec<_>>())
        }
        Some(_) => {
            errors.push(format!(
                "{at}.path: must be a dotted path such as `payload.data.flags.group`"
            ));
            None
        }
        None => {
            errors.push(format!("{at}: a test needs `path` (or use all/any/not)"));
            None
        }
    };
    let mut ops = Vec::new();
    for (key, value) in t {
        if key == "path" {
            continue;
        }
        if !OPERATORS.contains(&key.as_str()) {
            errors.push(format!(
                "{at}: unknown operator `{key}` (expected one of {}, or all/any/not)",
                OPERATORS.join(", ")
            ));
            continue;
        }
        ops.push((key.as_str(), value));
    }
    if ops.len() > 1 {
        let names: Vec<&str> = ops.iter().map(|(k, _)| *k).collect();
        errors.push(format!(
            "{at}: one operator per test (found {}); combine tests with all/any",
            names.join(", ")
        ));
    } else if ops.is_empty() && errors.len() == before {
        errors.push(format!(
            "{at}: no operator (expected one of {})",
            OPERATORS.join(", ")
        ));
    }
    if errors.len() > before {
        return None;
    }
    let (key, value) = ops[0];
    let here = format!("{at}.{key}");
    let mismatch = |want: &str| {
        format!(
            "{here}: type mismatch: expected {want}, found {}",
            type_name(value)
        )
    };
    let op = match key {
        "eq" | "ne" => match scalar(value) {
            Some(s) if key == "eq" => Op::Eq(s),
            Some(s) => Op::Ne(s),
            None => {
                errors.push(mismatch("a string, a number or a boolean"));
                return None;
            }
        },
        "in" => match value.as_array() {
            Some(list) if list.is_empty() => {
                errors.push(format!("{here}: empty list (it could never match)"));
                return None;
            }
            Some(list) => {
                let mut vals = Vec::new();
                for (j, item) in list.iter().enumerate() {
                    match scalar(item) {
                        Some(s) => vals.push(s),
                        None => errors.push(format!(
                            "{here}[{j}]: type mismatch: expected a string, a number or a boolean, found {}",
                            type_name(item)
                        )),
                    }
                }
                if errors.len() > before {
                    return None;
                }
                Op::In(vals)
            }
            None => {
                errors.push(mismatch("a list"));
                return None;
            }
        },
        "lt" | "le" | "gt" | "ge" => match value {
            toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Float(_) => {
                let s = scalar(value)?;
                match key {
                    "lt" => Op::Cmp(Ordering::Less, false, s),
                    "le" => Op::Cmp(Ordering::Less, true, s),
                    "gt" => Op::Cmp(Ordering::Greater, false, s),
                    _ => Op::Cmp(Ordering::Greater, true, s),
                }
            }
            _ => {
                errors.push(mismatch("a number or a string"));
                return None;
            }
        },
        "contains" => match scalar(value) {
            Some(s) => Op::Contains(s),
            None => {
                errors.push(mismatch("a string, a number or a boolean"));
                return None;
            }
        },
        "regex" => match value.as_str() {
            Some(re) => match regex::Regex::new(re) {
                Ok(r) => Op::Regex(r),
                Err(e) => {
                    let first = e.to_string();
                    let msg = first.lines().last().unwrap_or_default().trim().to_owned();
                    errors.push(format!("{here}: bad regex `{re}`: {msg}"));
                    return None;
                }
            },
            None => {
                errors.push(mismatch("a string"));
                return None;
            }
        },
        _ => match value.as_bool() {
            Some(b) => Op::Exists(b),
            None => {
                errors.push(mismatch("a boolean"));
                return None;
            }
        },
    };
    Some(Predicate::Test { path: path?, op })
}

// ---------------------------------------------------------------------------------------------
// Evaluation

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| match cur {
        Value::Object(o) => o.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Equality where numbers compare by value (1 == 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Predicate {
    fn eval(&self, env: &Value) -> bool {
        match self {
            Predicate::All(ps) => ps.iter().all(|p| p.eval(env)),
            Predicate::Any(ps) => ps.iter().any(|p| p.eval(env)),
            Predicate::Not(p) => !p.eval(env),
            Predicate::Test { path, op } => {
                let found = lookup(env, path).filter(|v| !v.is_null());
                match (op, found) {
                    (Op::Exists(want), f) => f.is_some() == *want,
                    (Op::Ne(x), f) => !f.is_some_and(|v| same(v, x)),
                    (_, None) => false,
                    (Op::Eq(x), Some(v)) => same(v, x),
                    (Op::In(xs), Some(v)) => xs.iter().any(|x| same(v, x)),
                    (Op::Cmp(dir, or_equal, x), Some(v)) => match compare(v, x) {
                        Some(Ordering::Equal) => *or_equal,
                        Some(o) => o == *dir,
                        None => false,
                    },
                    (Op::Contains(x), Some(Value::String(s))) => {
                        x.as_str().is_some_and(|needle| s.contains(needle))
                    }
                    (Op::Contains(x), Some(Value::Array(items))) => {
                        items.iter().any(|item| same(item, x))
                    }
                    (Op::Contains(_), Some(_)) => false,
                    (Op::Regex(re), Some(Value::String(s))) => re.is_match(s),
                    (Op::Regex(_), Some(_)) => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_table_is_valid_without_warnings() {
        let consumers = ["trail", "warning", "dispatch", "sms", "app_push"];
        let (table, warnings) = RouteTable::built_in(&consumers);
        assert!(warnings.is_empty(), "{warnings:?}");
        for q in consumers {
            assert!(table.has_queue(q), "{q}");
        }
        assert!(
            !table.has_queue("supervision"),
            "disabled rules have no queue"
        );
    }

    #[test]
    fn pattern_only_tables_never_need_the_envelope() {
        let (table, _) = RouteTable::built_in(&["trail"]);
        let r = table.resolve_text("petition.received.430102", "not json");
        assert_eq!(r.queues, ["trail", "warning", "dispatch"]);
        assert!(r.routed, "the business rules route; the trail is a tap");
        let r = table.resolve_text("alert.raised.430102", "not json");
        assert_eq!(r.queues, ["trail"]);
        assert!(!r.routed, "a tap alone is not a route");
    }

    #[test]
    fn bad_patterns_are_named() {
        for p in ["", "a..b", "pet*.x", "a.b.", "a b"] {
            assert!(check_pattern(p).is_err(), "{p:?}");
        }
        for p in ["#", "petition.*.*", "workorder.#", "a-b_c.*"] {
            assert!(check_pattern(p).is_ok(), "{p:?}");
        }
    }
}
