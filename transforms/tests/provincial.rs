//! Table-driven tests of the provincial mapping: every code of every code map table, every
//! column, and every error (field and value named).

use xfhub_schemas::{LevelReached, ProcessEventKind};
use xfhub_transforms::provincial::{
    embedded_map, map_record, parse_map, parse_request, parse_response, parse_time, request_xml,
    ResponseError,
};

/// A realistic record with every column the mapping reads.
const RECORD: &str = "<xfj><xfjbh>XF430100202400000042</xfjbh><bbh>3</bbh>\
<gxsj>2024-03-20 16:00:00</gxsj><xfrq>2024-03-04</xfrq><djsj>2024-03-05 10:22:00</djsj>\
<djjgdm>430102000000</djjgdm><djjgmc>芙蓉区信访局</djjgmc><xfxs>03</xfxs><xfmddm>2</xfmddm>\
<nrfldm>040101</nrfldm><wtsddm>430102</wtsddm><xfrs>6</xfrs><sjrs>40</sjrs>\
<tsgk>信访人等6人反映：某建筑工地拖欠工资共计120000元。请求督促支付。</tsgk>\
<gjc>拖欠工资，农民工;建筑工地</gjc><bz>情绪激动</bz><xbjzrq>2024-05-04</xbjzrq><bjbz>0</bjbz>\
<cfxfbz>1</cfxfbz><yjfbz>0</yjfbz><yybz>1</yybz><sfssbz>0</sfssbz><sjjbbz>1</sjjbbz><nmbz>0</nmbz>\
<dddj>2</dddj><blfs>4</blfs><zrdw>芙蓉区人力资源和社会保障局</zrdw><slsj>2024-03-06 09:00:00</slsj>\
<dfsj>2024-03-20 15:00:00</dfsj>\
<tsrxx><tsr><xm>王建国</xm><zjlx>111</zjlx><zjhm>430102198001010018</zjhm><sjh>13800001111</sjh>\
<dz>湖南省长沙市芙蓉区</dz><xxdz>湖南省长沙市芙蓉区五一大道1号</xxdz></tsr>\
<tsr><xm>李秀英</xm><zjlx>414</zjlx><zjhm>E12345678</zjhm></tsr></tsrxx>\
<pjxx><pjjg>3</pjjg><pjsj>2024-03-25 10:00:00</pjsj><bmyyy>问题未解决;办理时间过长</bmyyy>\
<zrbm>芙蓉区人力资源和社会保障局</zrbm><bmybm>芙蓉区人力资源和社会保障局</bmybm></pjxx>\
<blgc><jd><xh>1</xh><jdlx>0100</jdlx><fssj>2024-03-05 10:22:00</fssj><czjg>芙蓉区信访局</czjg></jd>\
<jd><xh>2</xh><jdlx>0301</jdlx><fssj>2024-03-06 09:30:00</fssj><czjg>芙蓉区信访局</czjg>\
<mbjg>芙蓉区人力资源和社会保障局</mbjg><bz>请于60日内办结</bz></jd></blgc></xfj>";

fn with(col: &str, value: &str) -> String {
    let open = format!("<{col}>");
    let close = format!("</{col}>");
    let start = RECORD
        .find(&open)
        .unwrap_or_else(|| panic!("{col} in the record"))
        + open.len();
    let end = RECORD[start..].find(&close).unwrap() + start;
    format!("{}{value}{}", &RECORD[..start], &RECORD[end..])
}

fn without(col: &str) -> String {
    let open = format!("<{col}>");
    let close = format!("</{col}>");
    let start = RECORD.find(&open).unwrap();
    let end = RECORD[start..].find(&close).unwrap() + start + close.len();
    format!("{}{}", &RECORD[..start], &RECORD[end..])
}

