//! Connector to the Changsha data resource management platform's 12345 work orders: pulls the
//! orders updated after its cursor (an update time), signed GET requests, and maps them to
//! canonical work orders.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::Value;
use xfhub_schemas::{validate_workorder, FieldError};
use xfhub_security::sign;
use xfhub_store::intake::workorder_item;
use xfhub_transforms::codemap::{field_error, CodeMap};
use xfhub_transforms::hotline12345::{self as th, PageError};

use crate::provincial::{retry_after, source_ref};
use crate::pull::{
    FetchError, FetchedPage, MapContext, Prepared, PullSettings, PullSource, Reject,
};

/// Connector name and source system.
pub const NAME: &str = "hotline12345";
/// Path of the changed-orders query below the platform's base URL.
pub const CHANGED_PATH: &str = "/api/v1/workorders/changed";

/// The 12345 source.
#[derive(Debug, Clone)]
pub struct Hotline {
    client: reqwest::Client,
    base: String,
    app_key: String,
    secret: String,
    page_size: u32,
}

impl Hotline {
    pub fn new(s: &PullSettings) -> Result<Hotline, String> {
        let url =
            reqwest::Url::parse(&s.url).map_err(|e| format!("connectors.hotline12345.url: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(s.timeout_ms))
            .connect_timeout(Duration::from_millis(s.timeout_ms.min(5_000)))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Hotline {
            client,
            base: url.as_str().trim_end_matches('/').to_owned(),
            app_key: s.app_key.clone(),
            secret: s.secret.clone(),
            page_size: s.page_size.clamp(1, th::MAX_PAGE_SIZE),
        })
    }

    /// The path prefix of the base URL (`http://host/gw` -> `/gw`).
    fn base_path(&self) -> String {
        reqwest::Url::parse(&self.base)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }
}

/// Percent-encodes a query value (unreserved characters and `:` stay).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 8);
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn internal(e: impl std::fmt::Display) -> Vec<FieldError> {
    vec![field_error(
        "order",
        "internal",
        &format!("the order could not be prepared for storage: {e}"),
        "工单无法入库（内部错误）",
    )]
}

fn prepare_value(order: &Value, cx: &MapContext) -> Prepared {
    let result = th::map_order(order, &cx.map)
        .and_then(|w| validate_workorder(w, cx.tables, chrono::Utc::now()))
        .and_then(|w| workorder_item(&w, &cx.ring).map_err(internal));
    match result {
        Ok(item) => Prepared::Record {
            item: Box::new(item),
            events: Vec::new(),
        },
        Err(reasons) => {
            let (id, version) = th::source_ref(order);
            Prepared::Reject(Reject {
                kind: "workorder",
                source_ref: source_ref(id, version),
                raw: serde_json::to_vec(order).unwrap_or_default(),
                reasons,
            })
        }
    }
}

#[async_trait::async_trait]
impl PullSource for Hotline {
    fn name(&self) -> &'static str {
        NAME
    }

    fn initial_cursor(&self) -> String {
        String::new()
    }

    async fn fetch(&self, cursor: &str, cx: &MapContext) -> Result<FetchedPage, FetchError> {
        let mut query = format!("pageSize={}", self.page_size);
        if !cursor.is_empty() {
            query = format!("updatedAfter={}&{query}", encode(cursor));
        }
        let path_and_query = format!("{}{CHANGED_PATH}?{query}", self.base_path());
        let headers = sign::sign_headers(
            &self.app_key,
            self.secret.as_bytes(),
            "GET",
            &path_and_query,
            b"",
            chrono::Utc::now().timestamp_millis(),
            &sign::new_nonce(),
        );
        let mut req = self
            .client
            .get(format!("{}{CHANGED_PATH}?{query}", self.base));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| FetchError::Transient(format!("request failed: {e}")))?;
        let status = resp.status();
        let after = retry_after(resp.headers().get(RETRY_AFTER));
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Transient(format!("answer cut off: {e}")))?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(FetchError::RateLimited {
                retry_after: after.unwrap_or(Duration::from_secs(1)),
                detail: format!(
                    "HTTP 429: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            });
        }
        if !status.is_success() {
            let detail = match th::parse_page(&bytes) {
                Err(PageError::Answer { code, message }) => format!("{code} {message}"),
                _ => String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            };
            return Err(FetchError::Transient(format!("HTTP {status}: {detail}")));
        }
        let cx = cx.clone();
        let cursor = cursor.to_owned();
        let parsed = tokio::task::spawn_blocking(move || {
            th::parse_page(&bytes).map(|page| {
                let records = crate::pull::map_in_parallel(page.orders.iter().collect(), |o| {
                    prepare_value(o, &cx)
                });
                (
                    page.last_update_time.unwrap_or(cursor),
                    page.has_more,
                    records,
                )
            })
        })
        .await
        .map_err(|e| FetchError::Transient(format!("mapping task failed: {e}")))?;
        match parsed {
            Ok((next_cursor, has_more, records)) => Ok(FetchedPage {
                records,
                next_cursor,
                has_more,
            }),
            Err(PageError::Answer { code, message }) if code == 42900 => {
                Err(FetchError::RateLimited {
                    retry_after: after.unwrap_or(Duration::from_secs(1)),
                    detail: format!("{code} {message}"),
                })
            }
            Err(e) => Err(FetchError::Transient(e.to_string())),
        }
    }

    fn prepare(&self, raw: &[u8], cx: &MapContext) -> Prepared {
        match serde_json::from_slice::<Value>(raw) {
            Ok(v) => prepare_value(&v, cx),
            Err(e) => Prepared::Reject(Reject {
                kind: "workorder",
                source_ref: None,
                raw: raw.to_vec(),
                reasons: vec![field_error(
                    "order",
                    "json_malformed",
                    &format!("the stored order is not JSON: {e}"),
                    "工单不是有效的 JSON",
                )],
            }),
        }
    }

    fn parse_map(&self, text: &str) -> Result<CodeMap, String> {
        th::parse_map(text)
    }

    fn embedded_map(&self) -> CodeMap {
        th::embedded_map().clone()
    }
}

/// A 12345 source as a trait object.
pub fn source(s: &PullSettings) -> Result<Arc<dyn PullSource>, String> {
    Ok(Arc::new(Hotline::new(s)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            super::encode("2024-01-01 00:00:01.000"),
            "2024-01-01%2000:00:01.000"
        );
        assert_eq!(super::encode("a&b=c"), "a%26b%3Dc");
    }
}
