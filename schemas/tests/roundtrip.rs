//! JSON and XML round trips of the canonical types: value -> text -> value must be equal.

use std::fmt::Debug;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;
use xfhub_schemas::xml::{from_xml, to_xml, to_xml_document};
use xfhub_schemas::*;

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// Round-trips `value` through JSON and through XML (plain and as a document) and expects the
/// same value back each time.
fn check<T>(name: &str, root: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let json = serde_json::to_string(value).unwrap_or_else(|e| panic!("{name}: to json: {e}"));
    let back: T =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: from json: {e}\n{json}"));
    assert_eq!(&back, value, "{name}: JSON round trip\n{json}");

    let xml = to_xml(root, value).unwrap_or_else(|e| panic!("{name}: to xml: {e}"));
    assert!(
        xml.starts_with(&format!("<{root}")),
        "{name}: root element\n{xml}"
    );
    let back: T = from_xml(&xml).unwrap_or_else(|e| panic!("{name}: from xml: {e}\n{xml}"));
    assert_eq!(&back, value, "{name}: XML round trip\n{xml}");

    let doc = to_xml_document(root, value).unwrap();
    let back: T =
        from_xml(&doc).unwrap_or_else(|e| panic!("{name}: from xml document: {e}\n{doc}"));
    assert_eq!(&back, value, "{name}: XML document round trip");
}

fn minimal_petition() -> Petition {
    Petition {
        source: SourceRef {
            system: "local".into(),
            id: "L-1".into(),
            version: 0,
        },
        anonymous: true,
        complainants: Vec::new(),
        appeal: Appeal {
            division: "430100".into(),
            content_class: "990000".into(),
            purpose: "99".into(),
            form: "0001".into(),
            summary: "匿名来信".into(),
            keywords: Vec::new(),
            materials: Vec::new(),
        },
        acceptance: Acceptance {
            complainant_count: 1,
            people_involved: 1,
            complaint_date: NaiveDate::from_ymd_opt(2024, 2, 29).unwrap(),
            registered_at: t("2024-02-29T23:59:59+08:00"),
            remarks: None,
        },
        handling: Handling::default(),
        flags: Flags::default(),
        evaluation: None,
    }
}

fn full_petition() -> Petition {
    let mut p = sample_petition(2);
    p.complainants.push(Complainant {
        name: Some("O'Brien & 李 <四>".into()),
        mobile: None,
        id_type: Some("02".into()),
        id_number: Some("E12345678".into()),
        address: None,
        detailed_address: Some("  前后有空格的地址\n第二行  ".trim().into()),
    });
    p.appeal.summary = "多行\n概况 with \"quotes\" & <tags> and ]]> and 'apostrophes'".into();
    p.appeal.keywords = vec!["一".into(), "二".into(), "three".into()];
    p.appeal.materials = vec![
        Attachment {
            file_name: "a.pdf".into(),
            content_type: "application/pdf".into(),
            size_bytes: 0,
            sha256: Some("ab".repeat(32)),
        },
        Attachment {
            file_name: "b.xlsx".into(),
            content_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                .into(),
            size_bytes: 10 * 1024 * 1024,
            sha256: None,
        },
    ];
    p.acceptance.remarks = Some("备注".into());
    p.flags = Flags {
        repeat: true,
        group: true,
        beyond_level: true,
        threat: true,
        law_related: true,
        superior_assigned: true,
        level_reached: Some(LevelReached::Beijing),
    };
    p.handling.replied_at = Some(t("2024-03-01T10:00:00-05:00"));
    p.evaluation = Some(Evaluation {
        result: "3".into(),
        reasons: vec!["态度差".into(), "拖延".into(), "未解决".into()],
        responsible_department: Some("市住建局".into()),
        unsatisfied_departments: vec!["甲".into(), "乙".into()],
        evaluated_at: t("2024-04-01T00:00:00Z"),
    });
    p
}

