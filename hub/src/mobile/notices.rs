//! Staff notices (通知公告, spec 5.1.5.3.2-1): what a notice is, its checks, its storage, who
//! sees it and its push.
//!
//! - The bureau writes notices over the signed admin API (`crate::api::notices`, scope
//!   `admin`, audited); staff read them on their phones (`super::staff::notices`,
//!   `super::staff::notice`).
//! - Audience: a notice for division `A` reaches the staff whose `org_division` starts with
//!   `scope_prefix(A)` (`430100` -> every org of the city, `430102` -> only Furong's), the
//!   jurisdiction rule of [`super::jwt::scope_prefix`] turned around. An optional role list
//!   narrows it to holders of one of those roles.
//! - Push: the hub has no staff directory (the identity service owns it), so it records the
//!   staff users it has seen in `app_staff_users` ([`note_staff`]) and pushes a published
//!   notice to those in its audience as `notification.requested` (recipients in chunks,
//!   `notification_id` = the notice id, so a repeated publication is de-duplicated per
//!   recipient by the push connector and the app message service). A notice published at once
//!   is pushed in the transaction that stores it; a scheduled one by [`push_due`], which runs
//!   beside the hub every [`SWEEP_EVERY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;
use xfhub_connectors::xiangyiban::{notification_envelope, NotificationRequest};
use xfhub_modules::alerts::Invalid;
use xfhub_schemas::{CodeTables, Envelope};
use xfhub_store::{now_ms, Stmt, Store, Txn};

use super::jwt::{scope_prefix, StaffClaims};

/// Notice levels.
pub const LEVELS: &[&str] = &["normal", "important", "urgent"];
/// Longest title, characters.
pub const TITLE_MAX: usize = 100;
/// Longest body, characters.
pub const BODY_MAX: usize = 5000;
/// Most roles of a notice's role filter.
pub const ROLES_MAX: usize = 20;
/// Recipients per `notification.requested` message.
const PUSH_CHUNK: usize = 500;
/// How often scheduled notices are checked for publication.
pub const SWEEP_EVERY: Duration = Duration::from_secs(15);
/// 2000-01-01T00:00:00Z in ms: no notice is older.
const EARLIEST_MS: i64 = 946_684_800_000;
/// A publication time at most this far ahead, ms (366 days).
const MAX_AHEAD_MS: i64 = 366 * 86_400_000;

/// A notice as the bureau enters it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeInput {
    /// 1 to 100 characters.
    pub title: String,
    /// 1 to 5000 characters (line breaks allowed).
    pub body: String,
    /// `normal` (default), `important` or `urgent`.
    #[serde(default)]
    pub level: Option<String>,
    /// Division code of the audience (Changsha, active in the `divisions` code table):
    /// `430100` reaches the whole city, a district's code only that district's organisations.
    pub audience_division: String,
    /// Only holders of one of these roles see it (empty: everyone in the audience).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Publication time, ms since the epoch: absent means now on create and unchanged on
    /// update. A future time schedules the notice.
    #[serde(default)]
    pub publish_at: Option<i64>,
    /// Expiry, ms since the epoch, after the publication time and in the future.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A checked notice, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub title: String,
    pub body: String,
    pub level: String,
    pub audience_division: String,
    pub roles: Vec<String>,
    pub publish_at: i64,
    pub expires_at: Option<i64>,
}

fn bad(field: &str, code: &'static str, en: &str, zh: &str) -> Invalid {
    Invalid {
        field: field.to_owned(),
        code,
        message: en.to_owned(),
        message_zh: zh.to_owned(),
    }
}

fn text(
    field: &str,
    value: &str,
    max: usize,
    allow_breaks: bool,
    errors: &mut Vec<Invalid>,
) -> String {
    let v = value.trim();
    if v.is_empty() {
        errors.push(bad(field, "required", "must not be empty", "不能为空"));
    } else if v.chars().count() > max {
        errors.push(bad(
            field,
            "too_long",
            &format!("at most {max} characters"),
            &format!("不能超过 {max} 个字"),
        ));
    } else if v
        .chars()
        .any(|c| c.is_control() && !(allow_breaks && matches!(c, '\n' | '\r' | '\t')))
    {
        errors.push(bad(
            field,
            "invalid_characters",
            "control characters are not allowed",
            "不能包含控制字符",
        ));
    }
    v.to_owned()
}

