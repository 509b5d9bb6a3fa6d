//! Joint dispatch module (5.1.5.3.1), consuming `petition.received`:
//!
//! - **duplicate check** (判重): earlier petitions of the same person (identity number or mobile,
//!   found through the blind index `pii_index`, never the clear value) about the same matter
//!   (same division, purpose and content class, and a summary whose character n-gram Dice
//!   similarity reaches the threshold) are stored as candidates with their scores;
//! - **auto-assignment**: the first rule (division-specific before any-division, longer
//!   content-class prefix first, then priority) names the responsible unit: `petition.assigned`;
//! - **instant push**: on assignment, `sms.requested` to the unit's responsible leaders
//!   (transfer at once) and direct handlers (contact the petitioner within 3 hours).
//!
//! All of it is returned as effects, committed with the ack.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;
use xfhub_routes::{Handler, HandlerError};
use xfhub_schemas::{Envelope, Petition, Record};
use xfhub_store::{Effect, Stmt, Store, StoreError};

use crate::alerts::{clip, invalid, recipients, Invalid};
use crate::messages::{sms_envelope, PetitionAssigned, SmsRequested, PETITION_ASSIGNED};
use crate::text::similarity;

pub const DISPATCH_QUEUE: &str = "dispatch";

/// `[dispatch]`: settings of the dispatch module.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Summaries at least this similar (Dice coefficient of character n-grams, 0 to 1) are the
    /// same matter.
    pub similarity_threshold: f64,
    /// Length of the character n-grams compared.
    pub ngram: usize,
    /// Most earlier petitions of the same person compared, newest first.
    pub max_compared: u32,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            similarity_threshold: 0.5,
            ngram: 2,
            max_compared: 200,
        }
    }
}

impl DispatchConfig {
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut e = Vec::new();
        if !(self.similarity_threshold > 0.0 && self.similarity_threshold <= 1.0) {
            e.push("dispatch.similarity_threshold: must be above 0 and at most 1".to_owned());
        }
        if !(1..=5).contains(&self.ngram) {
            e.push("dispatch.ngram: must be between 1 and 5".to_owned());
        }
        if !(1..=10_000).contains(&self.max_compared) {
            e.push("dispatch.max_compared: must be between 1 and 10000".to_owned());
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

/// An auto-assignment rule.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRule {
    /// Set by the hub.
    #[serde(default)]
    pub id: String,
    /// Content-class code prefix: `03` (a first level), `0301`, or a full 6-digit class.
    pub content_class_prefix: String,
    /// Division code the rule is limited to; absent: every division.
    #[serde(default)]
    pub division: Option<String>,
    /// Responsible unit (matches role holders' `org`).
    pub unit: String,
    /// Among rules of equal specificity, the higher wins.
    #[serde(default)]
    pub priority: i64,
}

/// Checks a rule; every error at once.
pub fn check_rule(r: &AssignmentRule) -> Result<(), Vec<Invalid>> {
    let mut e = Vec::new();
    let p = &r.content_class_prefix;
    if p.is_empty() || p.len() > 6 || p.len() % 2 != 0 || !p.bytes().all(|b| b.is_ascii_digit()) {
        e.push(invalid(
            "content_class_prefix",
            "invalid",
            "2, 4 or 6 digits (one to three levels of the content class)",
            "内容分类前缀须为 2、4 或 6 位数字",
        ));
    }
    if r.division
        .as_ref()
        .is_some_and(|d| d.len() != 6 || !d.bytes().all(|b| b.is_ascii_digit()))
    {
        e.push(invalid(
            "division",
            "invalid",
            "a 6-digit division code",
            "问题属地须为 6 位行政区划代码",
        ));
    }
    if r.unit.trim().is_empty() || r.unit.chars().count() > 100 {
        e.push(invalid(
            "unit",
            "invalid",
            "1 to 100 characters",
            "责任单位须为 1 到 100 个字符",
        ));
    }
    if e.is_empty() {
        Ok(())
    } else {
        Err(e)
    }
}

pub fn put_rule_stmt(r: &AssignmentRule) -> Stmt {
    Stmt::new(
        "INSERT INTO assignment_rules (id, content_class_prefix, division, unit, priority, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET content_class_prefix = $2, \
         division = $3, unit = $4, priority = $5, updated_at = $6",
    )
    .bind(&r.id)
    .bind(&r.content_class_prefix)
    .bind(r.division.clone())
    .bind(r.unit.trim())
    .bind(r.priority)
    .bind(xfhub_store::now_ms())
}

pub async fn list_rules(store: &Store) -> Result<Vec<AssignmentRule>, StoreError> {
    let rows = Stmt::new(
        "SELECT id, content_class_prefix, division, unit, priority FROM assignment_rules ORDER BY id",
    )
    .query()
    .fetch_all(store.reader())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(AssignmentRule {
            id: r.try_get("id")?,
            content_class_prefix: r.try_get("content_class_prefix")?,
            division: r.try_get("division")?,
            unit: r.try_get("unit")?,
            priority: r.try_get("priority")?,
        });
    }
    Ok(out)
}

