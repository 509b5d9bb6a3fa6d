//! Renders generated canonical records in the partners' shapes (provincial `<xfj>` XML in the
//! national column style, 12345 JSON with Chinese values), using the transforms' code maps in
//! reverse, and spoils them on purpose for the malformed-record faults.

use quick_xml::escape::escape;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use xfhub_schemas::{ProcessEventKind, WorkOrder};
use xfhub_transforms::codemap::CodeMap;
use xfhub_transforms::provincial::format_time;

use crate::generator::GenPetition;

/// How a malformed record is spoiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformation {
    /// A resident identity number with a wrong check character (12345: a caller phone that is
    /// no phone number).
    BadIdChecksum,
    /// A code the hub's code map does not know: provincial 信访目的 `5` (咨询), 12345 order
    /// type `投诉建议`.
    UnknownCode,
    /// Provincial: an element closed with the wrong end tag inside the record. 12345: a number
    /// field holding Chinese text.
    BrokenXml,
    /// Provincial: the record's bytes are not in the encoding the document declares (GBK bytes
    /// in a UTF-8 document; a byte that no GBK text has in a GBK document). 12345 (JSON is
    /// always UTF-8): a required field missing.
    WrongEncoding,
}

impl Malformation {
    pub const ALL: [Malformation; 4] = [
        Malformation::BadIdChecksum,
        Malformation::UnknownCode,
        Malformation::BrokenXml,
        Malformation::WrongEncoding,
    ];
}

fn ext<'a>(map: &'a CodeMap, table: &str, canonical: &'a str) -> &'a str {
    map.external(table, canonical).unwrap_or(canonical)
}

fn kind_str(k: ProcessEventKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

struct Xml(String);

impl Xml {
    fn el(&mut self, name: &str, value: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        self.0.push_str(&escape(value));
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
    }

    fn opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.el(name, v);
        }
    }

    fn flag(&mut self, name: &str, value: bool) {
        self.el(name, if value { "1" } else { "0" });
    }
}

/// The `<xfj>` record of a petition at its version, with `gxsj` (update time).
pub fn provincial_xml(g: &GenPetition, map: &CodeMap, malformed: Option<Malformation>) -> String {
    let p = &g.petition;
    // A record with no complainant has no identity number to spoil: spoil a code instead.
    let malformed = match malformed {
        Some(Malformation::BadIdChecksum) if p.complainants.is_empty() => {
            Some(Malformation::UnknownCode)
        }
        m => m,
    };
    let mut x = Xml(String::with_capacity(2048));
    x.0.push_str("<xfj>");
    x.el("xfjbh", &p.source.id);
    x.el("bbh", &p.source.version.to_string());
    let updated = g
        .events
        .last()
        .map(|e| e.occurred_at)
        .unwrap_or(p.acceptance.registered_at);
    x.el("gxsj", &format_time(&updated));
    x.el("xfrq", &p.acceptance.complaint_date.to_string());
    x.el("djsj", &format_time(&p.acceptance.registered_at));
    x.el("djjgdm", &format!("{}000000", &p.appeal.division));
    x.opt("djjgmc", p.handling.registering_org.as_deref());
    x.el("xfxs", ext(map, "xfxs", &p.appeal.form));
    let purpose = if malformed == Some(Malformation::UnknownCode) {
        "5"
    } else {
        ext(map, "xfmddm", &p.appeal.purpose)
    };
    x.el("xfmddm", purpose);
    x.el("nrfldm", &p.appeal.content_class);
    x.el("wtsddm", &p.appeal.division);
    x.el("xfrs", &p.acceptance.complainant_count.to_string());
    x.el("sjrs", &p.acceptance.people_involved.to_string());
    if malformed == Some(Malformation::BrokenXml) {
        // The end tag does not match: the record is not well-formed.
        x.0.push_str("<tsgk>");
        x.0.push_str(&escape(&p.appeal.summary));
        x.0.push_str("</tsgkk>");
    } else {
        x.el("tsgk", &p.appeal.summary);
    }
    x.el("gjc", &p.appeal.keywords.join(","));
    x.opt("bz", p.acceptance.remarks.as_deref());
    if let Some(d) = p.handling.deadline {
        x.el("xbjzrq", &d.to_string());
    }
    x.flag("bjbz", p.handling.concluded);
    x.flag("cfxfbz", p.flags.repeat);
    x.flag("yjfbz", p.flags.beyond_level);
    x.flag("yybz", p.flags.threat);
    x.flag("sfssbz", p.flags.law_related);
    x.flag("sjjbbz", p.flags.superior_assigned);
    x.flag("nmbz", p.anonymous);
    if let Some(l) = p.flags.level_reached {
        let l = serde_json::to_value(l)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        x.el("dddj", ext(map, "dddj", &l));
    }
    if let Some(m) = &p.handling.method {
        x.el("blfs", ext(map, "blfs", m));
    }
    x.opt("zrdw", p.handling.responsible_unit.as_deref());
    if let Some(t) = &p.handling.accepted_at {
        x.el("slsj", &format_time(t));
    }
    if let Some(t) = &p.handling.replied_at {
        x.el("dfsj", &format_time(t));
    }
    if !p.complainants.is_empty() {
        x.0.push_str("<tsrxx>");
        for (i, c) in p.complainants.iter().enumerate() {
            x.0.push_str("<tsr>");
            x.opt("xm", c.name.as_deref());
            let spoil = i == 0 && malformed == Some(Malformation::BadIdChecksum);
            // The spoiled number is declared a resident identity number, whose check
            // character is checked.
            let id_type = if spoil {
                Some("01")
            } else {
                c.id_type.as_deref()
            };
            if let Some(t) = id_type {
                x.el("zjlx", ext(map, "zjlx", t));
            }
            let mut id = c.id_number.clone();
            if spoil {
                spoil_check_char(id.get_or_insert_with(String::new));
            }
            x.opt("zjhm", id.as_deref());
            x.opt("sjh", c.mobile.as_deref());
            x.opt("dz", c.address.as_deref());
            x.opt("xxdz", c.detailed_address.as_deref());
            x.0.push_str("</tsr>");
        }
        x.0.push_str("</tsrxx>");
    }
    if let Some(e) = &p.evaluation {
        x.0.push_str("<pjxx>");
        x.el("pjjg", ext(map, "pjjg", &e.result));
        x.el("pjsj", &format_time(&e.evaluated_at));
        if !e.reasons.is_empty() {
            x.el("bmyyy", &e.reasons.join(";"));
        }
        x.opt("zrbm", e.responsible_department.as_deref());
        if !e.unsatisfied_departments.is_empty() {
            x.el("bmybm", &e.unsatisfied_departments.join(";"));
        }
        x.0.push_str("</pjxx>");
    }
    x.0.push_str("<blgc>");
    for (i, e) in g.events.iter().enumerate() {
        x.0.push_str("<jd>");
        x.el("xh", &(i + 1).to_string());
        x.el("jdlx", ext(map, "jdlx", &kind_str(e.kind)));
        x.el("fssj", &format_time(&e.occurred_at));
        x.opt("czjg", e.org.as_deref());
        x.opt("mbjg", e.target_org.as_deref());
        x.opt("bz", e.note.as_deref());
        x.0.push_str("</jd>");
    }
    x.0.push_str("</blgc></xfj>");
    x.0
}

