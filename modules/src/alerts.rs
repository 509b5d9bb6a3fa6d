//! Alerts (预警) and their graded flow (5.1.5.2.4), and the role holders the flow and the
//! instant push reach.
//!
//! Flow: an alert is raised by the warning module (`received`) or drafted by a liaison
//! (`drafted`). The liaison judges its urgency and submits it (`submitted`, level `normal` or
//! `urgent`, with the responsible unit). The petition director approves it (`dispatched`) or
//! returns it (`returned`, the liaison may submit again). On approval a normal alert is
//! published to the responsible unit (`alert.dispatched`); an urgent one is also texted to the
//! unit's director and its bureau leader (`sms.requested`). Each step is one transaction with
//! its messages, and is refused unless the alert is in the state the step starts from.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;
use xfhub_schemas::validate::normalize_mobile;
use xfhub_schemas::Envelope;
use xfhub_security::keys::KeyRing;
use xfhub_security::pii::mask_phone;
use xfhub_store::{Stmt, Store, StoreError, Txn};

use crate::messages::{sms_envelope, SmsRecipient, SmsRequested, ALERT_DISPATCHED, ALERT_RAISED};

/// A problem with an input field: stable code and both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub code: &'static str,
    pub message: String,
    pub message_zh: String,
}

pub(crate) fn invalid(field: &str, code: &'static str, en: &str, zh: &str) -> Invalid {
    Invalid {
        field: field.to_owned(),
        code,
        message: en.to_owned(),
        message_zh: zh.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Role holders.

/// Roles of the flow and the instant push.
pub const ROLES: &[&str] = &[
    "liaison",            // 联络员
    "petition_director",  // 信访处长
    "unit_director",      // 责任单位负责人
    "bureau_leader",      // 分管局领导
    "responsible_leader", // 责任领导 (instant push: transfer at once)
    "handler",            // 直接经办人 (instant push: contact within 3 hours)
];

/// A role holder as entered.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleHolderInput {
    pub name: String,
    /// One of `liaison`, `petition_director`, `unit_director`, `bureau_leader`,
    /// `responsible_leader`, `handler`.
    pub role: String,
    /// Post (职务).
    #[serde(default)]
    pub post: Option<String>,
    /// Organisation (responsible unit) the holder belongs to.
    pub org: String,
    /// Mainland mobile number (required: every role holder must be reachable by SMS).
    pub mobile: String,
}

/// A role holder as answered: the mobile masked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoleHolder {
    pub id: String,
    pub name: String,
    pub role: String,
    pub post: Option<String>,
    pub org: String,
    /// Masked mobile, `138****5678`.
    pub mobile: String,
    pub updated_at: i64,
}

/// Checks a role holder; the normalised mobile on success. Every error at once.
pub fn check_role_holder(r: &RoleHolderInput) -> Result<String, Vec<Invalid>> {
    let mut errors = Vec::new();
    if r.name.trim().is_empty() || r.name.chars().count() > 50 {
        errors.push(invalid(
            "name",
            "invalid",
            "1 to 50 characters",
            "姓名须为 1 到 50 个字符",
        ));
    }
    if !ROLES.contains(&r.role.as_str()) {
        errors.push(invalid(
            "role",
            "unknown_role",
            "one of liaison, petition_director, unit_director, bureau_leader, responsible_leader, handler",
            "角色须为联络员、信访处长、责任单位负责人、分管局领导、责任领导或直接经办人之一",
        ));
    }
    if r.org.trim().is_empty() || r.org.chars().count() > 100 {
        errors.push(invalid(
            "org",
            "invalid",
            "1 to 100 characters",
            "所属单位须为 1 到 100 个字符",
        ));
    }
    if r.post.as_ref().is_some_and(|p| p.chars().count() > 50) {
        errors.push(invalid(
            "post",
            "invalid",
            "at most 50 characters",
            "职务不能超过 50 个字符",
        ));
    }
    let mobile = normalize_mobile(&r.mobile);
    if mobile.is_none() {
        errors.push(invalid(
            "mobile",
            "invalid_mobile",
            "a role holder needs a valid mainland mobile number",
            "角色人员必须登记有效的手机号码",
        ));
    }
    match (mobile, errors.is_empty()) {
        (Some(m), true) => Ok(m),
        _ => Err(errors),
    }
}

