//! The transport to the SMS gateway: the [`SmsTransport`] trait (HTTP today; a CMPP 3.0
//! transport would implement the same trait) and [`HttpGateway`], the common cloud HTTP shape
//! of DOMAIN.md §6. Calls are signed with the hub's HMAC-SM3 request signature under the
//! gateway access key.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use xfhub_security::sign;

/// One gateway call: numbers (clear, only in memory), template, parameters, out id.
#[derive(Debug, Clone)]
pub struct SendCall<'a> {
    pub phones: Vec<&'a str>,
    pub template: &'a str,
    pub params: &'a BTreeMap<String, String>,
    pub out_id: &'a str,
}

/// What the gateway said about one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneOutcome {
    Accepted {
        biz_id: String,
    },
    /// Refused for good: `code` is the hub's reason (`invalid_number`, `business_limit`,
    /// `blacklisted`, or `gateway_rejected`), `gateway_code` the gateway's own.
    Rejected {
        code: &'static str,
        gateway_code: String,
    },
}

/// A failed call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// Might work later (timeout, connection refused, 5xx, bad answer): retried with backoff.
    #[error("transient: {0}")]
    Transient(String),
    /// The whole call was refused (bad template, bad parameters): not retried.
    #[error("rejected by the gateway: {code}: {message}")]
    Rejected { code: String, message: String },
}

/// A way to send texts.
#[async_trait]
pub trait SmsTransport: Send + Sync + 'static {
    /// Most numbers in one call.
    fn max_numbers(&self) -> usize;
    /// Sends one call; the outcome of each number, in the order of `call.phones`.
    async fn send(&self, call: &SendCall<'_>) -> Result<Vec<PhoneOutcome>, TransportError>;
    /// The numbers (clear) and biz ids the gateway accepted under `out_id`.
    async fn accepted(&self, out_id: &str) -> Result<Vec<(String, String)>, TransportError>;
}

/// Maps a gateway result code of one number to the hub's reason.
pub fn reason_of(code: &str) -> &'static str {
    match code {
        "isv.MOBILE_NUMBER_ILLEGAL" => "invalid_number",
        "isv.BUSINESS_LIMIT_CONTROL" => "business_limit",
        "isv.BLACK_KEY_CONTROL_LIMIT" => "blacklisted",
        _ => "gateway_rejected",
    }
}

/// The HTTP gateway.
pub struct HttpGateway {
    http: reqwest::Client,
    base: String,
    access_key: String,
    secret: String,
    sign_name: String,
    max_numbers: usize,
}

impl std::fmt::Debug for HttpGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGateway")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct SendAnswer {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    biz_id: String,
    #[serde(default)]
    results: Vec<PhoneResult>,
}

#[derive(Debug, Deserialize)]
struct PhoneResult {
    phone: String,
    code: String,
}

#[derive(Debug, Deserialize)]
struct QueryAnswer {
    code: String,
    #[serde(default)]
    records: Vec<QueryRecord>,
}

#[derive(Debug, Deserialize)]
struct QueryRecord {
    phone: String,
    biz_id: String,
}

impl HttpGateway {
    pub fn new(
        base: &str,
        access_key: &str,
        secret: &str,
        sign_name: &str,
        max_numbers: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpGateway {
            http,
            base: base.trim_end_matches('/').to_owned(),
            access_key: access_key.to_owned(),
            secret: secret.to_owned(),
            sign_name: sign_name.to_owned(),
            max_numbers,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), TransportError> {
        let body =
            serde_json::to_vec(body).map_err(|e| TransportError::Transient(e.to_string()))?;
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in sign::sign_headers(
            &self.access_key,
            self.secret.as_bytes(),
            "POST",
            path,
            &body,
            chrono::Utc::now().timestamp_millis(),
            &sign::new_nonce(),
        ) {
            req = req.header(name, value);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| TransportError::Transient(format!("gateway unreachable: {e}")))?;
        let status = resp.status().as_u16();
        let value = resp.json::<Value>().await.unwrap_or(Value::Null);
        if status >= 500 || status == 401 || status == 429 {
            // 401: the access key is wrong; retrying after the operator fixes it works.
            return Err(TransportError::Transient(format!(
                "gateway answered {status}: {}",
                value.get("code").and_then(Value::as_str).unwrap_or("")
            )));
        }
        Ok((status, value))
    }
}

#[async_trait]
impl SmsTransport for HttpGateway {
    fn max_numbers(&self) -> usize {
        self.max_numbers
    }

    async fn send(&self, call: &SendCall<'_>) -> Result<Vec<PhoneOutcome>, TransportError> {
        let body = json!({
            "phone_numbers": call.phones,
            "sign_name": self.sign_name,
            "template_code": call.template,
            "template_param": call.params,
            "out_id": call.out_id,
        });
        let (status, value) = self.post("/sms/send", &body).await?;
        let answer: SendAnswer = serde_json::from_value(value)
            .map_err(|e| TransportError::Transient(format!("unreadable gateway answer: {e}")))?;
        if status != 200 || answer.code != "OK" {
            return Err(TransportError::Rejected {
                code: answer.code,
                message: answer.message,
            });
        }
        call.phones
            .iter()
            .map(|p| {
                let r = answer
                    .results
                    .iter()
                    .find(|r| r.phone == *p)
                    .ok_or_else(|| {
                        TransportError::Transient("the answer lacks a number's result".into())
                    })?;
                Ok(if r.code == "OK" {
                    PhoneOutcome::Accepted {
                        biz_id: answer.biz_id.clone(),
                    }
                } else {
                    PhoneOutcome::Rejected {
                        code: reason_of(&r.code),
                        gateway_code: r.code.clone(),
                    }
                })
            })
            .collect()
    }

    async fn accepted(&self, out_id: &str) -> Result<Vec<(String, String)>, TransportError> {
        let (status, value) = self
            .post("/sms/query", &json!({ "out_id": out_id }))
            .await?;
        let answer: QueryAnswer = serde_json::from_value(value)
            .map_err(|e| TransportError::Transient(format!("unreadable gateway answer: {e}")))?;
        if status != 200 || answer.code != "OK" {
            return Err(TransportError::Transient(format!(
                "query refused: {}",
                answer.code
            )));
        }
        Ok(answer
            .records
            .into_iter()
            .map(|r| (r.phone, r.biz_id))
            .collect())
    }
}