/// Replaces an identity number's check character with a wrong one (or, for a number that is
/// not a resident identity number, makes it one with a wrong check character).
fn spoil_check_char(n: &mut String) {
    if n.len() != 18 || !n.is_char_boundary(17) {
        *n = "430102198001010010".to_owned();
    }
    let right = xfhub_schemas::validate::id_check_char(&n[..17]);
    let wrong = if right == b'0' { '1' } else { '0' };
    n.truncate(17);
    n.push(wrong);
}

/// The record bytes in the document's encoding; a `WrongEncoding` record gets bytes that the
/// encoding rejects.
pub fn encode_record(xml: &str, gbk: bool, malformed: Option<Malformation>) -> Vec<u8> {
    let wrong = malformed == Some(Malformation::WrongEncoding);
    match (gbk, wrong) {
        (false, false) => xml.as_bytes().to_vec(),
        // A UTF-8 document with a GBK-encoded record: Chinese text is invalid UTF-8.
        (false, true) => encoding_rs::GBK.encode(xml).0.into_owned(),
        (true, false) => encoding_rs::GBK.encode(xml).0.into_owned(),
        // A GBK document with a byte no GBK text holds (0xFF is neither ASCII nor a lead byte).
        (true, true) => {
            let mut b = encoding_rs::GBK.encode(xml).0.into_owned();
            let at = b
                .windows(6)
                .position(|w| w == b"<tsgk>")
                .map_or(5, |p| p + 6);
            b.insert(at, 0xFF);
            b
        }
    }
}

/// A 12345 order as the platform serves it (see `xfhub_transforms::hotline12345`).
pub fn hotline_json(
    w: &WorkOrder,
    map: &CodeMap,
    update_time: &str,
    malformed: Option<Malformation>,
) -> Value {
    let t = |t: &chrono::DateTime<chrono::FixedOffset>| format_time(t);
    let zh = |table: &str, code: &str| ext(map, table, code).to_owned();
    let yes_no = |b: bool| if b { "是" } else { "否" };
    let mut o = json!({
        "orderNo": w.order_no,
        "version": w.source.version,
        "updateTime": update_time,
        "callTime": t(&w.call_time),
        "channel": w.channel,
        "callerName": w.caller_name,
        "callerPhone": w.caller_phone,
        "orderType": zh("orderType", &w.order_type),
        "classification": w.classification.join("/"),
        "areaCode": w.division,
        "address": w.address,
        "street": w.street,
        "community": w.community,
        "title": w.title,
        "content": w.content,
        "urgency": w.urgency.as_deref().map(|u| zh("urgency", u)),
        "handleUnitName": w.handling_unit.as_ref().map(|u| u.name.clone()),
        "handleUnitCode": w.handling_unit.as_ref().and_then(|u| u.code.clone()),
        "timeLimit": w.time_limit_days,
        "deadline": w.deadline.map(|d| d.to_string()),
        "dispatchTime": w.dispatched_at.as_ref().map(t),
        "finishTime": w.completed_at.as_ref().map(t),
        "orderState": zh("orderState", &w.state),
        "returns": w.returns.iter().map(|r| json!({"reason": r.reason, "time": t(&r.returned_at)})).collect::<Vec<_>>(),
        "extensionCount": w.extensions,
        "supervised": yes_no(w.supervised),
        "overdue": yes_no(w.overdue),
        "visit": w.follow_up.as_ref().map(|f| json!({
            "visitTime": t(&f.visited_at),
            "solved": yes_no(f.solved),
            "satisfaction": if f.satisfied { "满意" } else { "不满意" },
            "opinion": f.opinion,
        })),
        "result": w.result.as_deref().map(|r| zh("result", r)),
    });
    match malformed {
        Some(Malformation::BadIdChecksum) => o["callerPhone"] = json!("1234-56"),
        Some(Malformation::UnknownCode) => o["orderType"] = json!("投诉建议"),
        Some(Malformation::BrokenXml) => o["timeLimit"] = json!("五个工作日"),
        Some(Malformation::WrongEncoding) => {
            if let Some(obj) = o.as_object_mut() {
                obj.remove("title");
            }
        }
        None => {}
    }
    o
}
