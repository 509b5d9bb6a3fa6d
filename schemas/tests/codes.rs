//! Code tables: the embedded set, look-ups, historical codes and whole-set validation.

use xfhub_schemas::codes::{CodeEntry, CodeTable, CodeTables, REQUIRED_TABLES};

fn table(name: &str, entries: Vec<CodeEntry>) -> CodeTable {
    CodeTable::new(name, "1", "test", entries)
}

/// A valid minimal set: one entry in every required table.
fn minimal_set() -> Vec<CodeTable> {
    REQUIRED_TABLES
        .iter()
        .map(|n| table(n, vec![CodeEntry::new("1", "一", "one")]))
        .collect()
}

/// `from_tables` on `minimal_set()` with `change` applied must fail with exactly `expected`
/// (in any order), or succeed when `expected` is empty.
fn check(name: &str, change: impl FnOnce(&mut Vec<CodeTable>), expected: &[&str]) {
    let mut set = minimal_set();
    change(&mut set);
    match CodeTables::from_tables(set) {
        Ok(_) => assert!(expected.is_empty(), "{name}: expected {expected:?}, got Ok"),
        Err(mut errors) => {
            let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
            errors.sort();
            want.sort();
            assert_eq!(errors, want, "{name}");
        }
    }
}

fn set_table(set: &mut [CodeTable], name: &str, entries: Vec<CodeEntry>) {
    let t = set.iter_mut().find(|t| t.name == name).unwrap();
    *t = table(name, entries);
}

#[test]
fn from_tables_reports_every_error() {
    check("minimal set", |_| {}, &[]);
    check(
        "duplicate code and missing parent at once",
        |s| {
            set_table(
                s,
                "content_classes",
                vec![
                    CodeEntry::new("010000", "农村农业", "rural"),
                    CodeEntry::new("010100", "土地", "land").with_parent("010000"),
                    CodeEntry::new("010100", "土地2", "land 2").with_parent("010000"),
                    CodeEntry::new("020100", "征地", "expropriation").with_parent("020000"),
                ],
            )
        },
        &[
            "table `content_classes`: duplicate code `010100` (entries 2 and 3)",
            "table `content_classes`: code `020100`: parent `020000` not found",
        ],
    );
    check(
        "replacement not found, replacement still active, missing tables",
        |s| {
            s.retain(|t| t.name != "urgencies" && t.name != "forms");
            let mut active_replaced = CodeEntry::new("430124", "宁乡县", "Ningxiang County");
            active_replaced.replaced_by = Some("430182".into());
            set_table(
                s,
                "divisions",
                vec![
                    CodeEntry::new("430182", "宁乡市", "Ningxiang"),
                    CodeEntry::new("430122", "望城县", "Wangcheng County").replaced_by("430112"),
                    active_replaced,
                ],
            );
        },
        &[
            "table `divisions`: code `430122`: replaced_by `430112` not found",
            "table `divisions`: code `430124` has replaced_by `430182` but is active; set active = false",
            "required table `forms` is missing",
            "required table `urgencies` is missing",
        ],
    );
    check(
        "replacement cycle and dead end",
        |s| {
            set_table(
                s,
                "divisions",
                vec![
                    CodeEntry::new("a", "甲", "a").replaced_by("b"),
                    CodeEntry::new("b", "乙", "b").replaced_by("a"),
                    CodeEntry {
                        active: false,
                        ..CodeEntry::new("c", "丙", "c")
                    },
                    CodeEntry::new("d", "丁", "d").replaced_by("c"),
                ],
            )
        },
        &[
            "table `divisions`: code `a`: replaced_by chain is a cycle or ends at an inactive code",
            "table `divisions`: code `b`: replaced_by chain is a cycle or ends at an inactive code",
            "table `divisions`: code `d`: replaced_by chain is a cycle or ends at an inactive code",
        ],
    );
    check(
        "parent cycle, own parent, blank fields, table given twice",
        |s| {
            set_table(
                s,
                "content_classes",
                vec![
                    CodeEntry::new("x", "甲", "x").with_parent("y"),
                    CodeEntry::new("y", "乙", "y").with_parent("x"),
                    CodeEntry::new("z", "丙", "z").with_parent("z"),
                    CodeEntry::new(" ", "", ""),
                ],
            );
            s.push(table("forms", vec![CodeEntry::new("1", "一", "one")]));
            s.push(CodeTable::new("evaluations_v2", "", "", Vec::new()));
        },
        &[
            "table `content_classes`: code `x`: parent chain is a cycle",
            "table `content_classes`: code `y`: parent chain is a cycle",
            "table `content_classes`: code `z` is its own parent",
            "table `content_classes`: code `z`: parent chain is a cycle",
            "table `content_classes`: entry 4: code ` ` is blank or has surrounding spaces",
            "table `content_classes`: code ` `: empty name_zh",
            "table `content_classes`: code ` `: empty name_en",
            "table `forms` is given more than once",
            "table `evaluations_v2`: empty version",
            "table `evaluations_v2`: no entries",
        ],
    );
}