/// Checks every field and reports every problem at once. `stored_publish_at` is the stored
/// publication time on update (kept when the input has none).
pub fn check(
    input: &NoticeInput,
    tables: &CodeTables,
    now: i64,
    stored_publish_at: Option<i64>,
) -> Result<Checked, Vec<Invalid>> {
    let mut errors = Vec::new();
    let title = text("title", &input.title, TITLE_MAX, false, &mut errors);
    let body = text("body", &input.body, BODY_MAX, true, &mut errors);
    let level = input.level.clone().unwrap_or_else(|| "normal".to_owned());
    if !LEVELS.contains(&level.as_str()) {
        errors.push(bad(
            "level",
            "invalid_value",
            "normal, important or urgent",
            "应为 normal（一般）、important（重要）或 urgent（紧急）",
        ));
    }
    let d = input.audience_division.trim();
    if d.len() != 6 || !d.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(bad(
            "audience_division",
            "invalid_format",
            "a 6-digit division code",
            "应为6位行政区划代码",
        ));
    } else {
        match tables.lookup("divisions", d) {
            None => errors.push(bad(
                "audience_division",
                "unknown_code",
                "not in the divisions code table",
                "行政区划代码不存在",
            )),
            Some(e) if !e.active => errors.push(bad(
                "audience_division",
                "retired_code",
                &format!(
                    "a historical code; use {}",
                    e.replaced_by.as_deref().unwrap_or("the current code")
                ),
                "该行政区划代码已停用",
            )),
            Some(_) if !d.starts_with("4301") => errors.push(bad(
                "audience_division",
                "outside_changsha",
                "not a division of Changsha",
                "不是长沙市的行政区划",
            )),
            Some(_) => {}
        }
    }
    if input.roles.len() > ROLES_MAX {
        errors.push(bad(
            "roles",
            "too_many",
            &format!("at most {ROLES_MAX} roles"),
            &format!("角色不能超过 {ROLES_MAX} 个"),
        ));
    }
    let mut roles: Vec<String> = Vec::new();
    for (i, r) in input.roles.iter().enumerate() {
        let r = r.trim();
        let field = format!("roles[{i}]");
        if r.is_empty()
            || r.len() > 64
            || !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
        {
            errors.push(bad(
                &field,
                "invalid_format",
                "1 to 64 letters, digits, _ - . :",
                "角色应为1至64位字母、数字或 _ - . :",
            ));
        } else if roles.iter().any(|x| x == r) {
            errors.push(bad(&field, "duplicate", "listed twice", "角色重复"));
        } else {
            roles.push(r.to_owned());
        }
    }
    let publish_at = input.publish_at.or(stored_publish_at).unwrap_or(now);
    if !(EARLIEST_MS..=now + MAX_AHEAD_MS).contains(&publish_at) {
        errors.push(bad(
            "publish_at",
            "out_of_range",
            "ms since the epoch, from 2000 to at most 366 days ahead",
            "发布时间应为毫秒时间戳，不早于2000年且不晚于366天后",
        ));
    }
    if let Some(x) = input.expires_at {
        if x <= publish_at {
            errors.push(bad(
                "expires_at",
                "before_publish",
                "must be after publish_at",
                "失效时间应晚于发布时间",
            ));
        } else if x <= now {
            errors.push(bad(
                "expires_at",
                "in_past",
                "must be in the future",
                "失效时间应晚于当前时间",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Checked {
        title,
        body,
        level,
        audience_division: d.to_owned(),
        roles,
        publish_at,
        expires_at: input.expires_at,
    })
}

impl Checked {
    /// Whether it is to be pushed at `now` (published, not expired).
    pub fn due(&self, now: i64) -> bool {
        self.publish_at <= now && self.expires_at.is_none_or(|x| x > now)
    }
}

/// A notice as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NoticeView {
    pub id: String,
    pub title: String,
    pub body: String,
    pub level: String,
    pub audience_division: String,
    /// Chinese name of the audience division.
    pub audience_name: Option<String>,
    pub roles: Vec<String>,
    /// ms since the epoch.
    pub publish_at: i64,
    pub expires_at: Option<i64>,
    /// `active` or `withdrawn`.
    pub status: String,
    /// When it was pushed to the app (`notification.requested`); null: not yet.
    pub pushed_at: Option<i64>,
    /// Staff users who opened it.
    pub reads: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub withdrawn_at: Option<i64>,
}

/// The statements storing a new notice (`pushed_at` set when it is pushed in the same commit).
pub fn insert_stmts(
    id: &str,
    n: &Checked,
    actor: &str,
    now: i64,
    pushed_at: Option<i64>,
) -> Vec<Stmt> {
    let mut out = vec![Stmt::new(
        "INSERT INTO app_notices (id, title, body, level, audience_division, audience_prefix, roles_only, publish_at, expires_at, status, pushed_at, created_by, created_at, updated_at, withdrawn_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $12, $12, NULL)",
    )
    .bind(id)
    .bind(&n.title)
    .bind(&n.body)
    .bind(&n.level)
    .bind(&n.audience_division)
    .bind(scope_prefix(&n.audience_division))
    .bind(!n.roles.is_empty())
    .bind(n.publish_at)
    .bind(n.expires_at)
    .bind(pushed_at)
    .bind(actor)
    .bind(now)];
    out.extend(role_stmts(id, &n.roles));
    out
}

fn role_stmts(id: &str, roles: &[String]) -> Vec<Stmt> {
    roles
        .iter()
        .map(|r| {
            Stmt::new("INSERT INTO app_notice_roles (notice_id, role) VALUES ($1, $2)")
                .bind(id)
                .bind(r)
        })
        .collect()
}

/// The statements replacing an active notice (none changes a row once it is withdrawn).
pub fn update_stmts(id: &str, n: &Checked, now: i64, pushed_at: Option<i64>) -> Vec<Stmt> {
    let mut out = vec![
        Stmt::new(
            "UPDATE app_notices SET title = $2, body = $3, level = $4, audience_division = $5, audience_prefix = $6, roles_only = $7, publish_at = $8, expires_at = $9, pushed_at = COALESCE(pushed_at, $10), updated_at = $11 \
             WHERE id = $1 AND status = 'active'",
        )
        .bind(id)
        .bind(&n.title)
        .bind(&n.body)
        .bind(&n.level)
        .bind(&n.audience_division)
        .bind(scope_prefix(&n.audience_division))
        .bind(!n.roles.is_empty())
        .bind(n.publish_at)
        .bind(n.expires_at)
        .bind(pushed_at)
        .bind(now),
        Stmt::new(format!(
            "DELETE FROM app_notice_roles WHERE notice_id = $1 AND {ACTIVE}"
        ))
        .bind(id),
    ];
    out.extend(n.roles.iter().map(|r| {
        Stmt::new(format!(
            "INSERT INTO app_notice_roles (notice_id, role) SELECT $1, $2 WHERE {ACTIVE}"
        ))
        .bind(id)
        .bind(r)
    }));
    out
}

/// The notice `$1` is active (role rows change only with their notice).
const ACTIVE: &str = "EXISTS (SELECT 1 FROM app_notices a WHERE a.id = $1 AND a.status = 'active')";

/// Marks an active notice withdrawn (no row matches when it is missing or withdrawn already).
pub fn withdraw_stmt(id: &str, now: i64) -> Stmt {
    Stmt::new(
        "UPDATE app_notices SET status = 'withdrawn', withdrawn_at = $2, updated_at = $2 WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .bind(now)
}

const VIEW_COLUMNS: &str = "n.id, n.title, n.body, n.level, n.audience_division, n.roles_only, n.publish_at, n.expires_at, n.status, n.pushed_at, n.created_by, n.created_at, n.updated_at, n.withdrawn_at, (SELECT COUNT(*) FROM app_notice_reads r WHERE r.notice_id = n.id) AS reads";

async fn roles_of(store: &Store, id: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = Stmt::new("SELECT role FROM app_notice_roles WHERE notice_id = $1 ORDER BY role")
        .bind(id)
        .query()
        .fetch_all(store.reader())
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("role"))
        .collect()
}

async fn view_of(
    store: &Store,
    tables: &CodeTables,
    r: &sqlx::any::AnyRow,
) -> Result<NoticeView, sqlx::Error> {
    let id: String = r.try_get("id")?;
    let division: String = r.try_get("audience_division")?;
    let roles = if r.try_get::<i64, _>("roles_only")? != 0 {
        roles_of(store, &id).await?
    } else {
        Vec::new()
    };
    Ok(NoticeView {
        audience_name: tables
            .lookup("divisions", &division)
            .map(|e| e.name_zh.clone()),
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        level: r.try_get("level")?,
        audience_division: division,
        roles,
        publish_at: r.try_get("publish_at")?,
        expires_at: r.try_get("expires_at")?,
        status: r.try_get("status")?,
        pushed_at: r.try_get("pushed_at")?,
        reads: r.try_get("reads")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        withdrawn_at: r.try_get("withdrawn_at")?,
        id,
    })
}

/// One notice, any status.
pub async fn get(
    store: &Store,
    tables: &CodeTables,
    id: &str,
) -> Result<Option<NoticeView>, sqlx::Error> {
    let row = Stmt::new(format!(
        "SELECT {VIEW_COLUMNS} FROM app_notices n WHERE n.id = $1"
    ))
    .bind(id)
    .query()
    .fetch_optional(store.reader())
    .await?;
    match row {
        Some(r) => Ok(Some(view_of(store, tables, &r).await?)),
        None => Ok(None),
    }
}

/// Notices for the admin, newest publication first; `status` and `audience` filter.
pub async fn list(
    store: &Store,
    tables: &CodeTables,
    status: Option<&str>,
    audience: Option<&str>,
    limit: u32,
    offset: u32,
) -> Result<Vec<NoticeView>, sqlx::Error> {
    let mut sql = format!("SELECT {VIEW_COLUMNS} FROM app_notices n WHERE 1 = 1");
    let mut args = Vec::new();
    for (column, value) in [("n.status", status), ("n.audience_division", audience)] {
        if let Some(v) = value {
            args.push(v.to_owned());
            sql.push_str(&format!(" AND {column} = ${}", args.len()));
        }
    }
    sql.push_str(&format!(
        " ORDER BY n.publish_at DESC, n.id DESC LIMIT ${} OFFSET ${}",
        args.len() + 1,
        args.len() + 2
    ));
    let mut stmt = Stmt::new(sql);
    for a in args {
        stmt = stmt.bind(a);
    }
    let rows = stmt
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .query()
        .fetch_all(store.reader())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(view_of(store, tables, r).await?);
    }
    Ok(out)
}

