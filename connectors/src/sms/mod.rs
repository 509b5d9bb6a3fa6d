//! SMS gateway connector: consumes `sms.requested`, sends through an [`SmsTransport`] (the
//! HTTP gateway of DOMAIN.md §6), records every request and recipient in `sms_messages` /
//! `sms_recipients`, and applies the gateway's delivery reports.
//!
//! ## Exactly one text per recipient
//!
//! The gateway does not de-duplicate, and a send cannot commit with the consumer's ack. So the
//! connector orders its steps (see ARCHITECTURE.md, "SMS connector"):
//!
//! 1. **Intent**: the request and its recipients (`pending`) are stored, durably, before
//!    anything is sent (a repeat of the request id finds them and goes on from there).
//! 2. **Attempt mark**: `attempts + 1` is committed before each gateway call.
//! 3. **Send** with the request id as the gateway's out id.
//! 4. **Outcome**: each number's result (accepted with its biz id, or refused with the reason)
//!    is committed as soon as the gateway answers.
//! 5. **Ack**: the request's final status is the consumer's effect, committed with the ack.
//!
//! A crash between 3 and 4 leaves recipients `pending` with `attempts > 0`: the redelivered
//! request first asks the gateway which numbers it accepted under the out id, records those as
//! accepted, and sends only to the others. A crash between 4 and 5 finds nothing pending and
//! only acks. A delivery report that arrives before step 4 settles its recipient too.

pub mod client;
pub mod config;
pub mod template;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;
use xfhub_routes::{Handler, HandlerError};
use xfhub_schemas::validate::normalize_mobile;
use xfhub_schemas::Envelope;
use xfhub_security::keys::KeyRing;
use xfhub_security::pii::mask_phone;
use xfhub_store::{now_ms, Effect, Stmt, Store, StoreError, Txn};

pub use client::{HttpGateway, PhoneOutcome, SendCall, SmsTransport, TransportError};
pub use config::SmsConfig;

/// The consumer's name and queue.
pub const SMS_QUEUE: &str = "sms";
/// Message type the connector consumes.
pub const SMS_REQUESTED: &str = "sms.requested";

/// Payload of `sms.requested`. Numbers are sealed (`enc:v1:...`): no clear number travels on
/// the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsRequest {
    /// Dedup key of the request; also the gateway's out id.
    pub request_id: Uuid,
    /// Template code (`sms_templates.code`).
    pub template: String,
    /// Values of the template's parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub recipients: Vec<SmsRecipient>,
    /// Why the text is sent (`instant_push`, `alert_urgent`, ...), for the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsRecipient {
    /// The mobile number, sealed with the hub's key ring.
    pub phone: String,
    /// The recipient's role (`responsible_leader`, `handler`, ...), for the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Gives the key ring in force (it can rotate while the hub runs).
pub type RingSource = Arc<dyn Fn() -> Arc<KeyRing> + Send + Sync>;

/// The running SMS connector (not serde: built from [`SmsConfig`]).
pub struct SmsConnector {
    store: Store,
    transport: Arc<dyn SmsTransport>,
    ring: RingSource,
    gateway: DefaultDirectRateLimiter,
    gateway_burst: NonZeroU32,
    per_phone: [DefaultKeyedRateLimiter<String>; 3],
}

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v.max(1)).expect("at least 1")
}

/// A recipient as stored.
#[derive(Debug, Clone)]
struct Stored {
    digest: String,
    sealed: String,
    status: String,
}

/// How a request ended, for its status.
fn final_status(statuses: &[String]) -> &'static str {
    let ok = statuses
        .iter()
        .filter(|s| matches!(s.as_str(), "accepted" | "delivered" | "undelivered"))
        .count();
    if ok == statuses.len() {
        "sent"
    } else if ok == 0 {
        "failed"
    } else {
        "partial"
    }
}

