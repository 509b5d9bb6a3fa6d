//! The routing table: every operator and combinator, validation of a whole file, the shipped
//! cases of the built-in table, and the embedded bus routing by a table it can swap.

#[macro_use]
mod common;

use std::time::Duration;

use serde_json::{json, Value};
use xfhub_routes::cases::{parse_cases, run_cases};
use xfhub_routes::{Bus, EmbeddedBus, RouteTable};
use xfhub_store::Store;

use common::{ingest_petitions, wait_until};

/// A table of one rule `r` on `petition.#` to queue `q` with predicate `when` (TOML inline
/// table text).
fn table_with(when: &str) -> Result<RouteTable, Vec<String>> {
    let text = format!(
        "version = \"t\"\n[[rule]]\nname = \"r\"\nmatch = \"petition.#\"\nwhen = {when}\nto = [\"q\"]\n"
    );
    RouteTable::parse(&text, &["q"]).map(|(t, warnings)| {
        assert!(warnings.is_empty(), "{warnings:?}");
        t
    })
}

fn envelope() -> Value {
    json!({
        "type": "petition.received",
        "division": "430102",
        "schema_version": 1,
        "payload": { "data": {
            "flags": { "group": true, "threat": false },
            "appeal": { "content_class": "010203", "keywords": ["拆迁", "补偿"] },
            "acceptance": { "people_involved": 7, "registered_at": "2026-11-02 09:00:00" },
            "evaluation": null,
        } }
    })
}

/// Whether `when` holds on [`envelope`].
fn holds(when: &str) -> bool {
    let table = table_with(when).unwrap_or_else(|e| panic!("{when}: {e:?}"));
    let env = envelope();
    let queues = table.route("petition.received.430102", Some(&env));
    !queues.is_empty()
}

