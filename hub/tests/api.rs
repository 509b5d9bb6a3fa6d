//! In-process tests of the HTTP interface: the router is driven with `tower::ServiceExt::oneshot`
//! against a hub started on a temporary SQLite store, as a client would see it (status, headers,
//! JSON bodies, stable error codes and field paths).
//!
//! Every route but `/healthz`, `/readyz` and `/openapi.json` needs a signed request: `TestHub`
//! signs what it sends with a client holding every scope (`pii:read` included, so records read
//! back in clear), every info set and every division; authentication itself is covered by
//! `security.rs`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use chrono::{NaiveDate, Utc};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;
use xfhub::app::Hub;
use xfhub::config::Config;
use xfhub_schemas::{
    sample_petition, sample_workorder, validate_petition, validate_workorder, CodeTables, Envelope,
    Petition, Record, WorkOrder,
};

use common::{assert_error_body, TestClient};

const PETITIONS: &str = "/api/v1/petitions";
const WORKORDERS: &str = "/api/v1/workorders";
const REGENERATE: &str = "cargo run -q -p xfhub -- openapi > contracts/openapi.yaml";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A hub on its own temporary data directory, its router, and the client that signs what the
/// tests send.
struct TestHub {
    hub: Hub,
    app: Router,
    client: TestClient,
    _dir: tempfile::TempDir,
}

/// What the router answered.
type Answer = common::Reply;

impl TestHub {
    async fn start() -> TestHub {
        TestHub::with_config(|_| {}).await
    }

    async fn with_config(tune: impl FnOnce(&mut Config)) -> TestHub {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        tune(&mut config);
        let hub = Hub::start(config).await.expect("the hub starts");
        let app = hub.router();
        let client = TestClient::full(&hub, "api tests").await;
        TestHub {
            hub,
            app,
            client,
            _dir: dir,
        }
    }

    /// Sends `req` signed by the test client; a request that already carries signing headers
    /// (a test's own, possibly bad, signature) is sent as it is.
    async fn send(&self, req: Request<Body>) -> Answer {
        let req = if common::is_signed(&req) {
            req
        } else {
            self.client.sign(req).await
        };
        self.send_as_is(req).await
    }

    /// Sends `req` without signing it.
    async fn send_as_is(&self, req: Request<Body>) -> Answer {
        common::send(&self.app, req).await
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(get(uri)).await
    }

    async fn post(&self, uri: &str, body: &Value) -> Answer {
        self.send(post_json(uri, body)).await
    }

    /// POSTs `body` and expects `status`; returns the answer's JSON.
    async fn post_ok(&self, uri: &str, body: &Value, status: StatusCode) -> Value {
        let a = self.post(uri, body).await;
        assert_eq!(a.status, status, "POST {uri}: {}", a.text());
        a.json()
    }

    /// GETs `uri` and expects 200; returns the answer's JSON.
    async fn get_ok(&self, uri: &str) -> Value {
        let a = self.get(uri).await;
        assert_eq!(a.status, StatusCode::OK, "GET {uri}: {}", a.text());
        a.json()
    }

