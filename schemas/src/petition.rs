//! Petition (信访件 / 诉求件) and process events (办理节点), DOMAIN.md §2.
//!
//! Coded fields (form, purpose, content class, division, handling method, evaluation) hold codes
//! of the tables in `codes`, never free text; the tables are data and change without a release.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a record came from. A repeat of the same (system, id, version) is the same submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    /// `provincial` | `hotline12345` | `app` | `api` | `excel` | `local`
    pub system: String,
    /// The record's id in the source system (信访件编号, 工单编号, ...).
    pub id: String,
    /// Version in the source system; a higher version is an update of the same record.
    pub version: i64,
}

/// A petition as the hub stores and routes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Petition {
    pub source: SourceRef,
    /// 匿名: when true, complainants carry no name, id number or mobile.
    #[serde(default)]
    pub anonymous: bool,
    /// 投诉人; at least one unless anonymous.
    #[serde(default)]
    pub complainants: Vec<Complainant>,
    pub appeal: Appeal,
    pub acceptance: Acceptance,
    #[serde(default)]
    pub handling: Handling,
    #[serde(default)]
    pub flags: Flags,
    /// 满意度评价, at most one per case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
}

/// 投诉人.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Complainant {
    /// 姓名
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 手机号码; +86 / 0086 / 86 prefixes are accepted and stripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// 证件类型: code of the `id_types` table (`01` = resident identity card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_type: Option<String>,
    /// 证件号码
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// 地址
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// 详细地址
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_address: Option<String>,
}

/// 诉求信息.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Appeal {
    /// 问题属地: six-digit division code (`divisions` table; historical codes are remapped).
    pub division: String,
    /// 内容分类: six-digit content class code, two digits a level (`content_classes` table).
    pub content_class: String,
    /// 信访目的 / 投诉目的: code of the `purposes` table.
    pub purpose: String,
    /// 信访形式 / 投诉形式: code of the `forms` table.
    pub form: String,
    /// 投诉概况
    pub summary: String,
    /// 关键词
    #[serde(default)]
    pub keywords: Vec<String>,
    /// 信访材料: at most 5, each at most 10 MB, Excel/Word/PDF.
    #[serde(default)]
    pub materials: Vec<Attachment>,
}

/// An attachment's metadata; the bytes live in the document store, not in the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub file_name: String,
    /// MIME type; Excel, Word and PDF types only.
    pub content_type: String,
    pub size_bytes: u64,
    /// Hex SHA-256 of the content, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// 受理情况.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    /// 投诉人数 / 信访人数, at least 1.
    pub complainant_count: u32,
    /// 涉及人数, at least 1.
    pub people_involved: u32,
    /// 投诉日期 / 信访日期
    pub complaint_date: NaiveDate,
    /// 登记时间, with its UTC offset (+08:00 in Changsha).
    pub registered_at: DateTime<FixedOffset>,
    /// 备注
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
}

/// Handling (办理) state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Handling {
    /// 登记机构 (organisation code or name)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registering_org: Option<String>,
    /// 受理时间
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<FixedOffset>>,
    /// 办理方式: code of the `handling_methods` table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// 责任单位
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible_unit: Option<String>,
    /// 限办截止时间
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<NaiveDate>,
    /// 答复时间
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replied_at: Option<DateTime<FixedOffset>>,
    /// 办结
    #[serde(default)]
    pub concluded: bool,
}

/// Where the petitioner went, above the local level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LevelReached {
    /// 进京访
    Beijing,
    /// 赴省访
    Province,
    /// 来市访
    City,
}

/// Case flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flags {
    /// 重复访
    #[serde(default)]
    pub repeat: bool,
    /// 集体访: must be set exactly when 5 or more people came.
    #[serde(default)]
    pub group: bool,
    /// 越级访
    #[serde(default)]
    pub beyond_level: bool,
    /// 扬言访
    #[serde(default)]
    pub threat: bool,
    /// 涉法涉诉
    #[serde(default)]
    pub law_related: bool,
    /// 上级交办
    #[serde(default)]
    pub superior_assigned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level_reached: Option<LevelReached>,
}

/// 满意度评价.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// Code of the `evaluations` table: 满意 / 基本满意 / 不满意.
    pub result: String,
    /// At most three dissatisfaction reasons.
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible_department: Option<String>,
    #[serde(default)]
    pub unsatisfied_departments: Vec<String>,
    pub evaluated_at: DateTime<FixedOffset>,
}

/// Petition status, derived from the handling block; used for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PetitionStatus {
    Registered,
    Accepted,
    Replied,
    Concluded,
}

impl PetitionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PetitionStatus::Registered => "registered",
            PetitionStatus::Accepted => "accepted",
            PetitionStatus::Replied => "replied",
            PetitionStatus::Concluded => "concluded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "registered" => PetitionStatus::Registered,
            "accepted" => PetitionStatus::Accepted,
            "replied" => PetitionStatus::Replied,
            "concluded" => PetitionStatus::Concluded,
            _ => return None,
        })
    }
}

impl Petition {
    pub fn status(&self) -> PetitionStatus {
        if self.handling.concluded {
            PetitionStatus::Concluded
        } else if self.handling.replied_at.is_some() {
            PetitionStatus::Replied
        } else if self.handling.accepted_at.is_some() {
            PetitionStatus::Accepted
        } else {
            PetitionStatus::Registered
        }
    }
}

/// Kind of a process event (办理节点).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcessEventKind {
    /// 登记
    Registered,
    /// 受理
    Accepted,
    /// 不予受理
    NotAccepted,
    /// 不再受理
    NoLongerAccepted,
    /// 转送
    Transferred,
    /// 交办
    Assigned,
    /// 退回
    Returned,
    /// 督办
    Supervised,
    /// 答复
    Replied,
    /// 办结
    Concluded,
    /// 评价
    Evaluated,
    /// 审核化解
    ResolutionReviewed,
    /// 回流
    Reflowed,
}

/// One step in a petition's handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessEvent {
    /// Source of the petition this event belongs to.
    pub petition_source: SourceRef,
    pub kind: ProcessEventKind,
    pub occurred_at: DateTime<FixedOffset>,
    /// Organisation that acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Organisation the case moved to (transfer, assignment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
