//! Shared by the in-process test suites (`api.rs`, `security.rs`): partner clients and request
//! signing (HMAC-SM3, the headers of `xfhub_security::sign`), and sending a request to the
//! router.

#![allow(dead_code)] // reason: each test crate uses its own subset of these helpers

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use xfhub::app::Hub;
use xfhub_security::sign;

/// Every operation scope a client can hold.
pub const ALL_SCOPES: &[&str] = &[
    "submit",
    "read",
    "write_back",
    "export",
    "import",
    "admin",
    "pii:read",
];

/// A partner client: its app key and its secret as issued.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub app_key: String,
    pub secret: String,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Milliseconds since the Unix epoch, the clock the hub checks timestamps against.
pub fn now_ms() -> i64 {
    xfhub_store::now_ms()
}

impl TestClient {
    /// Registers a client in the hub's store (as `xfhub clients add` does).
    pub async fn create(
        hub: &Hub,
        name: &str,
        scopes: &[&str],
        info_sets: &[&str],
        divisions: &[&str],
    ) -> TestClient {
        let (app_key, secret) = xfhub::admin_cli::add_client(
            &hub.state.store,
            &hub.state.keys.current(),
            name,
            strings(scopes),
            strings(info_sets),
            strings(divisions),
        )
        .await
        .expect("the client is created");
        TestClient { app_key, secret }
    }

    /// A client with every scope, every info set and every division.
    pub async fn full(hub: &Hub, name: &str) -> TestClient {
        TestClient::create(hub, name, ALL_SCOPES, &["*"], &["*"]).await
    }

    /// The same app key with another secret.
    pub fn with_secret(&self, secret: &str) -> TestClient {
        TestClient {
            app_key: self.app_key.clone(),
            secret: secret.to_owned(),
        }
    }

    /// The four signing headers of a request, at `now_ms` with `nonce`.
    pub fn headers_at(
        &self,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
        now_ms: i64,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        sign::sign_headers(
            &self.app_key,
            self.secret.as_bytes(),
            method.as_str(),
            path_and_query,
            body,
            now_ms,
            nonce,
        )
    }

    /// A request signed at `now_ms` with `nonce`; the same arguments give the same request
    /// (to replay it).
    pub fn signed_at(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: &[u8],
        now_ms: i64,
        nonce: &str,
    ) -> Request<Body> {
        let headers = self.headers_at(&method, uri, body, now_ms, nonce);
        request(method, uri, content_type, &headers, body.to_vec())
    }

    /// A request signed now with a fresh nonce, with the given content type.
    pub fn signed_raw(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Request<Body> {
        let body = body.into();
        self.signed_at(
            method,
            uri,
            content_type,
            &body,
            now_ms(),
            &sign::new_nonce(),
        )
    }

    /// A signed request; a non-empty body is sent as `application/json`.
    pub fn signed(&self, method: Method, uri: &str, body: impl Into<Vec<u8>>) -> Request<Body> {
        let body = body.into();
        let ct = (!body.is_empty()).then_some("application/json");
        self.signed_raw(method, uri, ct, body)
    }

    /// A signed GET.
    pub fn get(&self, uri: &str) -> Request<Body> {
        self.signed(Method::GET, uri, Vec::new())
    }

    /// A signed POST of a JSON value.
    pub fn post_json(&self, uri: &str, body: &Value) -> Request<Body> {
        self.signed(
            Method::POST,
            uri,
            serde_json::to_vec(body).expect("JSON serializes"),
        )
    }

    /// Signs a request built without signing headers: its method, target as sent and body
    /// bytes are signed, its other headers are kept.
    pub async fn sign(&self, req: Request<Body>) -> Request<Body> {
        let (mut parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .expect("a test body can be read")
            .to_bytes();
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| parts.uri.path().to_owned());
        let headers = self.headers_at(&parts.method, &target, &body, now_ms(), &sign::new_nonce());
        for (name, value) in headers {
            parts
                .headers
                .insert(name, value.parse().expect("header value"));
        }
        Request::from_parts(parts, Body::from(body))
    }
}

/// Builds a request with the given headers (signing headers or anything else).
pub fn request(
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    for (name, value) in headers {
        b = b.header(*name, value.as_str());
    }
    b.body(Body::from(body)).expect("request")
}

/// Whether a request carries any of the signing headers.
pub fn is_signed(req: &Request<Body>) -> bool {
    [
        sign::HEADER_APP_KEY,
        sign::HEADER_TIMESTAMP,
        sign::HEADER_NONCE,
        sign::HEADER_SIGNATURE,
    ]
    .iter()
    .any(|h| req.headers().contains_key(*h))
}

/// What the router answered.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answered a body that is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request through the router as it is.
pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .expect("the router is infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the body can be read")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// An error body: `{code, message, message_zh, fields: [{path, code, message, message_zh}]}`.
pub fn assert_error_body(what: &str, body: &Value, code: &str, fields: &[(&str, &str)]) {
    assert_eq!(body["code"], code, "{what}: code of {body:#}");
    for key in ["message", "message_zh"] {
        assert!(
            body[key].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {key} missing in {body:#}"
        );
    }
    let mut got: Vec<(String, String)> = body["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no fields array in {body:#}"))
        .iter()
        .map(|f| {
            for key in ["message", "message_zh"] {
                assert!(
                    f[key].as_str().is_some_and(|m| !m.is_empty()),
                    "{what}: field {key} missing in {f:#}"
                );
            }
            (
                f["path"].as_str().expect("path").to_owned(),
                f["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = fields
        .iter()
        .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{what}: field errors of {body:#}");
}
