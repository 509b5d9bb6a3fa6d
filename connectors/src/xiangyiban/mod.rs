//! Xiangyiban (湘易办) push connector: consumes `notification.requested` and delivers each
//! recipient's message to the app's message service over HTTP.
//!
//! - **De-duplication**: each (notification, recipient) has a message key
//!   `<notification_id>:<user_id>`, sent as the service's `message_id` (the service keeps one
//!   message per id) and stored in `app_push`. A redelivered notification skips recipients
//!   already `delivered`; a crash between the service's acceptance and the store's record sends
//!   the same key again, which the service does not deliver twice.
//! - **Retries**: a 5xx, a timeout or a refused connection is transient: the handler records
//!   the attempt (`retrying`, attempts, last error) and asks the runtime to retry with backoff;
//!   after the bus's `max_attempts` the message is dead-lettered and the rows say `failed`.
//!   A 4xx is permanent for that recipient (`failed`, not retried).
//! - **Delivery status** per recipient in `app_push` (migration 0009), read by the staff API's
//!   "my messages".

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;
use xfhub_routes::{Handler, HandlerError};
use xfhub_schemas::Envelope;
use xfhub_store::{now_ms, Effect, Stmt, Store, Txn};

/// The consumer's name and queue.
pub const PUSH_QUEUE: &str = "app_push";
/// Message type the connector consumes.
pub const NOTIFICATION_REQUESTED: &str = "notification.requested";

/// `[app.push]`: where the app message service is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Base URL of the app message service (`POST <url>/api/messages`). Without it the
    /// consumer does not run and notifications wait in their durable queue.
    pub url: Option<String>,
    /// Bearer token of the service.
    pub token: String,
    /// Timeout of one call, ms (default 5000).
    pub timeout_ms: Option<u64>,
}

/// Payload of `notification.requested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRequest {
    /// Dedup key of the notification.
    pub notification_id: Uuid,
    /// App user ids (staff `sub` or public account ids).
    pub recipients: Vec<String>,
    pub title: String,
    pub body: String,
}

/// A `notification.requested` envelope.
pub fn notification_envelope(division: &str, n: &NotificationRequest) -> Envelope<Value> {
    Envelope::new(
        NOTIFICATION_REQUESTED,
        "xfhub",
        division,
        serde_json::to_value(n).expect("a notification serializes"),
    )
}

/// The running push connector.
pub struct PushConnector {
    store: Store,
    http: reqwest::Client,
    url: String,
    token: String,
    max_attempts: i64,
}

enum Sent {
    Delivered,
    Transient(String),
    Permanent(String),
}

impl PushConnector {
    /// `None` when no URL is configured. `max_attempts` is the bus's delivery limit (the
    /// attempt that reaches it marks its rows `failed`).
    pub fn new(store: Store, config: &PushConfig, max_attempts: i64) -> Option<PushConnector> {
        let url = config.url.clone()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms.unwrap_or(5000)))
            .build()
            .ok()?;
        Some(PushConnector {
            store,
            http,
            url: url.trim_end_matches('/').to_owned(),
            token: config.token.clone(),
            max_attempts,
        })
    }

    async fn send(&self, key: &str, user: &str, n: &NotificationRequest) -> Sent {
        let body = json!({"message_id": key, "user_id": user, "title": n.title, "body": n.body});
        let resp = self
            .http
            .post(format!("{}/api/messages", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => Sent::Delivered,
            Ok(r) if r.status().is_client_error() => {
                Sent::Permanent(format!("the service answered {}", r.status()))
            }
            Ok(r) => Sent::Transient(format!("the service answered {}", r.status())),
            Err(e) => Sent::Transient(format!("call failed: {e}")),
        }
    }

    async fn status_of(&self, key: &str) -> Result<Option<String>, HandlerError> {
        let row = Stmt::new("SELECT status FROM app_push WHERE message_key = $1")
            .bind(key)
            .query()
            .fetch_optional(self.store.reader())
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        row.map(|r| r.try_get::<String, _>("status"))
            .transpose()
            .map_err(|e| HandlerError::Transient(e.to_string()))
    }
}

fn record(
    key: &str,
    n: &NotificationRequest,
    user: &str,
    status: &str,
    attempt: i64,
    error: Option<String>,
) -> Stmt {
    let now = now_ms();
    let delivered = (status == "delivered").then_some(now);
    Stmt::new(
        "INSERT INTO app_push (message_key, notification_id, user_id, title, body, status, attempts, last_error, created_at, updated_at, delivered_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) \
         ON CONFLICT (message_key) DO UPDATE SET status = $6, attempts = $7, last_error = $8, updated_at = $9, delivered_at = $10",
    )
    .bind(key)
    .bind(n.notification_id.to_string())
    .bind(user)
    .bind(&n.title)
    .bind(&n.body)
    .bind(status)
    .bind(attempt)
    .bind(error)
    .bind(now)
    .bind(delivered)
}

#[async_trait]
impl Handler for PushConnector {
    fn name(&self) -> &str {
        PUSH_QUEUE
    }

    async fn handle(
        &self,
        envelope: &Envelope<Value>,
        attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        if envelope.message_type != NOTIFICATION_REQUESTED {
            return Ok(Vec::new());
        }
        let n: NotificationRequest = serde_json::from_value(envelope.payload.clone())
            .map_err(|e| HandlerError::Permanent(format!("not a notification: {e}")))?;
        let mut transient = None;
        for user in &n.recipients {
            let key = format!("{}:{user}", n.notification_id);
            if matches!(
                self.status_of(&key).await?.as_deref(),
                Some("delivered" | "failed")
            ) {
                continue;
            }
            let stmt = match self.send(&key, user, &n).await {
                Sent::Delivered => record(&key, &n, user, "delivered", attempt, None),
                Sent::Permanent(e) => {
                    tracing::warn!(key = %key, error = %e, "PushRefused");
                    record(&key, &n, user, "failed", attempt, Some(e))
                }
                Sent::Transient(e) => {
                    let status = if attempt >= self.max_attempts {
                        "failed"
                    } else {
                        "retrying"
                    };
                    tracing::info!(key = %key, attempt, error = %e, "PushRetry");
                    let s = record(&key, &n, user, status, attempt, Some(e.clone()));
                    transient = Some(e);
                    s
                }
            };
            // Recorded at once: a later recipient's failure must not forget this one's outcome.
            self.store
                .transact(Txn {
                    statements: vec![stmt],
                    ..Default::default()
                })
                .await
                .map_err(|e| HandlerError::Transient(e.to_string()))?;
        }
        match transient {
            Some(e) => Err(HandlerError::Transient(e)),
            None => Ok(Vec::new()),
        }
    }
}
