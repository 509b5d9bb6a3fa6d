//! 12345 hotline work orders, as the city data resource platform serves them (REST JSON with
//! Chinese values), to canonical [`WorkOrder`]s.
//!
//! A page answer is `{"code": 0, "msg": "成功", "data": {"hasMore": true, "lastUpdateTime":
//! "2024-03-05 10:22:33.123", "list": [order, ...]}}`; any other `code` is an error answer
//! (`msg` says why). An order:
//!
//! ```json
//! {"orderNo": "GD2024030500012", "version": 2, "updateTime": "2024-03-05 10:22:33.123",
//!  "callTime": "2024-03-05 10:20:00", "channel": "电话", "callerName": "王先生",
//!  "callerPhone": "13800000000", "orderType": "投诉举报",
//!  "classification": "劳动和社会保障/劳动保障/拖欠农民工工资", "areaCode": "430102",
//!  "areaName": "芙蓉区", "address": "…", "street": "…街道", "community": "…社区",
//!  "title": "…", "content": "…", "urgency": "一般",
//!  "handleUnitName": "芙蓉区人力资源和社会保障局", "handleUnitCode": "430102-001",
//!  "timeLimit": 5, "deadline": "2024-03-10", "dispatchTime": "…", "finishTime": "…",
//!  "orderState": "办理中", "returns": [{"reason": "…", "time": "…"}], "extensionCount": 0,
//!  "supervised": "否", "overdue": "否",
//!  "visit": {"visitTime": "…", "solved": "是", "satisfaction": "满意", "opinion": "…"},
//!  "result": "已解决"}
//! ```
//!
//! Times are `yyyy-MM-dd HH:mm:ss` in China time (UTC+8).

use std::sync::OnceLock;

use serde_json::Value;
use xfhub_schemas::{FieldError, FollowUp, OrderReturn, SourceRef, Unit, WorkOrder};

use crate::codemap::{field_error, CodeMap, Mapping};
use crate::provincial::parse_time;

/// Source system name of 12345 work orders.
pub const SOURCE_SYSTEM: &str = "hotline12345";
/// The embedded code map (`transforms/data/hotline12345.toml`).
pub const EMBEDDED_MAP: &str = include_str!("../data/hotline12345.toml");
/// Tables every 12345 map must have.
pub const MAP_TABLES: &[&str] = &[
    "orderType",
    "orderState",
    "urgency",
    "result",
    "yesNo",
    "satisfaction",
];
/// Largest page the platform serves.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The embedded 12345 code map, parsed once.
pub fn embedded_map() -> &'static CodeMap {
    static MAP: OnceLock<CodeMap> = OnceLock::new();
    MAP.get_or_init(|| {
        CodeMap::parse(SOURCE_SYSTEM, EMBEDDED_MAP, MAP_TABLES)
            .expect("the embedded 12345 code map is valid")
    })
}

/// Parses a 12345 code map file (same format as the embedded one).
pub fn parse_map(text: &str) -> Result<CodeMap, String> {
    CodeMap::parse(SOURCE_SYSTEM, text, MAP_TABLES)
}

/// A page of changed work orders.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Update time of the page's last order: ask for orders updated after it next.
    pub last_update_time: Option<String>,
    pub has_more: bool,
    /// The orders as served, each mapped on its own.
    pub orders: Vec<Value>,
}

/// Why an answer is not a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// An error answer: the platform's `code` and `msg`.
    Answer {
        code: i64,
        message: String,
    },
    Malformed(String),
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::Answer { code, message } => write!(f, "error answer {code}: {message}"),
            PageError::Malformed(m) => write!(f, "malformed answer: {m}"),
        }
    }
}

