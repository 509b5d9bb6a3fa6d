//! Write-back of a handling result (办理结果回写, SOAP `WriteBackHandling`): a responsible unit
//! reports that it accepted, transferred, replied to or concluded a petition. The result becomes
//! a canonical [`ProcessEvent`] and the petition's handling block is brought up to date.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use xfhub_schemas::{FieldError, Petition, ProcessEvent, ProcessEventKind};

/// What a responsible unit writes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlingResult {
    /// Hub id of the petition.
    pub petition_id: Uuid,
    /// `accepted` | `transferred` | `replied` | `concluded`
    pub result: String,
    /// The responsible unit (责任单位) writing back.
    pub unit: String,
    /// Handling opinion or reply text.
    pub text: String,
    pub occurred_at: DateTime<FixedOffset>,
    /// The unit the case moves to; required for `transferred`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_org: Option<String>,
}

/// Longest text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// How far in the future (clock skew) a result's time may be.
const FUTURE_SKEW_SECS: i64 = 300;

fn err(path: &str, code: &str, en: &str, zh: &str) -> FieldError {
    FieldError {
        path: path.to_owned(),
        code: code.to_owned(),
        message: en.to_owned(),
        message_zh: zh.to_owned(),
    }
}

/// Checks `r` against the petition it concerns and returns the process event it becomes, with
/// the petition's handling block updated; every problem at once.
pub fn apply(
    petition: &mut Petition,
    r: &HandlingResult,
    now: DateTime<Utc>,
) -> Result<ProcessEvent, Vec<FieldError>> {
    let mut errors = Vec::new();
    let kind = match r.result.as_str() {
        "accepted" => Some(ProcessEventKind::Accepted),
        "transferred" => Some(ProcessEventKind::Transferred),
        "replied" => Some(ProcessEventKind::Replied),
        "concluded" => Some(ProcessEventKind::Concluded),
        _ => {
            errors.push(err(
                "result",
                "invalid_result",
                "must be accepted, transferred, replied or concluded",
                "办理结果应为 accepted、transferred、replied 或 concluded",
            ));
            None
        }
    };
    let unit = r.unit.trim();
    if unit.is_empty() {
        errors.push(err(
            "unit",
            "required",
            "the responsible unit is required",
            "责任单位不能为空",
        ));
    }
    let text = r.text.trim();
    if text.is_empty() {
        errors.push(err(
            "text",
            "required",
            "the handling text is required",
            "办理意见不能为空",
        ));
    } else if text.chars().count() > MAX_TEXT_CHARS {
        errors.push(err(
            "text",
            "too_long",
            "at most 4000 characters",
            "办理意见不能超过 4000 个字符",
        ));
    }
    let target = r
        .target_org
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if kind == Some(ProcessEventKind::Transferred) && target.is_none() {
        errors.push(err(
            "target_org",
            "required",
            "a transfer names the unit the case moves to",
            "转送时必须填写接收单位",
        ));
    }
    if r.occurred_at.with_timezone(&Utc) > now + chrono::Duration::seconds(FUTURE_SKEW_SECS) {
        errors.push(err(
            "occurred_at",
            "in_future",
            "lies in the future",
            "时间晚于当前时间",
        ));
    }
    if r.occurred_at < petition.acceptance.registered_at {
        errors.push(err(
            "occurred_at",
            "before_registration",
            "is before the petition was registered",
            "早于信访件登记时间",
        ));
    }
    if petition.handling.concluded && kind != Some(ProcessEventKind::Concluded) {
        errors.push(err(
            "result",
            "petition_concluded",
            "the petition is concluded; only a conclusion can be written back again",
            "该信访件已办结，不能再回写其他办理结果",
        ));
    }
    let Some(kind) = kind.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let h = &mut petition.handling;
    match kind {
        ProcessEventKind::Accepted => {
            h.accepted_at.get_or_insert(r.occurred_at);
            h.responsible_unit = Some(unit.to_owned());
        }
        ProcessEventKind::Transferred => {
            h.responsible_unit = target.map(str::to_owned);
        }
        ProcessEventKind::Replied => {
            h.replied_at = Some(r.occurred_at);
            h.responsible_unit.get_or_insert_with(|| unit.to_owned());
        }
        _ => {
            h.replied_at.get_or_insert(r.occurred_at);
            h.concluded = true;
        }
    }
    Ok(ProcessEvent {
        petition_source: petition.source.clone(),
        kind,
        occurred_at: r.occurred_at,
        org: Some(unit.to_owned()),
        target_org: target.map(str::to_owned),
        note: Some(text.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfhub_schemas::sample_petition;

    fn result(kind: &str, at: &str) -> HandlingResult {
        HandlingResult {
            petition_id: Uuid::nil(),
            result: kind.to_owned(),
            unit: "芙蓉区住建局".to_owned(),
            text: "已联系信访人，正在核查".to_owned(),
            occurred_at: DateTime::parse_from_rfc3339(at).expect("time"),
            target_org: None,
        }
    }

    fn codes(e: Vec<FieldError>) -> Vec<(String, String)> {
        e.into_iter().map(|e| (e.path, e.code)).collect()
    }

    #[test]
    fn results_update_handling() {
        let mut p = sample_petition(1);
        p.handling = Default::default();
        let reg = p.acceptance.registered_at;
        let later = (reg + chrono::Duration::days(1)).to_rfc3339();
        let now = Utc::now();
        let ev = apply(&mut p, &result("accepted", &later), now).expect("accepted");
        assert_eq!(ev.kind, ProcessEventKind::Accepted);
        assert_eq!(p.handling.responsible_unit.as_deref(), Some("芙蓉区住建局"));
        let mut t = result("transferred", &later);
        t.target_org = Some("天心区信访局".to_owned());
        apply(&mut p, &t, now).expect("transferred");
        assert_eq!(p.handling.responsible_unit.as_deref(), Some("天心区信访局"));
        apply(&mut p, &result("replied", &later), now).expect("replied");
        assert!(p.handling.replied_at.is_some());
        apply(&mut p, &result("concluded", &later), now).expect("concluded");
        assert!(p.handling.concluded);
        let e = apply(&mut p, &result("accepted", &later), now).expect_err("concluded");
        assert_eq!(codes(e), [("result".into(), "petition_concluded".into())]);
    }

    #[test]
    fn every_problem_is_reported() {
        let mut p = sample_petition(2);
        p.handling = Default::default();
        let mut r = result("transferred", "2000-01-01T00:00:00+08:00");
        r.unit = " ".into();
        r.text = String::new();
        let e = apply(&mut p, &r, Utc::now()).expect_err("invalid");
        assert_eq!(
            codes(e),
            [
                ("unit".into(), "required".into()),
                ("text".into(), "required".into()),
                ("target_org".into(), "required".into()),
                ("occurred_at".into(), "before_registration".into()),
            ]
        );
        let e = apply(
            &mut p,
            &result("lost", "2999-01-01T00:00:00+08:00"),
            Utc::now(),
        )
        .expect_err("invalid");
        assert_eq!(
            codes(e),
            [
                ("result".into(), "invalid_result".into()),
                ("occurred_at".into(), "in_future".into()),
            ]
        );
    }
}
