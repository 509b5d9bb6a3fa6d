//! Table-driven tests of the 12345 mapping: every value of every code map table, every field,
//! and every error (field and value named).

use serde_json::{json, Value};
use xfhub_transforms::hotline12345::{embedded_map, map_order, parse_map, parse_page, PageError};

fn order() -> Value {
    json!({
        "orderNo": "GD20240305000012", "version": 2, "updateTime": "2024-03-05 12:00:00.000",
        "callTime": "2024-03-05 10:20:00", "channel": "电话", "callerName": "王先生",
        "callerPhone": "13800001111", "orderType": "投诉举报",
        "classification": "劳动和社会保障/劳动保障/拖欠农民工工资", "areaCode": "430102",
        "areaName": "芙蓉区", "address": "湖南省长沙市芙蓉区五一大道1号", "street": "五一大道街道",
        "community": "东塘社区", "title": "关于拖欠工资的诉求", "content": "市民来电反映：某工地拖欠工资。",
        "urgency": "紧急", "handleUnitName": "芙蓉区人力资源和社会保障局", "handleUnitCode": "430102-001",
        "timeLimit": 2, "deadline": "2024-03-07", "dispatchTime": "2024-03-05 11:00:00",
        "finishTime": "2024-03-06 17:00:00", "orderState": "已回访",
        "returns": [{"reason": "不属于本单位职责", "time": "2024-03-05 14:00:00"}],
        "extensionCount": 1, "supervised": "是", "overdue": "否",
        "visit": {"visitTime": "2024-03-07 09:00:00", "solved": "是", "satisfaction": "基本满意", "opinion": "认可"},
        "result": "已解决"
    })
}

fn with(field: &str, v: Value) -> Value {
    let mut o = order();
    o[field] = v;
    o
}

#[test]
fn every_field_maps() {
    let w = map_order(&order(), embedded_map()).unwrap();
    assert_eq!(w.source.system, "hotline12345");
    assert_eq!(
        (w.source.id.as_str(), w.source.version),
        ("GD20240305000012", 2)
    );
    assert_eq!(w.order_no, "GD20240305000012");
    assert_eq!(w.call_time.to_rfc3339(), "2024-03-05T10:20:00+08:00");
    assert_eq!(w.channel.as_deref(), Some("电话"));
    assert_eq!(w.caller_name.as_deref(), Some("王先生"));
    assert_eq!(w.caller_phone.as_deref(), Some("13800001111"));
    assert_eq!(w.order_type, "complaint");
    assert_eq!(
        w.classification,
        ["劳动和社会保障", "劳动保障", "拖欠农民工工资"]
    );
    assert_eq!(w.division, "430102");
    assert_eq!(w.street.as_deref(), Some("五一大道街道"));
    assert_eq!(w.community.as_deref(), Some("东塘社区"));
    assert_eq!(w.urgency.as_deref(), Some("urgent"));
    let unit = w.handling_unit.as_ref().unwrap();
    assert_eq!(
        (unit.name.as_str(), unit.code.as_deref()),
        ("芙蓉区人力资源和社会保障局", Some("430102-001"))
    );
    assert_eq!(w.time_limit_days, Some(2));
    assert_eq!(w.deadline.unwrap().to_string(), "2024-03-07");
    assert!(w.dispatched_at.is_some() && w.completed_at.is_some());
    assert_eq!(w.state, "visited");
    assert_eq!(w.returns.len(), 1);
    assert_eq!(w.returns[0].reason, "不属于本单位职责");
    assert_eq!(w.extensions, 1);
    assert!(w.supervised && !w.overdue);
    let f = w.follow_up.as_ref().unwrap();
    assert!(f.solved && f.satisfied);
    assert_eq!(f.opinion.as_deref(), Some("认可"));
    assert_eq!(w.result.as_deref(), Some("solved"));
}

#[test]
fn every_value_of_every_table_maps() {
    let map = embedded_map();
    let mut n = 0;
    for (table, field) in [
        ("orderType", "orderType"),
        ("orderState", "orderState"),
        ("urgency", "urgency"),
        ("result", "result"),
        ("yesNo", "supervised"),
    ] {
        for (external, canonical) in map.entries(table) {
            let w = map_order(&with(field, json!(external)), map)
                .unwrap_or_else(|e| panic!("{field}={external}: {e:?}"));
            let got = match field {
                "orderType" => w.order_type,
                "orderState" => w.state,
                "urgency" => w.urgency.unwrap(),
                "result" => w.result.unwrap(),
                _ => w.supervised.to_string(),
            };
            assert_eq!(got, canonical, "{field} = {external}");
            n += 1;
        }
    }
    for (external, canonical) in map.entries("satisfaction") {
        let mut o = order();
        o["visit"]["satisfaction"] = json!(external);
        let w = map_order(&o, map).unwrap();
        assert_eq!(w.follow_up.unwrap().satisfied.to_string(), canonical);
        n += 1;
    }
    assert!(n >= 27, "{n} values checked");
}