    async fn stop(self) {
        self.hub.shutdown(Duration::from_secs(5)).await;
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn post_json(uri: &str, body: &Value) -> Request<Body> {
    raw(
        Method::POST,
        uri,
        Some("application/json"),
        serde_json::to_vec(body).expect("JSON"),
    )
}

/// A request for `method uri` with `body` that carries signing headers but is not properly
/// signed, the `i`-th of several ways; with what it is and the error code it must get (401).
fn badly_signed(
    c: &TestClient,
    i: usize,
    method: &Method,
    uri: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (&'static str, Request<Body>, &'static str) {
    use xfhub_security::sign::{new_nonce, HEADER_APP_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP};
    let now = common::now_ms();
    let nonce = new_nonce();
    let mut headers = c.headers_at(method, uri, body, now, &nonce);
    let set = |h: &mut Vec<(&'static str, String)>, name: &str, value: &str| {
        for (n, v) in h.iter_mut() {
            if *n == name {
                *v = value.to_owned();
            }
        }
    };
    let mut non_utf8_key = false;
    let (what, code) = match i % 7 {
        0 => {
            headers = c.headers_at(method, uri, b"another body", now, &nonce);
            ("signature of another body", "auth_bad_signature")
        }
        1 => {
            headers = c
                .with_secret("not-the-secret")
                .headers_at(method, uri, body, now, &nonce);
            ("signed with a wrong secret", "auth_bad_signature")
        }
        2 => {
            set(&mut headers, HEADER_SIGNATURE, &"zz".repeat(32));
            ("signature not hex", "auth_bad_signature")
        }
        3 => {
            set(&mut headers, HEADER_TIMESTAMP, "12abc");
            ("timestamp not a number", "auth_timestamp")
        }
        4 => {
            headers = c.headers_at(method, uri, body, now - 600_000, &nonce);
            ("signed ten minutes ago", "auth_timestamp")
        }
        5 => {
            set(&mut headers, HEADER_APP_KEY, "xf' OR '1'='1");
            ("unknown app key", "auth_unknown_key")
        }
        _ => {
            non_utf8_key = true;
            ("app key not UTF-8", "auth_missing")
        }
    };
    let mut req = common::request(method.clone(), uri, content_type, &headers, body.to_vec());
    if non_utf8_key {
        req.headers_mut().insert(
            HEADER_APP_KEY,
            header::HeaderValue::from_bytes(b"xf\xff\xfe").expect("obs-text is a valid value"),
        );
    }
    (what, req, code)
}

fn raw(
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).expect("request")
}

/// One request of a table and the error it must be answered with.
struct Case {
    what: &'static str,
    req: Request<Body>,
    status: u16,
    code: &'static str,
    /// Exactly these `(path, code)` field errors, in any order.
    fields: &'static [(&'static str, &'static str)],
}

/// Sends `req` and asserts the status, the error `code` and exactly the `(path, code)` field
/// errors (in any order). Returns the error body.
async fn check(
    t: &TestHub,
    what: &str,
    req: Request<Body>,
    status: u16,
    code: &str,
    fields: &[(&str, &str)],
) -> Value {
    let a = t.send(req).await;
    assert_eq!(
        a.status.as_u16(),
        status,
        "{what}: status; body {}",
        a.text()
    );
    let body = a.json();
    assert_error_body(what, &body, code, fields);
    body
}

async fn check_all(t: &TestHub, cases: Vec<Case>) {
    for c in cases {
        check(t, c.what, c.req, c.status, c.code, c.fields).await;
    }
}

/// Polls `uri` until `done` holds for its JSON (10 s at most).
async fn poll(t: &TestHub, uri: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = t.get(uri).await;
        if a.status == StatusCode::OK {
            let v = a.json();
            if done(&v) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("GET {uri}: condition not reached in time; last answer {v:#}");
            }
        } else if tokio::time::Instant::now() > deadline {
            panic!("GET {uri}: {} {}", a.status, a.text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The hop names of a trail answer.
fn hops(trail: &Value) -> Vec<String> {
    trail["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|h| h["hop"].as_str().expect("hop").to_owned())
        .collect()
}

/// True when `want` occurs in `hops` in this order (not necessarily adjacent).
fn in_order(hops: &[String], want: &[&str]) -> bool {
    let mut it = hops.iter();
    want.iter().all(|w| it.any(|h| h == w))
}

fn petition_json(i: u64) -> Value {
    serde_json::to_value(sample_petition(i)).expect("JSON")
}

fn workorder_json(i: u64) -> Value {
    serde_json::to_value(sample_workorder(i)).expect("JSON")
}

fn day(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

fn tables() -> &'static CodeTables {
    CodeTables::embedded()
}

/// The record ids of one list page, and its `next_cursor`.
fn page_ids(page: &Value) -> (Vec<String>, Option<String>) {
    let ids = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    (ids, page["next_cursor"].as_str().map(str::to_owned))
}

/// Walks every page of `uri` (which carries a `limit`), asserting each page is full but the last.
async fn walk(t: &TestHub, uri: &str, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{uri}&cursor={c}"),
            None => uri.to_owned(),
        };
        let (ids, next) = page_ids(&t.get_ok(&url).await);
        assert!(ids.len() <= limit, "{url}: page larger than the limit");
        all.extend(ids.iter().cloned());
        match next {
            Some(n) => {
                assert_eq!(ids.len(), limit, "{url}: a page with a cursor is full");
                assert_eq!(Some(&n), ids.last(), "{url}: the cursor is the last id");
                cursor = Some(n);
            }
            None => return all,
        }
        assert!(all.len() < 10_000, "{uri}: paging does not end");
    }
}

// ---------------------------------------------------------------------------------------------
// Petitions: submission
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn petition_submission_is_idempotent_by_source_and_version() {
    let t = TestHub::start().await;
    let p = petition_json(1);

    // Created: 201, receipt, Location.
    let a = t.post(PETITIONS, &p).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let first = a.json();
    let id = first["id"].as_str().expect("receipt id").to_owned();
    Uuid::parse_str(&id).expect("the id is a UUID");
    assert_eq!(
        a.headers[header::LOCATION],
        format!("{PETITIONS}/{id}").as_str(),
        "Location names the new record"
    );
    assert_eq!(first["kind"], "petition");
    assert_eq!(first["source_system"], "api");
    assert_eq!(first["source_id"], p["source"]["id"]);
    assert_eq!(first["version"], 1);
    assert_eq!(first["status"], "created");
    Uuid::parse_str(first["message_id"].as_str().expect("message_id")).expect("UUID");
    assert!(first["change_seq"].as_i64().expect("change_seq") > 0);
    assert!(first["received_at"].is_string());

    // A repeat: 200 and the very same receipt.
    let a = t.post(PETITIONS, &p).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json(), first, "a repeat gets the first receipt");
    assert_eq!(
        a.headers[header::LOCATION],
        format!("{PETITIONS}/{id}").as_str()
    );

    // Same source and version, other content: 409.
    let mut changed = p.clone();
    changed["appeal"]["summary"] = json!("信访人反映：内容已被修改，但版本号未变。");
    check(
        &t,
        "same version, changed summary",
        post_json(PETITIONS, &changed),
        409,
        "version_conflict",
        &[("source.version", "version_conflict")],
    )
    .await;

    // A higher version: 200 "updated", same id, a new message.
    let mut v3 = changed.clone();
    v3["source"]["version"] = json!(3);
    let updated = t.post_ok(PETITIONS, &v3, StatusCode::OK).await;
    assert_eq!(updated["status"], "updated");
    assert_eq!(updated["id"], first["id"], "an update keeps the hub id");
    assert_eq!(updated["version"], 3);
    assert_ne!(updated["message_id"], first["message_id"]);
    assert!(updated["change_seq"].as_i64() > first["change_seq"].as_i64());
    let stored = t.get_ok(&format!("{PETITIONS}/{id}")).await;
    assert_eq!(stored["version"], 3);
    assert_eq!(
        stored["data"]["appeal"]["summary"],
        changed["appeal"]["summary"]
    );

    // A lower version never seen before: 409 stale.
    let mut v2 = p.clone();
    v2["source"]["version"] = json!(2);
    check(
        &t,
        "older version",
        post_json(PETITIONS, &v2),
        409,
        "version_stale",
        &[("source.version", "version_stale")],
    )
    .await;

    // Version 1 again, unchanged: still a repeat with its first receipt, nothing changes.
    let again = t.post_ok(PETITIONS, &p, StatusCode::OK).await;
    assert_eq!(again, first);
    assert_eq!(t.get_ok(&format!("{PETITIONS}/{id}")).await["version"], 3);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn petition_bad_input_is_answered_with_field_paths() {
    let t = TestHub::start().await;
    let p = petition_json(1);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = p.clone();
        edit(&mut v);
        post_json(PETITIONS, &v)
    };

    // Several validation failures in one body: every one is reported.
    let mut bad_id = p["complainants"][0]["id_number"]
        .as_str()
        .expect("id number")
        .to_owned();
    let last = bad_id.pop().expect("18 characters");
    bad_id.push(if last == '0' { '1' } else { '0' });
    let many_errors = with(&|v| {
        v["complainants"][0]["id_number"] = json!(bad_id);
        v["complainants"][0]["mobile"] = json!("12345");
        v["appeal"]["division"] = json!("999999");
        v["appeal"]["form"] = json!("9999");
        v["flags"]["group"] = json!(true);
    });

    check_all(
        &t,
        vec![
            Case {
                what: "every validation error at once",
                req: many_errors,
                status: 422,
                code: "validation_failed",
                fields: &[
                    ("complainants[0].id_number", "id_number_checksum"),
                    ("complainants[0].mobile", "mobile_format"),
                    ("appeal.division", "unknown_code"),
                    ("appeal.form", "unknown_code"),
                    ("flags.group", "group_inconsistent"),
                ],
            },
            Case {
                what: "group flag without a group",
                req: with(&|v| v["flags"]["group"] = json!(true)),
                status: 422,
                code: "validation_failed",
                fields: &[("flags.group", "group_inconsistent")],
            },
            Case {
                what: "blank summary",
                req: with(&|v| v["appeal"]["summary"] = json!("   ")),
                status: 422,
                code: "validation_failed",
                fields: &[("appeal.summary", "required")],
            },
            Case {
                what: "unknown source system",
                req: with(&|v| v["source"]["system"] = json!("fax")),
                status: 422,
                code: "validation_failed",
                fields: &[("source.system", "source_system")],
            },
            Case {
                what: "malformed JSON",
                req: raw(
                    Method::POST,
                    PETITIONS,
                    Some("application/json"),
                    r#"{"source": {"system": "api","#,
                ),
                status: 400,
                code: "malformed_json",
                fields: &[],
            },
            Case {
                what: "trailing garbage",
                req: raw(
                    Method::POST,
                    PETITIONS,
                    Some("application/json"),
                    format!("{p} xyz"),
                ),
                status: 400,
                code: "malformed_json",
                fields: &[],
            },
            Case {
                what: "missing top-level field",
                req: with(&|v| {
                    v.as_object_mut().expect("object").remove("appeal");
                }),
                status: 422,
                code: "schema_mismatch",
                fields: &[("appeal", "schema_mismatch")],
            },
            Case {
                what: "missing nested field",
                req: with(&|v| {
                    v["acceptance"]
                        .as_object_mut()
                        .expect("object")
                        .remove("complaint_date");
                }),
                status: 422,
                code: "schema_mismatch",
                fields: &[("acceptance.complaint_date", "schema_mismatch")],
            },
            Case {
                what: "unknown top-level field",
                req: with(&|v| v["colour"] = json!("red")),
                status: 422,
                code: "schema_mismatch",
                fields: &[("colour", "schema_mismatch")],
            },
            Case {
                what: "unknown nested field",
                req: with(&|v| v["complainants"][0]["nickname"] = json!("老王")),
                status: 422,
                code: "schema_mismatch",
                fields: &[("complainants[0].nickname", "schema_mismatch")],
            },
            Case {
                what: "wrong type",
                req: with(&|v| v["acceptance"]["complainant_count"] = json!("many")),
                status: 422,
                code: "schema_mismatch",
                fields: &[("acceptance.complainant_count", "schema_mismatch")],
            },
            Case {
                what: "impossible date",
                req: with(&|v| v["acceptance"]["complaint_date"] = json!("2024-02-30")),
                status: 422,
                code: "schema_mismatch",
                fields: &[("acceptance.complaint_date", "schema_mismatch")],
            },
            Case {
                what: "text/plain",
                req: raw(Method::POST, PETITIONS, Some("text/plain"), p.to_string()),
                status: 415,
                code: "unsupported_media_type",
                fields: &[],
            },
            Case {
                what: "no content type",
                req: raw(Method::POST, PETITIONS, None, p.to_string()),
                status: 415,
                code: "unsupported_media_type",
                fields: &[],
            },
            Case {
                what: "form-encoded",
                req: raw(
                    Method::POST,
                    PETITIONS,
                    Some("application/x-www-form-urlencoded"),
                    "a=1",
                ),
                status: 415,
                code: "unsupported_media_type",
                fields: &[],
            },
        ],
    )
    .await;

    // JSON media types with parameters or a +json suffix are JSON.
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.xfhub+json",
    ] {
        let mut v = p.clone();
        v["source"]["id"] = json!(format!("CT-{ct}"));
        let a = t
            .send(raw(Method::POST, PETITIONS, Some(ct), v.to_string()))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{ct}: {}", a.text());
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413() {
    let t = TestHub::with_config(|c| c.limits.body_bytes = 4096).await;
    let mut big = petition_json(2);
    big["appeal"]["summary"] = json!("长".repeat(3400)); // ~10 KB of UTF-8
    let bytes = serde_json::to_vec(&big).expect("JSON");
    assert!(bytes.len() > 10_000, "{}", bytes.len());

    check(
        &t,
        "10 KB body, limit 4 KB",
        raw(
            Method::POST,
            PETITIONS,
            Some("application/json"),
            bytes.clone(),
        ),
        413,
        "body_too_large",
        &[],
    )
    .await;
    // The same, announced by Content-Length.
    let req = Request::post(PETITIONS)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .expect("request");
    check(
        &t,
        "10 KB with Content-Length",
        req,
        413,
        "body_too_large",
        &[],
    )
    .await;
    check(
        &t,
        "10 KB to work orders",
        raw(
            Method::POST,
            WORKORDERS,
            Some("application/json"),
            vec![b' '; 10_000],
        ),
        413,
        "body_too_large",
        &[],
    )
    .await;

    // An ordinary petition still fits.
    let small = petition_json(3);
    assert!(small.to_string().len() < 4096);
    t.post_ok(PETITIONS, &small, StatusCode::CREATED).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_never_a_server_error() {
    let t = TestHub::start().await;
    let deep_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let deep_in_field = format!(
        r#"{{"source": {{"system": {}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let huge_string = format!("\"{}\"", "a".repeat(1_900_000));
    let mut huge_summary = petition_json(4);
    huge_summary["appeal"]["summary"] = json!("啊".repeat(500_000));
    let mut negative = petition_json(4);
    negative["acceptance"]["complainant_count"] = json!(-1);
    let mut overflow = petition_json(4);
    overflow["source"]["version"] = json!(9_223_372_036_854_775_808u64);
    let mut float = petition_json(4);
    float["acceptance"]["people_involved"] = json!(1e99);
    let mut negative_version = petition_json(4);
    negative_version["source"]["version"] = json!(-1);
    let mut null_fields = petition_json(4);
    for (_, v) in null_fields.as_object_mut().expect("object").iter_mut() {
        *v = Value::Null;
    }
    let p = petition_json(4).to_string();
    let duplicate_key = format!(r#"{{"anonymous": false, "anonymous": true, {}"#, &p[1..]);

    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("whitespace", b"  \n\t ".to_vec()),
        ("null", b"null".to_vec()),
        ("empty array", b"[]".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("number", b"42".to_vec()),
        ("negative float", b"-1.5e308".to_vec()),
        ("string", br#""petition""#.to_vec()),
        ("true", b"true".to_vec()),
        ("array of petitions", format!("[{p}]").into_bytes()),
        ("deep arrays", deep_arrays.into_bytes()),
        ("deep objects", deep_objects.into_bytes()),
        ("deep arrays in a field", deep_in_field.into_bytes()),
        ("invalid UTF-8", b"{\"source\": \"\xff\xfe\xfd\"}".to_vec()),
        ("invalid UTF-8 alone", vec![0xc3, 0x28, 0xa0, 0xa1]),
        (
            "byte order mark",
            [&[0xef, 0xbb, 0xbf][..], p.as_bytes()].concat(),
        ),
        ("NUL bytes", vec![0; 64]),
        (
            "lone surrogate",
            br#"{"source": {"system": "\ud800"}}"#.to_vec(),
        ),
        ("huge string", huge_string.into_bytes()),
        ("huge summary", huge_summary.to_string().into_bytes()),
        ("negative count", negative.to_string().into_bytes()),
        ("version overflow", overflow.to_string().into_bytes()),
        ("float count", float.to_string().into_bytes()),
        (
            "negative version",
            negative_version.to_string().into_bytes(),
        ),
        ("every field null", null_fields.to_string().into_bytes()),
        ("duplicate key", duplicate_key.into_bytes()),
        ("truncated", p.as_bytes()[..p.len() / 2].to_vec()),
        ("XML", b"<petition><source/></petition>".to_vec()),
    ];
    for (r, route) in [PETITIONS, WORKORDERS, "/api/v1/echo"]
        .into_iter()
        .enumerate()
    {
        for (i, (what, body)) in bodies.iter().enumerate() {
            // Unsigned, and signed badly: refused before the body is looked at.
            let a = t
                .send_as_is(raw(
                    Method::POST,
                    route,
                    Some("application/json"),
                    body.clone(),
                ))
                .await;
            assert_eq!(
                (a.status, &a.json()["code"]),
                (StatusCode::UNAUTHORIZED, &json!("auth_missing")),
                "POST {route} {what}, unsigned: {}",
                a.text()
            );
            let (how, req, code) = badly_signed(
                &t.client,
                r + i,
                &Method::POST,
                route,
                Some("application/json"),
                body,
            );
            let a = t.send_as_is(req).await;
            assert_eq!(
                (a.status, &a.json()["code"]),
                (StatusCode::UNAUTHORIZED, &json!(code)),
                "POST {route} {what}, {how}: {}",
                a.text()
            );

            let a = t
                .send(raw(
                    Method::POST,
                    route,
                    Some("application/json"),
                    body.clone(),
                ))
                .await;
            let what = format!("POST {route} {what}");
            if route == "/api/v1/echo" {
                // Echo answers any JSON value; it must still never fail.
                assert!(a.status.as_u16() < 500, "{what}: {} {}", a.status, a.text());
                if a.status != StatusCode::OK {
                    assert!(a.status.is_client_error(), "{what}: {}", a.status);
                    assert!(a.json()["code"].is_string(), "{what}: {}", a.text());
                }
                continue;
            }
            assert!(
                a.status.is_client_error(),
                "{what}: {} {}",
                a.status,
                a.text()
            );
            let body = a.json();
            assert!(
                body["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{what}: {body}"
            );
        }
    }

    // Garbage in paths and query strings.
    let requests: Vec<(Method, &str)> = vec![
        (Method::GET, "/api/v1/petitions/not-a-uuid"),
        (Method::GET, "/api/v1/petitions/%ff%fe"),
        (Method::GET, "/api/v1/petitions/%00"),
        (Method::GET, "/api/v1/workorders/1234"),
        (Method::GET, "/api/v1/petitions?limit=-1"),
        (Method::GET, "/api/v1/petitions?limit=99999999999999999999"),
        (Method::GET, "/api/v1/petitions?limit=abc"),
        (Method::GET, "/api/v1/petitions?%ff=1"),
        (Method::GET, "/api/v1/petitions?division=%ff"),
        (
            Method::GET,
            "/api/v1/petitions?from=2024-01-01&from=2024-01-02",
        ),
        (Method::GET, "/api/v1/petitions?cursor="),
        (Method::GET, "/api/v1/workorders?limit=0&state="),
        (Method::GET, "/api/v1/code-tables/%ff"),
        (Method::GET, "/admin/messages/xyz/trail"),
        (Method::GET, "/admin/dead-letters?limit=0"),
        (Method::GET, "/admin/dead-letters?all=maybe"),
        (Method::GET, "/admin/import-errors?limit=5000"),
        (Method::POST, "/admin/dead-letters/abc/replay"),
        (
            Method::POST,
            "/admin/dead-letters/99999999999999999999/replay",
        ),
        (Method::POST, "/admin/dead-letters/-1/replay"),
        (Method::DELETE, "/api/v1/petitions"),
        (
            Method::PUT,
            "/api/v1/petitions/00000000-0000-0000-0000-000000000000",
        ),
        (Method::POST, "/healthz"),
    ];
    let mut wrong = Vec::new();
    for (i, (method, uri)) in requests.into_iter().enumerate() {
        let a = t.send(raw(method.clone(), uri, None, Body::empty())).await;
        let coded = serde_json::from_slice::<Value>(&a.body)
            .ok()
            .is_some_and(|v| v["code"].as_str().is_some_and(|c| !c.is_empty()));
        if !a.status.is_client_error() || !coded {
            wrong.push(format!("{method} {uri}: {} {}", a.status, a.text()));
        }
        // Unsigned and badly signed: 401 with the authentication error (the open route
        // answers as it would signed).
        let open = uri == "/healthz";
        let bad = badly_signed(&t.client, i, &method, uri, None, b"");
        let variants = [
            (
                "unsigned",
                raw(method.clone(), uri, None, Body::empty()),
                "auth_missing",
            ),
            bad,
        ];
        for (how, req, code) in variants {
            let a = t.send_as_is(req).await;
            let got = serde_json::from_slice::<Value>(&a.body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let ok = if open {
                a.status.is_client_error() && !got.is_empty()
            } else {
                a.status == StatusCode::UNAUTHORIZED && got == code
            };
            if !ok {
                wrong.push(format!("{method} {uri} {how}: {} {}", a.status, a.text()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "answered other than 4xx with an error body:\n{}",
        wrong.join("\n")
    );
    // Still healthy after all that.
    assert_eq!(t.get("/readyz").await.status, StatusCode::OK);
    t.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Petitions: reading
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn petition_is_read_back_normalized() {
    let t = TestHub::start().await;
    let sample = sample_petition(5);
    let receipt = t
        .post_ok(
            PETITIONS,
            &serde_json::to_value(&sample).expect("JSON"),
            StatusCode::CREATED,
        )
        .await;
    let id = receipt["id"].as_str().expect("id");
    let got = t.get_ok(&format!("{PETITIONS}/{id}")).await;
    let want = validate_petition(sample.clone(), tables(), Utc::now()).expect("samples are valid");
    assert_eq!(got["id"], receipt["id"]);
    assert_eq!(got["kind"], "petition");
    assert_eq!(got["version"], 1);
    assert_eq!(got["status"], want.status().as_str());
    assert_eq!(got["received_at"], receipt["received_at"]);
    assert_eq!(got["data"], serde_json::to_value(&want).expect("JSON"));
    let typed: Record<Petition> = serde_json::from_value(got).expect("a Record<Petition>");
    assert_eq!(typed.data, want);

    // Input that needs normalizing is stored normalized.
    let mut messy = petition_json(6);
    let clean = validate_petition(sample_petition(6), tables(), Utc::now()).expect("valid");
    let mobile = clean.complainants[0].mobile.clone().expect("mobile");
    let id_number = clean.complainants[0].id_number.clone().expect("id number");
    messy["complainants"][0]["mobile"] = json!(format!(
        "+86 {}-{}-{}",
        &mobile[..3],
        &mobile[3..7],
        &mobile[7..]
    ));
    messy["complainants"][0]["id_number"] = json!(format!(" {} ", id_number.to_lowercase()));
    messy["complainants"][0]["address"] = json!("   ");
    messy["appeal"]["summary"] = json!(format!("  {}\n", clean.appeal.summary));
    messy["appeal"]["keywords"] = json!([" 物业管理", "物业管理", "", "电梯故障 "]);
    let receipt = t.post_ok(PETITIONS, &messy, StatusCode::CREATED).await;
    let got = t
        .get_ok(&format!(
            "{PETITIONS}/{}",
            receipt["id"].as_str().expect("id")
        ))
        .await;
    let c = &got["data"]["complainants"][0];
    assert_eq!(c["mobile"], mobile.as_str());
    assert_eq!(c["id_number"], id_number.as_str());
    assert!(
        c.get("address").is_none(),
        "a blank optional text is dropped: {c}"
    );
    assert_eq!(
        got["data"]["appeal"]["summary"],
        clean.appeal.summary.as_str()
    );
    assert_eq!(
        got["data"]["appeal"]["keywords"],
        json!(["物业管理", "电梯故障"])
    );

    check_all(
        &t,
        vec![
            Case {
                what: "id that is not a UUID",
                req: get(&format!("{PETITIONS}/12345")),
                status: 400,
                code: "invalid_id",
                fields: &[("id", "invalid_id")],
            },
            Case {
                what: "unknown id",
                req: get(&format!("{PETITIONS}/{}", Uuid::now_v7())),
                status: 404,
                code: "not_found",
                fields: &[],
            },
            Case {
                what: "a petition's id is not a work order",
                req: get(&format!("{WORKORDERS}/{id}")),
                status: 404,
                code: "not_found",
                fields: &[],
            },
        ],
    )
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_division_is_stored_as_its_successor() {
    let t = TestHub::start().await;
    let mut p = petition_json(7);
    p["appeal"]["division"] = json!("430122");
    let receipt = t.post_ok(PETITIONS, &p, StatusCode::CREATED).await;
    let got = t
        .get_ok(&format!(
            "{PETITIONS}/{}",
            receipt["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(got["data"]["appeal"]["division"], "430112");

    // Both the old and the new code find it.
    for d in ["430122", "430112"] {
        let (ids, _) = page_ids(&t.get_ok(&format!("{PETITIONS}?division={d}")).await);
        assert_eq!(
            ids,
            vec![receipt["id"].as_str().expect("id")],
            "division={d}"
        );
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn petition_list_filters_and_pages() {
    let t = TestHub::start().await;
    // 30 samples, plus one replied but not concluded (samples never are).
    let mut bodies: Vec<Value> = (0..30).map(petition_json).collect();
    let mut replied = petition_json(32);
    replied["handling"]["concluded"] = json!(false);
    bodies.push(replied);

    // (normalized petition, hub id), in insertion order.
    let mut stored: Vec<(Petition, String)> = Vec::new();
    for b in &bodies {
        let receipt = t.post_ok(PETITIONS, b, StatusCode::CREATED).await;
        let p: Petition = serde_json::from_value(b.clone()).expect("a petition");
        let p = validate_petition(p, tables(), Utc::now()).expect("valid");
        stored.push((p, receipt["id"].as_str().expect("id").to_owned()));
    }
    let newest_first: Vec<String> = stored.iter().rev().map(|(_, id)| id.clone()).collect();

    type Pred = fn(&Petition) -> bool;
    let cases: &[(&str, Pred)] = &[
        ("", |_| true),
        ("division=430102", |p| p.appeal.division == "430102"),
        ("division=430181", |p| p.appeal.division == "430181"),
        ("form=0001", |p| p.appeal.form == "0001"),
        ("form=0004", |p| p.appeal.form == "0004"),
        ("purpose=02", |p| p.appeal.purpose == "02"),
        ("purpose=04", |p| p.appeal.purpose == "04"),
        ("content_class=03", |p| {
            p.appeal.content_class.starts_with("03")
        }),
        ("content_class=0304", |p| {
            p.appeal.content_class.starts_with("0304")
        }),
        ("content_class=030404", |p| {
            p.appeal.content_class == "030404"
        }),
        ("from=2024-01-10", |p| {
            p.acceptance.complaint_date >= day("2024-01-10")
        }),
        ("to=2024-01-20", |p| {
            p.acceptance.complaint_date <= day("2024-01-20")
        }),
        ("from=2024-01-10&to=2024-01-20", |p| {
            let d = p.acceptance.complaint_date;
            d >= day("2024-01-10") && d <= day("2024-01-20")
        }),
        ("from=2024-01-05&to=2024-01-05", |p| {
            p.acceptance.complaint_date == day("2024-01-05")
        }),
        ("status=registered", |p| p.status().as_str() == "registered"),
        ("status=accepted", |p| p.status().as_str() == "accepted"),
        ("status=replied", |p| p.status().as_str() == "replied"),
        ("status=concluded", |p| p.status().as_str() == "concluded"),
        ("division=430104&status=concluded", |p| {
            p.appeal.division == "430104" && p.status().as_str() == "concluded"
        }),
        ("purpose=02&content_class=04&form=0002", |p| {
            p.appeal.purpose == "02"
                && p.appeal.content_class.starts_with("04")
                && p.appeal.form == "0002"
        }),
        ("from=2025-01-01", |_| false),
    ];
    for (query, keep) in cases {
        let want: Vec<String> = stored
            .iter()
            .rev()
            .filter(|(p, _)| keep(p))
            .map(|(_, id)| id.clone())
            .collect();
        if *query != "from=2025-01-01" {
            assert!(
                !want.is_empty(),
                "{query}: the samples should exercise this filter"
            );
        }
        let page = t.get_ok(&format!("{PETITIONS}?{query}&limit=500")).await;
        let (got, next) = page_ids(&page);
        assert_eq!(got, want, "GET {PETITIONS}?{query}");
        assert!(next.is_none(), "{query}: one page holds everything");
        for item in page["items"].as_array().expect("items") {
            assert_eq!(item["kind"], "petition");
            let (p, _) = stored
                .iter()
                .find(|(_, id)| item["id"] == id.as_str())
                .expect("a stored record");
            assert_eq!(item["status"], p.status().as_str());
            assert_eq!(item["data"], serde_json::to_value(p).expect("JSON"));
        }
    }

    // Paging: every record once, newest first, 7 at a time.
    let all = walk(&t, &format!("{PETITIONS}?limit=7"), 7).await;
    assert_eq!(
        all, newest_first,
        "limit=7 walks every record, newest first"
    );
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), stored.len(), "no duplicates");
    // Paging a filtered list.
    let accepted: Vec<String> = stored
        .iter()
        .rev()
        .filter(|(p, _)| p.status().as_str() == "accepted")
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(
        walk(&t, &format!("{PETITIONS}?status=accepted&limit=3"), 3).await,
        accepted
    );
    // The default page size is 50.
    let (ids, next) = page_ids(&t.get_ok(PETITIONS).await);
    assert_eq!((ids, next), (newest_first.clone(), None));

    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn petition_list_rejects_bad_parameters() {
    let t = TestHub::start().await;
    check_all(
        &t,
        vec![
            Case {
                what: "every bad parameter at once",
                req: get(&format!(
                    "{PETITIONS}?division=999999&form=9&purpose=xx&content_class=123\
                     &from=2024-02-30&to=yesterday&status=open&limit=0&cursor=nope"
                )),
                status: 400,
                code: "invalid_parameter",
                fields: &[
                    ("division", "invalid_parameter"),
                    ("form", "invalid_parameter"),
                    ("purpose", "invalid_parameter"),
                    ("content_class", "invalid_parameter"),
                    ("from", "invalid_parameter"),
                    ("to", "invalid_parameter"),
                    ("status", "invalid_parameter"),
                    ("limit", "invalid_parameter"),
                    ("cursor", "invalid_parameter"),
                ],
            },
            Case {
                what: "limit too large",
                req: get(&format!("{PETITIONS}?limit=501")),
                status: 400,
                code: "invalid_parameter",
                fields: &[("limit", "invalid_parameter")],
            },
            Case {
                what: "content class with letters",
                req: get(&format!("{PETITIONS}?content_class=03ab")),
                status: 400,
                code: "invalid_parameter",
                fields: &[("content_class", "invalid_parameter")],
            },
            Case {
                what: "from after to",
                req: get(&format!("{PETITIONS}?from=2024-03-01&to=2024-02-01")),
                status: 400,
                code: "invalid_parameter",
                fields: &[("from", "invalid_parameter")],
            },
            Case {
                what: "unknown parameter",
                req: get(&format!("{PETITIONS}?colour=red")),
                status: 400,
                code: "invalid_query",
                fields: &[("colour", "invalid_query")],
            },
            Case {
                what: "unknown parameter next to good ones",
                req: get(&format!("{PETITIONS}?limit=5&order_type=complaint")),
                status: 400,
                code: "invalid_query",
                fields: &[("order_type", "invalid_query")],
            },
            Case {
                what: "limit not a number",
                req: get(&format!("{PETITIONS}?limit=ten")),
                status: 400,
                code: "invalid_query",
                fields: &[("limit", "invalid_query")],
            },
        ],
    )
    .await;
    t.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Work orders
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workorder_submission_reading_and_errors() {
    let t = TestHub::start().await;
    let w = workorder_json(1);
    let a = t.post(WORKORDERS, &w).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let receipt = a.json();
    let id = receipt["id"].as_str().expect("id").to_owned();
    assert_eq!(
        a.headers[header::LOCATION],
        format!("{WORKORDERS}/{id}").as_str()
    );
    assert_eq!(receipt["kind"], "workorder");
    assert_eq!(receipt["source_system"], "hotline12345");
    assert_eq!(receipt["version"], w["source"]["version"]);
    assert_eq!(receipt["status"], "created");

    assert_eq!(t.post_ok(WORKORDERS, &w, StatusCode::OK).await, receipt);

    let got = t.get_ok(&format!("{WORKORDERS}/{id}")).await;
    let want = validate_workorder(sample_workorder(1), tables(), Utc::now()).expect("valid");
    assert_eq!(got["data"], serde_json::to_value(&want).expect("JSON"));
    assert_eq!(got["status"], want.state.as_str());
    let _: Record<WorkOrder> = serde_json::from_value(got).expect("a Record<WorkOrder>");

    let mut changed = w.clone();
    changed["content"] = json!("市民来电反映：内容改变，版本未变。");
    let mut newer = changed.clone();
    newer["source"]["version"] = json!(w["source"]["version"].as_i64().expect("version") + 1);
    let mut missing = w.clone();
    missing.as_object_mut().expect("object").remove("title");
    let mut invalid = w.clone();
    invalid["caller_phone"] = json!("abc");
    invalid["order_type"] = json!("praise");
    invalid["division"] = json!("000000");
    invalid["time_limit_days"] = json!(0);

    check_all(
        &t,
        vec![
            Case {
                what: "work order: same version, other content",
                req: post_json(WORKORDERS, &changed),
                status: 409,
                code: "version_conflict",
                fields: &[("source.version", "version_conflict")],
            },
            Case {
                what: "work order: missing title",
                req: post_json(WORKORDERS, &missing),
                status: 422,
                code: "schema_mismatch",
                fields: &[("title", "schema_mismatch")],
            },
            Case {
                what: "work order: every validation error",
                req: post_json(WORKORDERS, &invalid),
                status: 422,
                code: "validation_failed",
                fields: &[
                    ("caller_phone", "phone_format"),
                    ("order_type", "unknown_code"),
                    ("division", "unknown_code"),
                    ("time_limit_days", "count_min"),
                ],
            },
            Case {
                what: "work order: malformed",
                req: raw(Method::POST, WORKORDERS, Some("application/json"), "{,}"),
                status: 400,
                code: "malformed_json",
                fields: &[],
            },
            Case {
                what: "work order: not JSON",
                req: raw(Method::POST, WORKORDERS, Some("text/xml"), "<a/>"),
                status: 415,
                code: "unsupported_media_type",
                fields: &[],
            },
            Case {
                what: "work order: bad id",
                req: get(&format!("{WORKORDERS}/GD2024")),
                status: 400,
                code: "invalid_id",
                fields: &[("id", "invalid_id")],
            },
            Case {
                what: "work order: unknown id",
                req: get(&format!("{WORKORDERS}/{}", Uuid::now_v7())),
                status: 404,
                code: "not_found",
                fields: &[],
            },
        ],
    )
    .await;

    let updated = t.post_ok(WORKORDERS, &newer, StatusCode::OK).await;
    assert_eq!(updated["status"], "updated");
    assert_eq!(updated["id"], receipt["id"]);
    let mut older = w.clone();
    older["source"]["id"] = json!("GD-OLDER");
    older["order_no"] = json!("GD-OLDER");
    older["source"]["version"] = json!(5);
    t.post_ok(WORKORDERS, &older, StatusCode::CREATED).await;
    older["source"]["version"] = json!(4);
    check(
        &t,
        "work order: older version",
        post_json(WORKORDERS, &older),
        409,
        "version_stale",
        &[("source.version", "version_stale")],
    )
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workorder_list_filters_and_pages() {
    let t = TestHub::start().await;
    let mut stored: Vec<(WorkOrder, String)> = Vec::new();
    for i in 0..20 {
        let receipt = t
            .post_ok(WORKORDERS, &workorder_json(i), StatusCode::CREATED)
            .await;
        let w = validate_workorder(sample_workorder(i), tables(), Utc::now()).expect("valid");
        stored.push((w, receipt["id"].as_str().expect("id").to_owned()));
    }
    type Pred = fn(&WorkOrder) -> bool;
    let cases: &[(&str, Pred)] = &[
        ("division=430103", |w| w.division == "430103"),
        ("order_type=complaint", |w| w.order_type == "complaint"),
        ("order_type=help", |w| w.order_type == "help"),
        ("state=completed", |w| w.state == "completed"),
        ("state=handling", |w| w.state == "handling"),
        ("from=2024-01-08&to=2024-01-12", |w| {
            let d = w.call_time.date_naive();
            d >= day("2024-01-08") && d <= day("2024-01-12")
        }),
        ("order_type=complaint&state=completed", |w| {
            w.order_type == "complaint" && w.state == "completed"
        }),
    ];
    for (query, keep) in cases {
        let want: Vec<String> = stored
            .iter()
            .rev()
            .filter(|(w, _)| keep(w))
            .map(|(_, id)| id.clone())
            .collect();
        assert!(
            !want.is_empty(),
            "{query}: the samples should exercise this filter"
        );
        let (got, _) = page_ids(&t.get_ok(&format!("{WORKORDERS}?{query}&limit=500")).await);
        assert_eq!(got, want, "GET {WORKORDERS}?{query}");
    }
    let all = walk(&t, &format!("{WORKORDERS}?limit=7"), 7).await;
    let newest_first: Vec<String> = stored.iter().rev().map(|(_, id)| id.clone()).collect();
    assert_eq!(all, newest_first);

    check_all(
        &t,
        vec![
            Case {
                what: "work orders: every bad parameter",
                req: get(&format!(
                    "{WORKORDERS}?division=1&order_type=praise&state=lost&from=x&to=2024-13-01&limit=0"
                )),
                status: 400,
                code: "invalid_parameter",
                fields: &[
                    ("division", "invalid_parameter"),
                    ("order_type", "invalid_parameter"),
                    ("state", "invalid_parameter"),
                    ("from", "invalid_parameter"),
                    ("to", "invalid_parameter"),
                    ("limit", "invalid_parameter"),
                ],
            },
            Case {
                what: "work orders: a petition filter is unknown here",
                req: get(&format!("{WORKORDERS}?status=completed")),
                status: 400,
                code: "invalid_query",
                fields: &[("status", "invalid_query")],
            },
        ],
    )
    .await;
    t.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Code tables
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_tables_are_served() {
    let t = TestHub::start().await;
    let list = t.get_ok("/api/v1/code-tables").await;
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    for name in [
        "forms",
        "purposes",
        "content_classes",
        "divisions",
        "order_types",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    for s in list.as_array().expect("array") {
        assert!(s["entries"].as_u64().expect("entries") > 0, "{s}");
        assert!(s["version"].as_str().is_some_and(|v| !v.is_empty()), "{s}");
    }

    let divisions = t.get_ok("/api/v1/code-tables/divisions").await;
    assert_eq!(divisions["name"], "divisions");
    let entries = divisions["entries"].as_array().expect("entries");
    let old = entries
        .iter()
        .find(|e| e["code"] == "430122")
        .expect("430122 is kept for history");
    assert_eq!(old["replaced_by"], "430112");
    assert_eq!(old["active"], false);
    assert!(entries
        .iter()
        .any(|e| e["code"] == "430112" && e["active"] == true));
    let summary = list
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["name"] == "divisions")
        .expect("divisions");
    assert_eq!(summary["entries"].as_u64(), Some(entries.len() as u64));

    check(
        &t,
        "unknown table",
        get("/api/v1/code-tables/colours"),
        404,
        "unknown_code_table",
        &[],
    )
    .await;
    t.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_routes() {
    let t = TestHub::start().await;
    assert_eq!(t.get_ok("/healthz").await["status"], "ok");
    assert_eq!(t.get_ok("/readyz").await["status"], "ready");
    t.post_ok(PETITIONS, &petition_json(8), StatusCode::CREATED)
        .await;

    let a = t.get("/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers[header::CONTENT_TYPE]
        .to_str()
        .expect("ASCII")
        .starts_with("text/plain"));
    let text = a.text();
    for metric in [
        "xfhub_http_requests_total",
        "process_resident_memory_bytes",
        "xfhub_records_ingested_total",
    ] {
        assert!(text.contains(metric), "{metric} missing in\n{text}");
    }
    assert!(
        text.contains(r#"route="/api/v1/petitions""#),
        "requests are counted by matched route:\n{text}"
    );

    let echo = json!({"a": [1, "二", null], "b": {"c": true}});
    assert_eq!(t.post_ok("/api/v1/echo", &echo, StatusCode::OK).await, echo);

    check_all(
        &t,
        vec![
            Case {
                what: "unknown route",
                req: get("/api/v1/nothing-here"),
                status: 404,
                code: "no_such_route",
                fields: &[],
            },
            Case {
                what: "root",
                req: get("/"),
                status: 404,
                code: "no_such_route",
                fields: &[],
            },
            Case {
                what: "undecodable path parameter",
                req: get("/api/v1/petitions/%ff%fe"),
                status: 400,
                code: "invalid_path",
                fields: &[],
            },
            Case {
                what: "unknown admin route",
                req: raw(Method::POST, "/admin/shutdown", None, Body::empty()),
                status: 404,
                code: "no_such_route",
                fields: &[],
            },
        ],
    )
    .await;

    // A known route with another method: 405 with Allow and the error body.
    let a = t
        .send(raw(Method::DELETE, PETITIONS, None, Body::empty()))
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{}", a.text());
    let allow = a.headers[header::ALLOW].to_str().expect("ASCII").to_owned();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow}"
    );
    assert_error_body("DELETE petitions", &a.json(), "method_not_allowed", &[]);

    // Once shutdown began, readiness fails (the router still answers).
    let app = t.app.clone();
    t.stop().await;
    let resp = app.oneshot(get("/readyz")).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_error_body("readyz while stopping", &body, "shutting_down", &[]);
}

// ---------------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_trail_follows_a_submission() {
    let t = TestHub::start().await;
    let receipt = t
        .post_ok(PETITIONS, &petition_json(9), StatusCode::CREATED)
        .await;
    let message_id = receipt["message_id"].as_str().expect("message_id");
    let uri = format!("/admin/messages/{message_id}/trail");
    let trail = poll(&t, &uri, |v| hops(v).iter().any(|h| h == "acked")).await;
    assert_eq!(trail["message_id"], message_id);
    // The trail consumer's own hops; the business modules' queues (warning, dispatch) get
    // their own deliveries and acks in the same trail.
    let trail = poll(&t, &uri, |v| {
        v["hops"].as_array().is_some_and(|h| {
            ["trail", "warning", "dispatch"]
                .iter()
                .all(|q| h.iter().any(|h| h["hop"] == "acked" && h["queue"] == *q))
        })
    })
    .await;
    let of_queue = |q: &str| -> Vec<String> {
        trail["hops"]
            .as_array()
            .expect("hops")
            .iter()
            .filter(|h| h["queue"] == q)
            .map(|h| h["hop"].as_str().expect("hop").to_owned())
            .collect()
    };
    assert_eq!(
        of_queue("trail"),
        ["published", "delivered", "consumed", "acked"],
        "trail of {message_id}: {trail:#}"
    );
    for q in ["warning", "dispatch"] {
        let h = of_queue(q);
        assert!(
            in_order(&h, &["delivered", "acked"]) && !h.contains(&"consumed".to_owned()),
            "{q}: {trail:#}"
        );
    }

    check_all(
        &t,
        vec![
            Case {
                what: "unknown message",
                req: get(&format!("/admin/messages/{}/trail", Uuid::now_v7())),
                status: 404,
                code: "not_found",
                fields: &[],
            },
            Case {
                what: "message id not a UUID",
                req: get("/admin/messages/42/trail"),
                status: 400,
                code: "invalid_id",
                fields: &[],
            },
            Case {
                what: "import errors limit",
                req: get("/admin/import-errors?limit=0"),
                status: 400,
                code: "invalid_parameter",
                fields: &[("limit", "invalid_parameter")],
            },
        ],
    )
    .await;
    assert_eq!(t.get_ok("/admin/import-errors").await, json!([]));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed() {
    let t = TestHub::start().await;
    assert_eq!(t.get_ok("/admin/dead-letters").await, json!([]));
    assert_eq!(t.get_ok("/admin/dead-letters?all=true").await, json!([]));

    // A real message: a record envelope as the hub publishes it, never consumed so far.
    let petition = validate_petition(sample_petition(10), tables(), Utc::now()).expect("valid");
    let now = Utc::now();
    let record = Record {
        id: Uuid::now_v7(),
        kind: "petition".to_owned(),
        version: 1,
        status: petition.status().as_str().to_owned(),
        received_at: now,
        updated_at: now,
        data: serde_json::to_value(&petition).expect("JSON"),
    };
    let envelope: Envelope<Value> = Envelope::new(
        "petition.received",
        "api",
        &petition.appeal.division,
        serde_json::to_value(&record).expect("JSON"),
    );
    let message_id = envelope.message_id.to_string();
    let envelope_json = serde_json::to_string(&envelope).expect("JSON");
    t.hub
        .state
        .store
        .dead_letter("trail", None, &message_id, &envelope_json, 5, "test reason")
        .await
        .expect("dead-lettered");

    let list = t.get_ok("/admin/dead-letters").await;
    let letters = list.as_array().expect("array");
    assert_eq!(letters.len(), 1, "{list:#}");
    let dl = &letters[0];
    assert_eq!(dl["message_id"], message_id.as_str());
    assert_eq!(dl["queue"], "trail");
    assert_eq!(dl["reason"], "test reason");
    assert_eq!(dl["attempts"], 5);
    assert!(dl["replayed_at"].is_null());
    assert_eq!(
        dl["envelope"],
        serde_json::to_value(&envelope).expect("JSON")
    );
    let dl_id = dl["id"].as_i64().expect("numeric id");

    let a = t
        .send(raw(
            Method::POST,
            &format!("/admin/dead-letters/{dl_id}/replay"),
            None,
            Body::empty(),
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json(), json!({"dead_letter_id": dl_id, "queue": "trail"}));

    // The trail consumer gets it again.
    let uri = format!("/admin/messages/{message_id}/trail");
    let trail = poll(&t, &uri, |v| {
        in_order(&hops(v), &["replayed", "consumed", "acked"])
    })
    .await;
    let hops = hops(&trail);
    assert!(
        in_order(
            &hops,
            &[
                "dead_lettered",
                "replayed",
                "delivered",
                "consumed",
                "acked"
            ]
        ),
        "{hops:?}"
    );
    assert_eq!(
        hops.iter().filter(|h| *h == "consumed").count(),
        1,
        "{hops:?}"
    );

    // Replayed letters leave the open list but stay in the full one.
    assert_eq!(t.get_ok("/admin/dead-letters").await, json!([]));
    let all = t.get_ok("/admin/dead-letters?all=true&limit=10").await;
    assert_eq!(all.as_array().expect("array").len(), 1);
    assert!(all[0]["replayed_at"].is_string(), "{all:#}");

    let replay = |id: &str| {
        raw(
            Method::POST,
            &format!("/admin/dead-letters/{id}/replay"),
            None,
            Body::empty(),
        )
    };
    check_all(
        &t,
        vec![
            Case {
                what: "second replay",
                req: replay(&dl_id.to_string()),
                status: 404,
                code: "not_found",
                fields: &[],
            },
            Case {
                what: "unknown dead letter",
                req: replay("987654"),
                status: 404,
                code: "not_found",
                fields: &[],
            },
            Case {
                what: "non-numeric id",
                req: replay("first"),
                status: 400,
                code: "invalid_id",
                fields: &[],
            },
            Case {
                what: "dead letters limit",
                req: get("/admin/dead-letters?limit=1001"),
                status: 400,
                code: "invalid_parameter",
                fields: &[("limit", "invalid_parameter")],
            },
            Case {
                what: "dead letters unknown parameter",
                req: get("/admin/dead-letters?queue=trail"),
                status: 400,
                code: "invalid_query",
                fields: &[("queue", "invalid_query")],
            },
        ],
    )
    .await;
    t.stop().await;
}

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

#[test]
fn openapi_matches_contract() {
    let generated = xfhub::api::openapi_yaml();
    let checked_in = xfhub_contracts::OPENAPI_YAML;
    if generated != checked_in {
        let first_diff = generated
            .lines()
            .zip(checked_in.lines())
            .enumerate()
            .find(|(_, (g, c))| g != c)
            .map(|(n, (g, c))| {
                format!(
                    "first difference at line {}:\n  code:     {g}\n  contract: {c}",
                    n + 1
                )
            })
            .unwrap_or_else(|| {
                format!(
                    "one is a prefix of the other ({} vs {} lines)",
                    generated.lines().count(),
                    checked_in.lines().count()
                )
            });
        panic!(
            "contracts/openapi.yaml is not the document the code generates; {first_diff}\n\
             Regenerate it with `{REGENERATE}` and review the diff."
        );
    }
}

/// `(method, path)` of every `.route(...)` in `hub/src/api/mod.rs`, read from the source so
/// that a route added there without documentation fails this test.
fn routed() -> Vec<(String, String)> {
    let src = include_str!("../src/api/mod.rs");
    let src = &src[..src
        .find(".fallback(")
        .expect("routes() ends with a fallback")];
    // The Xiangyiban app channel's routes are mounted from `src/mobile/mod.rs`.
    let mobile = include_str!("../src/mobile/mod.rs");
    let mobile = &mobile[mobile.find("pub fn routes(").expect("mobile routes()")..];
    // Exchange packages (documented in OpenAPI; SOAP and XML are described by WSDL and XSD).
    let exchange = include_str!("../src/exchange/mod.rs");
    let exchange = &exchange[exchange.find("pub fn routes(").expect("exchange routes()")..];
    let mut routes = Vec::new();
    for chunk in src
        .split(".route(")
        .skip(1)
        .chain(mobile.split(".route(").skip(1))
        .chain(exchange.split(".route(").skip(1))
    {
        let path = chunk.split('"').nth(1).expect("a path literal");
        for method in ["get", "post", "put", "patch", "delete"] {
            let call = format!("{method}(");
            let found = chunk.match_indices(&call).any(|(i, _)| {
                i == 0
                    || !chunk.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && chunk.as_bytes()[i - 1] != b'_'
            });
            if found {
                routes.push((method.to_owned(), path.to_owned()));
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route() {
    let t = TestHub::start().await;
    let doc = t.get_ok("/openapi.json").await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi: {}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");

    let routed = routed();
    assert!(routed.len() >= 16, "the route list was read: {routed:?}");
    let undocumented: Vec<String> = routed
        .iter()
        .filter(|(m, p)| paths.get(p).and_then(|item| item.get(m)).is_none())
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes missing in the OpenAPI document: {undocumented:?}"
    );

    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    let not_routed: Vec<&(String, String)> =
        documented.iter().filter(|r| !routed.contains(r)).collect();
    assert!(
        not_routed.is_empty(),
        "documented but not routed: {not_routed:?}"
    );

    // Every documented route answers (with anything but "no such route").
    for (method, path) in &documented {
        let uri = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{name}", "forms");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let a = t
            .send(raw(method.clone(), &uri, Some("application/json"), "{}"))
            .await;
        assert!(a.status.as_u16() < 500, "{method} {uri}: {}", a.status);
        if a.status == StatusCode::NOT_FOUND {
            assert_ne!(a.json()["code"], "no_such_route", "{method} {uri}");
        }
    }
    // The served document is the one the contract is generated from.
    let yaml: Value = serde_yaml::from_str(&xfhub::api::openapi_yaml()).expect("YAML");
    assert_eq!(doc, yaml);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_table_is_shown_to_admins() {
    let t = TestHub::start().await;
    let table = t.get_ok("/admin/routes").await;
    assert_eq!(table["version"], "2026-11-28.2", "{table}");
    let rules = table["rules"].as_array().expect("rules");
    let trail = rules
        .iter()
        .find(|r| r["name"] == "trail")
        .expect("the trail rule");
    assert_eq!(trail["to"], json!(["trail"]), "{trail}");
    // Rules of modules not in this build are listed, disabled.
    assert!(
        rules
            .iter()
            .any(|r| r["name"] == "supervision" && r["enabled"] == json!(false)),
        "{table}"
    );
    t.stop().await;
}