/// Insert or replace role holder `id` (mobile checked by [`check_role_holder`], sealed here).
pub fn put_role_holder_stmt(id: &str, r: &RoleHolderInput, mobile: &str, ring: &KeyRing) -> Stmt {
    Stmt::new(
        "INSERT INTO role_holders (id, name, role, post, org, mobile_sealed, mobile_masked, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET name = $2, role = $3, \
         post = $4, org = $5, mobile_sealed = $6, mobile_masked = $7, updated_at = $8",
    )
    .bind(id)
    .bind(r.name.trim())
    .bind(&r.role)
    .bind(r.post.clone())
    .bind(r.org.trim())
    .bind(ring.seal(mobile))
    .bind(mask_phone(mobile))
    .bind(xfhub_store::now_ms())
}

fn holder_of(r: &sqlx::any::AnyRow) -> Result<RoleHolder, sqlx::Error> {
    Ok(RoleHolder {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        post: r.try_get("post")?,
        org: r.try_get("org")?,
        mobile: r.try_get("mobile_masked")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const HOLDER_COLUMNS: &str =
    "id, name, role, post, org, mobile_masked, updated_at FROM role_holders";

/// Role holders, optionally of one organisation, by organisation, role and name.
pub async fn list_role_holders(
    store: &Store,
    org: Option<&str>,
) -> Result<Vec<RoleHolder>, StoreError> {
    let stmt = match org {
        Some(o) => Stmt::new(format!(
            "SELECT {HOLDER_COLUMNS} WHERE org = $1 ORDER BY org, role, name"
        ))
        .bind(o),
        None => Stmt::new(format!("SELECT {HOLDER_COLUMNS} ORDER BY org, role, name")),
    };
    let rows = stmt.query().fetch_all(store.reader()).await?;
    rows.iter()
        .map(|r| holder_of(r).map_err(StoreError::from))
        .collect()
}

pub async fn get_role_holder(store: &Store, id: &str) -> Result<Option<RoleHolder>, StoreError> {
    let row = Stmt::new(format!("SELECT {HOLDER_COLUMNS} WHERE id = $1"))
        .bind(id)
        .query()
        .fetch_optional(store.reader())
        .await?;
    row.map(|r| holder_of(&r).map_err(StoreError::from))
        .transpose()
}

/// The SMS recipients (sealed mobiles) holding one of `roles` in `org`.
pub async fn recipients(
    store: &Store,
    org: &str,
    roles: &[&str],
) -> Result<Vec<SmsRecipient>, StoreError> {
    let mut out = Vec::new();
    for role in roles {
        let rows = Stmt::new(
            "SELECT mobile_sealed FROM role_holders WHERE org = $1 AND role = $2 ORDER BY id",
        )
        .bind(org)
        .bind(*role)
        .query()
        .fetch_all(store.reader())
        .await?;
        for r in rows {
            out.push(SmsRecipient {
                phone: r.try_get("mobile_sealed")?,
                role: Some((*role).to_owned()),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Alerts.

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// `sensitive_word`, `key_risk_group`, `key_risk_item`, `surge`, or a drafted kind.
    pub kind: String,
    /// Unique per cause: a second raise with the same key is a no-op.
    pub dedup_key: String,
    pub record_id: Option<String>,
    pub division: String,
    pub org: Option<String>,
    pub title: String,
    pub detail: Value,
    /// `received` (raised by a module) or `drafted` (by a liaison).
    pub status: &'static str,
}

/// An alert as stored and answered.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub id: String,
    pub kind: String,
    /// `normal` or `urgent` (judged by the liaison).
    pub level: String,
    /// `received`, `drafted`, `submitted`, `returned`, `dispatched`.
    pub status: String,
    pub record_id: Option<String>,
    pub division: String,
    /// Responsible unit.
    pub org: Option<String>,
    pub title: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    /// Every step: `{at, action, actor, note}`.
    #[schema(value_type = Vec<Object>)]
    pub history: Value,
    pub raised_at: i64,
    pub updated_at: i64,
}

/// The statement storing `a` and its `alert.raised` message (publish both in one transaction).
pub fn raise(
    a: &NewAlert,
    now: i64,
    cause: Option<&Envelope<Value>>,
    actor: &str,
) -> (Stmt, Envelope<Value>) {
    let alert = Alert {
        id: Uuid::now_v7().to_string(),
        kind: a.kind.clone(),
        level: "normal".into(),
        status: a.status.into(),
        record_id: a.record_id.clone(),
        division: a.division.clone(),
        org: a.org.clone(),
        title: a.title.clone(),
        detail: a.detail.clone(),
        history: json!([{"at": now, "action": a.status, "actor": actor, "note": null}]),
        raised_at: now,
        updated_at: now,
    };
    let stmt = Stmt::new(
        "INSERT INTO alerts (id, dedup_key, kind, level, status, record_id, division, org, title, \
         detail, history, raised_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $12) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(&alert.id)
    .bind(&a.dedup_key)
    .bind(&alert.kind)
    .bind(&alert.level)
    .bind(&alert.status)
    .bind(alert.record_id.clone())
    .bind(&alert.division)
    .bind(alert.org.clone())
    .bind(&alert.title)
    .bind(alert.detail.to_string())
    .bind(alert.history.to_string())
    .bind(now);
    let payload = serde_json::to_value(&alert).expect("an alert serializes");
    let id = alert_message_id(&a.dedup_key);
    let mut env = match cause {
        Some(c) => {
            let mut e = Envelope::caused_by(c, ALERT_RAISED, payload);
            e.division = a.division.clone();
            e
        }
        None => {
            let mut e = Envelope::new(ALERT_RAISED, "xfhub", &a.division, payload);
            e.correlation_id = id;
            e
        }
    };
    env.message_id = id;
    (stmt, env)
}

/// Names the `alert.raised` messages of one dedup key (UUIDv5).
const ALERT_MESSAGES: Uuid = Uuid::from_u128(0x6f1c_2a57_9d3e_4b0a_8c41_5e7d_2f90_a3b6);

/// The id of the message that announces the alert of `dedup_key`: derived from the key (a
/// name-based UUID, not a random one), so that raising one alert twice publishes it once. The
/// alert row is kept once by its dedup key; its message is kept once by the outbox's unique
/// message id (a publish of an id already there is dropped). Two hub instances sweeping the
/// same due timer, or seeing the same surge, would otherwise each text the liaisons.
pub fn alert_message_id(dedup_key: &str) -> Uuid {
    Uuid::new_v5(&ALERT_MESSAGES, dedup_key.as_bytes())
}

fn alert_of(r: &sqlx::any::AnyRow) -> Result<Alert, StoreError> {
    let detail: String = r.try_get("detail")?;
    let history: String = r.try_get("history")?;
    Ok(Alert {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        level: r.try_get("level")?,
        status: r.try_get("status")?,
        record_id: r.try_get("record_id")?,
        division: r.try_get("division")?,
        org: r.try_get("org")?,
        title: r.try_get("title")?,
        detail: serde_json::from_str(&detail)?,
        history: serde_json::from_str(&history)?,
        raised_at: r.try_get("raised_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const ALERT_COLUMNS: &str = "id, kind, level, status, record_id, division, org, title, detail, \
                             history, raised_at, updated_at FROM alerts";

pub async fn get_alert(store: &Store, id: &str) -> Result<Option<Alert>, StoreError> {
    let row = Stmt::new(format!("SELECT {ALERT_COLUMNS} WHERE id = $1"))
        .bind(id)
        .query()
        .fetch_optional(store.reader())
        .await?;
    row.map(|r| alert_of(&r)).transpose()
}

/// Filter of the alert listing.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub record_id: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub limit: u32,
}

/// Alerts, newest first.
pub async fn list_alerts(store: &Store, f: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
    let mut sql = format!("SELECT {ALERT_COLUMNS} WHERE 1 = 1");
    let mut binds = Vec::new();
    for (col, v) in [
        ("record_id", &f.record_id),
        ("status", &f.status),
        ("kind", &f.kind),
    ] {
        if let Some(v) = v {
            binds.push(v.clone());
            sql.push_str(&format!(" AND {col} = ${}", binds.len()));
        }
    }
    sql.push_str(&format!(
        " ORDER BY raised_at DESC, id DESC LIMIT ${}",
        binds.len() + 1
    ));
    let mut stmt = Stmt::new(sql);
    for b in binds {
        stmt = stmt.bind(b);
    }
    let rows = stmt
        .bind(i64::from(f.limit))
        .query()
        .fetch_all(store.reader())
        .await?;
    rows.iter().map(alert_of).collect()
}

/// A liaison's draft.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertDraft {
    /// Role holder id of the drafting liaison.
    pub liaison: String,
    /// `key_risk_item`, `key_risk_group`, `surge`, `similar_cases`, `deadline`, `quality`, `performance`.
    pub kind: String,
    pub title: String,
    /// Division code (问题属地).
    pub division: String,
    /// Responsible unit.
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub record_id: Option<Uuid>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub detail: Option<Value>,
}

/// Kinds an alert can have (DOMAIN.md §2, Alert) plus the warning module's `sensitive_word`.
pub const KINDS: &[&str] = &[
    "surge",
    "similar_cases",
    "key_risk_item",
    "key_risk_group",
    "deadline",
    "quality",
    "performance",
    "sensitive_word",
];

/// One step of the flow.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum FlowStep {
    /// The liaison judges urgency and submits to the petition director.
    Submit {
        /// Role holder id of the liaison.
        actor: String,
        /// `normal` or `urgent`.
        level: String,
        /// Responsible unit (kept when absent).
        #[serde(default)]
        org: Option<String>,
        #[serde(default)]
        note: Option<String>,
    },
    /// The petition director approves: the alert goes to the responsible unit.
    Approve {
        actor: String,
        #[serde(default)]
        note: Option<String>,
    },
    /// The petition director returns it to the liaison.
    Return {
        actor: String,
        #[serde(default)]
        note: Option<String>,
    },
}

/// Why a step was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("no such alert")]
    NotFound,
    #[error("invalid input")]
    Invalid(Vec<Invalid>),
    #[error("the alert is {0}")]
    WrongState(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The SMS request id of an urgent alert's approval: derived from the alert id, so that two
/// racing approvals can never text twice (the SMS connector dedups by request id).
pub fn urgent_request_id(alert_id: &str) -> Uuid {
    let digest = xfhub_security::sm3_hex(format!("alert-urgent:{alert_id}").as_bytes());
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digest[i * 2..i * 2 + 2], 16).unwrap_or(0);
    }
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

async fn holder_with_role(
    store: &Store,
    id: &str,
    role: &str,
    field: &str,
) -> Result<RoleHolder, FlowError> {
    match get_role_holder(store, id).await? {
        Some(h) if h.role == role => Ok(h),
        Some(_) => Err(FlowError::Invalid(vec![invalid(
            field,
            "wrong_role",
            &format!("the role holder is not a {role}"),
            &format!(
                "该人员不是{}",
                if role == "liaison" {
                    "联络员"
                } else {
                    "信访处长"
                }
            ),
        )])),
        None => Err(FlowError::Invalid(vec![invalid(
            field,
            "unknown_role_holder",
            "no role holder with this id",
            "角色人员不存在",
        )])),
    }
}

/// Stores a liaison's draft.
pub async fn draft(store: &Store, d: &AlertDraft) -> Result<Alert, FlowError> {
    let mut errors = Vec::new();
    if !KINDS.contains(&d.kind.as_str()) {
        errors.push(invalid(
            "kind",
            "unknown_kind",
            "not an alert kind",
            "预警类型不存在",
        ));
    }
    if d.title.trim().is_empty() || d.title.chars().count() > 200 {
        errors.push(invalid(
            "title",
            "invalid",
            "1 to 200 characters",
            "标题须为 1 到 200 个字符",
        ));
    }
    if d.division.len() != 6 || !d.division.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(invalid(
            "division",
            "invalid",
            "a 6-digit division code",
            "问题属地须为 6 位行政区划代码",
        ));
    }
    if !errors.is_empty() {
        return Err(FlowError::Invalid(errors));
    }
    let liaison = holder_with_role(store, &d.liaison, "liaison", "liaison").await?;
    let now = xfhub_store::now_ms();
    let new = NewAlert {
        kind: d.kind.clone(),
        dedup_key: format!("draft:{}", Uuid::now_v7()),
        record_id: d.record_id.map(|u| u.to_string()),
        division: d.division.clone(),
        org: d.org.clone(),
        title: d.title.trim().to_owned(),
        detail: d.detail.clone().unwrap_or(json!({})),
        status: "drafted",
    };
    // A draft is not published: it becomes an alert of the flow when the liaison submits it.
    let (stmt, env) = raise(&new, now, None, &liaison.id);
    let id = env.payload["id"].as_str().unwrap_or_default().to_owned();
    store
        .transact(Txn {
            statements: vec![stmt],
            ..Txn::default()
        })
        .await?;
    get_alert(store, &id).await?.ok_or(FlowError::NotFound)
}

/// Applies one step of the graded flow.
pub async fn step(store: &Store, id: &str, s: &FlowStep) -> Result<Alert, FlowError> {
    let alert = get_alert(store, id).await?.ok_or(FlowError::NotFound)?;
    let now = xfhub_store::now_ms();
    let (from, to, actor, note, level, org): (
        &[&str],
        &str,
        &str,
        &Option<String>,
        String,
        Option<String>,
    ) = match s {
        FlowStep::Submit {
            actor,
            level,
            org,
            note,
        } => {
            if level != "normal" && level != "urgent" {
                return Err(FlowError::Invalid(vec![invalid(
                    "level",
                    "invalid_level",
                    "normal or urgent",
                    "紧急程度须为 normal（一般）或 urgent（紧急）",
                )]));
            }
            holder_with_role(store, actor, "liaison", "actor").await?;
            let org = org.clone().or(alert.org.clone());
            if org.as_deref().is_none_or(|o| o.trim().is_empty()) {
                return Err(FlowError::Invalid(vec![invalid(
                    "org",
                    "missing_org",
                    "the responsible unit is needed to submit",
                    "提交审核前须指定责任单位",
                )]));
            }
            (
                &["received", "drafted", "returned"],
                "submitted",
                actor,
                note,
                level.clone(),
                org,
            )
        }
        FlowStep::Approve { actor, note } => {
            holder_with_role(store, actor, "petition_director", "actor").await?;
            (
                &["submitted"],
                "dispatched",
                actor,
                note,
                alert.level.clone(),
                alert.org.clone(),
            )
        }
        FlowStep::Return { actor, note } => {
            holder_with_role(store, actor, "petition_director", "actor").await?;
            (
                &["submitted"],
                "returned",
                actor,
                note,
                alert.level.clone(),
                alert.org.clone(),
            )
        }
    };
    if !from.contains(&alert.status.as_str()) {
        return Err(FlowError::WrongState(alert.status));
    }
    let mut history = alert.history.as_array().cloned().unwrap_or_default();
    history.push(json!({"at": now, "action": to, "actor": actor, "note": note, "level": level}));
    let update = Stmt::new(
        "UPDATE alerts SET status = $1, level = $2, org = $3, history = $4, updated_at = $5 \
         WHERE id = $6 AND status = $7",
    )
    .bind(to)
    .bind(level.clone())
    .bind(org.clone())
    .bind(Value::Array(history).to_string())
    .bind(now)
    .bind(id)
    .bind(&alert.status);
    let mut publish = Vec::new();
    if to == "dispatched" {
        let mut dispatched = alert.clone();
        dispatched.status = to.into();
        publish.push(Envelope::new(
            ALERT_DISPATCHED,
            "xfhub",
            &alert.division,
            serde_json::to_value(&dispatched).expect("an alert serializes"),
        ));
        if level == "urgent" {
            let unit = org.clone().unwrap_or_default();
            let to_text = recipients(store, &unit, &["unit_director", "bureau_leader"]).await?;
            if to_text.is_empty() {
                return Err(FlowError::Invalid(vec![invalid(
                    "org",
                    "no_recipients",
                    "the responsible unit has no director or bureau leader to text",
                    "责任单位未登记负责人或分管局领导，无法发送紧急预警短信",
                )]));
            }
            let req = SmsRequested {
                request_id: urgent_request_id(id),
                template: "alert_urgent".into(),
                params: [
                    ("kind".to_owned(), kind_zh(&alert.kind).to_owned()),
                    ("title".to_owned(), clip(&alert.title)),
                ]
                .into_iter()
                .collect(),
                recipients: to_text,
                reason: Some("alert_urgent".into()),
            };
            publish.push(sms_envelope(None, &alert.division, &req));
        }
    }
    let out = store
        .transact(Txn {
            statements: vec![update],
            publish,
            ..Txn::default()
        })
        .await?;
    if out.rows_affected.first() != Some(&1) {
        let now_status = get_alert(store, id)
            .await?
            .map(|a| a.status)
            .unwrap_or_default();
        return Err(FlowError::WrongState(now_status));
    }
    get_alert(store, id).await?.ok_or(FlowError::NotFound)
}

/// Chinese name of an alert kind, for texts.
pub fn kind_zh(kind: &str) -> &'static str {
    match kind {
        "surge" => "激增预警",
        "similar_cases" => "多发同类预警",
        "key_risk_item" => "重点风险事项",
        "key_risk_group" => "重点风险群体",
        "deadline" => "办理考核预警",
        "quality" => "案件质量预警",
        "performance" => "履职预警",
        "sensitive_word" => "敏感信息预警",
        _ => "预警",
    }
}

/// Shortens a value to an SMS parameter's limit (35 characters).
pub fn clip(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 35 {
        s.to_owned()
    } else {
        let mut out: String = chars[..34].iter().collect();
        out.push('…');
        out
    }
}