#[test]
fn every_operator_and_combinator() {
    let cases: &[(&str, bool)] = &[
        (r#"{ path = "payload.data.flags.group", eq = true }"#, true),
        (
            r#"{ path = "payload.data.flags.threat", eq = true }"#,
            false,
        ),
        (r#"{ path = "division", eq = "430102" }"#, true),
        (r#"{ path = "schema_version", eq = 1.0 }"#, true),
        (r#"{ path = "payload.missing", eq = 1 }"#, false),
        (r#"{ path = "division", ne = "430103" }"#, true),
        (r#"{ path = "division", ne = "430102" }"#, false),
        (r#"{ path = "payload.missing", ne = 1 }"#, true),
        (r#"{ path = "division", in = ["430102", "430103"] }"#, true),
        (r#"{ path = "division", in = ["430104"] }"#, false),
        (
            r#"{ path = "payload.data.acceptance.people_involved", lt = 8 }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.acceptance.people_involved", lt = 7 }"#,
            false,
        ),
        (
            r#"{ path = "payload.data.acceptance.people_involved", le = 7 }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.acceptance.people_involved", gt = 5 }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.acceptance.people_involved", gt = 7 }"#,
            false,
        ),
        (
            r#"{ path = "payload.data.acceptance.people_involved", ge = 7.0 }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.acceptance.registered_at", ge = "2026-11-01" }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.acceptance.registered_at", lt = "2026-11-01" }"#,
            false,
        ),
        (r#"{ path = "division", lt = 500000 }"#, false), // a string is not a number
        (
            r#"{ path = "payload.data.appeal.content_class", contains = "02" }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.appeal.content_class", contains = "99" }"#,
            false,
        ),
        (
            r#"{ path = "payload.data.appeal.keywords", contains = "拆迁" }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.appeal.keywords", contains = "征地" }"#,
            false,
        ),
        (
            r#"{ path = "payload.data.appeal.keywords.1", eq = "补偿" }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.appeal.content_class", regex = "^01\\d{4}$" }"#,
            true,
        ),
        (
            r#"{ path = "payload.data.appeal.content_class", regex = "^02" }"#,
            false,
        ),
        (r#"{ path = "schema_version", regex = "1" }"#, false), // only strings
        (r#"{ path = "payload.data.flags", exists = true }"#, true),
        (
            r#"{ path = "payload.data.evaluation", exists = true }"#,
            false,
        ), // null
        (
            r#"{ path = "payload.data.evaluation", exists = false }"#,
            true,
        ),
        (r#"{ path = "payload.nothing.here", exists = false }"#, true),
        (
            r#"{ all = [ { path = "payload.data.flags.group", eq = true }, { path = "division", in = ["430102", "430103"] } ] }"#,
            true,
        ),
        (
            r#"{ all = [ { path = "payload.data.flags.group", eq = true }, { path = "division", eq = "430104" } ] }"#,
            false,
        ),
        (
            r#"{ any = [ { path = "payload.data.flags.threat", eq = true }, { path = "division", eq = "430102" } ] }"#,
            true,
        ),
        (
            r#"{ any = [ { path = "payload.data.flags.threat", eq = true }, { path = "division", eq = "430104" } ] }"#,
            false,
        ),
        (
            r#"{ not = { path = "payload.data.flags.group", eq = true } }"#,
            false,
        ),
        (
            r#"{ not = { path = "payload.data.flags.threat", eq = true } }"#,
            true,
        ),
        (
            r#"{ not = { any = [ { path = "division", eq = "430104" }, { all = [ { path = "payload.data.flags.group", eq = true }, { path = "payload.data.flags.threat", eq = true } ] } ] } }"#,
            true,
        ),
    ];
    for (when, expected) in cases {
        assert_eq!(holds(when), *expected, "{when}");
    }
}

#[test]
fn invalid_predicates_are_refused_with_their_reason() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{ path = "x", lt = true }"#,
            "when.lt: type mismatch: expected a number or a string, found a boolean",
        ),
        (r#"{ path = "x", ge = [1] }"#, "when.ge: type mismatch"),
        (r#"{ path = "x", eq = [1] }"#, "when.eq: type mismatch"),
        (r#"{ path = "x", in = [] }"#, "when.in: empty list"),
        (
            r#"{ path = "x", in = "a" }"#,
            "when.in: type mismatch: expected a list",
        ),
        (
            r#"{ path = "x", in = [{ a = 1 }] }"#,
            "when.in[0]: type mismatch",
        ),
        (
            r#"{ path = "x", regex = "(" }"#,
            "when.regex: bad regex `(`",
        ),
        (
            r#"{ path = "x", regex = 1 }"#,
            "when.regex: type mismatch: expected a string",
        ),
        (
            r#"{ path = "x", exists = "yes" }"#,
            "when.exists: type mismatch: expected a boolean",
        ),
        (
            r#"{ path = "x", like = "a" }"#,
            "when: unknown operator `like`",
        ),
        (r#"{ path = "x" }"#, "when: no operator"),
        (
            r#"{ path = "x", eq = 1, ne = 2 }"#,
            "when: one operator per test",
        ),
        (r#"{ eq = 1 }"#, "when: a test needs `path`"),
        (
            r#"{ path = "a..b", eq = 1 }"#,
            "when.path: must be a dotted path",
        ),
        (r#"{ all = [] }"#, "when.all: must be a non-empty list"),
        (
            r#"{ any = { path = "x", eq = 1 } }"#,
            "when.any: must be a non-empty list",
        ),
        (r#"{ not = [] }"#, "when.not: must be a table"),
        (
            r#"{ all = [ { path = "x", eq = 1 } ], path = "y" }"#,
            "when: `all` stands alone",
        ),
        (
            r#"{ all = [ { path = "x", eq = 1 }, { any = [ { path = "y", lt = false } ] } ] }"#,
            "when.all[1].any[0].lt: type mismatch",
        ),
    ];
    for (when, expected) in cases {
        let errors = table_with(when).expect_err(when);
        assert_eq!(errors.len(), 1, "{when}: {errors:?}");
        assert!(
            errors[0].starts_with("rule[0] \"r\": ") && errors[0].contains(expected),
            "{when}: {errors:?} should contain {expected:?}"
        );
    }
}

#[test]
fn validation_reports_every_error_of_the_file() {
    let text = r##"
version = "2026-11-28.1"
colour = "red"

[[rule]]
name = "first"
match = "pet*.x"
to = []
priority = 3
when = { all = [ { path = "a", lt = true }, { path = "b", in = [] }, { path = "c", regex = "[" }, { path = "d", like = 1 } ] }

[[rule]]
name = "first"
match = "workorder.#"
to = ["q"]

[[rule]]
match = "a..b"
to = ["bad queue"]
tap = "yes"
"##;
    let errors = RouteTable::parse(text, &["q"]).unwrap_err();
    let expected = [
        "unknown field `colour`",
        "rule[0] \"first\": unknown field `priority`",
        "rule[0] \"first\": match: bad pattern `pet*.x`",
        "rule[0] \"first\": to: empty",
        "rule[0] \"first\": when.all[0].lt: type mismatch",
        "rule[0] \"first\": when.all[1].in: empty list",
        "rule[0] \"first\": when.all[2].regex: bad regex",
        "rule[0] \"first\": when.all[3]: unknown operator `like`",
        "rule[2]: name: missing",
        "rule[2]: match: bad pattern `a..b`",
        "rule[2]: to[0]: bad queue name `bad queue`",
        "rule[2]: tap: must be true or false",
        "rule[1] \"first\": duplicate name",
    ];
    for e in expected {
        assert!(
            errors.iter().any(|got| got.starts_with(e)),
            "missing {e:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");

    let errors = RouteTable::parse("[[rule]]\nname = \"x\"\n", &[]).unwrap_err();
    assert_eq!(
        errors,
        [
            "rule[0] \"x\": match: missing",
            "rule[0] \"x\": to: missing",
            "version: missing"
        ]
    );
    let errors = RouteTable::parse("version = [", &[]).unwrap_err();
    assert_eq!(errors.len(), 1, "a syntax error is one error: {errors:?}");
}

#[test]
fn warnings_are_apart_from_errors() {
    let text = r##"
version = "1"
[[rule]]
name = "known"
match = "#"
to = ["trail"]
tap = true
[[rule]]
name = "unknown"
match = "petition.#"
to = ["warning", "trail"]
[[rule]]
name = "later"
match = "petition.#"
to = ["dispatch"]
enabled = false
"##;
    let (table, warnings) = RouteTable::parse(text, &["trail"]).unwrap();
    assert_eq!(
        warnings,
        ["rule[1] \"unknown\": queue `warning` has no consumer in this build; its messages will accumulate"]
    );
    assert_eq!(table.rules.len(), 3);
    // Union of every matching rule, each queue once, disabled rules ignored.
    let r = table.resolve("petition.received.430102", None);
    assert_eq!(r.queues, ["trail", "warning"]);
    assert!(r.routed);
    let r = table.resolve("workorder.received.430102", None);
    assert_eq!(r.queues, ["trail"]);
    assert!(!r.routed, "a wire tap is never counted as routing");
    assert!(!table.has_queue("dispatch"));
}

#[test]
fn the_envelope_is_read_only_when_a_matching_rule_has_a_predicate() {
    let text = r##"
version = "1"
[[rule]]
name = "all"
match = "#"
to = ["trail"]
[[rule]]
name = "group"
match = "petition.*.*"
when = { path = "payload.data.flags.group", eq = true }
to = ["warning"]
"##;
    let (table, _) = RouteTable::parse(text, &["trail", "warning"]).unwrap();
    assert!(!table.needs_envelope("workorder.received.430102"));
    assert!(table.needs_envelope("petition.received.430102"));
    // Not JSON at all: fine where no predicate applies; the predicate fails where one does.
    assert_eq!(
        table
            .resolve_text("workorder.received.430102", "{oops")
            .queues,
        ["trail"]
    );
    assert_eq!(
        table
            .resolve_text("petition.received.430102", "{oops")
            .queues,
        ["trail"]
    );
    let env = envelope().to_string();
    assert_eq!(
        table.resolve_text("petition.received.430102", &env).queues,
        ["trail", "warning"]
    );
}

#[test]
fn the_shipped_cases_pass_on_the_built_in_table() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.test.toml"))
        .expect("routes.test.toml");
    let cases = parse_cases(&text).unwrap();
    // The consumers of this build (`xfhub::app::CONSUMER_QUEUES`, which this crate cannot see).
    let consumers = ["trail", "warning", "dispatch", "sms", "app_push"];
    let (table, warnings) = RouteTable::built_in(&consumers);
    assert!(warnings.is_empty(), "{warnings:?}");
    let results = run_cases(&table, &cases);
    assert!(results.len() >= 3);
    for r in &results {
        assert!(r.passed(), "{r}");
    }
}

#[test]
fn a_failing_case_names_the_difference() {
    let cases = parse_cases(
        r##"
[[case]]
name = "expects too much"
type = "petition.received"
division = "430102"
expect = ["trail", "dispatch"]
"##,
    )
    .unwrap();
    let text =
        "version = \"1\"\n[[rule]]\nname = \"a\"\nmatch = \"#\"\nto = [\"trail\", \"other\"]\n";
    let (table, _) = RouteTable::parse(text, &[]).unwrap();
    let results = run_cases(&table, &cases);
    assert!(!results[0].passed());
    assert_eq!(results[0].missing, ["dispatch"]);
    assert_eq!(results[0].unexpected, ["other"]);
    assert_eq!(
        results[0].to_string(),
        "FAIL expects too much: got [\"trail\", \"other\"]; missing [\"dispatch\"]; unexpected [\"other\"]"
    );
    assert!(parse_cases("[[case]]\nname = \"x\"\n").is_err());
    assert!(parse_cases("").is_err());
}

// ---------------------------------------------------------------------------------------------
// The embedded bus

backend_tests!(case_the_bus_routes_by_its_table_and_takes_a_new_one);

async fn depth(store: &Store, queue: &str) -> i64 {
    let (queues, _) = store.depths().await.unwrap();
    queues
        .into_iter()
        .find(|(q, _)| q == queue)
        .map_or(0, |(_, n)| n)
}

async fn publish_pending(store: &Store, bus: &dyn Bus) {
    loop {
        let rows = store.outbox_unsent(512).await.unwrap();
        if rows.is_empty() {
            return;
        }
        bus.publish(rows).await.unwrap();
    }
}

async fn case_the_bus_routes_by_its_table_and_takes_a_new_one(store: Store) {
    let first = r##"
version = "1"
[[rule]]
name = "trail"
match = "#"
to = ["trail"]
tap = true
[[rule]]
name = "furong"
match = "petition.*.*"
when = { path = "division", eq = "430102" }
to = ["furong"]
"##;
    let (table, _) = RouteTable::parse(first, &["trail", "furong"]).unwrap();
    let bus = EmbeddedBus::new(store.clone(), table);
    // Petitions cycle through nine divisions: 0 and 9 are in 430102.
    let receipts = ingest_petitions(&store, 0..18).await;
    publish_pending(&store, &bus).await;
    assert_eq!(depth(&store, "trail").await, 18);
    assert_eq!(depth(&store, "furong").await, 2);
    let hops = store
        .trail(&receipts[1].message_id.to_string())
        .await
        .unwrap();
    assert!(
        hops.iter()
            .any(|h| h.hop == "published" && h.detail.as_deref() == Some("no route")),
        "a message only a wire tap received is recorded as not routed: {hops:?}"
    );

    let second = first
        .replace("version = \"1\"", "version = \"2\"")
        .replace("430102", "430103");
    let (table, _) = RouteTable::parse(&second, &["trail", "furong"]).unwrap();
    bus.replace_table(table);
    assert_eq!(bus.table().version, "2");
    ingest_petitions(&store, 18..27).await;
    publish_pending(&store, &bus).await;
    let s = &store;
    wait_until(
        || async move { depth(s, "trail").await == 27 },
        Duration::from_secs(30),
        "all published",
    )
    .await;
    assert_eq!(depth(&store, "furong").await, 3, "one more, from 430103");
}