impl SmsConnector {
    /// The connector over `transport` with the limits of `config`.
    pub fn new(
        store: Store,
        transport: Arc<dyn SmsTransport>,
        ring: RingSource,
        config: &SmsConfig,
    ) -> Self {
        let per_day = Quota::with_period(Duration::from_secs(86_400) / config.phone_per_day.max(1))
            .expect("a positive period")
            .allow_burst(nz(config.phone_per_day));
        SmsConnector {
            store,
            transport,
            ring,
            gateway: RateLimiter::direct(
                Quota::per_second(nz(config.gateway_per_sec)).allow_burst(nz(config.gateway_burst)),
            ),
            gateway_burst: nz(config.gateway_burst),
            per_phone: [
                RateLimiter::keyed(Quota::per_minute(nz(config.phone_per_minute))),
                RateLimiter::keyed(Quota::per_hour(nz(config.phone_per_hour))),
                RateLimiter::keyed(per_day),
            ],
        }
    }

    /// Builds the HTTP transport from `config`; None when no gateway is configured.
    pub fn from_config(
        store: Store,
        ring: RingSource,
        config: &SmsConfig,
    ) -> Result<Option<Self>, String> {
        let Some(url) = &config.gateway_url else {
            return Ok(None);
        };
        let gateway = HttpGateway::new(
            url,
            &config.access_key,
            &config.secret(),
            &config.sign_name,
            config.max_numbers_per_call,
            Duration::from_millis(config.timeout_ms),
        )?;
        Ok(Some(SmsConnector::new(
            store,
            Arc::new(gateway),
            ring,
            config,
        )))
    }

    /// Whether one more text to `digest` stays within every per-number limit (counts it).
    fn phone_allowed(&self, digest: &String) -> bool {
        self.per_phone.iter().all(|l| l.check_key(digest).is_ok())
    }

    /// Waits until the gateway-wide limit lets `n` texts go.
    async fn gateway_ready(&self, n: usize) {
        let mut left = n as u32;
        while left > 0 {
            let take = left.min(self.gateway_burst.get());
            // `take` is at most the burst, so the wait always ends.
            let _ = self.gateway.until_n_ready(nz(take)).await;
            left -= take;
        }
    }

    async fn load(&self, id: &str) -> Result<Option<(i64, Vec<Stored>)>, StoreError> {
        let row = Stmt::new("SELECT attempts FROM sms_messages WHERE id = $1")
            .bind(id)
            .query()
            .fetch_optional(self.store.reader())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let attempts: i64 = row.try_get("attempts")?;
        let rows = Stmt::new(
            "SELECT phone_digest, phone_sealed, status FROM sms_recipients WHERE message_id = $1",
        )
        .bind(id)
        .query()
        .fetch_all(self.store.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(Stored {
                digest: r.try_get("phone_digest")?,
                sealed: r.try_get("phone_sealed")?,
                status: r.try_get("status")?,
            });
        }
        Ok(Some((attempts, out)))
    }

