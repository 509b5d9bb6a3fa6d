//! In-process tests of the security features, as a partner system and an operator see them:
//! signed requests (HMAC-SM3, timestamp window, nonces that survive restarts, disabled clients,
//! secret rotation), operation scopes, info sets and divisions, masking and blind-index look-ups
//! of personal data, no personal data in clear on disk, key rotation with re-sealing under
//! load, the tamper-evident audit chain, and rate limits.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use chrono::Utc;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use sqlx::{Connection, SqliteConnection};
use uuid::Uuid;
use xfhub::admin_cli;
use xfhub::app::Hub;
use xfhub::config::{Config, GroupLimitConfig};
use xfhub_schemas::samples::{sample_id_number, sample_mobile};
use xfhub_schemas::{
    sample_petition, sample_workorder, validate_petition, validate_workorder, CodeTables, Envelope,
    Petition, Record,
};
use xfhub_security::pii::{self, DocKind};
use xfhub_security::sign::{
    new_app_key, new_nonce, HEADER_APP_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use xfhub_store::{ImportErrorItem, ResealTable, Stmt, Store, StoreOptions, Txn};

use common::{now_ms, Reply, TestClient, ALL_SCOPES};

const PETITIONS: &str = "/api/v1/petitions";
const WORKORDERS: &str = "/api/v1/workorders";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A hub on a data directory the test owns (so that it can be stopped and started again on the
/// same store), and its router (one per hub: the rate-limit buckets live in it).
struct TestHub {
    hub: Hub,
    app: Router,
}

impl TestHub {
    async fn start(dir: &Path) -> TestHub {
        TestHub::start_with(dir, |_| {}).await
    }

    async fn start_with(dir: &Path, tune: impl FnOnce(&mut Config)) -> TestHub {
        let mut config = Config {
            data_dir: dir.to_owned(),
            ..Default::default()
        };
        tune(&mut config);
        let hub = Hub::start(config).await.expect("the hub starts");
        let app = hub.router();
        TestHub { hub, app }
    }

    fn store(&self) -> &Store {
        &self.hub.state.store
    }

    async fn client(
        &self,
        name: &str,
        scopes: &[&str],
        sets: &[&str],
        divs: &[&str],
    ) -> TestClient {
        TestClient::create(&self.hub, name, scopes, sets, divs).await
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        common::send(&self.app, req).await
    }

    /// Sends `req`, expects `status`; returns the JSON answer.
    async fn expect(&self, what: &str, req: Request<Body>, status: StatusCode) -> Value {
        let a = self.send(req).await;
        assert_eq!(a.status, status, "{what}: {}", a.text());
        a.json()
    }

    async fn stop(self) {
        self.hub.shutdown(Duration::from_secs(5)).await;
    }
}

/// One request of a table and what it must be answered with: a status, and for an error the
/// code and exactly these `(path, code)` field errors (`code` empty for a success).
struct Case {
    what: String,
    req: Request<Body>,
    status: u16,
    code: &'static str,
    fields: &'static [(&'static str, &'static str)],
}

fn case(what: impl Into<String>, req: Request<Body>, status: u16, code: &'static str) -> Case {
    Case {
        what: what.into(),
        req,
        status,
        code,
        fields: &[],
    }
}

/// Sends `req` and asserts the status and, for an error, the body `{code, message,
/// message_zh, fields}` with exactly the `(path, code)` field errors given (in any order).
async fn check(
    t: &TestHub,
    what: &str,
    req: Request<Body>,
    status: u16,
    code: &str,
    fields: &[(&str, &str)],
) -> Reply {
    let a = t.send(req).await;
    assert_eq!(
        a.status.as_u16(),
        status,
        "{what}: status; body {}",
        a.text()
    );
    if code.is_empty() {
        return a;
    }
    common::assert_error_body(what, &a.json(), code, fields);
    a
}

async fn check_all(t: &TestHub, cases: Vec<Case>) {
    for c in cases {
        check(t, &c.what, c.req, c.status, c.code, c.fields).await;
    }
}

fn petition_json(i: u64) -> Value {
    serde_json::to_value(sample_petition(i)).expect("JSON")
}

fn workorder_json(i: u64) -> Value {
    serde_json::to_value(sample_workorder(i)).expect("JSON")
}

fn tables() -> &'static CodeTables {
    CodeTables::embedded()
}

/// The petition as the hub stores it (normalized).
fn normalized(p: &Value) -> Petition {
    let p: Petition = serde_json::from_value(p.clone()).expect("a petition");
    validate_petition(p, tables(), Utc::now()).expect("valid")
}

/// The record ids of a list page, in order.
fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

fn id_of(receipt: &Value) -> String {
    receipt["id"].as_str().expect("receipt id").to_owned()
}

/// `req` with header `name` set to `value` (replacing it).
fn with_header(mut req: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    req.headers_mut()
        .insert(name, HeaderValue::from_str(value).expect("header value"));
    req
}

/// `req` without header `name`.
fn without(mut req: Request<Body>, name: &'static str) -> Request<Body> {
    req.headers_mut().remove(name);
    req
}

fn header_of(req: &Request<Body>, name: &str) -> String {
    req.headers()[name].to_str().expect("ASCII").to_owned()
}

/// Polls the trail of `message_id` until its message was acked (10 s at most).
async fn wait_acked(t: &TestHub, c: &TestClient, message_id: &str) {
    let uri = format!("/admin/messages/{message_id}/trail");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = t.send(c.get(&uri)).await;
        if a.status == StatusCode::OK
            && a.json()["hops"]
                .as_array()
                .expect("hops")
                .iter()
                .any(|h| h["hop"] == "acked")
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{message_id} not acked in time: {} {}",
            a.status,
            a.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signed_element_is_checked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let c = TestClient::full(&t.hub, "partner").await;
    let list = format!("{PETITIONS}?division=430102&limit=5");
    let body = serde_json::to_vec(&petition_json(1)).expect("JSON");
    let json = Some("application/json");
    // Signed as (method, target, body), sent as (method, target, body).
    let tampered = |signed: (Method, &str, &[u8]), sent: (Method, &str, &[u8])| {
        let headers = c.headers_at(&signed.0, signed.1, signed.2, now_ms(), &new_nonce());
        let ct = (!sent.2.is_empty()).then_some("application/json");
        common::request(sent.0, sent.1, ct, &headers, sent.2.to_vec())
    };
    let mut flipped = body.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    let stranger = TestClient {
        app_key: new_app_key(),
        secret: c.secret.clone(),
    };
    let get = c.get(&list);
    let later_ts = (header_of(&get, HEADER_TIMESTAMP)
        .parse::<i64>()
        .expect("a number")
        + 1)
    .to_string();
    let signed_at = |offset_ms: i64| {
        c.signed_at(
            Method::GET,
            &list,
            None,
            b"",
            now_ms() + offset_ms,
            &new_nonce(),
        )
    };
    let upper = {
        let r = c.get(&list);
        let s = header_of(&r, HEADER_SIGNATURE).to_uppercase();
        with_header(r, HEADER_SIGNATURE, &s)
    };
    let truncated = {
        let r = c.get(&list);
        let s = header_of(&r, HEADER_SIGNATURE);
        with_header(r, HEADER_SIGNATURE, &s[..62])
    };
    const ALL: &[(&str, &str)] = &[
        ("x-app-key", "required"),
        ("x-timestamp", "required"),
        ("x-nonce", "required"),
        ("x-signature", "required"),
    ];
    let cases = vec![
        case("valid GET", c.get(&list), 200, ""),
        case(
            "valid POST",
            c.signed(Method::POST, PETITIONS, body.clone()),
            201,
            "",
        ),
        case(
            "query sent in another order than signed",
            tampered(
                (Method::GET, &list, b""),
                (
                    Method::GET,
                    &format!("{PETITIONS}?limit=5&division=430102"),
                    b"",
                ),
            ),
            200,
            "",
        ),
        case("signature in upper-case hex", upper, 200, ""),
        case(
            "four minutes old (inside the window)",
            signed_at(-240_000),
            200,
            "",
        ),
        case(
            "method changed",
            tampered((Method::GET, &list, b""), (Method::POST, &list, b"")),
            401,
            "auth_bad_signature",
        ),
        case(
            "path changed",
            tampered(
                (Method::GET, &list, b""),
                (
                    Method::GET,
                    &format!("{WORKORDERS}?division=430102&limit=5"),
                    b"",
                ),
            ),
            401,
            "auth_bad_signature",
        ),
        case(
            "query value changed",
            tampered(
                (Method::GET, &list, b""),
                (
                    Method::GET,
                    &format!("{PETITIONS}?division=430103&limit=5"),
                    b"",
                ),
            ),
            401,
            "auth_bad_signature",
        ),
        case(
            "query parameter added",
            tampered(
                (Method::GET, &list, b""),
                (Method::GET, &format!("{list}&form=0001"), b""),
            ),
            401,
            "auth_bad_signature",
        ),
        case(
            "one body bit flipped",
            tampered(
                (Method::POST, PETITIONS, &body),
                (Method::POST, PETITIONS, &flipped),
            ),
            401,
            "auth_bad_signature",
        ),
        case(
            "body sent without the signed body",
            common::request(
                Method::POST,
                PETITIONS,
                json,
                &c.headers_at(&Method::POST, PETITIONS, &body, now_ms(), &new_nonce()),
                Vec::new(),
            ),
            401,
            "auth_bad_signature",
        ),
        case(
            "timestamp changed by 1 ms",
            with_header(get, HEADER_TIMESTAMP, &later_ts),
            401,
            "auth_bad_signature",
        ),
        case(
            "nonce changed",
            with_header(c.get(&list), HEADER_NONCE, &new_nonce()),
            401,
            "auth_bad_signature",
        ),
        case(
            "signed with a wrong secret",
            c.with_secret("not-the-secret").get(&list),
            401,
            "auth_bad_signature",
        ),
        case("signature truncated", truncated, 401, "auth_bad_signature"),
        case(
            "unknown app key",
            stranger.get(&list),
            401,
            "auth_unknown_key",
        ),
        case(
            "six minutes old",
            signed_at(-360_000),
            401,
            "auth_timestamp",
        ),
        case(
            "six minutes ahead",
            signed_at(360_000),
            401,
            "auth_timestamp",
        ),
        case(
            "timestamp in seconds",
            c.signed_at(Method::GET, &list, None, b"", now_ms() / 1000, &new_nonce()),
            401,
            "auth_timestamp",
        ),
        case(
            "timestamp not a number",
            with_header(c.get(&list), HEADER_TIMESTAMP, "yesterday"),
            401,
            "auth_timestamp",
        ),
    ];
    check_all(&t, cases).await;

    // Missing headers: 401 auth_missing naming each missing header.
    let missing = |what: &str, req, fields| Case {
        what: what.to_owned(),
        req,
        status: 401,
        code: "auth_missing",
        fields,
    };
    check_all(
        &t,
        vec![
            missing(
                "no signing headers",
                Request::get(list.as_str())
                    .body(Body::empty())
                    .expect("request"),
                ALL,
            ),
            missing(
                "no nonce",
                without(c.get(&list), HEADER_NONCE),
                &[("x-nonce", "required")],
            ),
            missing(
                "no signature, no timestamp",
                without(without(c.get(&list), HEADER_SIGNATURE), HEADER_TIMESTAMP),
                &[("x-signature", "required"), ("x-timestamp", "required")],
            ),
            missing(
                "empty app key",
                with_header(c.get(&list), HEADER_APP_KEY, ""),
                &[("x-app-key", "required")],
            ),
            missing(
                "unsigned POST",
                common::request(Method::POST, PETITIONS, json, &[], body.clone()),
                ALL,
            ),
        ],
    )
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_request_is_refused_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let c = TestClient::full(&t.hub, "partner").await;
    let other = TestClient::full(&t.hub, "other partner").await;
    let (ts, nonce) = (now_ms(), new_nonce());
    let list = format!("{PETITIONS}?limit=1");
    let body = serde_json::to_vec(&petition_json(3)).expect("JSON");
    let json = Some("application/json");
    let once = || c.signed_at(Method::GET, &list, None, b"", ts, &nonce);
    let submit = |nonce: &str| c.signed_at(Method::POST, PETITIONS, json, &body, ts, nonce);
    let submit_nonce = new_nonce();

    check_all(
        &t,
        vec![
            case("first", once(), 200, ""),
            case("the same request again", once(), 401, "auth_nonce_reused"),
            case("a submission", submit(&submit_nonce), 201, ""),
            case(
                "the submission replayed",
                submit(&submit_nonce),
                401,
                "auth_nonce_reused",
            ),
            case(
                "another request with a used nonce",
                c.signed_at(Method::GET, PETITIONS, None, b"", now_ms(), &nonce),
                401,
                "auth_nonce_reused",
            ),
            case(
                "another client may use the same nonce",
                other.signed_at(Method::GET, &list, None, b"", ts, &nonce),
                200,
                "",
            ),
        ],
    )
    .await;

    // Nonces are stored: a new hub on the same store still refuses the replay.
    t.stop().await;
    let t = TestHub::start(dir.path()).await;
    check_all(
        &t,
        vec![
            case("replayed after a restart", once(), 401, "auth_nonce_reused"),
            case(
                "submission replayed after a restart",
                submit(&submit_nonce),
                401,
                "auth_nonce_reused",
            ),
            case("a fresh request", c.get(&list), 200, ""),
        ],
    )
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_client_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let c = TestClient::full(&t.hub, "partner").await;
    let other = TestClient::full(&t.hub, "other partner").await;
    check(&t, "enabled", c.get(PETITIONS), 200, "", &[]).await;
    admin_cli::set_disabled(t.store(), &c.app_key, true)
        .await
        .expect("disabled");
    // A fresh hub on the same store (no cached client record).
    t.stop().await;
    let t = TestHub::start(dir.path()).await;
    check_all(
        &t,
        vec![
            case(
                "disabled: read",
                c.get(PETITIONS),
                401,
                "auth_client_disabled",
            ),
            case(
                "disabled: submit",
                c.post_json(PETITIONS, &petition_json(2)),
                401,
                "auth_client_disabled",
            ),
            case("another client", other.get(PETITIONS), 200, ""),
        ],
    )
    .await;
    // Enabled again; the running hub is told to forget its cached record.
    admin_cli::set_disabled(t.store(), &c.app_key, false)
        .await
        .expect("enabled");
    t.hub.state.clients.forget(&c.app_key);
    check(&t, "enabled again", c.get(PETITIONS), 200, "", &[]).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_keeps_the_old_one_for_the_grace_period() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let c1 = TestClient::full(&t.hub, "partner").await;
    let ring = t.hub.state.keys.current();

    let s2 = admin_cli::rotate_client(t.store(), &ring, &c1.app_key, 3600)
        .await
        .expect("rotated");
    t.hub.state.clients.forget(&c1.app_key);
    let c2 = c1.with_secret(&s2);
    assert_ne!(c1.secret, c2.secret);
    check_all(
        &t,
        vec![
            case(
                "old secret within the grace period",
                c1.get(PETITIONS),
                200,
                "",
            ),
            case("new secret", c2.get(PETITIONS), 200, ""),
        ],
    )
    .await;

    let s3 = admin_cli::rotate_client(t.store(), &ring, &c1.app_key, 0)
        .await
        .expect("rotated again");
    t.hub.state.clients.forget(&c1.app_key);
    let c3 = c1.with_secret(&s3);
    tokio::time::sleep(Duration::from_millis(5)).await;
    check_all(
        &t,
        vec![
            case(
                "previous secret, no grace",
                c2.get(PETITIONS),
                401,
                "auth_bad_signature",
            ),
            case("first secret", c1.get(PETITIONS), 401, "auth_bad_signature"),
            case("newest secret", c3.get(PETITIONS), 200, ""),
        ],
    )
    .await;
    t.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Scopes, info sets, divisions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_scopes_are_enforced() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let reader = t.client("reader", &["read"], &["*"], &["*"]).await;
    let submitter = t.client("submitter", &["submit"], &["*"], &["*"]).await;
    let admin = t.client("operator", &["admin"], &["*"], &["*"]).await;
    let no_admin: Vec<&str> = ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| *s != "admin")
        .collect();
    let all_but_admin = t.client("all but admin", &no_admin, &["*"], &["*"]).await;
    let p = petition_json(1);
    let unsigned = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");

    let mut cases = vec![
        case(
            "no submit: POST petition",
            reader.post_json(PETITIONS, &p),
            403,
            "auth_scope_denied",
        ),
        case(
            "no submit: POST work order",
            reader.post_json(WORKORDERS, &workorder_json(1)),
            403,
            "auth_scope_denied",
        ),
        case("read: list", reader.get(PETITIONS), 200, ""),
        case(
            "read: code tables",
            reader.get("/api/v1/code-tables"),
            200,
            "",
        ),
        case("submit: POST", submitter.post_json(PETITIONS, &p), 201, ""),
        case(
            "no read: list",
            submitter.get(PETITIONS),
            403,
            "auth_scope_denied",
        ),
        case("admin: metrics", admin.get("/metrics"), 200, ""),
        case(
            "admin: dead letters",
            admin.get("/admin/dead-letters"),
            200,
            "",
        ),
        case(
            "admin only: no read",
            admin.get(PETITIONS),
            403,
            "auth_scope_denied",
        ),
        case("open: /healthz unsigned", unsigned("/healthz"), 200, ""),
        case("open: /readyz unsigned", unsigned("/readyz"), 200, ""),
        case(
            "open: /openapi.json unsigned",
            unsigned("/openapi.json"),
            200,
            "",
        ),
        case(
            "open: /healthz with a bad signature",
            with_header(reader.get("/healthz"), HEADER_SIGNATURE, "00"),
            200,
            "",
        ),
    ];
    for c in [&reader, &submitter, &all_but_admin] {
        for (method, uri) in [
            (Method::GET, "/admin/dead-letters"),
            (Method::GET, "/metrics"),
            (Method::GET, "/admin/import-errors"),
            (Method::POST, "/admin/dead-letters/1/replay"),
        ] {
            cases.push(case(
                format!("no admin: {method} {uri}"),
                c.signed(method, uri, Vec::new()),
                403,
                "auth_scope_denied",
            ));
        }
    }
    check_all(&t, cases).await;

    let doc = t
        .expect("openapi", unsigned("/openapi.json"), StatusCode::OK)
        .await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert_eq!(
        t.expect("healthz", unsigned("/healthz"), StatusCode::OK)
            .await["status"],
        "ok"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_sets_and_divisions_limit_what_a_client_sees() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let star = TestClient::full(&t.hub, "city").await;
    let orders_only = t
        .client("hotline", ALL_SCOPES, &["workorder"], &["*"])
        .await;
    let district = t
        .client("furong district", ALL_SCOPES, &["*"], &["430102"])
        .await;

    // Two petitions and one work order in each of the nine divisions, by the city client.
    let mut petitions: Vec<(String, String)> = Vec::new(); // (division, id), oldest first
    for i in 0..18 {
        let p = petition_json(i);
        let r = t
            .expect(
                "city submits",
                star.post_json(PETITIONS, &p),
                StatusCode::CREATED,
            )
            .await;
        petitions.push((
            p["appeal"]["division"]
                .as_str()
                .expect("division")
                .to_owned(),
            id_of(&r),
        ));
    }
    let mut orders: Vec<(String, String)> = Vec::new();
    for i in 0..9 {
        let w = workorder_json(i);
        let r = t
            .expect(
                "city submits",
                star.post_json(WORKORDERS, &w),
                StatusCode::CREATED,
            )
            .await;
        orders.push((
            w["division"].as_str().expect("division").to_owned(),
            id_of(&r),
        ));
    }
    let in_division = |list: &[(String, String)], d: &str| -> Vec<String> {
        list.iter()
            .rev()
            .filter(|(div, _)| div == d)
            .map(|(_, id)| id.clone())
            .collect()
    };
    // The oldest record of a division.
    let first_in = |list: &[(String, String)], d: &str| -> String {
        list.iter()
            .find(|(div, _)| div == d)
            .expect("a record of the division")
            .1
            .clone()
    };

    // Info sets.
    let mut w = workorder_json(20);
    w["division"] = json!("430102");
    check_all(
        &t,
        vec![
            case(
                "work orders only: POST petition",
                orders_only.post_json(PETITIONS, &petition_json(30)),
                403,
                "auth_info_set_denied",
            ),
            case(
                "work orders only: list petitions",
                orders_only.get(PETITIONS),
                403,
                "auth_info_set_denied",
            ),
            case(
                "work orders only: GET petition",
                orders_only.get(&format!("{PETITIONS}/{}", first_in(&petitions, "430102"))),
                403,
                "auth_info_set_denied",
            ),
            case(
                "work orders only: POST work order",
                orders_only.post_json(WORKORDERS, &w),
                201,
                "",
            ),
            case(
                "work orders only: GET work order",
                orders_only.get(&format!("{WORKORDERS}/{}", first_in(&orders, "430103"))),
                200,
                "",
            ),
        ],
    )
    .await;
    orders.push(("430102".to_owned(), {
        // The work order just stored, found through the city client.
        let page = t
            .expect(
                "city lists",
                star.get(&format!("{WORKORDERS}?limit=1")),
                StatusCode::OK,
            )
            .await;
        ids_of(&page)[0].clone()
    }));

    // Divisions.
    let mut outside = petition_json(100);
    assert_eq!(outside["appeal"]["division"], "430103");
    outside["source"]["id"] = json!("DIV-OUTSIDE");
    let mut inside = petition_json(99);
    assert_eq!(inside["appeal"]["division"], "430102");
    inside["source"]["id"] = json!("DIV-INSIDE");
    const DIVISION: &[(&str, &str)] = &[("division", "auth_division_denied")];
    check(
        &t,
        "district: POST petition of another division",
        district.post_json(PETITIONS, &outside),
        403,
        "auth_division_denied",
        DIVISION,
    )
    .await;
    let mut w_outside = workorder_json(21);
    w_outside["division"] = json!("430103");
    check(
        &t,
        "district: POST work order of another division",
        district.post_json(WORKORDERS, &w_outside),
        403,
        "auth_division_denied",
        DIVISION,
    )
    .await;
    let r = t
        .expect(
            "district: POST its own",
            district.post_json(PETITIONS, &inside),
            StatusCode::CREATED,
        )
        .await;
    petitions.push(("430102".to_owned(), id_of(&r)));

    let mine = in_division(&petitions, "430102");
    assert_eq!(mine.len(), 3, "two by the city and one by the district");
    let list = t
        .expect(
            "district lists",
            district.get(&format!("{PETITIONS}?limit=500")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(ids_of(&list), mine, "the district sees its division only");
    let list = t
        .expect(
            "district lists its division",
            district.get(&format!("{PETITIONS}?division=430102&limit=500")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(ids_of(&list), mine);
    let list = t
        .expect(
            "district lists work orders",
            district.get(&format!("{WORKORDERS}?limit=500")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(ids_of(&list), in_division(&orders, "430102"));
    assert_eq!(ids_of(&list).len(), 2);
    let all = t
        .expect(
            "city lists",
            star.get(&format!("{PETITIONS}?limit=500")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        ids_of(&all).len(),
        petitions.len(),
        "the city sees every division"
    );

    check_all(
        &t,
        vec![
            case(
                "district: GET a petition of another division",
                district.get(&format!("{PETITIONS}/{}", first_in(&petitions, "430103"))),
                404,
                "not_found",
            ),
            case(
                "district: GET a work order of another division",
                district.get(&format!("{WORKORDERS}/{}", first_in(&orders, "430103"))),
                404,
                "not_found",
            ),
            case(
                "district: GET its own petition",
                district.get(&format!("{PETITIONS}/{}", first_in(&petitions, "430102"))),
                200,
                "",
            ),
            case(
                "district: GET its own work order",
                district.get(&format!("{WORKORDERS}/{}", first_in(&orders, "430102"))),
                200,
                "",
            ),
        ],
    )
    .await;
    for uri in [
        format!("{PETITIONS}?division=430103"),
        format!("{WORKORDERS}?division=430103"),
        format!("{PETITIONS}?division=430104&status=accepted"),
    ] {
        check(
            &t,
            &format!("district: {uri}"),
            district.get(&uri),
            403,
            "auth_division_denied",
            DIVISION,
        )
        .await;
    }
    t.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Personal data
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_masked_without_pii_read_and_found_by_blind_index() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let clear = TestClient::full(&t.hub, "with pii:read").await;
    let scopes: Vec<&str> = ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| *s != "pii:read")
        .collect();
    let masked = t.client("without pii:read", &scopes, &["*"], &["*"]).await;

    // An identity number ending in the check character X, and two other ones.
    let id_x = (0..)
        .map(|i| sample_id_number(i, "430102"))
        .find(|n| n.ends_with('X'))
        .expect("some sample number ends in X");
    let id_b = sample_id_number(7, "430103");
    let (mobile_a, mobile_b) = (sample_mobile(1), sample_mobile(2));
    assert_ne!(mobile_a, mobile_b);
    let petition = |i: u64, id_number: &str, mobile: &str| {
        let mut p = petition_json(i);
        p["complainants"][0]["id_number"] = json!(id_number);
        p["complainants"][0]["mobile"] = json!(mobile);
        p
    };
    // A1 sends the X in lower case and the mobile with +86 and dashes; both are normalized.
    let a1 = petition(
        0,
        &id_x.to_lowercase(),
        &format!(
            "+86 {}-{}-{}",
            &mobile_a[..3],
            &mobile_a[3..7],
            &mobile_a[7..]
        ),
    );
    let a2 = petition(10, &id_x, &mobile_b);
    let b = petition(20, &id_b, &mobile_a);
    for (p, d) in [(&a1, "430102"), (&a2, "430103"), (&b, "430104")] {
        assert_eq!(p["appeal"]["division"], d);
    }
    let mut ids = HashMap::new();
    for (name, p) in [("a1", &a1), ("a2", &a2), ("b", &b)] {
        let r = t
            .expect(name, clear.post_json(PETITIONS, p), StatusCode::CREATED)
            .await;
        ids.insert(name, id_of(&r));
    }
    let w = workorder_json(3);
    let w_receipt = t
        .expect(
            "work order",
            clear.post_json(WORKORDERS, &w),
            StatusCode::CREATED,
        )
        .await;

    // Without pii:read: masked, in a GET and in a list.
    let mask_id = |n: &str| format!("{}********{}", &n[..6], &n[14..]);
    let mask_mobile = |m: &str| format!("{}****{}", &m[..3], &m[7..]);
    assert_eq!(mask_id("430102199001011234"), "430102********1234");
    assert_eq!(mask_mobile("13812345678"), "138****5678");
    let got = t
        .expect(
            "masked GET",
            masked.get(&format!("{PETITIONS}/{}", ids["a1"])),
            StatusCode::OK,
        )
        .await;
    let c = &got["data"]["complainants"][0];
    assert_eq!(c["id_number"], mask_id(&id_x).as_str(), "{c}");
    assert!(c["id_number"].as_str().expect("text").ends_with('X'));
    assert_eq!(c["mobile"], mask_mobile(&mobile_a).as_str(), "{c}");
    let page = t
        .expect("masked list", masked.get(PETITIONS), StatusCode::OK)
        .await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    for item in items {
        let c = &item["data"]["complainants"][0];
        let (n, m) = (
            c["id_number"].as_str().expect("id number"),
            c["mobile"].as_str().expect("mobile"),
        );
        assert!(n.len() == 18 && &n[6..14] == "********", "{c}");
        assert!(m.len() == 11 && &m[3..7] == "****", "{c}");
    }
    let got = t
        .expect(
            "masked work order",
            masked.get(&format!("{WORKORDERS}/{}", id_of(&w_receipt))),
            StatusCode::OK,
        )
        .await;
    let phone = validate_workorder(sample_workorder(3), tables(), Utc::now())
        .expect("valid")
        .caller_phone
        .expect("a caller phone");
    assert_eq!(got["data"]["caller_phone"], mask_mobile(&phone).as_str());

    // With pii:read: in clear, normalized, equal to what was submitted.
    for (name, p) in [("a1", &a1), ("a2", &a2), ("b", &b)] {
        let got = t
            .expect(
                name,
                clear.get(&format!("{PETITIONS}/{}", ids[name])),
                StatusCode::OK,
            )
            .await;
        assert_eq!(
            got["data"],
            serde_json::to_value(normalized(p)).expect("JSON"),
            "{name}"
        );
    }
    let got = t
        .expect(
            "clear GET",
            clear.get(&format!("{PETITIONS}/{}", ids["a1"])),
            StatusCode::OK,
        )
        .await;
    assert_eq!(got["data"]["complainants"][0]["id_number"], id_x.as_str());
    assert_eq!(got["data"]["complainants"][0]["mobile"], mobile_a.as_str());
    let got = t
        .expect(
            "clear work order",
            clear.get(&format!("{WORKORDERS}/{}", id_of(&w_receipt))),
            StatusCode::OK,
        )
        .await;
    assert_eq!(got["data"]["caller_phone"], phone.as_str());

    // Look-ups through the blind index: exactly the petitions with that number, newest first.
    let lookups: Vec<(String, Vec<&str>)> = vec![
        (format!("id_number={id_x}"), vec!["a2", "a1"]),
        (
            format!("id_number={}", id_x.to_lowercase()),
            vec!["a2", "a1"],
        ),
        (format!("id_number=%20{id_x}%20"), vec!["a2", "a1"]),
        (format!("id_number={id_b}"), vec!["b"]),
        (
            format!("id_number={}", sample_id_number(8, "430104")),
            vec![],
        ),
        (
            format!(
                "mobile=%2B86%20{}-{}-{}",
                &mobile_a[..3],
                &mobile_a[3..7],
                &mobile_a[7..]
            ),
            vec!["b", "a1"],
        ),
        (format!("mobile={mobile_a}"), vec!["b", "a1"]),
        (format!("mobile={mobile_b}"), vec!["a2"]),
        (format!("mobile={}", sample_mobile(5)), vec![]),
        (format!("id_number={id_x}&division=430102"), vec!["a1"]),
    ];
    for (query, want) in lookups {
        let want: Vec<String> = want.iter().map(|n| ids[n].clone()).collect();
        let page = t
            .expect(
                &query,
                clear.get(&format!("{PETITIONS}?{query}")),
                StatusCode::OK,
            )
            .await;
        assert_eq!(ids_of(&page), want, "?{query}");
        let page = t
            .expect(
                &query,
                masked.get(&format!("{PETITIONS}?{query}")),
                StatusCode::OK,
            )
            .await;
        assert_eq!(ids_of(&page), want, "?{query} (masked client)");
        for item in page["items"].as_array().expect("items") {
            let n = item["data"]["complainants"][0]["id_number"]
                .as_str()
                .expect("id number");
            assert!(n.contains("********"), "masked in a look-up too: {n}");
        }
    }

    let mut bad_checksum = id_x.clone();
    bad_checksum.pop();
    bad_checksum.push(if id_x.ends_with('0') { '1' } else { '0' });
    check_all(
        &t,
        vec![
            Case {
                what: "id number with a wrong check character".into(),
                req: clear.get(&format!("{PETITIONS}?id_number={bad_checksum}")),
                status: 400,
                code: "invalid_parameter",
                fields: &[("id_number", "invalid_parameter")],
            },
            Case {
                what: "id number too short".into(),
                req: clear.get(&format!("{PETITIONS}?id_number=430102")),
                status: 400,
                code: "invalid_parameter",
                fields: &[("id_number", "invalid_parameter")],
            },
            Case {
                what: "mobile not a mobile".into(),
                req: clear.get(&format!("{PETITIONS}?mobile=12345")),
                status: 400,
                code: "invalid_parameter",
                fields: &[("mobile", "invalid_parameter")],
            },
            Case {
                what: "both id number and mobile".into(),
                req: clear.get(&format!("{PETITIONS}?id_number={id_x}&mobile={mobile_a}")),
                status: 400,
                code: "invalid_parameter",
                fields: &[("mobile", "invalid_parameter")],
            },
        ],
    )
    .await;
    t.stop().await;
}

/// Every value of every table of an SQLite file as bytes, read through SQL (a value spread
/// over overflow pages is whole here); with its `table.column`.
async fn all_values(db: &Path) -> Vec<(String, Vec<u8>)> {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut conn)
            .await
            .expect("tables");
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(&mut conn)
                .await
                .expect("columns");
        for column in columns {
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(&format!(
                "SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\""
            ))
            .fetch_all(&mut conn)
            .await
            .expect("values");
            out.extend(
                values
                    .into_iter()
                    .flatten()
                    .map(|v| (format!("{table}.{column}"), v)),
            );
        }
    }
    conn.close().await.expect("close");
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads `xfhub.db`, `xfhub.db-wal` and `xfhub.db-shm` in `dir` (those that exist) and asserts
/// that none holds any of `secret` as ASCII, and that together they hold every one of `plain`
/// (so that the scan cannot pass by reading nothing).
fn scan_files(dir: &Path, secret: &[String], plain: &[String], when: &str) {
    let mut all = Vec::new();
    let mut read = Vec::new();
    // The log before the database: a checkpoint between the two reads moves pages from the
    // log into the database, never the other way, so every committed value is seen once.
    for name in ["xfhub.db-wal", "xfhub.db-shm", "xfhub.db"] {
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // SQLite removes the log and shared memory when its last connection closes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name != "xfhub.db" => continue,
            Err(e) => panic!("{when}: reading {}: {e}", path.display()),
        };
        for s in secret {
            assert!(
                !contains(&bytes, s.as_bytes()),
                "{when}: {name} holds {s} in clear"
            );
        }
        read.push(name);
        all.extend(bytes);
    }
    for p in plain {
        assert!(
            contains(&all, p.as_bytes()),
            "{when}: control: {p} should be in {read:?} (else the scan proves nothing)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_in_clear_at_rest() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let c = TestClient::full(&t.hub, "partner").await;

    // Personal values that must never be written in clear, and values that must be (controls).
    let mut secret: Vec<String> = vec![c.secret.clone()];
    let mut plain: Vec<String> = Vec::new();
    let mut message_ids = Vec::new();
    for i in 200..220 {
        let mut p = petition_json(i);
        if i % 2 == 0 {
            // Also in the form the partner may send it: lower-case x, spaced, +86.
            let n = normalized(&p);
            let m = n.complainants[0].mobile.clone().expect("mobile");
            p["complainants"][0]["mobile"] = json!(format!("+86 {m}"));
            p["complainants"][0]["id_number"] = json!(format!(
                " {} ",
                n.complainants[0]
                    .id_number
                    .clone()
                    .expect("id")
                    .to_lowercase()
            ));
        }
        let r = t
            .expect("submit", c.post_json(PETITIONS, &p), StatusCode::CREATED)
            .await;
        message_ids.push(r["message_id"].as_str().expect("message id").to_owned());
        let n = normalized(&p);
        let who = &n.complainants[0];
        secret.push(who.id_number.clone().expect("id number"));
        secret.push(who.mobile.clone().expect("mobile"));
        plain.push(n.source.id.clone());
    }
    for i in 200..210 {
        let w = workorder_json(i);
        let r = t
            .expect("submit", c.post_json(WORKORDERS, &w), StatusCode::CREATED)
            .await;
        message_ids.push(r["message_id"].as_str().expect("message id").to_owned());
        let w = validate_workorder(sample_workorder(i), tables(), Utc::now()).expect("valid");
        secret.push(w.caller_phone.clone().expect("caller phone"));
        plain.push(w.order_no.clone());
    }
    // Every message went through the bus (queue rows, trail hops, consumer records).
    for id in &message_ids {
        wait_acked(&t, &c, id).await;
    }

    // A dead letter and an import error, sealed as the hub seals personal data.
    let ring = t.hub.state.keys.current();
    let dead = normalized(&petition_json(230));
    let import = normalized(&petition_json(231));
    for p in [&dead, &import] {
        secret.push(p.complainants[0].id_number.clone().expect("id number"));
        secret.push(p.complainants[0].mobile.clone().expect("mobile"));
        plain.push(p.source.id.clone());
    }
    let mut data = serde_json::to_value(&dead).expect("JSON");
    pii::seal_document(&ring, DocKind::Petition, &mut data);
    let now = Utc::now();
    let record = Record {
        id: Uuid::now_v7(),
        kind: "petition".to_owned(),
        version: 1,
        status: dead.status().as_str().to_owned(),
        received_at: now,
        updated_at: now,
        data,
    };
    let envelope: Envelope<Value> = Envelope::new(
        "petition.received",
        "api",
        &dead.appeal.division,
        serde_json::to_value(&record).expect("JSON"),
    );
    t.store()
        .dead_letter(
            "trail",
            None,
            &envelope.message_id.to_string(),
            &serde_json::to_string(&envelope).expect("JSON"),
            5,
            "test reason",
        )
        .await
        .expect("dead-lettered");
    let mut raw = serde_json::to_value(&import).expect("JSON");
    pii::seal_document(&ring, DocKind::Petition, &mut raw);
    t.store()
        .record_import_error(ImportErrorItem {
            source: "provincial".to_owned(),
            kind: "petition".to_owned(),
            source_ref: Some(import.source.id.clone()),
            raw: serde_json::to_string(&raw).expect("JSON"),
            reasons: json!([{"path": "appeal.form", "code": "unknown_code"}]),
        })
        .await
        .expect("import error kept");
    // The admin views show sealed values masked, never as ciphertext or in clear.
    for uri in ["/admin/dead-letters", "/admin/import-errors"] {
        let a = t.send(c.get(uri)).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text());
        for s in &secret {
            assert!(!a.text().contains(s.as_str()), "{uri} shows {s}");
        }
    }
    scan_files(dir.path(), &secret, &plain, "while running");
    t.stop().await;

    // The files themselves, after the hub stopped: the database and, when present, its log
    // and shared memory. (Each was also scanned while the hub ran, before it stopped.)
    scan_files(dir.path(), &secret, &plain, "after the stop");
    // And every text value as SQL sees it.
    let values = all_values(&dir.path().join("xfhub.db")).await;
    for (column, v) in &values {
        for s in &secret {
            assert!(
                !contains(v, s.as_bytes()),
                "{column} holds {s} in clear: {}",
                String::from_utf8_lossy(v)
            );
        }
    }
    for p in &plain {
        assert!(
            values.iter().any(|(_, v)| contains(v, p.as_bytes())),
            "control: {p} should be in some column"
        );
    }
    let sealed = values
        .iter()
        .filter(|(col, v)| col == "records.body" && contains(v, b"enc:v1:"))
        .count();
    assert_eq!(sealed, 30, "every record holds sealed values");
}

// ---------------------------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------------------------

/// A small xorshift generator (no need for a random crate).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One row in each table that keeps a personal number as a single sealed value, sealed with
/// the hub's active key; returns each reseal column with the number in clear.
async fn sealed_singles(t: &TestHub) -> Vec<(ResealTable, String)> {
    let ring = t.hub.state.keys.current();
    let (id_number, mobile) = (sample_id_number(7, "430102"), sample_mobile(7));
    let now = now_ms();
    let statements = vec![
        Stmt::new(
            "INSERT INTO key_persons (id_digest, name, id_number_sealed, mobile_sealed, \
             division, job_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind("kp-digest")
        .bind("张三")
        .bind(ring.seal(&id_number))
        .bind(ring.seal(&mobile))
        .bind("430102")
        .bind("job")
        .bind(now),
        Stmt::new(
            "INSERT INTO persons (id, id_blind, id_number_sealed, mobile_sealed, seen_at, \
             source, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $5, $5)",
        )
        .bind("person-1")
        .bind("person-blind")
        .bind(ring.seal(&id_number))
        .bind(ring.seal(&mobile))
        .bind(now)
        .bind("exchange"),
        Stmt::new(
            "INSERT INTO app_users (id, name, id_number_sealed, id_blind, mobile_sealed, \
             mobile_blind, address, password_hash, recovery_question, recovery_answer_hash, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind("user-1")
        .bind("李四")
        .bind(ring.seal(&id_number))
        .bind("user-id-blind")
        .bind(ring.seal(&mobile))
        .bind("user-mobile-blind")
        .bind("长沙市芙蓉区")
        .bind("hash")
        .bind("question")
        .bind("answer")
        .bind(now),
        Stmt::new(
            "INSERT INTO role_holders (id, name, role, org, mobile_sealed, mobile_masked, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind("holder-1")
        .bind("王五")
        .bind("handler")
        .bind("430102")
        .bind(ring.seal(&mobile))
        .bind("138****0000")
        .bind(now),
        Stmt::new(
            "INSERT INTO sms_recipients (message_id, phone_digest, phone_sealed, phone_masked, \
             status) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind("sms-1")
        .bind("phone-digest")
        .bind(ring.seal(&mobile))
        .bind("138****0000")
        .bind("pending"),
    ];
    t.store()
        .transact(Txn {
            statements,
            ..Txn::default()
        })
        .await
        .expect("sealed rows stored");
    vec![
        (ResealTable::KeyPersonIdNumbers, id_number.clone()),
        (ResealTable::KeyPersonMobiles, mobile.clone()),
        (ResealTable::PersonIdNumbers, id_number.clone()),
        (ResealTable::PersonMobiles, mobile.clone()),
        (ResealTable::AppUserIdNumbers, id_number),
        (ResealTable::AppUserMobiles, mobile.clone()),
        (ResealTable::RoleHolderMobiles, mobile.clone()),
        (ResealTable::SmsRecipientPhones, mobile),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_reseals_everything_while_reads_go_on() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let c = TestClient::full(&t.hub, "partner").await;
    let old_id = t.hub.state.keys.current().active_id().to_owned();

    // 300 petitions: (hub id, identity number in clear).
    let records: Vec<(String, String)> = stream::iter(1000..1300u64)
        .map(|i| {
            let (app, c) = (t.app.clone(), c.clone());
            async move {
                let p = petition_json(i);
                let a = common::send(&app, c.post_json(PETITIONS, &p)).await;
                assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
                let n = normalized(&p).complainants[0]
                    .id_number
                    .clone()
                    .expect("id number");
                (id_of(&a.json()), n)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(records.len(), 300);
    let in_use = admin_cli::key_ids_in_use(t.store(), ResealTable::Records)
        .await
        .expect("key ids");
    assert_eq!(in_use, BTreeSet::from([old_id.clone()]));
    // Personal numbers the features keep as single sealed values (key persons, exchange
    // persons, app accounts, role holders, SMS recipients), sealed as the features seal them.
    let singles = sealed_singles(&t).await;
    // An attachment file of the app channel, sealed as an upload seals it, and an upload's
    // temporary file, which the pass leaves alone.
    let attachments = xfhub::mobile::attachments_dir(dir.path());
    std::fs::create_dir_all(&attachments).expect("attachments directory");
    let attachment = b"%PDF-1.4 \xe6\x9d\x90\xe6\x96\x99".to_vec();
    let file = attachments.join("0f".repeat(32));
    std::fs::write(&file, t.hub.state.keys.current().seal_bytes(&attachment)).expect("file");
    std::fs::write(file.with_extension("tmp"), "partial").expect("temporary file");

    // Rotate: a new active key; the old one stays in the ring for reading.
    let key_file = t.hub.state.keys.key_file().expect("a key file").to_owned();
    let new_id = xfhub::keys::rotate_file(&key_file).expect("rotated");
    assert_ne!(new_id, old_id);
    t.hub.state.keys.reload().expect("reloaded");
    let ring = t.hub.state.keys.current();
    assert_eq!(ring.active_id(), new_id);
    assert_eq!(ring.ids(), [old_id.clone(), new_id.clone()]);

    // A reader GETs random records the whole time and checks the clear identity numbers.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (app, c, records) = (t.app.clone(), c.clone(), records.clone());
        let (stop, reads) = (stop.clone(), reads.clone());
        tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ now_ms() as u64);
            while !stop.load(Ordering::SeqCst) {
                let (id, want) = &records[rng.below(records.len())];
                let a = common::send(&app, c.get(&format!("{PETITIONS}/{id}"))).await;
                if a.status != StatusCode::OK {
                    return Err(format!("GET {id}: {} {}", a.status, a.text()));
                }
                let got = a.json()["data"]["complainants"][0]["id_number"].clone();
                if got != want.as_str() {
                    return Err(format!("GET {id}: id number {got}, want {want}"));
                }
                reads.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    };
    let wait_reads = |at_least: u64| {
        let reads = reads.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while reads.load(Ordering::SeqCst) < at_least {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the reader is stuck"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_reads(10).await;
    let mut tables_seen = BTreeSet::new();
    let report = admin_cli::reseal_all(t.store(), &ring, Some(&attachments), |table, _| {
        tables_seen.insert(table.to_owned());
    })
    .await
    .expect("resealed");
    let after = reads.load(Ordering::SeqCst);
    wait_reads(after + 10).await;
    stop.store(true, Ordering::SeqCst);
    reader
        .await
        .expect("the reader ran")
        .expect("every read during the rotation was right");
    assert!(
        report.resealed >= 300,
        "records, outbox and client secrets were resealed: {report:?}"
    );
    assert!(tables_seen.contains("records"), "{tables_seen:?}");
    assert!(
        tables_seen.contains(admin_cli::ATTACHMENT_FILES),
        "{tables_seen:?}"
    );
    let sealed = std::fs::read_to_string(&file).expect("attachment file");
    assert!(sealed.starts_with(&format!("enc:v1:{new_id}:")), "{sealed}");
    assert_eq!(ring.open_bytes(&sealed).expect("opens"), attachment);
    assert_eq!(
        std::fs::read_to_string(file.with_extension("tmp")).expect("temporary file"),
        "partial"
    );

    let in_use = admin_cli::key_ids_in_use(t.store(), ResealTable::Records)
        .await
        .expect("key ids");
    assert_eq!(in_use, BTreeSet::from([new_id.clone()]));
    for table in ResealTable::ALL {
        let ids = admin_cli::key_ids_in_use(t.store(), table)
            .await
            .expect("key ids");
        assert!(
            ids.iter().all(|id| *id == new_id),
            "{}: {ids:?}",
            table.name()
        );
    }
    for client in t.store().list_clients().await.expect("clients") {
        assert!(client.secret_sealed.contains(&format!("enc:v1:{new_id}:")));
    }
    for (table, clear) in &singles {
        let rows = t.store().reseal_scan(*table, "", 100).await.expect("scan");
        assert_eq!(rows.len(), 1, "{}", table.name());
        assert!(
            rows[0].1.contains(&format!("enc:v1:{new_id}:")),
            "{}",
            table.name()
        );
        assert_eq!(
            &ring.open(&rows[0].1).expect("opens"),
            clear,
            "{}",
            table.name()
        );
    }

    // Reads and look-ups still work; the blind index did not change.
    let mut rng = Rng(42);
    for _ in 0..20 {
        let (id, want) = &records[rng.below(records.len())];
        let got = t
            .expect(
                "read after",
                c.get(&format!("{PETITIONS}/{id}")),
                StatusCode::OK,
            )
            .await;
        assert_eq!(got["data"]["complainants"][0]["id_number"], want.as_str());
        let page = t
            .expect(
                "look-up after",
                c.get(&format!("{PETITIONS}?id_number={want}")),
                StatusCode::OK,
            )
            .await;
        assert!(ids_of(&page).contains(id), "?id_number={want}");
    }

    // Again: nothing left to do.
    let again = admin_cli::reseal_all(t.store(), &ring, Some(&attachments), |_, _| {})
        .await
        .expect("resealed again");
    assert_eq!(again.resealed, 0, "{again:?}");

    // A new hub on the same directory reads with the rotated ring from the key file.
    t.stop().await;
    let t = TestHub::start(dir.path()).await;
    assert_eq!(t.hub.state.keys.current().active_id(), new_id);
    let (id, want) = &records[0];
    let got = t
        .expect(
            "read after restart",
            c.get(&format!("{PETITIONS}/{id}")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(got["data"]["complainants"][0]["id_number"], want.as_str());
    t.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

async fn audit_seqs(store: &Store) -> Vec<i64> {
    store
        .audit_page(0, 100_000)
        .await
        .expect("audit entries")
        .iter()
        .map(|r| r.entry.seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_records_and_detects_tampering() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let c = TestClient::full(&t.hub, "partner").await;
    let reader = t.client("reader", &["read"], &["*"], &["*"]).await;

    for i in 0..3 {
        t.expect(
            "submit",
            c.post_json(PETITIONS, &petition_json(i)),
            StatusCode::CREATED,
        )
        .await;
    }
    let (ts, nonce) = (now_ms(), new_nonce());
    let once = || c.signed_at(Method::GET, PETITIONS, None, b"", ts, &nonce);
    check_all(
        &t,
        vec![
            Case {
                what: "unsigned".into(),
                req: Request::get(PETITIONS)
                    .body(Body::empty())
                    .expect("request"),
                status: 401,
                code: "auth_missing",
                fields: &[
                    ("x-app-key", "required"),
                    ("x-timestamp", "required"),
                    ("x-nonce", "required"),
                    ("x-signature", "required"),
                ],
            },
            case(
                "bad signature",
                c.with_secret("wrong").get(PETITIONS),
                401,
                "auth_bad_signature",
            ),
            case(
                "scope denied",
                reader.post_json(PETITIONS, &petition_json(5)),
                403,
                "auth_scope_denied",
            ),
            case("first", once(), 200, ""),
            case("replay", once(), 401, "auth_nonce_reused"),
        ],
    )
    .await;

    let n = admin_cli::verify_audit(t.store())
        .await
        .expect("read the audit log")
        .expect("the chain is intact");
    let rows = t.store().audit_page(0, 100_000).await.expect("entries");
    assert!(n > 0);
    assert_eq!(n, rows.len());
    let has = |action: &str, actor: &str, outcome: &str| {
        rows.iter().any(|r| {
            r.entry.action == action
                && (actor.is_empty() || r.entry.actor == actor)
                && (outcome.is_empty() || r.entry.outcome == outcome)
        })
    };
    assert_eq!(
        rows.iter()
            .filter(|r| r.entry.action == "petition.submit" && r.entry.actor == c.app_key)
            .count(),
        3
    );
    assert!(has("client.add", "cli", ""));
    assert!(has("auth.failed", "anonymous", "auth_missing"));
    assert!(has("auth.failed", &c.app_key, "auth_bad_signature"));
    assert!(has("auth.failed", &c.app_key, "auth_nonce_reused"));
    assert!(has(
        "auth.scope_denied",
        &reader.app_key,
        "auth_scope_denied"
    ));
    t.stop().await;

    // Tampering, with the database opened directly.
    let db = dir.path().join("xfhub.db");
    let store = Store::open(StoreOptions::new(format!("sqlite://{}", db.display())))
        .await
        .expect("open the store");
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    let seqs = audit_seqs(&store).await;
    assert!(seqs.len() >= 5, "{seqs:?}");
    let mid = seqs[seqs.len() / 2];
    let next = seqs[seqs.len() / 2 + 1];

    // Append-only: the triggers refuse changes.
    for sql in [
        format!("UPDATE audit_log SET detail = 'edited' WHERE seq = {mid}"),
        format!("DELETE FROM audit_log WHERE seq = {mid}"),
    ] {
        let err = sqlx::query(&sql)
            .execute(&mut conn)
            .await
            .expect_err("refused by the trigger");
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(admin_cli::verify_audit(&store).await.expect("read"), Ok(n));

    // Without the triggers, an edited entry breaks the chain at that entry...
    let original: String = sqlx::query_scalar("SELECT detail FROM audit_log WHERE seq = $1")
        .bind(mid)
        .fetch_one(&mut conn)
        .await
        .expect("detail");
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(&mut conn)
        .await
        .expect("trigger dropped");
    sqlx::query("UPDATE audit_log SET detail = 'nothing happened' WHERE seq = $1")
        .bind(mid)
        .execute(&mut conn)
        .await
        .expect("edited");
    let brk = admin_cli::verify_audit(&store)
        .await
        .expect("read")
        .expect_err("the edit is detected");
    assert_eq!(brk.seq, mid, "{brk}");
    sqlx::query("UPDATE audit_log SET detail = $1 WHERE seq = $2")
        .bind(&original)
        .bind(mid)
        .execute(&mut conn)
        .await
        .expect("restored");
    assert_eq!(
        admin_cli::verify_audit(&store).await.expect("read"),
        Ok(n),
        "restored, the chain is intact again"
    );

    // ...and a deleted entry breaks it at the entry after the gap.
    sqlx::query("DROP TRIGGER audit_log_no_delete")
        .execute(&mut conn)
        .await
        .expect("trigger dropped");
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(mid)
        .execute(&mut conn)
        .await
        .expect("deleted");
    let brk = admin_cli::verify_audit(&store)
        .await
        .expect("read")
        .expect_err("the deletion is detected");
    assert_eq!(brk.seq, next, "{brk}");
    conn.close().await.expect("close");
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------------

/// Asserts a 429 `rate_limited` answer with `Retry-After` of at least one second.
async fn assert_limited(t: &TestHub, what: &str, req: Request<Body>) {
    let a = check(t, what, req, 429, "rate_limited", &[]).await;
    let retry: u64 = a
        .headers
        .get(header::RETRY_AFTER)
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("whole seconds");
    assert!(retry >= 1, "{what}: Retry-After {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_client_and_per_group() {
    // One client: two submissions at once, then one per second.
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start_with(dir.path(), |c| {
        c.rate_limits.submit = GroupLimitConfig {
            client_per_sec: 1,
            client_burst: 2,
            ..GroupLimitConfig::SUBMIT
        };
    })
    .await;
    let a = TestClient::full(&t.hub, "a").await;
    let b = TestClient::full(&t.hub, "b").await;
    check_all(
        &t,
        vec![
            case("a: 1st", a.post_json(PETITIONS, &petition_json(1)), 201, ""),
            case("a: 2nd", a.post_json(PETITIONS, &petition_json(2)), 201, ""),
        ],
    )
    .await;
    assert_limited(&t, "a: 3rd", a.post_json(PETITIONS, &petition_json(3))).await;
    check_all(
        &t,
        vec![
            case(
                "b is not affected: 1st",
                b.post_json(PETITIONS, &petition_json(4)),
                201,
                "",
            ),
            case(
                "b is not affected: 2nd",
                b.post_json(PETITIONS, &petition_json(5)),
                201,
                "",
            ),
            case("a may still read", a.get(PETITIONS), 200, ""),
        ],
    )
    .await;
    for _ in 0..50 {
        check(
            &t,
            "healthz",
            Request::get("/healthz")
                .body(Body::empty())
                .expect("request"),
            200,
            "",
            &[],
        )
        .await;
    }
    // After a second, a has a token again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    check(
        &t,
        "a: a second later",
        a.post_json(PETITIONS, &petition_json(3)),
        201,
        "",
        &[],
    )
    .await;
    t.stop().await;

    // The whole group: two submissions at once from anyone, checked before the signature.
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start_with(dir.path(), |c| {
        c.rate_limits.submit = GroupLimitConfig {
            global_per_sec: 1,
            global_burst: 2,
            ..GroupLimitConfig::SUBMIT
        };
    })
    .await;
    let a = TestClient::full(&t.hub, "a").await;
    let b = TestClient::full(&t.hub, "b").await;
    check_all(
        &t,
        vec![
            case("a: 1st", a.post_json(PETITIONS, &petition_json(1)), 201, ""),
            case("b: 1st", b.post_json(PETITIONS, &petition_json(2)), 201, ""),
        ],
    )
    .await;
    assert_limited(
        &t,
        "a: over the group's limit",
        a.post_json(PETITIONS, &petition_json(3)),
    )
    .await;
    assert_limited(
        &t,
        "b: over the group's limit",
        b.post_json(PETITIONS, &petition_json(4)),
    )
    .await;
    assert_limited(
        &t,
        "unsigned: shed before the signature is checked",
        common::request(
            Method::POST,
            PETITIONS,
            Some("application/json"),
            &[],
            b"{}".to_vec(),
        ),
    )
    .await;
    check(
        &t,
        "reads are another group",
        b.get(PETITIONS),
        200,
        "",
        &[],
    )
    .await;
    for _ in 0..50 {
        check(
            &t,
            "healthz",
            Request::get("/healthz")
                .body(Body::empty())
                .expect("request"),
            200,
            "",
            &[],
        )
        .await;
    }
    t.stop().await;
}

/// Admin requests are audited, monitoring scrapes are not (a Prometheus server polls every few
/// seconds and they read counters only); a refused scrape is audited like any refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_are_audited_metrics_scrapes_are_not() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let t = TestHub::start(dir.path()).await;
    let admin = TestClient::full(&t.hub, "monitor").await;
    let reader = t.client("reader", &["read"], &["*"], &["*"]).await;
    for _ in 0..3 {
        let a = t.send(admin.get("/metrics")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert!(a.text().contains("xfhub_"), "{}", a.text());
    }
    t.expect(
        "dead letters",
        admin.get("/admin/dead-letters"),
        StatusCode::OK,
    )
    .await;
    t.expect(
        "refused scrape",
        reader.get("/metrics"),
        StatusCode::FORBIDDEN,
    )
    .await;
    let rows = t.store().audit_page(0, 100_000).await.expect("entries");
    let count = |action: &str, target: &str| {
        rows.iter()
            .filter(|r| r.entry.action == action && r.entry.target == target)
            .count()
    };
    assert_eq!(count("admin.request", "GET /metrics"), 0);
    assert_eq!(count("admin.request", "GET /admin/dead-letters"), 1);
    assert_eq!(count("auth.scope_denied", "GET /metrics"), 1);
    t.stop().await;
}