/// Reads a page answer (see the module documentation).
pub fn parse_page(body: &[u8]) -> Result<Page, PageError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| PageError::Malformed(format!("not JSON: {e}")))?;
    let code = v
        .get("code")
        .and_then(Value::as_i64)
        .ok_or_else(|| PageError::Malformed("no numeric `code`".to_owned()))?;
    if code != 0 {
        return Err(PageError::Answer {
            code,
            message: v
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        });
    }
    let mut data = match v {
        Value::Object(mut o) => o.remove("data").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let has_more = data
        .get("hasMore")
        .and_then(Value::as_bool)
        .ok_or_else(|| PageError::Malformed("no boolean data.hasMore".to_owned()))?;
    let last_update_time = data
        .get("lastUpdateTime")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let orders = match data.get_mut("list").map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => return Err(PageError::Malformed("no array data.list".to_owned())),
    };
    if !orders.is_empty() && last_update_time.is_none() {
        return Err(PageError::Malformed(
            "a page with orders has no data.lastUpdateTime".to_owned(),
        ));
    }
    Ok(Page {
        last_update_time,
        has_more,
        orders,
    })
}

/// `(orderNo, version)` of an order, read as far as possible (for orders that fail to map).
pub fn source_ref(order: &Value) -> (Option<String>, Option<i64>) {
    (
        order
            .get("orderNo")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|s| !s.is_empty() && s.len() <= 64),
        order.get("version").and_then(Value::as_i64),
    )
}

struct Obj<'v, 'm, 'a> {
    v: &'v Value,
    prefix: &'static str,
    m: &'m mut Mapping<'a>,
}

impl Obj<'_, '_, '_> {
    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn opt(&mut self, name: &str) -> Option<String> {
        match self.v.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                let p = self.path(name);
                self.m.bad_format(
                    &p,
                    "type_mismatch",
                    &other.to_string(),
                    "a string",
                    "字符串",
                );
                None
            }
        }
    }

    fn req(&mut self, name: &str) -> Option<String> {
        let before = self.m.errors.len();
        let v = self.opt(name);
        // Absent, null or blank: required (a value of the wrong type has its own error).
        if v.is_none() && self.m.errors.len() == before {
            let p = self.path(name);
            self.m.required(&p);
        }
        v
    }

    fn code(&mut self, name: &str, table: &str, required: bool) -> Option<String> {
        let v = if required {
            self.req(name)?
        } else {
            self.opt(name)?
        };
        let p = self.path(name);
        self.m.map(&p, table, &v)
    }

    fn yes_no(&mut self, name: &str, table: &str) -> Option<bool> {
        self.code(name, table, false).map(|s| s == "true")
    }

    fn time(
        &mut self,
        name: &str,
        required: bool,
    ) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        let v = if required {
            self.req(name)?
        } else {
            self.opt(name)?
        };
        let t = parse_time(&v);
        if t.is_none() {
            let p = self.path(name);
            self.m.bad_format(
                &p,
                "time_format",
                &v,
                "a time yyyy-MM-dd HH:mm:ss",
                "时间（yyyy-MM-dd HH:mm:ss）",
            );
        }
        t
    }

    fn uint(&mut self, name: &str) -> Option<u32> {
        match self.v.get(name) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = v.as_u64().and_then(|n| u32::try_from(n).ok());
                if n.is_none() {
                    let p = self.path(name);
                    self.m.bad_format(
                        &p,
                        "number_format",
                        &v.to_string(),
                        "a whole number",
                        "整数",
                    );
                }
                n
            }
        }
    }
}