#[test]
fn every_column_maps() {
    let m = map_record(RECORD, embedded_map()).unwrap();
    let p = &m.petition;
    assert_eq!(p.source.system, "provincial");
    assert_eq!(p.source.id, "XF430100202400000042");
    assert_eq!(p.source.version, 3);
    assert_eq!(p.acceptance.complaint_date.to_string(), "2024-03-04");
    assert_eq!(
        p.acceptance.registered_at.to_rfc3339(),
        "2024-03-05T10:22:00+08:00"
    );
    assert_eq!(p.handling.registering_org.as_deref(), Some("芙蓉区信访局"));
    assert_eq!(p.appeal.form, "0003");
    assert_eq!(p.appeal.purpose, "02");
    assert_eq!(p.appeal.content_class, "040101");
    assert_eq!(p.appeal.division, "430102");
    assert_eq!(p.acceptance.complainant_count, 6);
    assert_eq!(p.acceptance.people_involved, 40);
    assert!(p.appeal.summary.starts_with("信访人等6人反映"));
    assert_eq!(p.appeal.keywords, ["拖欠工资", "农民工", "建筑工地"]);
    assert_eq!(p.acceptance.remarks.as_deref(), Some("情绪激动"));
    assert_eq!(p.handling.deadline.unwrap().to_string(), "2024-05-04");
    assert!(!p.handling.concluded);
    assert!(p.flags.repeat && p.flags.threat && p.flags.superior_assigned && p.flags.group);
    assert!(!p.flags.beyond_level && !p.flags.law_related && !p.anonymous);
    assert_eq!(p.flags.level_reached, Some(LevelReached::Province));
    assert_eq!(p.handling.method.as_deref(), Some("04"));
    assert_eq!(
        p.handling.responsible_unit.as_deref(),
        Some("芙蓉区人力资源和社会保障局")
    );
    assert_eq!(
        p.handling.accepted_at.unwrap().to_rfc3339(),
        "2024-03-06T09:00:00+08:00"
    );
    assert_eq!(
        p.handling.replied_at.unwrap().to_rfc3339(),
        "2024-03-20T15:00:00+08:00"
    );
    assert_eq!(p.complainants.len(), 2);
    let c = &p.complainants[0];
    assert_eq!(c.name.as_deref(), Some("王建国"));
    assert_eq!(c.id_type.as_deref(), Some("01"));
    assert_eq!(c.id_number.as_deref(), Some("430102198001010018"));
    assert_eq!(c.mobile.as_deref(), Some("13800001111"));
    assert_eq!(c.address.as_deref(), Some("湖南省长沙市芙蓉区"));
    assert_eq!(
        c.detailed_address.as_deref(),
        Some("湖南省长沙市芙蓉区五一大道1号")
    );
    assert_eq!(p.complainants[1].id_type.as_deref(), Some("02"));
    let e = p.evaluation.as_ref().unwrap();
    assert_eq!(e.result, "3");
    assert_eq!(e.reasons, ["问题未解决", "办理时间过长"]);
    assert_eq!(e.unsatisfied_departments, ["芙蓉区人力资源和社会保障局"]);
    assert_eq!(m.events.len(), 2);
    assert_eq!(m.events[0].kind, ProcessEventKind::Registered);
    assert_eq!(m.events[1].kind, ProcessEventKind::Assigned);
    assert_eq!(
        m.events[1].target_org.as_deref(),
        Some("芙蓉区人力资源和社会保障局")
    );
    assert_eq!(m.events[1].note.as_deref(), Some("请于60日内办结"));
    assert_eq!(m.events[1].petition_source, p.source);
}

#[test]
fn every_code_of_every_table_maps() {
    let map = embedded_map();
    // (table, column in the record, how the canonical value is read)
    let cases: &[(&str, &str)] = &[
        ("xfxs", "xfxs"),
        ("xfmddm", "xfmddm"),
        ("zjlx", "zjlx"),
        ("blfs", "blfs"),
        ("pjjg", "pjjg"),
        ("dddj", "dddj"),
        ("jdlx", "jdlx"),
    ];
    let mut n = 0;
    for (table, col) in cases {
        for (external, canonical) in map.entries(table) {
            let xml = with(col, external);
            let m = map_record(&xml, map).unwrap_or_else(|e| panic!("{col}={external}: {e:?}"));
            let got = match *table {
                "xfxs" => m.petition.appeal.form.clone(),
                "xfmddm" => m.petition.appeal.purpose.clone(),
                "zjlx" => m.petition.complainants[0].id_type.clone().unwrap(),
                "blfs" => m.petition.handling.method.clone().unwrap(),
                "pjjg" => m.petition.evaluation.clone().unwrap().result,
                "dddj" => serde_json::to_value(m.petition.flags.level_reached.unwrap())
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                _ => serde_json::to_value(m.events[0].kind)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
            };
            assert_eq!(got, canonical, "{col} = {external}");
            n += 1;
        }
    }
    assert!(n >= 40, "{n} codes checked");
}

