//! Connector to the provincial government information sharing site: pulls the provincial smart
//! petition system's Changsha records (`QueryChangedPetitions`, SOAP 1.1, signed requests),
//! maps them to canonical petitions and process events, and hands pages to the pull loop.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use xfhub_schemas::{validate_petition, FieldError};
use xfhub_security::sign;
use xfhub_store::intake::petition_item;
use xfhub_transforms::codemap::{field_error, CodeMap};
use xfhub_transforms::provincial::{self as tp, RawRecord, ResponseError};

use crate::pull::{
    FetchError, FetchedPage, MapContext, Prepared, PullSettings, PullSource, Reject,
};

/// Connector name and source system.
pub const NAME: &str = "provincial";

/// The provincial source.
#[derive(Debug, Clone)]
pub struct Provincial {
    client: reqwest::Client,
    url: reqwest::Url,
    app_key: String,
    secret: String,
    region: String,
    page_size: u32,
}

impl Provincial {
    pub fn new(s: &PullSettings) -> Result<Provincial, String> {
        let url =
            reqwest::Url::parse(&s.url).map_err(|e| format!("connectors.provincial.url: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(s.timeout_ms))
            .connect_timeout(Duration::from_millis(s.timeout_ms.min(5_000)))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Provincial {
            client,
            url,
            app_key: s.app_key.clone(),
            secret: s.secret.clone(),
            region: s.region_code.clone(),
            page_size: s.page_size.clamp(1, tp::MAX_PAGE_SIZE),
        })
    }
}

/// Retry-After seconds of an answer.
pub(crate) fn retry_after(h: Option<&HeaderValue>) -> Option<Duration> {
    h.and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn internal(e: impl std::fmt::Display) -> Vec<FieldError> {
    vec![field_error(
        "record",
        "internal",
        &format!("the record could not be prepared for storage: {e}"),
        "记录无法入库（内部错误）",
    )]
}

/// `<id>#<version>` of what could be read of a record.
pub(crate) fn source_ref(id: Option<String>, version: Option<i64>) -> Option<String> {
    id.map(|id| match version {
        Some(v) => format!("{id}#{v}"),
        None => id,
    })
}

/// Maps, validates and seals one record's text.
fn prepare_text(text: &str, cx: &MapContext) -> Result<Prepared, Vec<FieldError>> {
    let mapped = tp::map_record(text, &cx.map)?;
    let petition = validate_petition(mapped.petition, cx.tables, chrono::Utc::now())?;
    let item = petition_item(&petition, &cx.ring).map_err(internal)?;
    Ok(Prepared::Record {
        item: Box::new(item),
        events: mapped.events,
    })
}

fn prepare_raw(rec: RawRecord, cx: &MapContext) -> Prepared {
    let (id, version) = rec.source_ref();
    let result = match &rec.text {
        Ok(text) => prepare_text(text, cx),
        Err(e) => Err(vec![e.clone()]),
    };
    match result {
        Ok(p) => p,
        Err(reasons) => Prepared::Reject(Reject {
            kind: "petition",
            source_ref: source_ref(id, version),
            // Decoded text when the encoding allowed it, else the bytes as served.
            raw: match rec.text {
                Ok(t) => t.into_bytes(),
                Err(_) => rec.bytes,
            },
            reasons,
        }),
    }
}

#[async_trait::async_trait]
impl PullSource for Provincial {
    fn name(&self) -> &'static str {
        NAME
    }

    fn initial_cursor(&self) -> String {
        "0".to_owned()
    }

    async fn fetch(&self, cursor: &str, cx: &MapContext) -> Result<FetchedPage, FetchError> {
        let body = tp::request_xml(&self.region, cursor, self.page_size);
        let path_and_query = match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        };
        let headers = sign::sign_headers(
            &self.app_key,
            self.secret.as_bytes(),
            "POST",
            &path_and_query,
            body.as_bytes(),
            chrono::Utc::now().timestamp_millis(),
            &sign::new_nonce(),
        );
        let mut req = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{}\"", tp::SOAP_ACTION));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req
            .body(body)
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
                detail: "HTTP 429".to_owned(),
            });
        }
        // The CPU work of a page (parsing, mapping, validation, sealing) runs off the runtime's
        // I/O threads.
        let cx = cx.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            tp::parse_response(&bytes).map(|page| {
                let records = crate::pull::map_in_parallel(page.records, |r| prepare_raw(r, &cx));
                (page.next_cursor, page.has_more, records)
            })
        })
        .await
        .map_err(|e| FetchError::Transient(format!("mapping task failed: {e}")))?;
        match parsed {
            Ok((next_cursor, has_more, records)) if status.is_success() => Ok(FetchedPage {
                records,
                next_cursor,
                has_more,
            }),
            Ok(_) => Err(FetchError::Transient(format!("HTTP {status} with a page"))),
            Err(ResponseError::Fault {
                code,
                message,
                retry_after_secs,
            }) => {
                if code.contains("RateLimited") || code.contains("Busy") {
                    Err(FetchError::RateLimited {
                        retry_after: retry_after_secs
                            .map(Duration::from_secs)
                            .or(after)
                            .unwrap_or(Duration::from_secs(1)),
                        detail: format!("SOAP fault {code}: {message}"),
                    })
                } else {
                    Err(FetchError::Transient(format!(
                        "SOAP fault {code}: {message}"
                    )))
                }
            }
            Err(ResponseError::Malformed(m)) => Err(FetchError::Transient(format!(
                "HTTP {status}: unreadable answer: {m}"
            ))),
        }
    }

    fn prepare(&self, raw: &[u8], cx: &MapContext) -> Prepared {
        prepare_stored(raw, cx)
    }

    fn parse_map(&self, text: &str) -> Result<CodeMap, String> {
        tp::parse_map(text)
    }

    fn embedded_map(&self) -> CodeMap {
        tp::embedded_map().clone()
    }
}

/// Maps a stored raw record (UTF-8 text of one `<xfj>`) again.
pub fn prepare_stored(raw: &[u8], cx: &MapContext) -> Prepared {
    let rec = RawRecord {
        bytes: raw.to_vec(),
        text: std::str::from_utf8(raw).map(str::to_owned).map_err(|_| {
            field_error(
                "xfj",
                "encoding",
                "the stored record is not valid UTF-8 (it was not valid in its document's encoding)",
                "记录内容不符合文档声明的字符编码",
            )
        }),
    };
    prepare_raw(rec, cx)
}

/// A provincial source as a trait object.
pub fn source(s: &PullSettings) -> Result<Arc<dyn PullSource>, String> {
    Ok(Arc::new(Provincial::new(s)?))
}