/// The rule for a petition of `division` and `content_class`, if any.
pub fn choose<'a>(
    rules: &'a [AssignmentRule],
    division: &str,
    content_class: &str,
) -> Option<&'a AssignmentRule> {
    rules
        .iter()
        .filter(|r| content_class.starts_with(&r.content_class_prefix))
        .filter(|r| r.division.as_deref().is_none_or(|d| d == division))
        .max_by_key(|r| {
            (
                r.division.is_some(),
                r.content_class_prefix.len(),
                r.priority,
                std::cmp::Reverse(r.id.clone()),
            )
        })
}

/// A duplicate candidate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DuplicateCandidate {
    pub record_id: String,
    /// The earlier petition.
    pub candidate_id: String,
    /// Summary similarity, 0 to 1.
    pub score: f64,
    /// What identified the same person: `id_number`, `mobile` (comma-separated).
    pub matched_on: String,
    pub detected_at: i64,
}

/// Candidates of one petition (best first), or every recent candidate.
pub async fn list_duplicates(
    store: &Store,
    record_id: Option<&str>,
    limit: u32,
) -> Result<Vec<DuplicateCandidate>, StoreError> {
    let stmt = match record_id {
        Some(id) => Stmt::new(
            "SELECT record_id, candidate_id, score, matched_on, detected_at FROM duplicate_candidates \
             WHERE record_id = $1 ORDER BY score DESC, candidate_id LIMIT $2",
        )
        .bind(id),
        None => Stmt::new(
            "SELECT record_id, candidate_id, score, matched_on, detected_at FROM duplicate_candidates \
             ORDER BY detected_at DESC, record_id, score DESC LIMIT $1",
        ),
    };
    let rows = stmt
        .bind(i64::from(limit))
        .query()
        .fetch_all(store.reader())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(DuplicateCandidate {
            record_id: r.try_get("record_id")?,
            candidate_id: r.try_get("candidate_id")?,
            score: r.try_get("score")?,
            matched_on: r.try_get("matched_on")?,
            detected_at: r.try_get("detected_at")?,
        });
    }
    Ok(out)
}

/// The dispatch module.
pub struct DispatchModule {
    store: Store,
    config: DispatchConfig,
}

fn transient(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(e.to_string())
}

impl DispatchModule {
    pub fn new(store: Store, config: DispatchConfig) -> Self {
        DispatchModule { store, config }
    }

