//! 12345 hotline work order (12345 工单), DOMAIN.md §2.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::petition::SourceRef;

/// Order type (工单类型). Codes of the `order_types` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkOrder {
    pub source: SourceRef,
    /// 工单编号
    pub order_no: String,
    /// 来电时间 (UTC+8 at the source)
    pub call_time: DateTime<FixedOffset>,
    /// 受理渠道 (phone, web, WeChat, ...), free text as the platform sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_phone: Option<String>,
    /// Code of the `order_types` table: complaint | help | consultation | suggestion.
    pub order_type: String,
    /// Classification path, up to four levels, most general first.
    #[serde(default)]
    pub classification: Vec<String>,
    /// 事发地 division code.
    pub division: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    pub title: String,
    /// 诉求内容
    pub content: String,
    /// 紧急程度: code of the `urgencies` table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<String>,
    /// 承办单位
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handling_unit: Option<Unit>,
    /// 处理时限, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<NaiveDate>,
    /// 派单时间
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<DateTime<FixedOffset>>,
    /// 办结时间
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<FixedOffset>>,
    /// Code of the `order_states` table.
    pub state: String,
    #[serde(default)]
    pub returns: Vec<OrderReturn>,
    #[serde(default)]
    pub extensions: u32,
    #[serde(default)]
    pub supervised: bool,
    #[serde(default)]
    pub overdue: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUp>,
    /// Code of the `order_results` table: solved | unsolved | partly_solved | returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// 承办单位.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// 退回.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderReturn {
    pub reason: String,
    pub returned_at: DateTime<FixedOffset>,
}

/// 回访.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    pub visited_at: DateTime<FixedOffset>,
    pub solved: bool,
    pub satisfied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opinion: Option<String>,
}