#[test]
fn embedded_set() {
    let t = CodeTables::embedded();
    assert!(std::ptr::eq(t, CodeTables::embedded()), "parsed once");
    assert_eq!(t.names().count(), REQUIRED_TABLES.len());
    let cases: &[(&str, &str, bool)] = &[
        ("forms", "0001", true),
        ("forms", "0004", true),
        ("forms", "0005", false),
        ("purposes", "05", true),
        ("purposes", "99", true),
        ("handling_methods", "08", true),
        ("evaluations", "3", true),
        ("id_types", "04", true),
        ("registration_levels", "5", true),
        ("order_types", "suggestion", true),
        ("order_states", "closed", true),
        ("order_results", "partly_solved", true),
        ("urgencies", "very_urgent", true),
        ("divisions", "430100", true),
        ("divisions", "430112", true),
        ("divisions", "430122", false),
        ("divisions", "430124", false),
        ("content_classes", "990000", true),
        ("content_classes", "160000", true),
        ("content_classes", "170000", false),
        ("no_such_table", "1", false),
    ];
    for (table, code, known) in cases {
        assert_eq!(t.is_known(table, code), *known, "{table} {code}");
    }
    assert_eq!(t.lookup("forms", "0003").unwrap().name_zh, "来访");
    assert_eq!(
        t.table("divisions").unwrap().get("430122").unwrap().name_zh,
        "望城县"
    );
}

#[test]
fn current_division() {
    let t = CodeTables::embedded();
    let cases: &[(&str, Option<&str>)] = &[
        ("430122", Some("430112")),
        ("430124", Some("430182")),
        ("430102", Some("430102")),
        ("430100", Some("430100")),
        ("430200", None),
        ("", None),
    ];
    for (code, want) in cases {
        assert_eq!(t.current_division(code).as_deref(), *want, "{code}");
    }
    let changsha = [
        "430102", "430103", "430104", "430105", "430111", "430112", "430121", "430181", "430182",
    ];
    let divisions = t.table("divisions").unwrap();
    for code in changsha {
        assert_eq!(
            divisions.get(code).unwrap().parent.as_deref(),
            Some("430100")
        );
    }
    assert_eq!(divisions.children("430100").filter(|e| e.active).count(), 9);
}

#[test]
fn replacement_chains_are_followed() {
    let mut set = minimal_set();
    set_table(
        &mut set,
        "divisions",
        vec![
            CodeEntry::new("a", "甲", "a").replaced_by("b"),
            CodeEntry::new("b", "乙", "b").replaced_by("c"),
            CodeEntry::new("c", "丙", "c"),
        ],
    );
    let t = CodeTables::from_tables(set).unwrap();
    assert_eq!(t.current_division("a").as_deref(), Some("c"));
    assert!(!t.is_known("divisions", "a"));
}