    async fn template(&self, code: &str) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let row = Stmt::new("SELECT body, params FROM sms_templates WHERE code = $1")
            .bind(code)
            .query()
            .fetch_optional(self.store.reader())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let params: String = r.try_get("params")?;
                Ok(Some((r.try_get("body")?, serde_json::from_str(&params)?)))
            }
        }
    }

    /// Stores the request and its recipients (step 1). Recipients whose number cannot be
    /// opened or is not a mobile are stored `failed` at once.
    async fn store_intent(
        &self,
        env: &Envelope<Value>,
        req: &SmsRequest,
        ring: &KeyRing,
        refused: Option<(&str, String)>,
    ) -> Result<(), StoreError> {
        let id = req.request_id.to_string();
        let now = now_ms();
        let status = if refused.is_some() {
            "failed"
        } else {
            "sending"
        };
        let mut statements = vec![Stmt::new(
            "INSERT INTO sms_messages (id, template, params, reason, status, attempts, error, \
             correlation_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $8) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(&req.template)
        .bind(serde_json::to_string(&req.params)?)
        .bind(req.reason.clone())
        .bind(status)
        .bind(refused.as_ref().map(|(code, why)| format!("{code}: {why}")))
        .bind(env.correlation_id.to_string())
        .bind(now)];
        for (i, r) in req.recipients.iter().enumerate() {
            let clear = ring.open(&r.phone).ok();
            let normalized = clear.as_deref().and_then(normalize_mobile);
            let (digest, masked, status, code) = match (&clear, &normalized) {
                (_, Some(n)) => (
                    ring.blind_index("mobile", n),
                    mask_phone(n),
                    if refused.is_some() {
                        "failed"
                    } else {
                        "pending"
                    },
                    refused.as_ref().map(|(c, _)| (*c).to_owned()),
                ),
                (Some(c), None) => (
                    ring.blind_index("mobile", c),
                    mask_phone(c),
                    "failed",
                    Some("invalid_number".to_owned()),
                ),
                (None, None) => (
                    format!("unreadable-{i}"),
                    "***".to_owned(),
                    "failed",
                    Some("unreadable_number".to_owned()),
                ),
            };
            let sealed = match &normalized {
                Some(n) => ring.seal(n),
                None => r.phone.clone(),
            };
            statements.push(
                Stmt::new(
                    "INSERT INTO sms_recipients (message_id, phone_digest, phone_sealed, \
                     phone_masked, role, status, error_code, reason) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (message_id, phone_digest) DO NOTHING",
                )
                .bind(&id)
                .bind(digest)
                .bind(sealed)
                .bind(masked)
                .bind(r.role.clone())
                .bind(status)
                .bind(code.clone())
                .bind(code.map(|c| reason_text(&c).to_owned())),
            );
        }
        self.store
            .transact(Txn {
                statements,
                ..Txn::default()
            })
            .await?;
        Ok(())
    }

    async fn commit(&self, statements: Vec<Stmt>) -> Result<(), HandlerError> {
        if statements.is_empty() {
            return Ok(());
        }
        self.store
            .transact(Txn {
                statements,
                ..Txn::default()
            })
            .await
            .map(|_| ())
            .map_err(transient)
    }
}

fn transient(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Transient(e.to_string())
}

/// Staff-facing reason of a failure code (Chinese, with the code beside it in the log).
pub fn reason_text(code: &str) -> &'static str {
    match code {
        "invalid_number" => "号码无效",
        "unreadable_number" => "号码无法解密",
        "business_limit" => "网关业务限流",
        "blacklisted" => "号码在黑名单中",
        "rate_limited" => "超过本号码发送频率上限",
        "unknown_template" => "短信模板不存在",
        "bad_parameters" => "模板参数不符",
        "gateway_rejected" => "网关拒绝发送",
        _ => "发送失败",
    }
}

fn accepted_stmt(id: &str, digest: &str, biz_id: &str, now: i64) -> Stmt {
    Stmt::new(
        "UPDATE sms_recipients SET status = 'accepted', biz_id = $1, sent_at = $2 \
         WHERE message_id = $3 AND phone_digest = $4 AND status = 'pending'",
    )
    .bind(biz_id)
    .bind(now)
    .bind(id)
    .bind(digest)
}

fn failed_stmt(id: &str, digest: &str, code: &str, gateway_code: Option<&str>) -> Stmt {
    let reason = match gateway_code {
        Some(g) => format!("{} ({g})", reason_text(code)),
        None => reason_text(code).to_owned(),
    };
    Stmt::new(
        "UPDATE sms_recipients SET status = 'failed', error_code = $1, reason = $2 \
         WHERE message_id = $3 AND phone_digest = $4 AND status = 'pending'",
    )
    .bind(code)
    .bind(reason)
    .bind(id)
    .bind(digest)
}

#[async_trait]
impl Handler for SmsConnector {
    fn name(&self) -> &str {
        SMS_QUEUE
    }