/// The condition and arguments of "visible to this staff user at `now`", over `app_notices n`
/// left-joined with the user's `app_notice_reads r`. The first argument is the user id (for the
/// join); the caller appends its own after these.
pub fn visible_to(c: &StaffClaims, now: i64) -> (String, Vec<Value>) {
    let mut args = vec![
        Value::from(c.sub.clone()),
        Value::from(now),
        Value::from(c.org_division.clone()),
    ];
    let mut sql = String::from(
        "n.status = 'active' AND n.publish_at <= $2 AND (n.expires_at IS NULL OR n.expires_at > $2) \
         AND $3 LIKE (n.audience_prefix || '%') AND (n.roles_only = 0",
    );
    let roles: Vec<&String> = c.roles.iter().take(50).collect();
    if !roles.is_empty() {
        let marks: Vec<String> = (0..roles.len())
            .map(|i| format!("${}", args.len() + 1 + i))
            .collect();
        sql.push_str(&format!(
            " OR EXISTS (SELECT 1 FROM app_notice_roles nr WHERE nr.notice_id = n.id AND nr.role IN ({})))",
            marks.join(", ")
        ));
        args.extend(roles.into_iter().map(|r| Value::from(r.clone())));
    } else {
        sql.push(')');
    }
    (sql, args)
}