#[test]
fn content_classes_have_three_levels() {
    let table = CodeTables::embedded().table("content_classes").unwrap();
    let level = |c: &str| {
        if c.ends_with("0000") {
            1
        } else if c.ends_with("00") {
            2
        } else {
            3
        }
    };
    let mut counts = [0; 4];
    for e in &table.entries {
        assert!(
            e.code.len() == 6 && e.code.bytes().all(|b| b.is_ascii_digit()),
            "{}",
            e.code
        );
        let l = level(&e.code);
        counts[l] += 1;
        match l {
            1 => assert_eq!(e.parent, None, "{}", e.code),
            2 => assert_eq!(
                e.parent.as_deref(),
                Some(&*format!("{}0000", &e.code[..2])),
                "{}",
                e.code
            ),
            _ => assert_eq!(
                e.parent.as_deref(),
                Some(&*format!("{}00", &e.code[..4])),
                "{}",
                e.code
            ),
        }
    }
    assert_eq!(counts[1], 17);
    assert!(counts[2] >= 40, "{counts:?}");
    assert!(counts[3] >= 60, "{counts:?}");
    let first: Vec<&str> = table
        .entries
        .iter()
        .filter(|e| level(&e.code) == 1)
        .map(|e| e.name_zh.as_str())
        .collect();
    assert_eq!(first[0], "农村农业");
    assert_eq!(first[16], "其他");
    assert_eq!(table.get("990000").unwrap().name_zh, "其他");
}

#[test]
fn version_names_every_table() {
    let v = CodeTables::embedded().version();
    let parts: Vec<&str> = v.split(';').collect();
    assert_eq!(parts.len(), REQUIRED_TABLES.len());
    let mut sorted = parts.clone();
    sorted.sort_unstable();
    assert_eq!(parts, sorted);
    assert!(parts.contains(&"divisions@2024.1"), "{v}");
}

#[test]
fn replace_validates_and_changes_the_version() {
    let base = CodeTables::embedded();
    let mut forms = base.table("forms").unwrap().clone();
    forms.version = "2025.1".into();
    forms
        .entries
        .push(CodeEntry::new("0005", "走访", "home visit"));
    let next = base.replace(forms).unwrap();
    assert!(next.is_known("forms", "0005"));
    assert!(!base.is_known("forms", "0005"));
    assert!(next.version().contains("forms@2025.1"));
    assert_ne!(next.version(), base.version());

    let mut bad = base.table("forms").unwrap().clone();
    bad.entries
        .push(CodeEntry::new("0001", "重复", "duplicate"));
    let errors = base.replace(bad).unwrap_err();
    assert_eq!(
        errors,
        vec!["table `forms`: duplicate code `0001` (entries 1 and 5)".to_owned()]
    );
}

#[test]
fn parsing_table_files() {
    let good = r#"
        name = "forms"
        version = "2024.1"
        description = "信访形式"
        [[entries]]
        code = "0001"
        name_zh = "来信"
        name_en = "letter"
        [[entries]]
        code = "0002"
        name_zh = "来电"
        name_en = "call"
        active = false
    "#;
    let t = CodeTable::parse(good).unwrap();
    assert_eq!(t.entries.len(), 2);
    assert!(t.entries[0].active, "active defaults to true");
    assert!(!t.get("0002").unwrap().active);

    let bad: &[(&str, &str)] = &[
        ("not toml", "name = "),
        ("missing version", "name = \"x\"\n"),
        ("unknown key", "name = \"x\"\nversion = \"1\"\n[[entries]]\ncode = \"1\"\nname_zh = \"一\"\nname_en = \"one\"\ncolour = \"red\"\n"),
        ("entry without name", "name = \"x\"\nversion = \"1\"\n[[entries]]\ncode = \"1\"\n"),
        ("active as text", "name = \"x\"\nversion = \"1\"\n[[entries]]\ncode = \"1\"\nname_zh = \"一\"\nname_en = \"one\"\nactive = \"no\"\n"),
    ];
    for (name, text) in bad {
        assert!(CodeTable::parse(text).is_err(), "{name}");
    }

    let errors =
        CodeTables::parse_files(&[("forms.toml", good), ("broken.toml", "name = ")]).unwrap_err();
    assert!(errors[0].starts_with("broken.toml: "), "{errors:?}");
    assert!(
        errors.contains(&"required table `divisions` is missing".to_owned()),
        "{errors:?}"
    );
}