/// (input, expected (path, code) pairs, text the first message contains)
type Case<T> = (T, Vec<(&'static str, &'static str)>, &'static str);

#[test]
fn every_error_names_the_field_and_the_value() {
    let missing = |f: &str| {
        let mut o = order();
        o.as_object_mut().unwrap().remove(f);
        o
    };
    let cases: Vec<Case<Value>> = vec![
        (
            with("orderType", json!("投诉建议")),
            vec![("orderType", "unknown_code")],
            "orderType = \"投诉建议\"",
        ),
        (
            with("orderState", json!("待处理")),
            vec![("orderState", "unknown_code")],
            "\"待处理\"",
        ),
        (
            with("urgency", json!("很急")),
            vec![("urgency", "unknown_code")],
            "\"很急\"",
        ),
        (
            with("result", json!("已处理")),
            vec![("result", "unknown_code")],
            "\"已处理\"",
        ),
        (
            with("supervised", json!("Y")),
            vec![("supervised", "unknown_code")],
            "\"Y\"",
        ),
        (
            with("timeLimit", json!("五天")),
            vec![("timeLimit", "number_format")],
            "五天",
        ),
        (
            with("version", json!(0)),
            vec![("version", "number_format")],
            "0",
        ),
        (
            with("callTime", json!("05/03/2024")),
            vec![("callTime", "time_format")],
            "05/03/2024",
        ),
        (
            with("deadline", json!("2024.03.07")),
            vec![("deadline", "date_format")],
            "2024.03.07",
        ),
        (
            with("title", json!(["x"])),
            vec![("title", "type_mismatch")],
            "[\"x\"]",
        ),
        (missing("title"), vec![("title", "required")], "title"),
        (missing("orderNo"), vec![("orderNo", "required")], "orderNo"),
        (missing("version"), vec![("version", "required")], "version"),
        (
            with("areaCode", json!("")),
            vec![("areaCode", "required")],
            "areaCode",
        ),
        (
            {
                let mut o = order();
                o["visit"]["satisfaction"] = json!("一般");
                o
            },
            vec![("visit.satisfaction", "unknown_code")],
            "\"一般\"",
        ),
        (
            with("orderType", json!("投诉建议"))
                .as_object()
                .map(|o| {
                    let mut o = Value::Object(o.clone());
                    o["urgency"] = json!("很急");
                    o
                })
                .unwrap(),
            vec![("orderType", "unknown_code"), ("urgency", "unknown_code")],
            "orderType",
        ),
        (
            json!([1, 2]),
            vec![("order", "type_mismatch")],
            "not a JSON object",
        ),
    ];
    for (o, want, text) in cases {
        let errors = map_order(&o, embedded_map()).expect_err(text);
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.path.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(got, want, "{text}");
        assert!(
            errors[0].message.contains(text),
            "{text}: {}",
            errors[0].message
        );
    }
}

#[test]
fn a_fixed_code_map_maps_the_value() {
    let text = xfhub_transforms::hotline12345::EMBEDDED_MAP.replace(
        "\"建议\" = \"suggestion\"",
        "\"建议\" = \"suggestion\"\n\"投诉建议\" = \"complaint\"",
    );
    let w = map_order(
        &with("orderType", json!("投诉建议")),
        &parse_map(&text).unwrap(),
    )
    .unwrap();
    assert_eq!(w.order_type, "complaint");
}

#[test]
fn pages_and_error_answers() {
    let body = json!({"code": 0, "msg": "成功", "data": {"hasMore": false, "lastUpdateTime": "2024-03-05 12:00:00.000", "list": [order(), order()]}});
    let page = parse_page(body.to_string().as_bytes()).unwrap();
    assert_eq!(page.orders.len(), 2);
    assert!(!page.has_more);
    assert_eq!(
        page.last_update_time.as_deref(),
        Some("2024-03-05 12:00:00.000")
    );
    assert_eq!(
        parse_page(br#"{"code": 42900, "msg": "busy"}"#),
        Err(PageError::Answer {
            code: 42900,
            message: "busy".to_owned()
        })
    );
    for (body, want) in [
        (&b"<html>"[..], "not JSON"),
        (br#"{"msg": "x"}"#, "code"),
        (br#"{"code": 0, "data": {"list": []}}"#, "hasMore"),
        (br#"{"code": 0, "data": {"hasMore": true}}"#, "list"),
        (
            br#"{"code": 0, "data": {"hasMore": true, "list": [{}]}}"#,
            "lastUpdateTime",
        ),
    ] {
        match parse_page(body) {
            Err(PageError::Malformed(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{want}: {other:?}"),
        }
    }
}