/// A statement from SQL and JSON-typed arguments (strings and integers).
pub fn stmt_of(sql: String, args: &[Value]) -> Stmt {
    let mut s = Stmt::new(sql);
    for a in args {
        s = match a {
            Value::Number(n) => s.bind(n.as_i64()),
            Value::String(t) => s.bind(t.as_str()),
            other => s.bind(other.to_string()),
        };
    }
    s
}

/// The `notification.requested` messages pushing notice `id` to the staff users the hub knows
/// in its audience (none when it knows nobody there).
pub async fn push_messages(
    store: &Store,
    id: &str,
    n: &Checked,
) -> Result<Vec<Envelope<Value>>, sqlx::Error> {
    let rows = Stmt::new(
        "SELECT user_id, roles FROM app_staff_users WHERE org_division LIKE $1 ORDER BY user_id",
    )
    .bind(format!("{}%", scope_prefix(&n.audience_division)))
    .query()
    .fetch_all(store.reader())
    .await?;
    let mut recipients = Vec::new();
    for r in rows {
        let user: String = r.try_get("user_id")?;
        let held: String = r.try_get("roles")?;
        if n.roles.is_empty() || n.roles.iter().any(|x| held.contains(&format!(",{x},"))) {
            recipients.push(user);
        }
    }
    let Ok(notification_id) = Uuid::parse_str(id) else {
        return Ok(Vec::new());
    };
    let title = match n.level.as_str() {
        "urgent" => format!("【紧急通知】{}", n.title),
        "important" => format!("【重要通知】{}", n.title),
        _ => format!("【通知公告】{}", n.title),
    };
    let body: String = n.body.chars().take(100).collect();
    Ok(recipients
        .chunks(PUSH_CHUNK)
        .map(|chunk| {
            notification_envelope(
                &n.audience_division,
                &NotificationRequest {
                    notification_id,
                    recipients: chunk.to_vec(),
                    title: title.clone(),
                    body: body.clone(),
                },
            )
        })
        .collect())
}