    async fn handle(
        &self,
        env: &Envelope<Value>,
        attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        let req: SmsRequest = serde_json::from_value(env.payload.clone())
            .map_err(|e| HandlerError::Permanent(format!("not an SMS request: {e}")))?;
        if req.recipients.is_empty() {
            return Err(HandlerError::Permanent(
                "an SMS request without recipients".into(),
            ));
        }
        let id = req.request_id.to_string();
        let ring = (self.ring)();
        let mut state = self.load(&id).await.map_err(transient)?;
        if state.is_none() {
            // Step 1: the intent. A request that can never be sent is recorded with its reason.
            let refused = match self.template(&req.template).await.map_err(transient)? {
                None => Some((
                    "unknown_template",
                    format!("no template `{}`", req.template),
                )),
                Some((body, declared)) => template::render(&body, &declared, &req.params)
                    .err()
                    .map(|errs| {
                        let why: Vec<String> = errs
                            .iter()
                            .map(|e| format!("{}: {}", e.field, e.code))
                            .collect();
                        ("bad_parameters", why.join(", "))
                    }),
            };
            if let Some((code, why)) = &refused {
                tracing::warn!(request_id = %id, code, reason = %why, "SmsRequestRejected");
            }
            self.store_intent(env, &req, &ring, refused)
                .await
                .map_err(transient)?;
            state = self.load(&id).await.map_err(transient)?;
        }
        let (attempts, recipients) = state.ok_or_else(|| transient("the request vanished"))?;
        let mut pending: Vec<(String, String)> = Vec::new(); // (digest, clear number)
        let mut statements = Vec::new();
        for r in recipients.iter().filter(|r| r.status == "pending") {
            match ring.open(&r.sealed) {
                Ok(clear) => pending.push((r.digest.clone(), clear)),
                Err(_) => statements.push(failed_stmt(&id, &r.digest, "unreadable_number", None)),
            }
        }
        let now = now_ms();
        if attempts > 0 && !pending.is_empty() {
            // A call may have reached the gateway before a crash: ask it what it accepted
            // under our out id, and never send those numbers again.
            let known: HashMap<String, String> = self
                .transport
                .accepted(&id)
                .await
                .map_err(|e| transient(format!("gateway query: {e}")))?
                .into_iter()
                .collect();
            pending.retain(|(digest, clear)| match known.get(clear) {
                Some(biz) => {
                    statements.push(accepted_stmt(&id, digest, biz, now));
                    false
                }
                None => true,
            });
            if !statements.is_empty() {
                tracing::info!(request_id = %id, recovered = statements.len(), attempt, "SmsSendRecovered");
            }
        }
        if attempts == 0 {
            // The per-number limits count each request once, on its first attempt.
            pending.retain(|(digest, clear)| {
                let ok = self.phone_allowed(digest);
                if !ok {
                    tracing::warn!(request_id = %id, phone = %mask_phone(clear), "SmsRateLimited");
                    statements.push(failed_stmt(&id, digest, "rate_limited", None));
                    metrics::counter!("xfhub_sms_texts_total", "outcome" => "rate_limited")
                        .increment(1);
                }
                ok
            });
        }
        self.commit(std::mem::take(&mut statements)).await?;
        let mut attempts = attempts;
        for chunk in pending.chunks(self.transport.max_numbers().max(1)) {
            self.gateway_ready(chunk.len()).await;
            // Step 2: the attempt mark, durable before the call.
            attempts += 1;
            self.commit(vec![Stmt::new(
                "UPDATE sms_messages SET attempts = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(attempts)
            .bind(now_ms())
            .bind(&id)])
                .await?;
            let call = SendCall {
                phones: chunk.iter().map(|(_, c)| c.as_str()).collect(),
                template: &req.template,
                params: &req.params,
                out_id: &id,
            };
            // Step 3: the send.
            let outcomes = match self.transport.send(&call).await {
                Ok(o) => o,
                Err(TransportError::Transient(why)) => {
                    tracing::warn!(request_id = %id, error = %why, attempt, "SmsSendError");
                    metrics::counter!("xfhub_sms_calls_total", "outcome" => "transient_error")
                        .increment(1);
                    return Err(HandlerError::Transient(why));
                }
                Err(TransportError::Rejected { code, message }) => {
                    tracing::warn!(request_id = %id, gateway_code = %code, message = %message, "SmsSendRejected");
                    chunk
                        .iter()
                        .map(|_| PhoneOutcome::Rejected {
                            code: "gateway_rejected",
                            gateway_code: code.clone(),
                        })
                        .collect()
                }
            };
            metrics::counter!("xfhub_sms_calls_total", "outcome" => "answered").increment(1);
            // Step 4: the outcome of each number, durable at once.
            let now = now_ms();
            for ((digest, clear), outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    PhoneOutcome::Accepted { biz_id } => {
                        metrics::counter!("xfhub_sms_texts_total", "outcome" => "accepted")
                            .increment(1);
                        statements.push(accepted_stmt(&id, digest, &biz_id, now));
                    }
                    PhoneOutcome::Rejected { code, gateway_code } => {
                        tracing::warn!(request_id = %id, phone = %mask_phone(clear), code, gateway_code = %gateway_code, "SmsTextRefused");
                        metrics::counter!("xfhub_sms_texts_total", "outcome" => code).increment(1);
                        statements.push(failed_stmt(&id, digest, code, Some(&gateway_code)));
                    }
                }
            }
            self.commit(std::mem::take(&mut statements)).await?;
        }
        // Step 5: the request's status, committed with the ack.
        let statuses: Vec<String> = match self.load(&id).await.map_err(transient)? {
            Some((_, rs)) => rs.into_iter().map(|r| r.status).collect(),
            None => Vec::new(),
        };
        if statuses.iter().any(|s| s == "pending") {
            return Err(transient("recipients still pending"));
        }
        let status = final_status(&statuses);
        tracing::info!(request_id = %id, status, recipients = statuses.len(), "SmsRequestSettled");
        Ok(vec![Effect::Sql(
            Stmt::new(
                "UPDATE sms_messages SET status = $1, updated_at = $2 \
                 WHERE id = $3 AND status IN ('sending', 'failed', 'partial', 'sent')",
            )
            .bind(if statuses.is_empty() {
                "failed"
            } else {
                status
            })
            .bind(now_ms())
            .bind(&id),
        )])
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery reports.

/// One delivery report as the gateway pushes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryReport {
    /// The number (clear on the wire, TLS in production; never stored or logged in clear).
    pub phone: String,
    /// `yyyy-MM-dd HH:mm:ss[.SSS]`, UTC+8.
    pub send_time: String,
    /// `yyyy-MM-dd HH:mm:ss[.SSS]`, UTC+8.
    pub report_time: String,
    pub success: bool,
    /// `DELIVERED` or the carrier's error code.
    pub err_code: String,
    pub biz_id: String,
    /// The request id the hub sent as out id.
    pub out_id: String,
}

/// What a batch of reports did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReportOutcome {
    /// Reports that set a recipient's delivery status.
    pub applied: u64,
    /// Repeated or older reports, counted but not applied.
    pub ignored: u64,
    /// Reports naming no known request and number.
    pub unmatched: u64,
}