    /// Duplicate candidates of `record` as effects.
    async fn duplicates(&self, record: &Record<Petition>) -> Result<Vec<Effect>, HandlerError> {
        let id = record.id.to_string();
        let p = &record.data;
        let rows = Stmt::new(
            "SELECT r.id AS id, r.body AS body, p.field AS field FROM pii_index me \
             JOIN pii_index p ON p.field = me.field AND p.digest = me.digest AND p.record_id <> me.record_id \
             JOIN records r ON r.id = p.record_id \
             WHERE me.record_id = $1 AND r.kind = 'petition' AND r.division = $2 AND r.purpose = $3 \
             AND r.content_class = $4 ORDER BY r.received_at DESC LIMIT $5",
        )
        .bind(&id)
        .bind(&p.appeal.division)
        .bind(&p.appeal.purpose)
        .bind(&p.appeal.content_class)
        .bind(i64::from(self.config.max_compared))
        .query()
        .fetch_all(self.store.reader())
        .await
        .map_err(transient)?;
        // One candidate per earlier petition, with every field that matched.
        let mut by_id: std::collections::BTreeMap<String, (String, BTreeSet<String>)> =
            Default::default();
        for r in rows {
            let cid: String = r.try_get("id").map_err(transient)?;
            let body: String = r.try_get("body").map_err(transient)?;
            let field: String = r.try_get("field").map_err(transient)?;
            by_id
                .entry(cid)
                .or_insert_with(|| (body, BTreeSet::new()))
                .1
                .insert(field);
        }
        let now = xfhub_store::now_ms();
        let mut effects = Vec::new();
        for (cid, (body, fields)) in by_id {
            let summary = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["appeal"]["summary"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let score = similarity(&p.appeal.summary, &summary, self.config.ngram);
            if score < self.config.similarity_threshold {
                continue;
            }
            let matched_on = fields.into_iter().collect::<Vec<_>>().join(",");
            effects.push(Effect::Sql(
                Stmt::new(
                    "INSERT INTO duplicate_candidates (record_id, candidate_id, score, matched_on, detected_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (record_id, candidate_id) DO NOTHING",
                )
                .bind(&id)
                .bind(cid)
                .bind((score * 1000.0).round() / 1000.0)
                .bind(matched_on)
                .bind(now),
            ));
        }
        if !effects.is_empty() {
            metrics::counter!("xfhub_duplicate_candidates_total").increment(effects.len() as u64);
        }
        Ok(effects)
    }

    /// Assignment and instant push as effects.
    async fn assign(
        &self,
        env: &Envelope<Value>,
        record: &Record<Petition>,
    ) -> Result<Vec<Effect>, HandlerError> {
        let p = &record.data;
        let rules = list_rules(&self.store).await.map_err(transient)?;
        let Some(rule) = choose(&rules, &p.appeal.division, &p.appeal.content_class) else {
            tracing::debug!(record_id = %record.id, "DispatchNoRule");
            return Ok(Vec::new());
        };
        let id = record.id.to_string();
        let assigned = PetitionAssigned {
            record_id: record.id,
            source_id: p.source.id.clone(),
            unit: rule.unit.clone(),
            rule_id: rule.id.clone(),
        };
        let msg = Envelope::caused_by(
            env,
            PETITION_ASSIGNED,
            serde_json::to_value(&assigned).expect("serializes"),
        );
        let mut effects = vec![
            Effect::Sql(
                Stmt::new(
                    "INSERT INTO assignments (record_id, unit, rule_id, message_id, assigned_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (record_id) DO NOTHING",
                )
                .bind(&id)
                .bind(&rule.unit)
                .bind(&rule.id)
                .bind(msg.message_id.to_string())
                .bind(xfhub_store::now_ms()),
            ),
            Effect::Publish(msg),
        ];
        // Instant push: one request per template, each to every holder of its role.
        let summary = clip(&p.appeal.summary);
        for (role, template) in [
            ("responsible_leader", "instant_push_leader"),
            ("handler", "instant_push_handler"),
        ] {
            let to = recipients(&self.store, &rule.unit, &[role])
                .await
                .map_err(transient)?;
            if to.is_empty() {
                tracing::warn!(unit = %rule.unit, role, "DispatchNoRecipients");
                continue;
            }
            let mut params = std::collections::BTreeMap::new();
            params.insert("case_no".to_owned(), clip(&p.source.id));
            params.insert("summary".to_owned(), summary.clone());
            if template == "instant_push_leader" {
                params.insert("unit".to_owned(), clip(&rule.unit));
            }
            let req = SmsRequested {
                request_id: Uuid::now_v7(),
                template: template.to_owned(),
                params,
                recipients: to,
                reason: Some("instant_push".into()),
            };
            effects.push(Effect::Publish(sms_envelope(
                Some(env),
                &env.division,
                &req,
            )));
        }
        metrics::counter!("xfhub_petitions_assigned_total").increment(1);
        Ok(effects)
    }
}

#[async_trait]
impl Handler for DispatchModule {
    fn name(&self) -> &str {
        DISPATCH_QUEUE
    }

    async fn handle(
        &self,
        env: &Envelope<Value>,
        _attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        if env.message_type != "petition.received" {
            return Ok(Vec::new());
        }
        let record: Record<Petition> = serde_json::from_value(env.payload.clone())
            .map_err(|e| HandlerError::Permanent(format!("not a petition record: {e}")))?;
        let mut effects = self.duplicates(&record).await?;
        effects.extend(self.assign(env, &record).await?);
        Ok(effects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, prefix: &str, division: Option<&str>, priority: i64) -> AssignmentRule {
        AssignmentRule {
            id: id.into(),
            content_class_prefix: prefix.into(),
            division: division.map(Into::into),
            unit: format!("unit-{id}"),
            priority,
        }
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let rules = vec![
            rule("a", "03", None, 0),
            rule("b", "0301", None, 0),
            rule("c", "03", Some("430102"), 0),
            rule("d", "0301", None, 5),
        ];
        assert_eq!(choose(&rules, "430102", "030101").unwrap().id, "c");
        assert_eq!(choose(&rules, "430104", "030101").unwrap().id, "d");
        assert_eq!(choose(&rules, "430104", "039901").unwrap().id, "a");
        assert!(choose(&rules, "430104", "040101").is_none());
    }

    #[test]
    fn rules_are_checked() {
        let bad = AssignmentRule {
            id: String::new(),
            content_class_prefix: "3a".into(),
            division: Some("43".into()),
            unit: " ".into(),
            priority: 0,
        };
        let fields: Vec<String> = check_rule(&bad)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["content_class_prefix", "division", "unit"]);
        assert!(check_rule(&rule("x", "0301", Some("430102"), 0)).is_ok());
    }
}