/// Pushes the notices whose publication time has come and that were not pushed yet: each one's
/// messages and its `pushed_at` commit together. Returns how many notices it pushed.
pub async fn push_due(store: &Store, now: i64) -> anyhow::Result<usize> {
    let rows = Stmt::new(
        "SELECT id, title, body, level, audience_division, roles_only, publish_at, expires_at FROM app_notices \
         WHERE status = 'active' AND pushed_at IS NULL AND publish_at <= $1 ORDER BY publish_at LIMIT 100",
    )
    .bind(now)
    .query()
    .fetch_all(store.reader())
    .await?;
    let mut pushed = 0;
    for r in rows {
        let id: String = r.try_get("id")?;
        let roles = if r.try_get::<i64, _>("roles_only")? != 0 {
            roles_of(store, &id).await?
        } else {
            Vec::new()
        };
        let n = Checked {
            title: r.try_get("title")?,
            body: r.try_get("body")?,
            level: r.try_get("level")?,
            audience_division: r.try_get("audience_division")?,
            roles,
            publish_at: r.try_get("publish_at")?,
            expires_at: r.try_get("expires_at")?,
        };
        // An expired notice is marked without a push.
        let publish = if n.due(now) {
            push_messages(store, &id, &n).await?
        } else {
            Vec::new()
        };
        store
            .transact(Txn {
                statements: vec![Stmt::new(
                    "UPDATE app_notices SET pushed_at = $2 WHERE id = $1 AND pushed_at IS NULL",
                )
                .bind(&id)
                .bind(now)],
                publish,
                ..Default::default()
            })
            .await?;
        pushed += 1;
    }
    Ok(pushed)
}

/// Runs [`push_due`] every [`SWEEP_EVERY`] until `stop`.
pub async fn run_sweeper(store: Store, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        match push_due(&store, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(notices = n, "NoticesPushed"),
            Err(e) => tracing::warn!(error = %e, "NoticePushSweepFailed"),
        }
    }
}

/// Staff users already recorded by this process: user id -> `org_division|roles`.
#[derive(Clone, Default)]
pub struct SeenStaff(Arc<Mutex<HashMap<String, String>>>);