/// Maps one order. Every error is reported: missing fields (`required`), unparseable values,
/// Chinese values missing from the code map (`unknown_code`, naming the field and the value).
/// The work order is not yet validated against the canonical tables.
pub fn map_order(order: &Value, map: &CodeMap) -> Result<WorkOrder, Vec<FieldError>> {
    if !order.is_object() {
        return Err(vec![field_error(
            "order",
            "type_mismatch",
            "the order is not a JSON object",
            "工单不是 JSON 对象",
        )]);
    }
    let mut m = Mapping::new(map);
    let mut o = Obj {
        v: order,
        prefix: "",
        m: &mut m,
    };
    let order_no = o.req("orderNo");
    let version = match order.get("version") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v >= 1) => n.as_i64(),
        Some(v) => {
            o.m.bad_format(
                "version",
                "number_format",
                &v.to_string(),
                "a version number (1 or more)",
                "版本号（不小于1的整数）",
            );
            None
        }
        None => {
            o.m.required("version");
            None
        }
    };
    let call_time = o.time("callTime", true);
    let channel = o.opt("channel");
    let caller_name = o.opt("callerName");
    let caller_phone = o.opt("callerPhone");
    let order_type = o.code("orderType", "orderType", true);
    let classification: Vec<String> = o
        .opt("classification")
        .map(|c| {
            c.split('/')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let division = o.req("areaCode");
    let address = o.opt("address");
    let street = o.opt("street");
    let community = o.opt("community");
    let title = o.req("title");
    let content = o.req("content");
    let urgency = o.code("urgency", "urgency", false);
    let handling_unit = o
        .opt("handleUnitName")
        .map(|name| Unit { name, code: None });
    let unit_code = o.opt("handleUnitCode");
    let handling_unit = handling_unit.map(|u| Unit {
        code: unit_code,
        ..u
    });
    let time_limit_days = o.uint("timeLimit");
    let deadline = o.opt("deadline").and_then(|d| {
        let parsed = chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok();
        if parsed.is_none() {
            o.m.bad_format(
                "deadline",
                "date_format",
                &d,
                "a date yyyy-MM-dd",
                "日期（yyyy-MM-dd）",
            );
        }
        parsed
    });
    let dispatched_at = o.time("dispatchTime", false);
    let completed_at = o.time("finishTime", false);
    let state = o.code("orderState", "orderState", true);
    let extensions = o.uint("extensionCount").unwrap_or(0);
    let supervised = o.yes_no("supervised", "yesNo").unwrap_or(false);
    let overdue = o.yes_no("overdue", "yesNo").unwrap_or(false);
    let result = o.code("result", "result", false);

    let mut returns = Vec::new();
    match order.get("returns") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, r) in list.iter().enumerate() {
                let mut ro = Obj {
                    v: r,
                    prefix: "returns[].",
                    m: &mut m,
                };
                let reason = ro.req("reason");
                let at = ro.time("time", true);
                if let (Some(reason), Some(returned_at)) = (reason, at) {
                    returns.push(OrderReturn {
                        reason,
                        returned_at,
                    });
                } else if !r.is_object() {
                    m.bad_format(
                        &format!("returns[{i}]"),
                        "type_mismatch",
                        &r.to_string(),
                        "an object",
                        "对象",
                    );
                }
            }
        }
        Some(v) => m.bad_format("returns", "type_mismatch", &v.to_string(), "a list", "列表"),
    }

    let follow_up = match order.get("visit") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let mut vo = Obj {
                v,
                prefix: "visit.",
                m: &mut m,
            };
            let visited_at = vo.time("visitTime", true);
            let solved = vo.yes_no("solved", "yesNo");
            let satisfied = vo.yes_no("satisfaction", "satisfaction");
            let opinion = vo.opt("opinion");
            if solved.is_none() && vo.opt("solved").is_none() {
                vo.m.required("visit.solved");
            }
            if satisfied.is_none() && vo.opt("satisfaction").is_none() {
                vo.m.required("visit.satisfaction");
            }
            match (visited_at, solved, satisfied) {
                (Some(visited_at), Some(solved), Some(satisfied)) => Some(FollowUp {
                    visited_at,
                    solved,
                    satisfied,
                    opinion,
                }),
                _ => None,
            }
        }
    };

    if !m.errors.is_empty() {
        return Err(m.errors);
    }
    let (
        Some(order_no),
        Some(version),
        Some(call_time),
        Some(order_type),
        Some(division),
        Some(title),
        Some(content),
        Some(state),
    ) = (
        order_no, version, call_time, order_type, division, title, content, state,
    )
    else {
        // Not reached: a missing required value is recorded as an error above.
        return Err(vec![field_error(
            "order",
            "required",
            "a required field is missing",
            "缺少必填字段",
        )]);
    };
    Ok(WorkOrder {
        source: SourceRef {
            system: SOURCE_SYSTEM.to_owned(),
            id: order_no.clone(),
            version,
        },
        order_no,
        call_time,
        channel,
        caller_name,
        caller_phone,
        order_type,
        classification,
        division,
        address,
        street,
        community,
        title,
        content,
        urgency,
        handling_unit,
        time_limit_days,
        deadline,
        dispatched_at,
        completed_at,
        state,
        returns,
        extensions,
        supervised,
        overdue,
        follow_up,
        result,
    })
}