/// (input, expected (path, code) pairs, text the first message contains)
type Case<T> = (T, Vec<(&'static str, &'static str)>, &'static str);

#[test]
fn every_error_names_the_field_and_the_value() {
    // (record, expected (path, code) pairs, text the first message must contain)
    let cases: Vec<Case<String>> = vec![
        (
            with("xfmddm", "5"),
            vec![("xfmddm", "unknown_code")],
            "xfmddm = \"5\"",
        ),
        (
            with("xfxs", "0005"),
            vec![("xfxs", "unknown_code")],
            "xfxs = \"0005\"",
        ),
        (
            with("zjlx", "123"),
            vec![("tsrxx.tsr[0].zjlx", "unknown_code")],
            "\"123\"",
        ),
        (
            with("jdlx", "9999"),
            vec![("blgc.jd[0].jdlx", "unknown_code")],
            "\"9999\"",
        ),
        (
            with("pjjg", "5"),
            vec![("pjxx.pjjg", "unknown_code")],
            "\"5\"",
        ),
        (with("dddj", "9"), vec![("dddj", "unknown_code")], "\"9\""),
        (with("blfs", "0"), vec![("blfs", "unknown_code")], "\"0\""),
        (
            with("xfrs", "六"),
            vec![("xfrs", "number_format")],
            "\"六\"",
        ),
        (with("bbh", "v3"), vec![("bbh", "number_format")], "\"v3\""),
        (
            with("djsj", "2024/03/05"),
            vec![("djsj", "time_format")],
            "2024/03/05",
        ),
        (
            with("xfrq", "20240304"),
            vec![("xfrq", "date_format")],
            "20240304",
        ),
        (with("bjbz", "Y"), vec![("bjbz", "flag_format")], "\"Y\""),
        (without("xfjbh"), vec![("xfjbh", "required")], "xfjbh"),
        (without("tsgk"), vec![("tsgk", "required")], "tsgk"),
        (with("wtsddm", ""), vec![("wtsddm", "required")], "wtsddm"),
        (
            without("pjsj"),
            vec![("pjxx.pjsj", "required")],
            "pjxx.pjsj",
        ),
        (
            with("xfmddm", "5").replace("<xfxs>03</xfxs>", "<xfxs>X</xfxs>"),
            vec![("xfxs", "unknown_code"), ("xfmddm", "unknown_code")],
            "xfxs",
        ),
        (
            RECORD.replace("</tsgk>", "</tsgkx>"),
            vec![("xfj", "xml_malformed")],
            "not well-formed",
        ),
        (
            RECORD.replace("<xfj>", "<!DOCTYPE x [<!ENTITY a \"b\">]><xfj>"),
            vec![("xfj", "xml_malformed")],
            "DOCTYPE",
        ),
    ];
    for (xml, want, text) in cases {
        let errors = map_record(&xml, embedded_map()).expect_err(text);
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.path.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(got, want, "{text}");
        assert!(
            errors[0].message.contains(text),
            "{}: {}",
            text,
            errors[0].message
        );
        assert!(!errors[0].message_zh.is_empty());
    }
}

#[test]
fn a_fixed_code_map_maps_the_code() {
    let text = xfhub_transforms::provincial::EMBEDDED_MAP
        .replace("\"9\" = \"99\"", "\"9\" = \"99\"\n\"5\" = \"05\"");
    let map = parse_map(&text).unwrap();
    let m = map_record(&with("xfmddm", "5"), &map).unwrap();
    assert_eq!(m.petition.appeal.purpose, "05");
    assert!(parse_map("version = \"1\"\n[xfxs]\n\"01\" = \"0001\"\n")
        .unwrap_err()
        .contains("[xfmddm]"));
}

fn envelope(encoding: &str, records: &[u8]) -> Vec<u8> {
    let mut doc = format!(
        "<?xml version=\"1.0\" encoding=\"{encoding}\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:xf=\"urn:hunan:zwgx:xfxx:v1\"><soap:Body><xf:QueryChangedPetitionsResponse><xf:result>\
         <xf:code>0</xf:code><xf:nextCursor>200</xf:nextCursor><xf:hasMore>true</xf:hasMore><xf:records>"
    )
    .into_bytes();
    doc.extend_from_slice(records);
    doc.extend_from_slice(
        b"</xf:records></xf:result></xf:QueryChangedPetitionsResponse></soap:Body></soap:Envelope>",
    );
    doc
}

#[test]
fn pages_in_utf8_and_gbk_with_one_record_in_the_wrong_encoding() {
    let gbk = |s: &str| encoding_rs::GBK.encode(s).0.into_owned();
    // UTF-8 document: a GBK record fails alone.
    let mut records = RECORD.as_bytes().to_vec();
    records.extend(gbk(RECORD));
    records.extend(RECORD.as_bytes());
    let page = parse_response(&envelope("UTF-8", &records)).unwrap();
    assert_eq!(
        (page.next_cursor.as_str(), page.has_more, page.encoding),
        ("200", true, "UTF-8")
    );
    assert_eq!(page.records.len(), 3);
    assert!(page.records[0].text.is_ok() && page.records[2].text.is_ok());
    let e = page.records[1].text.as_ref().unwrap_err();
    assert_eq!((e.path.as_str(), e.code.as_str()), ("xfj", "encoding"));
    assert_eq!(
        page.records[1].source_ref(),
        (Some("XF430100202400000042".to_owned()), Some(3))
    );
    // GBK document: decoded; a byte no GBK text has fails alone.
    let mut bad = gbk(RECORD);
    bad.insert(200, 0xFF);
    let mut records = gbk(RECORD);
    records.extend(bad);
    let page = parse_response(&envelope("GBK", &records)).unwrap();
    assert_eq!(page.encoding, "GBK");
    let m = map_record(page.records[0].text.as_ref().unwrap(), embedded_map()).unwrap();
    assert_eq!(m.petition.complainants[0].name.as_deref(), Some("王建国"));
    assert!(page.records[1].text.is_err());
}

#[test]
fn faults_and_broken_envelopes_are_told_apart() {
    let fault = b"<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><soap:Fault>\
<faultcode>soap:Server.RateLimited</faultcode><faultstring>slow down</faultstring>\
<detail><xf:retryAfter xmlns:xf=\"urn:x\">7</xf:retryAfter></detail></soap:Fault></soap:Body></soap:Envelope>";
    assert_eq!(
        parse_response(fault),
        Err(ResponseError::Fault {
            code: "soap:Server.RateLimited".to_owned(),
            message: "slow down".to_owned(),
            retry_after_secs: Some(7)
        })
    );
    for (doc, want) in [
        (&b"<html>503</html>"[..], "not a SOAP Envelope"),
        (
            b"<?xml version=\"1.0\" encoding=\"EBCDIC-X\"?><a/>",
            "unsupported encoding",
        ),
        (
            b"<soap:Envelope xmlns:soap=\"s\"><soap:Body><xfj>",
            "not closed",
        ),
        (
            b"<soap:Envelope xmlns:soap=\"s\"><soap:Body/></soap:Envelope>",
            "QueryChangedPetitionsResponse",
        ),
    ] {
        match parse_response(doc) {
            Err(ResponseError::Malformed(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{want}: {other:?}"),
        }
    }
    let wrong_count = envelope("UTF-8", RECORD.as_bytes());
    let text = String::from_utf8(wrong_count).unwrap().replace(
        "<xf:code>0</xf:code>",
        "<xf:code>0</xf:code><xf:count>2</xf:count>",
    );
    assert!(
        matches!(parse_response(text.as_bytes()), Err(ResponseError::Malformed(m)) if m.contains("count"))
    );
}

#[test]
fn requests_round_trip_and_times_parse() {
    let body = request_xml("430100", "12<3", 100);
    assert_eq!(
        parse_request(body.as_bytes()).unwrap(),
        ("430100".to_owned(), "12<3".to_owned(), "100".to_owned())
    );
    assert!(parse_time("2024-03-05 10:22:00").is_some());
    assert!(parse_time("2024-03-05T10:22:00+08:00").is_some());
    assert!(parse_time("2024-13-05 10:22:00").is_none());
}
