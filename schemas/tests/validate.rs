//! Validation, table-driven: each case mutates a valid sample and names the errors it expects
//! (path, code), or, for a valid input, the normalized record it expects.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use xfhub_schemas::codes::{CodeEntry, CodeTables};
use xfhub_schemas::validate::{
    check_id_number, check_id_number_at, id_check_char, messages, normalize_mobile,
    normalize_phone, CODES,
};
use xfhub_schemas::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()
}

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// A valid identity number with the given first 17 characters (check character computed).
fn id17(first17: &str) -> String {
    format!("{first17}{}", char::from(id_check_char(first17)))
}

/// The base of every petition case: accepted, replied and evaluated.
fn base() -> Petition {
    let p = sample_petition(2);
    assert!(p.handling.accepted_at.is_some() && p.handling.replied_at.is_some());
    assert!(p.evaluation.is_some());
    p
}

enum Expect {
    /// Valid; the normalized record equals the base with this change applied.
    Valid(fn(&mut Petition)),
    /// Invalid with exactly these (path, code) errors, in any order.
    Errors(&'static [(&'static str, &'static str)]),
}

fn check_with(tables: &CodeTables, name: &str, input: Petition, expected: &Expect) {
    let got = validate_petition(input, tables, now());
    match (expected, got) {
        (Expect::Valid(change), Ok(p)) => {
            let mut want = validate_petition(base(), tables, now()).unwrap();
            change(&mut want);
            assert_eq!(p, want, "{name}: normalized record");
        }
        (Expect::Valid(_), Err(errors)) => panic!("{name}: expected valid, got {errors:#?}"),
        (Expect::Errors(want), Ok(_)) => panic!("{name}: expected {want:?}, got valid"),
        (Expect::Errors(want), Err(errors)) => {
            let mut got: Vec<(&str, &str)> = errors
                .iter()
                .map(|e| (e.path.as_str(), e.code.as_str()))
                .collect();
            let mut want = want.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{name}: {errors:#?}");
            for e in &errors {
                assert!(
                    CODES.iter().any(|(c, _, _)| *c == e.code),
                    "{name}: {} undocumented",
                    e.code
                );
                assert!(!e.message.is_empty() && !e.message_zh.is_empty(), "{name}");
            }
        }
    }
}

fn check(name: &str, change: fn(&mut Petition), expected: Expect) {
    let mut input = base();
    change(&mut input);
    check_with(CodeTables::embedded(), name, input, &expected);
}

use Expect::{Errors, Valid};

fn person(p: &mut Petition) -> &mut Complainant {
    &mut p.complainants[0]
}

fn attachment(name: &str, ty: &str, size: u64) -> Attachment {
    Attachment {
        file_name: name.into(),
        content_type: ty.into(),
        size_bytes: size,
        sha256: None,
    }
}

#[test]
fn petition_rules() {
    check("the base sample", |_| {}, Valid(|_| {}));

    // source
    check(
        "unknown source system",
        |p| p.source.system = "fax".into(),
        Errors(&[("source.system", "source_system")]),
    );
    check(
        "blank source system",
        |p| p.source.system = " ".into(),
        Errors(&[("source.system", "required")]),
    );
    check(
        "source system is trimmed and lower-cased",
        |p| p.source.system = " API ".into(),
        Valid(|_| {}),
    );
    check(
        "blank source id",
        |p| p.source.id = "  ".into(),
        Errors(&[("source.id", "required")]),
    );
    check(
        "source id of 64",
        |p| p.source.id = "x".repeat(64),
        Valid(|p| p.source.id = "x".repeat(64)),
    );
    check(
        "source id of 65",
        |p| p.source.id = "x".repeat(65),
        Errors(&[("source.id", "too_long")]),
    );
    check(
        "negative version",
        |p| p.source.version = -1,
        Errors(&[("source.version", "version_min")]),
    );
    check(
        "version 0",
        |p| p.source.version = 0,
        Valid(|p| p.source.version = 0),
    );

    // complainants
    check(
        "no complainant",
        |p| p.complainants.clear(),
        Errors(&[("complainants", "complainant_missing")]),
    );
    check(
        "anonymous without complainant",
        |p| {
            p.anonymous = true;
            p.complainants.clear();
        },
        Valid(|p| {
            p.anonymous = true;
            p.complainants.clear();
        }),
    );
    check(
        "anonymous with an address only",
        |p| {
            p.anonymous = true;
            p.complainants = vec![Complainant {
                address: Some("长沙市".into()),
                ..Complainant::default()
            }];
        },
        Valid(|p| {
            p.anonymous = true;
            p.complainants = vec![Complainant {
                address: Some("长沙市".into()),
                ..Complainant::default()
            }];
        }),
    );
    check(
        "anonymous with identity",
        |p| p.anonymous = true,
        Errors(&[
            ("complainants[0].name", "anonymous_with_identity"),
            ("complainants[0].mobile", "anonymous_with_identity"),
            ("complainants[0].id_number", "anonymous_with_identity"),
        ]),
    );
    check(
        "missing name",
        |p| person(p).name = None,
        Errors(&[("complainants[0].name", "required")]),
    );
    check(
        "blank name",
        |p| person(p).name = Some(" \u{3000}".into()),
        Errors(&[("complainants[0].name", "required")]),
    );
    check(
        "name of 50 chinese characters",
        |p| person(p).name = Some("王".repeat(50)),
        Valid(|p| person(p).name = Some("王".repeat(50))),
    );
    check(
        "name of 51 characters",
        |p| person(p).name = Some("王".repeat(51)),
        Errors(&[("complainants[0].name", "too_long")]),
    );
    check(
        "name is trimmed",
        |p| person(p).name = Some("  张三 ".into()),
        Valid(|p| person(p).name = Some("张三".into())),
    );
    check(
        "address of 201",
        |p| person(p).address = Some("路".repeat(201)),
        Errors(&[("complainants[0].address", "too_long")]),
    );
    check(
        "detailed address of 201",
        |p| person(p).detailed_address = Some("路".repeat(201)),
        Errors(&[("complainants[0].detailed_address", "too_long")]),
    );
    check(
        "blank address becomes none",
        |p| person(p).address = Some("   ".into()),
        Valid(|p| person(p).address = None),
    );

    // identity numbers
    check(
        "valid 18-digit id",
        |p| person(p).id_number = Some("11010519491231002X".into()),
        Valid(|p| person(p).id_number = Some("11010519491231002X".into())),
    );
    check(
        "lowercase x",
        |p| person(p).id_number = Some(" 11010519491231002x ".into()),
        Valid(|p| person(p).id_number = Some("11010519491231002X".into())),
    );
    check(
        "missing id type means resident id",
        |p| {
            person(p).id_type = None;
            person(p).id_number = Some("110105194912310021".into());
        },
        Errors(&[("complainants[0].id_number", "id_number_checksum")]),
    );
    check(
        "wrong check character",
        |p| person(p).id_number = Some("110105194912310021".into()),
        Errors(&[("complainants[0].id_number", "id_number_checksum")]),
    );
    check(
        "impossible birth date",
        |p| person(p).id_number = Some(id17("43010419900230001")),
        Errors(&[("complainants[0].id_number", "id_number_birth_date")]),
    );
    check(
        "future birth date",
        |p| person(p).id_number = Some(id17("43010420300101001")),
        Errors(&[("complainants[0].id_number", "id_number_birth_date")]),
    );
    check(
        "legacy 15 digits",
        |p| person(p).id_number = Some("430104491231002".into()),
        Valid(|p| person(p).id_number = Some("430104491231002".into())),
    );
    check(
        "legacy 15 digits, bad date",
        |p| person(p).id_number = Some("430104491331002".into()),
        Errors(&[("complainants[0].id_number", "id_number_birth_date")]),
    );
    check(
        "17 digits",
        |p| person(p).id_number = Some("43010419491231002".into()),
        Errors(&[("complainants[0].id_number", "id_number_format")]),
    );
    check(
        "letter inside",
        |p| person(p).id_number = Some("4301041949123100AX".into()),
        Errors(&[("complainants[0].id_number", "id_number_format")]),
    );
    check(
        "passport is not checked as a resident id",
        |p| {
            person(p).id_type = Some("02".into());
            person(p).id_number = Some("E12345678".into());
        },
        Valid(|p| {
            person(p).id_type = Some("02".into());
            person(p).id_number = Some("E12345678".into());
        }),
    );
    check(
        "passport number of 33",
        |p| {
            person(p).id_type = Some("02".into());
            person(p).id_number = Some("E".repeat(33));
        },
        Errors(&[("complainants[0].id_number", "too_long")]),
    );
    check(
        "unknown id type",
        |p| person(p).id_type = Some("77".into()),
        Errors(&[("complainants[0].id_type", "unknown_code")]),
    );

    // mobile numbers
    check(
        "+86 with spaces",
        |p| person(p).mobile = Some("+86 138 0013 8000".into()),
        Valid(|p| person(p).mobile = Some("13800138000".into())),
    );
    check(
        "0086 with dashes",
        |p| person(p).mobile = Some("0086-138-0013-8000".into()),
        Valid(|p| person(p).mobile = Some("13800138000".into())),
    );
    check(
        "86 prefix",
        |p| person(p).mobile = Some("8613800138000".into()),
        Valid(|p| person(p).mobile = Some("13800138000".into())),
    );
    check(
        "12 after 1",
        |p| person(p).mobile = Some("12345678901".into()),
        Errors(&[("complainants[0].mobile", "mobile_format")]),
    );
    check(
        "10 digits",
        |p| person(p).mobile = Some("1380013800".into()),
        Errors(&[("complainants[0].mobile", "mobile_format")]),
    );
    check(
        "landline is no mobile",
        |p| person(p).mobile = Some("0731-88888888".into()),
        Errors(&[("complainants[0].mobile", "mobile_format")]),
    );

    // appeal codes
    check(
        "old division 430122",
        |p| p.appeal.division = "430122".into(),
        Valid(|p| p.appeal.division = "430112".into()),
    );
    check(
        "old division 430124",
        |p| p.appeal.division = " 430124 ".into(),
        Valid(|p| p.appeal.division = "430182".into()),
    );
    check(
        "city division",
        |p| p.appeal.division = "430100".into(),
        Valid(|p| p.appeal.division = "430100".into()),
    );
    check(
        "division outside Changsha",
        |p| p.appeal.division = "430200".into(),
        Errors(&[("appeal.division", "unknown_code")]),
    );
    check(
        "blank division",
        |p| p.appeal.division = String::new(),
        Errors(&[("appeal.division", "required")]),
    );
    check(
        "content class 990000",
        |p| p.appeal.content_class = "990000".into(),
        Valid(|p| p.appeal.content_class = "990000".into()),
    );
    check(
        "second-level content class",
        |p| p.appeal.content_class = "030200".into(),
        Valid(|p| p.appeal.content_class = "030200".into()),
    );
    check(
        "unknown content class",
        |p| p.appeal.content_class = "888888".into(),
        Errors(&[("appeal.content_class", "unknown_code")]),
    );
    check(
        "unknown purpose",
        |p| p.appeal.purpose = "00".into(),
        Errors(&[("appeal.purpose", "unknown_code")]),
    );
    check(
        "unknown form",
        |p| p.appeal.form = "0009".into(),
        Errors(&[("appeal.form", "unknown_code")]),
    );
    check(
        "form is a name, not a code",
        |p| p.appeal.form = "来信".into(),
        Errors(&[("appeal.form", "unknown_code")]),
    );

    // summary and keywords
    check(
        "blank summary",
        |p| p.appeal.summary = "\n \t".into(),
        Errors(&[("appeal.summary", "required")]),
    );
    check(
        "summary of 4000",
        |p| p.appeal.summary = "诉".repeat(4000),
        Valid(|p| p.appeal.summary = "诉".repeat(4000)),
    );
    check(
        "summary of 4001",
        |p| p.appeal.summary = "诉".repeat(4001),
        Errors(&[("appeal.summary", "too_long")]),
    );
    check(
        "keywords are trimmed, blanks and repeats dropped",
        |p| {
            p.appeal.keywords = vec![" 噪音 ".into(), "".into(), "噪音".into(), "夜间施工".into()];
        },
        Valid(|p| p.appeal.keywords = vec!["噪音".into(), "夜间施工".into()]),
    );
    check(
        "no keywords",
        |p| p.appeal.keywords.clear(),
        Valid(|p| p.appeal.keywords.clear()),
    );
    check(
        "20 keywords",
        |p| p.appeal.keywords = (0..20).map(|i| format!("k{i}")).collect(),
        Valid(|p| p.appeal.keywords = (0..20).map(|i| format!("k{i}")).collect()),
    );
    check(
        "21 keywords",
        |p| p.appeal.keywords = (0..21).map(|i| format!("k{i}")).collect(),
        Errors(&[("appeal.keywords", "too_long")]),
    );
    check(
        "keyword of 21",
        |p| p.appeal.keywords = vec!["ok".into(), "词".repeat(21)],
        Errors(&[("appeal.keywords[1]", "too_long")]),
    );

    // materials
    check(
        "five good attachments",
        |p| {
            p.appeal.materials = vec![
            attachment("a.pdf", "application/pdf", 10 * 1024 * 1024),
            attachment("b.DOC", "application/msword", 1),
            attachment("c.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", 1),
            attachment("d.xls", "Application/Vnd.MS-Excel", 1),
            attachment("情况说明.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; charset=binary", 1),
        ];
        },
        Valid(|p| {
            p.appeal.materials = vec![
                attachment("a.pdf", "application/pdf", 10 * 1024 * 1024),
                attachment("b.DOC", "application/msword", 1),
                attachment(
                    "c.docx",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    1,
                ),
                attachment("d.xls", "application/vnd.ms-excel", 1),
                attachment(
                    "情况说明.xlsx",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    1,
                ),
            ];
        }),
    );
    check(
        "six attachments",
        |p| p.appeal.materials = vec![attachment("a.pdf", "application/pdf", 1); 6],
        Errors(&[("appeal.materials", "attachments_too_many")]),
    );
    check(
        "attachment over 10 MB",
        |p| {
            p.appeal.materials = vec![
                attachment("a.pdf", "application/pdf", 1),
                attachment("b.pdf", "application/pdf", 1),
                attachment("c.pdf", "application/pdf", 10 * 1024 * 1024 + 1),
            ];
        },
        Errors(&[("appeal.materials[2].size_bytes", "attachment_too_large")]),
    );
    check(
        "image attachment",
        |p| p.appeal.materials = vec![attachment("a.png", "image/png", 1)],
        Errors(&[("appeal.materials[0].content_type", "attachment_type")]),
    );
    check(
        "extension disagrees with type",
        |p| p.appeal.materials = vec![attachment("a.docx", "application/pdf", 1)],
        Errors(&[("appeal.materials[0].file_name", "attachment_type")]),
    );
    check(
        "no extension",
        |p| p.appeal.materials = vec![attachment("scan", "application/pdf", 1)],
        Errors(&[("appeal.materials[0].file_name", "attachment_type")]),
    );
    check(
        "blank file name",
        |p| p.appeal.materials = vec![attachment(" ", "application/pdf", 1)],
        Errors(&[("appeal.materials[0].file_name", "required")]),
    );
    check(
        "bad digest",
        |p| {
            let mut a = attachment("a.pdf", "application/pdf", 1);
            a.sha256 = Some("xyz".into());
            p.appeal.materials = vec![a];
        },
        Errors(&[("appeal.materials[0].sha256", "sha256_format")]),
    );
    check(
        "digest is lower-cased",
        |p| {
            let mut a = attachment("a.pdf", "application/pdf", 1);
            a.sha256 = Some("AB".repeat(32));
            p.appeal.materials = vec![a];
        },
        Valid(|p| {
            let mut a = attachment("a.pdf", "application/pdf", 1);
            a.sha256 = Some("ab".repeat(32));
            p.appeal.materials = vec![a];
        }),
    );

    // counts and the group flag
    check(
        "no complainant counted",
        |p| p.acceptance.complainant_count = 0,
        Errors(&[("acceptance.complainant_count", "count_min")]),
    );
    check(
        "nobody involved",
        |p| p.acceptance.people_involved = 0,
        Errors(&[("acceptance.people_involved", "count_min")]),
    );
    check(
        "100000 involved",
        |p| p.acceptance.people_involved = 100_000,
        Valid(|p| p.acceptance.people_involved = 100_000),
    );
    check(
        "100001 involved",
        |p| p.acceptance.people_involved = 100_001,
        Errors(&[("acceptance.people_involved", "count_range")]),
    );
    check(
        "100001 complainants",
        |p| {
            p.acceptance.complainant_count = 100_001;
            p.flags.group = true;
        },
        Errors(&[("acceptance.complainant_count", "count_range")]),
    );
    check(
        "5 people without group flag",
        |p| p.acceptance.complainant_count = 5,
        Errors(&[("flags.group", "group_inconsistent")]),
    );
    check(
        "5 people, group",
        |p| {
            p.acceptance.complainant_count = 5;
            p.flags.group = true;
        },
        Valid(|p| {
            p.acceptance.complainant_count = 5;
            p.flags.group = true;
        }),
    );
    check(
        "4 people flagged group",
        |p| {
            p.acceptance.complainant_count = 4;
            p.flags.group = true;
        },
        Errors(&[("flags.group", "group_inconsistent")]),
    );
    check(
        "group counts complainants, not people involved",
        |p| p.acceptance.people_involved = 50,
        Valid(|p| p.acceptance.people_involved = 50),
    );

    // dates
    check(
        "complaint date in the future",
        |p| {
            p.acceptance.complaint_date = NaiveDate::from_ymd_opt(2025, 6, 3).unwrap();
        },
        Errors(&[
            ("acceptance.complaint_date", "date_future"),
            ("acceptance.registered_at", "date_order"),
        ]),
    );
    check(
        "registered 23 hours ahead of now",
        |p| {
            p.acceptance.registered_at = t("2025-06-01T23:00:00Z");
            p.handling = Handling::default();
            p.evaluation = None;
        },
        Valid(|p| {
            p.acceptance.registered_at = t("2025-06-01T23:00:00Z");
            p.handling = Handling::default();
            p.evaluation = None;
        }),
    );
    check(
        "registered 2 days ahead of now",
        |p| {
            p.acceptance.registered_at = t("2025-06-03T08:00:00+08:00");
            p.handling = Handling::default();
            p.evaluation = None;
        },
        Errors(&[("acceptance.registered_at", "date_future")]),
    );
    check(
        "registered before the complaint date",
        |p| {
            p.acceptance.registered_at -= Duration::days(1);
        },
        Errors(&[("acceptance.registered_at", "date_order")]),
    );
    check(
        "registered on the complaint date, at 00:00 +08:00",
        |p| {
            let d = p.acceptance.complaint_date;
            p.acceptance.registered_at = t(&format!("{d}T00:00:00+08:00"));
        },
        Valid(|p| {
            let d = p.acceptance.complaint_date;
            p.acceptance.registered_at = t(&format!("{d}T00:00:00+08:00"));
        }),
    );
    check(
        "accepted before registered",
        |p| {
            p.handling.accepted_at = Some(p.acceptance.registered_at - Duration::minutes(1));
        },
        Errors(&[("handling.accepted_at", "date_order")]),
    );
    check(
        "replied before accepted",
        |p| {
            p.handling.replied_at = Some(p.handling.accepted_at.unwrap() - Duration::hours(1));
        },
        Errors(&[("handling.replied_at", "date_order")]),
    );
    check(
        "replied before registered, not accepted",
        |p| {
            p.handling.accepted_at = None;
            p.handling.replied_at = Some(p.acceptance.registered_at - Duration::hours(1));
        },
        Errors(&[("handling.replied_at", "date_order")]),
    );
    check(
        "accepted in the future",
        |p| {
            p.handling.accepted_at = Some(t("2025-07-01T00:00:00+08:00"));
            p.handling.replied_at = None;
        },
        Errors(&[("handling.accepted_at", "date_future")]),
    );
    check(
        "deadline before registration",
        |p| {
            p.handling.deadline = Some(p.acceptance.complaint_date - Duration::days(1));
        },
        Errors(&[("handling.deadline", "date_order")]),
    );
    check(
        "deadline far ahead is fine",
        |p| {
            p.handling.deadline = NaiveDate::from_ymd_opt(2030, 1, 1);
        },
        Valid(|p| p.handling.deadline = NaiveDate::from_ymd_opt(2030, 1, 1)),
    );

    // handling and remarks
    check(
        "unknown handling method",
        |p| p.handling.method = Some("99".into()),
        Errors(&[("handling.method", "unknown_code")]),
    );
    check(
        "blank handling method becomes none",
        |p| p.handling.method = Some("".into()),
        Valid(|p| p.handling.method = None),
    );
    check(
        "registering org of 101",
        |p| p.handling.registering_org = Some("局".repeat(101)),
        Errors(&[("handling.registering_org", "too_long")]),
    );
    check(
        "responsible unit of 101",
        |p| p.handling.responsible_unit = Some("局".repeat(101)),
        Errors(&[("handling.responsible_unit", "too_long")]),
    );
    check(
        "remarks of 1000",
        |p| p.acceptance.remarks = Some("备".repeat(1000)),
        Valid(|p| p.acceptance.remarks = Some("备".repeat(1000))),
    );
    check(
        "remarks of 1001",
        |p| p.acceptance.remarks = Some("备".repeat(1001)),
        Errors(&[("acceptance.remarks", "too_long")]),
    );

    // evaluation
    fn eval(p: &mut Petition) -> &mut Evaluation {
        p.evaluation.as_mut().unwrap()
    }
    check(
        "unknown evaluation",
        |p| eval(p).result = "4".into(),
        Errors(&[("evaluation.result", "unknown_code")]),
    );
    check(
        "three reasons",
        |p| eval(p).reasons = vec!["a".into(), "b".into(), "c".into()],
        Valid(|p| eval(p).reasons = vec!["a".into(), "b".into(), "c".into()]),
    );
    check(
        "four reasons",
        |p| eval(p).reasons = vec!["a".into(), "b".into(), "c".into(), "d".into()],
        Errors(&[("evaluation.reasons", "evaluation_reasons")]),
    );
    check(
        "four reasons, one a repeat",
        |p| eval(p).reasons = vec!["a".into(), "b".into(), "c".into(), "a ".into()],
        Valid(|p| eval(p).reasons = vec!["a".into(), "b".into(), "c".into()]),
    );
    check(
        "evaluated before registration",
        |p| {
            eval(p).evaluated_at = p.acceptance.registered_at - Duration::days(1);
        },
        Errors(&[("evaluation.evaluated_at", "date_order")]),
    );
    check(
        "evaluated in the future",
        |p| eval(p).evaluated_at = t("2026-01-01T00:00:00+08:00"),
        Errors(&[("evaluation.evaluated_at", "date_future")]),
    );
    check(
        "unsatisfied department of 101",
        |p| eval(p).unsatisfied_departments = vec!["甲".into(), "局".repeat(101)],
        Errors(&[("evaluation.unsatisfied_departments[1]", "too_long")]),
    );

    // every error at once
    check(
        "many errors at once",
        |p| {
            p.source.system = "mail".into();
            p.source.version = -3;
            person(p).id_number = Some("110105194912310021".into());
            person(p).mobile = Some("12345678901".into());
            p.complainants.push(Complainant {
                name: None,
                ..Complainant::default()
            });
            p.appeal.division = "999999".into();
            p.appeal.summary = String::new();
            p.appeal.materials = vec![attachment(
                "x.exe",
                "application/octet-stream",
                11 * 1024 * 1024,
            )];
            p.acceptance.complainant_count = 7;
            p.handling.accepted_at = Some(p.acceptance.registered_at - Duration::days(1));
            eval(p).result = "9".into();
        },
        Errors(&[
            ("source.system", "source_system"),
            ("source.version", "version_min"),
            ("complainants[0].id_number", "id_number_checksum"),
            ("complainants[0].mobile", "mobile_format"),
            ("complainants[1].name", "required"),
            ("appeal.division", "unknown_code"),
            ("appeal.summary", "required"),
            ("appeal.materials[0].content_type", "attachment_type"),
            ("appeal.materials[0].size_bytes", "attachment_too_large"),
            ("flags.group", "group_inconsistent"),
            ("handling.accepted_at", "date_order"),
            ("evaluation.result", "unknown_code"),
        ]),
    );
}

#[test]
fn inactive_codes_without_successor_are_refused() {
    let tables = CodeTables::embedded();
    let mut forms = tables.table("forms").unwrap().clone();
    forms.entries.push(CodeEntry {
        active: false,
        ..CodeEntry::new("0005", "传真", "fax")
    });
    forms.version = "2024.2".into();
    let tables = tables.replace(forms).unwrap();
    let mut p = base();
    p.appeal.form = "0005".into();
    check_with(
        &tables,
        "inactive form",
        p,
        &Errors(&[("appeal.form", "inactive_code")]),
    );
}

#[test]
fn messages_name_the_table_and_value_but_never_personal_numbers() {
    let mut p = base();
    p.appeal.division = "430999".into();
    person(&mut p).id_number = Some("110105194912310021".into());
    person(&mut p).mobile = Some("12345678901".into());
    let errors = validate_petition(p, CodeTables::embedded(), now()).unwrap_err();
    let div = errors.iter().find(|e| e.path == "appeal.division").unwrap();
    assert!(
        div.message.contains("430999") && div.message.contains("divisions"),
        "{div:?}"
    );
    assert!(
        div.message_zh.contains("430999") && div.message_zh.contains("divisions"),
        "{div:?}"
    );
    let id = errors
        .iter()
        .find(|e| e.path == "complainants[0].id_number")
        .unwrap();
    assert_eq!(id.message, "identity number check character is wrong");
    assert_eq!(id.message_zh, "证件号码校验位错误");
    for e in &errors {
        assert!(
            !e.message.contains("110105") && !e.message.contains("12345678901"),
            "{e:?}"
        );
    }
    assert_eq!(
        messages("required"),
        ("a value is required", "必填项不能为空")
    );
}

#[test]
fn samples_are_valid() {
    let tables = CodeTables::embedded();
    let many = (0..3000).chain([u64::MAX, u64::MAX - 1, 1 << 40, 9_999_999_999]);
    for i in many {
        let p = sample_petition(i);
        let v = validate_petition(p.clone(), tables, Utc::now())
            .unwrap_or_else(|e| panic!("sample_petition({i}): {e:#?}"));
        assert_eq!(v, p, "sample_petition({i}) is already normalized");
        let w = sample_workorder(i);
        let v = validate_workorder(w.clone(), tables, Utc::now())
            .unwrap_or_else(|e| panic!("sample_workorder({i}): {e:#?}"));
        assert_eq!(v, w, "sample_workorder({i}) is already normalized");
    }
    let ids: std::collections::HashSet<String> =
        (0..1000).map(|i| sample_petition(i).source.id).collect();
    assert_eq!(ids.len(), 1000, "source ids differ");
    let divisions: std::collections::HashSet<String> =
        (0..9).map(|i| sample_petition(i).appeal.division).collect();
    assert_eq!(divisions.len(), 9, "every Changsha division is used");
}

// ---- work orders ----

enum WoExpect {
    Valid(fn(&mut WorkOrder)),
    Errors(&'static [(&'static str, &'static str)]),
}

fn wo_base() -> WorkOrder {
    let w = sample_workorder(0);
    assert!(w.completed_at.is_some() && w.follow_up.is_some());
    w
}

fn check_wo(name: &str, change: fn(&mut WorkOrder), expected: WoExpect) {
    let tables = CodeTables::embedded();
    let mut input = wo_base();
    change(&mut input);
    match (expected, validate_workorder(input, tables, now())) {
        (WoExpect::Valid(f), Ok(w)) => {
            let mut want = wo_base();
            f(&mut want);
            assert_eq!(w, want, "{name}: normalized record");
        }
        (WoExpect::Valid(_), Err(e)) => panic!("{name}: expected valid, got {e:#?}"),
        (WoExpect::Errors(want), Ok(_)) => panic!("{name}: expected {want:?}, got valid"),
        (WoExpect::Errors(want), Err(errors)) => {
            let mut got: Vec<(&str, &str)> = errors
                .iter()
                .map(|e| (e.path.as_str(), e.code.as_str()))
                .collect();
            let mut want = want.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{name}: {errors:#?}");
        }
    }
}

#[test]
fn workorder_rules() {
    use WoExpect::{Errors, Valid};
    check_wo("the base sample", |_| {}, Valid(|_| {}));
    check_wo(
        "unknown source system",
        |w| w.source.system = "sms".into(),
        Errors(&[("source.system", "source_system")]),
    );
    check_wo(
        "negative version",
        |w| w.source.version = -1,
        Errors(&[("source.version", "version_min")]),
    );
    check_wo(
        "blank order number",
        |w| w.order_no = " ".into(),
        Errors(&[("order_no", "required")]),
    );
    check_wo(
        "call in the future",
        |w| {
            w.call_time = t("2025-06-10T08:00:00+08:00");
            w.dispatched_at = None;
            w.completed_at = None;
            w.follow_up = None;
            w.deadline = None;
        },
        Errors(&[("call_time", "date_future")]),
    );
    check_wo(
        "landline caller",
        |w| w.caller_phone = Some("0731-8888 8888".into()),
        Valid(|w| w.caller_phone = Some("073188888888".into())),
    );
    check_wo(
        "local landline",
        |w| w.caller_phone = Some("88888888".into()),
        Valid(|w| w.caller_phone = Some("88888888".into())),
    );
    check_wo(
        "mobile caller with +86",
        |w| w.caller_phone = Some("+86 139-0731-0000".into()),
        Valid(|w| w.caller_phone = Some("13907310000".into())),
    );
    check_wo(
        "full-width digits",
        |w| w.caller_phone = Some("１３９０７３１００００".into()),
        Valid(|w| w.caller_phone = Some("13907310000".into())),
    );
    check_wo(
        "nonsense phone",
        |w| w.caller_phone = Some("call me".into()),
        Errors(&[("caller_phone", "phone_format")]),
    );
    check_wo(
        "caller name of 51",
        |w| w.caller_name = Some("名".repeat(51)),
        Errors(&[("caller_name", "too_long")]),
    );
    check_wo(
        "unknown order type",
        |w| w.order_type = "praise".into(),
        Errors(&[("order_type", "unknown_code")]),
    );
    check_wo(
        "four levels",
        |w| w.classification = vec!["a".into(), "b".into(), "c".into(), "d".into()],
        Valid(|w| w.classification = vec!["a".into(), "b".into(), "c".into(), "d".into()]),
    );
    check_wo(
        "five levels",
        |w| w.classification = vec!["a".into(); 5],
        Errors(&[("classification", "too_long")]),
    );
    check_wo(
        "blank level",
        |w| w.classification = vec!["a".into(), " ".into()],
        Errors(&[("classification[1]", "required")]),
    );
    check_wo(
        "old division",
        |w| w.division = "430124".into(),
        Valid(|w| w.division = "430182".into()),
    );
    check_wo(
        "unknown division",
        |w| w.division = "110105".into(),
        Errors(&[("division", "unknown_code")]),
    );
    check_wo(
        "blank title",
        |w| w.title = String::new(),
        Errors(&[("title", "required")]),
    );
    check_wo(
        "title of 200",
        |w| w.title = "题".repeat(200),
        Valid(|w| w.title = "题".repeat(200)),
    );
    check_wo(
        "title of 201",
        |w| w.title = "题".repeat(201),
        Errors(&[("title", "too_long")]),
    );
    check_wo(
        "content of 4001",
        |w| w.content = "诉".repeat(4001),
        Errors(&[("content", "too_long")]),
    );
    check_wo(
        "address of 201",
        |w| w.address = Some("址".repeat(201)),
        Errors(&[("address", "too_long")]),
    );
    check_wo(
        "street of 101",
        |w| w.street = Some("街".repeat(101)),
        Errors(&[("street", "too_long")]),
    );
    check_wo(
        "unknown urgency",
        |w| w.urgency = Some("asap".into()),
        Errors(&[("urgency", "unknown_code")]),
    );
    check_wo(
        "unit without name",
        |w| {
            w.handling_unit = Some(Unit {
                name: " ".into(),
                code: None,
            })
        },
        Errors(&[("handling_unit.name", "required")]),
    );
    check_wo(
        "unit of 101",
        |w| {
            w.handling_unit = Some(Unit {
                name: "局".repeat(101),
                code: None,
            })
        },
        Errors(&[("handling_unit.name", "too_long")]),
    );
    check_wo(
        "zero days",
        |w| w.time_limit_days = Some(0),
        Errors(&[("time_limit_days", "count_min")]),
    );
    check_wo(
        "400 days",
        |w| w.time_limit_days = Some(400),
        Errors(&[("time_limit_days", "count_range")]),
    );
    check_wo(
        "deadline before the call",
        |w| w.deadline = Some(w.call_time.date_naive() - Duration::days(1)),
        Errors(&[("deadline", "date_order")]),
    );
    check_wo(
        "dispatched before the call",
        |w| w.dispatched_at = Some(w.call_time - Duration::minutes(5)),
        Errors(&[("dispatched_at", "date_order")]),
    );
    check_wo(
        "completed before dispatch",
        |w| w.completed_at = Some(w.dispatched_at.unwrap() - Duration::minutes(5)),
        Errors(&[("completed_at", "date_order")]),
    );
    check_wo(
        "completed in the future",
        |w| {
            w.completed_at = Some(t("2025-06-05T00:00:00+08:00"));
            w.follow_up = None;
        },
        Errors(&[("completed_at", "date_future")]),
    );
    check_wo(
        "unknown state",
        |w| w.state = "lost".into(),
        Errors(&[("state", "unknown_code")]),
    );
    check_wo(
        "return without reason",
        |w| {
            w.returns = vec![OrderReturn {
                reason: "".into(),
                returned_at: w.call_time,
            }]
        },
        Errors(&[("returns[0].reason", "required")]),
    );
    check_wo(
        "return before the call",
        |w| {
            w.returns = vec![OrderReturn {
                reason: "错派".into(),
                returned_at: w.call_time - Duration::hours(1),
            }]
        },
        Errors(&[("returns[0].returned_at", "date_order")]),
    );
    check_wo(
        "absurd extensions",
        |w| w.extensions = 100_001,
        Errors(&[("extensions", "count_range")]),
    );
    check_wo(
        "follow-up before the call",
        |w| w.follow_up.as_mut().unwrap().visited_at = w.call_time - Duration::days(1),
        Errors(&[("follow_up.visited_at", "date_order")]),
    );
    check_wo(
        "follow-up opinion of 1001",
        |w| w.follow_up.as_mut().unwrap().opinion = Some("意".repeat(1001)),
        Errors(&[("follow_up.opinion", "too_long")]),
    );
    check_wo(
        "unknown result",
        |w| w.result = Some("fixed".into()),
        Errors(&[("result", "unknown_code")]),
    );
    check_wo(
        "many errors at once",
        |w| {
            w.order_no = String::new();
            w.caller_phone = Some("123".into());
            w.division = "999999".into();
            w.title = " ".into();
            w.state = "?".into();
        },
        Errors(&[
            ("order_no", "required"),
            ("caller_phone", "phone_format"),
            ("division", "unknown_code"),
            ("title", "required"),
            ("state", "unknown_code"),
        ]),
    );
}

// ---- identity and phone numbers alone ----

#[test]
fn identity_numbers() {
    let today = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("11010519491231002X", Ok("11010519491231002X")),
        ("11010519491231002x", Ok("11010519491231002X")),
        (" 110105 19491231 002X ", Ok("11010519491231002X")),
        (
            "１１０１０５１９４９１２３１００２Ｘ",
            Ok("11010519491231002X"),
        ),
        ("440524188001010014", Ok("440524188001010014")),
        ("110105194912310021", Err("id_number_checksum")),
        ("110105194912310020", Err("id_number_checksum")),
        ("110105194913310028", Err("id_number_birth_date")),
        ("110105184912310021", Err("id_number_birth_date")),
        ("430104491231002", Ok("430104491231002")),
        ("430104490229002", Err("id_number_birth_date")),
        ("430104480229002", Ok("430104480229002")),
        ("43010449123100X", Err("id_number_format")),
        ("", Err("id_number_format")),
        ("1101051949123100", Err("id_number_format")),
        ("1101051949123100211", Err("id_number_format")),
        ("11010519491231002Y", Err("id_number_format")),
        ("X10105194912310021", Err("id_number_format")),
    ];
    for (input, want) in cases {
        let got = check_id_number_at(input, today);
        assert_eq!(got.as_deref().map_err(|e| *e), *want, "{input:?}");
    }
    // Birth date relative to today.
    let born_today = id17("43010420250601001");
    assert!(check_id_number_at(&born_today, today).is_ok());
    let born_tomorrow = id17("43010420250602001");
    assert_eq!(
        check_id_number_at(&born_tomorrow, today),
        Err("id_number_birth_date")
    );
    assert_eq!(
        check_id_number("11010519491231002x").as_deref(),
        Ok("11010519491231002X")
    );
}

#[test]
fn mobile_and_phone_numbers() {
    let cases: &[(&str, Option<&str>)] = &[
        ("13800138000", Some("13800138000")),
        ("+86 138 0013 8000", Some("13800138000")),
        ("+8613800138000", Some("13800138000")),
        ("0086 13800138000", Some("13800138000")),
        ("86-138-0013-8000", Some("13800138000")),
        ("(+86) 199 0000 0000", Some("19900000000")),
        ("12345678901", None),
        ("10800138000", None),
        ("1380013800", None),
        ("138001380000", None),
        ("23800138000", None),
        ("1380013800a", None),
        ("", None),
        ("+1 138 0013 8000", None),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_mobile(input).as_deref(), *want, "{input:?}");
    }
    let phones: &[(&str, Option<&str>)] = &[
        ("0731-88888888", Some("073188888888")),
        ("(0731) 8888-8888", Some("073188888888")),
        ("010-12345678", Some("01012345678")),
        ("88888888", Some("88888888")),
        ("+86 138 0013 8000", Some("13800138000")),
        ("12345", None),
        ("08888888", None),
        ("abc", None),
    ];
    for (input, want) in phones {
        assert_eq!(normalize_phone(input).as_deref(), *want, "{input:?}");
    }
}