/// Records a staff user in `app_staff_users` (the push recipients of notices) the first time
/// this process sees them, or when their division or roles changed. A failure is logged, not
/// answered: the request does not depend on it.
pub async fn note_staff(store: &Store, seen: &SeenStaff, c: &StaffClaims) {
    let roles = if c.roles.is_empty() {
        String::new()
    } else {
        format!(",{},", c.roles.join(","))
    };
    let print = format!("{}|{roles}", c.org_division);
    {
        let map = seen.0.lock().expect("seen staff");
        if map.get(&c.sub) == Some(&print) {
            return;
        }
    }
    let stmt = Stmt::new(
        "INSERT INTO app_staff_users (user_id, org_division, roles, seen_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET org_division = $2, roles = $3, seen_at = $4",
    )
    .bind(&c.sub)
    .bind(&c.org_division)
    .bind(&roles)
    .bind(now_ms());
    match store
        .transact(Txn {
            statements: vec![stmt],
            ..Default::default()
        })
        .await
    {
        Ok(_) => {
            let mut map = seen.0.lock().expect("seen staff");
            if map.len() > 100_000 {
                map.clear();
            }
            map.insert(c.sub.clone(), print);
        }
        Err(e) => tracing::warn!(error = %e, "StaffDirectoryWriteFailed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> NoticeInput {
        NoticeInput {
            title: "关于做好节日期间信访工作的通知".into(),
            body: "各区县（市）信访局：\n请做好值班安排。".into(),
            level: None,
            audience_division: "430100".into(),
            roles: vec![],
            publish_at: None,
            expires_at: None,
        }
    }

    fn codes(r: Result<Checked, Vec<Invalid>>) -> Vec<(String, &'static str)> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn checks_every_field() {
        let t = CodeTables::embedded();
        let now = 1_780_000_000_000;
        let ok = check(&input(), t, now, None).unwrap();
        assert_eq!(ok.level, "normal");
        assert_eq!(ok.publish_at, now);
        let mut i = input();
        i.title = "  ".into();
        i.body = "x".repeat(BODY_MAX + 1);
        i.level = Some("loud".into());
        i.audience_division = "430199".into();
        i.roles = vec!["handler".into(), "handler".into(), "a b".into()];
        i.expires_at = Some(now - 1);
        assert_eq!(
            codes(check(&i, t, now, None)),
            [
                ("title".to_owned(), "required"),
                ("body".to_owned(), "too_long"),
                ("level".to_owned(), "invalid_value"),
                ("audience_division".to_owned(), "unknown_code"),
                ("roles[1]".to_owned(), "duplicate"),
                ("roles[2]".to_owned(), "invalid_format"),
                ("expires_at".to_owned(), "before_publish"),
            ]
        );
        let mut i = input();
        i.audience_division = "4301".into();
        assert_eq!(
            codes(check(&i, t, now, None)),
            [("audience_division".to_owned(), "invalid_format")]
        );
        i.audience_division = "430122".into();
        assert_eq!(
            codes(check(&i, t, now, None)),
            [("audience_division".to_owned(), "retired_code")]
        );
        let mut i = input();
        i.title = "标题\u{7}".into();
        i.publish_at = Some(now - 10_000);
        i.expires_at = Some(now - 5_000);
        assert_eq!(
            codes(check(&i, t, now, None)),
            [
                ("title".to_owned(), "invalid_characters"),
                ("expires_at".to_owned(), "in_past"),
            ]
        );
        // On update, an absent publication time keeps the stored one.
        assert_eq!(
            check(&input(), t, now, Some(now - 7)).unwrap().publish_at,
            now - 7
        );
    }

    #[test]
    fn visibility_condition_lists_the_roles() {
        let c = StaffClaims {
            sub: "u".into(),
            name: "n".into(),
            org: "o".into(),
            org_division: "430102".into(),
            roles: vec!["handler".into(), "leader".into()],
            exp: 0,
        };
        let (sql, args) = visible_to(&c, 5);
        assert!(sql.contains("nr.role IN ($4, $5)"), "{sql}");
        assert_eq!(args.len(), 5);
        let c = StaffClaims { roles: vec![], ..c };
        let (sql, args) = visible_to(&c, 5);
        assert!(sql.ends_with("(n.roles_only = 0)"), "{sql}");
        assert_eq!(args.len(), 3);
    }
}