#[test]
fn petitions_round_trip() {
    check("minimal", "petition", &minimal_petition());
    check("full", "petition", &full_petition());
    for i in [0, 1, 2, 3, 4, 5, 22, 99, 1000, 123_456_789, u64::MAX] {
        check(&format!("sample {i}"), "petition", &sample_petition(i));
    }
    for level in [LevelReached::Province, LevelReached::City] {
        let mut p = minimal_petition();
        p.flags.level_reached = Some(level);
        check(&format!("{level:?}"), "petition", &p);
    }
}

fn minimal_workorder() -> WorkOrder {
    WorkOrder {
        source: SourceRef {
            system: "hotline12345".into(),
            id: "GD1".into(),
            version: 1,
        },
        order_no: "GD1".into(),
        call_time: t("2024-05-01T08:00:00+08:00"),
        channel: None,
        caller_name: None,
        caller_phone: None,
        order_type: "help".into(),
        classification: Vec::new(),
        division: "430102".into(),
        address: None,
        street: None,
        community: None,
        title: "t".into(),
        content: "c".into(),
        urgency: None,
        handling_unit: None,
        time_limit_days: None,
        deadline: None,
        dispatched_at: None,
        completed_at: None,
        state: "registered".into(),
        returns: Vec::new(),
        extensions: 0,
        supervised: false,
        overdue: false,
        follow_up: None,
        result: None,
    }
}

#[test]
fn workorders_round_trip() {
    check("minimal", "workOrder", &minimal_workorder());
    let mut full = sample_workorder(0);
    full.returns = vec![
        OrderReturn {
            reason: "非本单位职责".into(),
            returned_at: t("2024-01-03T09:00:00+08:00"),
        },
        OrderReturn {
            reason: "地址不详".into(),
            returned_at: t("2024-01-04T09:00:00+08:00"),
        },
    ];
    full.handling_unit = Some(Unit {
        name: "芙蓉区城管局".into(),
        code: None,
    });
    full.extensions = 2;
    full.overdue = true;
    check("full", "workOrder", &full);
    for i in [1, 2, 3, 17, 500, u64::MAX] {
        check(&format!("sample {i}"), "workOrder", &sample_workorder(i));
    }
}

#[test]
fn process_events_round_trip() {
    use ProcessEventKind::*;
    let kinds = [
        Registered,
        Accepted,
        NotAccepted,
        NoLongerAccepted,
        Transferred,
        Assigned,
        Returned,
        Supervised,
        Replied,
        Concluded,
        Evaluated,
        ResolutionReviewed,
        Reflowed,
    ];
    for (n, kind) in kinds.into_iter().enumerate() {
        let full = n % 2 == 0;
        let e = ProcessEvent {
            petition_source: SourceRef {
                system: "provincial".into(),
                id: format!("4301{n:08}"),
                version: n as i64,
            },
            kind,
            occurred_at: t("2024-06-30T16:00:00+08:00"),
            org: full.then(|| "长沙市信访局".into()),
            target_org: full.then(|| "岳麓区信访局".into()),
            note: full.then(|| "请于10日内办理".into()),
        };
        check(&format!("{kind:?}"), "processEvent", &e);
    }
}

#[test]
fn envelopes_round_trip() {
    let first = Envelope::new(
        MessageType::PETITION_RECEIVED,
        "api",
        "430104",
        sample_petition(7),
    );
    check("inbound (no causation)", "envelope", &first);
    let caused = Envelope::caused_by(&first, MessageType::PETITION_UPDATED, full_petition());
    assert_eq!(caused.causation_id, Some(first.message_id));
    check("caused", "envelope", &caused);
    let minimal = Envelope {
        message_id: Uuid::nil(),
        ..Envelope::new("petition.received", "local", "430100", minimal_petition())
    };
    check("minimal", "envelope", &minimal);
    let wo = Envelope::new(
        MessageType::WORKORDER_RECEIVED,
        "hotline12345",
        "430102",
        sample_workorder(3),
    );
    check("workorder envelope", "envelope", &wo);
}