/// A report field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportError {
    pub index: usize,
    pub field: &'static str,
    pub message: &'static str,
    pub message_zh: &'static str,
}

/// Parses `yyyy-MM-dd HH:mm:ss[.SSS]` in UTC+8 to ms since the epoch.
pub fn parse_report_time(s: &str) -> Option<i64> {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let tz = chrono::FixedOffset::east_opt(8 * 3600)?;
    Some(t.and_local_timezone(tz).single()?.timestamp_millis())
}

/// Checks every report before any is applied.
pub fn check_reports(reports: &[DeliveryReport]) -> Result<(), Vec<ReportError>> {
    let mut errors = Vec::new();
    for (index, r) in reports.iter().enumerate() {
        let mut e = |field, message, message_zh| {
            errors.push(ReportError {
                index,
                field,
                message,
                message_zh,
            })
        };
        if Uuid::parse_str(&r.out_id).is_err() {
            e(
                "out_id",
                "not a request id of this hub",
                "不是本系统的短信请求编号",
            );
        }
        if normalize_mobile(&r.phone).is_none() {
            e("phone", "not a mobile number", "不是有效的手机号码");
        }
        if parse_report_time(&r.report_time).is_none() {
            e(
                "report_time",
                "not yyyy-MM-dd HH:mm:ss",
                "时间格式应为 yyyy-MM-dd HH:mm:ss",
            );
        }
        if parse_report_time(&r.send_time).is_none() {
            e(
                "send_time",
                "not yyyy-MM-dd HH:mm:ss",
                "时间格式应为 yyyy-MM-dd HH:mm:ss",
            );
        }
        if r.err_code.len() > 64 || r.biz_id.len() > 128 {
            e("err_code", "too long", "过长");
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Applies checked reports in one transaction. A report newer than the recipient's last one
/// sets its status (`delivered` / `undelivered`); a repeat or an older one only counts; so
/// reports arriving twice or out of order leave the latest status.
pub async fn apply_reports(
    store: &Store,
    ring: &KeyRing,
    reports: &[DeliveryReport],
) -> Result<ReportOutcome, StoreError> {
    let mut statements = Vec::with_capacity(reports.len() * 2);
    for r in reports {
        let phone = normalize_mobile(&r.phone).unwrap_or_default();
        let digest = ring.blind_index("mobile", &phone);
        let at = parse_report_time(&r.report_time).unwrap_or_default();
        let status = if r.success {
            "delivered"
        } else {
            "undelivered"
        };
        // Older or equal: counted only. Runs first, so that the update below does not make
        // a fresh report look like a repeat.
        statements.push(
            Stmt::new(
                "UPDATE sms_recipients SET reports = reports + 1 WHERE message_id = $1 \
                 AND phone_digest = $2 AND report_at IS NOT NULL AND report_at >= $3",
            )
            .bind(&r.out_id)
            .bind(digest.clone())
            .bind(at),
        );
        statements.push(
            Stmt::new(
                "UPDATE sms_recipients SET status = $1, error_code = $2, report_at = $3, \
                 reports = reports + 1, biz_id = COALESCE(biz_id, $4), \
                 sent_at = COALESCE(sent_at, $5) \
                 WHERE message_id = $6 AND phone_digest = $7 \
                 AND (report_at IS NULL OR report_at < $3)",
            )
            .bind(status)
            .bind(&r.err_code)
            .bind(at)
            .bind(&r.biz_id)
            .bind(parse_report_time(&r.send_time))
            .bind(&r.out_id)
            .bind(digest),
        );
    }
    let outcome = store
        .transact(Txn {
            statements,
            ..Txn::default()
        })
        .await?;
    let mut out = ReportOutcome::default();
    for (r, pair) in reports.iter().zip(outcome.rows_affected.chunks(2)) {
        match pair {
            [0, 0] => {
                out.unmatched += 1;
                tracing::warn!(out_id = %r.out_id, phone = %mask_phone(&r.phone), "SmsReportUnmatched");
            }
            [_, 0] => out.ignored += 1,
            _ => out.applied += 1,
        }
    }
    metrics::counter!("xfhub_sms_reports_total", "outcome" => "applied").increment(out.applied);
    metrics::counter!("xfhub_sms_reports_total", "outcome" => "ignored").increment(out.ignored);
    metrics::counter!("xfhub_sms_reports_total", "outcome" => "unmatched").increment(out.unmatched);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reads: status of one request, the SMS log.

/// A recipient of a request, number masked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecipientView {
    /// Masked number, `138****5678`.
    pub phone: String,
    pub role: Option<String>,
    /// `pending`, `accepted`, `delivered`, `undelivered`, `failed`.
    pub status: String,
    pub error_code: Option<String>,
    /// Staff-facing reason (Chinese).
    pub reason: Option<String>,
    pub biz_id: Option<String>,
    /// Accepted by the gateway at (ms).
    pub sent_at: Option<i64>,
    /// Time of the latest delivery report (ms).
    pub report_at: Option<i64>,
    /// Delivery reports received (repeats included).
    pub reports: i64,
}

/// One SMS request with its recipients.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SmsView {
    pub id: String,
    pub template: String,
    pub reason: Option<String>,
    /// `sending`, `sent`, `partial`, `failed`.
    pub status: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub recipients: Vec<RecipientView>,
}

fn view_of(r: &sqlx::any::AnyRow) -> Result<SmsView, sqlx::Error> {
    Ok(SmsView {
        id: r.try_get("id")?,
        template: r.try_get("template")?,
        reason: r.try_get("reason")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        recipients: Vec::new(),
    })
}

async fn recipients_of(store: &Store, id: &str) -> Result<Vec<RecipientView>, StoreError> {
    let rows = Stmt::new(
        "SELECT phone_masked, role, status, error_code, reason, biz_id, sent_at, report_at, reports \
         FROM sms_recipients WHERE message_id = $1 ORDER BY phone_masked",
    )
    .bind(id)
    .query()
    .fetch_all(store.reader())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(RecipientView {
            phone: r.try_get("phone_masked")?,
            role: r.try_get("role")?,
            status: r.try_get("status")?,
            error_code: r.try_get("error_code")?,
            reason: r.try_get("reason")?,
            biz_id: r.try_get("biz_id")?,
            sent_at: r.try_get("sent_at")?,
            report_at: r.try_get("report_at")?,
            reports: r.try_get("reports")?,
        });
    }
    Ok(out)
}

const VIEW_COLUMNS: &str =
    "id, template, reason, status, attempts, error, created_at, updated_at FROM sms_messages";

/// One request by id.
pub async fn get_sms(store: &Store, id: &str) -> Result<Option<SmsView>, StoreError> {
    let row = Stmt::new(format!("SELECT {VIEW_COLUMNS} WHERE id = $1"))
        .bind(id)
        .query()
        .fetch_optional(store.reader())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut view = view_of(&row)?;
    view.recipients = recipients_of(store, id).await?;
    Ok(Some(view))
}

/// The SMS log, newest first: at most `limit` requests created before `before` (ms).
pub async fn sms_log(store: &Store, before: i64, limit: u32) -> Result<Vec<SmsView>, StoreError> {
    let rows = Stmt::new(format!(
        "SELECT {VIEW_COLUMNS} WHERE created_at < $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(before)
    .bind(i64::from(limit))
    .query()
    .fetch_all(store.reader())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut v = view_of(r)?;
        v.recipients = recipients_of(store, &v.id).await?;
        out.push(v);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Templates.

/// A stored template.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SmsTemplate {
    /// Template code (lowercase letters, digits, _), as registered with the gateway.
    pub code: String,
    /// Staff-facing name.
    pub name: String,
    /// Chinese text with `${param}` placeholders.
    pub body: String,
    /// Declared parameter names.
    pub params: Vec<String>,
    #[serde(default)]
    pub updated_at: i64,
}

/// Every template, by code.
pub async fn list_templates(store: &Store) -> Result<Vec<SmsTemplate>, StoreError> {
    let rows =
        Stmt::new("SELECT code, name, body, params, updated_at FROM sms_templates ORDER BY code")
            .query()
            .fetch_all(store.reader())
            .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let params: String = r.try_get("params")?;
        out.push(SmsTemplate {
            code: r.try_get("code")?,
            name: r.try_get("name")?,
            body: r.try_get("body")?,
            params: serde_json::from_str(&params)?,
            updated_at: r.try_get("updated_at")?,
        });
    }
    Ok(out)
}

/// Insert (`create`) or replace a checked template; the statement for a [`Txn`].
pub fn upsert_template_stmt(t: &SmsTemplate, create: bool) -> Stmt {
    let params = serde_json::to_string(&t.params).unwrap_or_else(|_| "[]".into());
    if create {
        Stmt::new(
            "INSERT INTO sms_templates (code, name, body, params, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (code) DO NOTHING",
        )
        .bind(&t.code)
        .bind(&t.name)
        .bind(&t.body)
        .bind(params)
        .bind(now_ms())
    } else {
        Stmt::new(
            "UPDATE sms_templates SET name = $1, body = $2, params = $3, updated_at = $4 \
             WHERE code = $5",
        )
        .bind(&t.name)
        .bind(&t.body)
        .bind(params)
        .bind(now_ms())
        .bind(&t.code)
    }
}