#[test]
fn records_round_trip() {
    let at = chrono::Utc::now();
    let petition = Record {
        id: Uuid::now_v7(),
        kind: "petition".into(),
        version: 3,
        status: sample_petition(4).status().as_str().into(),
        received_at: at,
        updated_at: at,
        data: sample_petition(4),
    };
    check("petition record", "record", &petition);
    check(
        "petition record message",
        "envelope",
        &Envelope::new("petition.received", "api", "430111", petition),
    );
    let workorder = Record {
        id: Uuid::now_v7(),
        kind: "workorder".into(),
        version: 1,
        status: "handling".into(),
        received_at: at,
        updated_at: at,
        data: sample_workorder(5),
    };
    check("workorder record", "record", &workorder);
}

#[test]
fn json_shape_is_the_field_names() {
    let v = serde_json::to_value(Envelope::new(
        "petition.received",
        "api",
        "430104",
        sample_petition(1),
    ))
    .unwrap();
    for key in [
        "message_id",
        "type",
        "source_system",
        "correlation_id",
        "causation_id",
        "occurred_at",
        "division",
        "schema_version",
        "payload",
    ] {
        assert!(v.get(key).is_some(), "envelope.{key}");
    }
    let p = &v["payload"];
    for key in [
        "source",
        "anonymous",
        "complainants",
        "appeal",
        "acceptance",
        "handling",
        "flags",
    ] {
        assert!(p.get(key).is_some(), "petition.{key}");
    }
    assert!(p.get("evaluation").is_none(), "None evaluation is skipped");
    assert_eq!(p["appeal"]["keywords"][0], "拖欠工资");
    assert_eq!(
        p["acceptance"]["registered_at"].as_str().unwrap().get(19..),
        Some("+08:00")
    );
}

#[test]
fn xml_shape() {
    let xml = to_xml("petition", &sample_petition(1)).unwrap();
    assert!(
        xml.contains("<keywords>拖欠工资</keywords><keywords>农民工</keywords>"),
        "{xml}"
    );
    assert!(
        xml.contains("<registered_at>2024-01-03T10:07:00+08:00</registered_at>"),
        "{xml}"
    );
    assert!(!xml.contains("<evaluation"), "{xml}");
    let e = ProcessEvent {
        petition_source: SourceRef {
            system: "api".into(),
            id: "x".into(),
            version: 1,
        },
        kind: ProcessEventKind::NoLongerAccepted,
        occurred_at: t("2024-06-30T16:00:00+08:00"),
        org: None,
        target_org: None,
        note: Some("a < b & c".into()),
    };
    let xml = to_xml("processEvent", &e).unwrap();
    assert!(xml.contains("<kind>no_longer_accepted</kind>"), "{xml}");
    assert!(xml.contains("a &lt; b &amp; c"), "{xml}");
}

#[test]
fn xml_errors_are_reported() {
    for bad in [
        "",
        "<petition>",
        "<petition><source>x</source></petition>",
        "not xml",
    ] {
        assert!(from_xml::<Petition>(bad).is_err(), "{bad:?}");
    }
    // Unknown elements are refused like unknown JSON fields.
    let mut xml = to_xml("petition", &minimal_petition()).unwrap();
    xml = xml.replace("</petition>", "<extra>1</extra></petition>");
    assert!(from_xml::<Petition>(&xml).is_err());
}

#[test]
fn sample_petition_is_about_1_3_kb_of_json() {
    let sizes: Vec<usize> = (0..500)
        .map(|i| serde_json::to_vec(&sample_petition(i)).unwrap().len())
        .collect();
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    assert!((1150..=1450).contains(&mean), "mean {mean} bytes");
    for (i, n) in sizes.iter().enumerate() {
        assert!((1000..=1700).contains(n), "sample {i}: {n} bytes");
    }
}
