//! The SOAP WebService `PetitionService` (issue 6): WSDL and schemas, every operation over SOAP
//! 1.1 and 1.2 sharing the REST path (idempotency, validation, error codes), faults for
//! signing, scope and validation failures, write-back as a process event, hardening against
//! hostile XML, and a real client (Python zeep) calling every operation over TCP.

mod common;
#[path = "py/python.rs"]
mod python;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use sqlx::Row;
use xfhub::app::Hub;
use xfhub::config::Config;
use xfhub_schemas::samples::sample_mobile;
use xfhub_schemas::{sample_petition, sample_workorder, Petition};
use xfhub_transforms::xml_guard::{self, Element, Limits};
use xfhub_transforms::xml_soap;

use common::{Reply, TestClient, ALL_SCOPES};

const NS: &str = "urn:xfhub:v1";
const WS: &str = "/ws/PetitionService";
const S11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const S12: &str = "http://www.w3.org/2003/05/soap-envelope";

struct TestHub {
    hub: Hub,
    app: Router,
    client: TestClient,
    _dir: tempfile::TempDir,
}

impl TestHub {
    async fn start() -> TestHub {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let hub = Hub::start(config).await.expect("the hub starts");
        let app = hub.router();
        let client = TestClient::full(&hub, "soap tests").await;
        TestHub {
            hub,
            app,
            client,
            _dir: dir,
        }
    }

    async fn soap_as(&self, client: &TestClient, v12: bool, body: &str) -> Reply {
        let ct = if v12 {
            "application/soap+xml; charset=utf-8"
        } else {
            "text/xml; charset=utf-8"
        };
        let req = client.signed_raw(Method::POST, WS, Some(ct), body.as_bytes().to_vec());
        common::send(&self.app, req).await
    }

    async fn soap(&self, v12: bool, body: &str) -> Reply {
        self.soap_as(&self.client, v12, body).await
    }

    /// Calls `op` and returns the operation's answer element (the Body's child).
    async fn call(&self, v12: bool, op: &str, inner: &str) -> Element {
        let a = self.soap(v12, &envelope(v12, op, inner)).await;
        assert_eq!(a.status, StatusCode::OK, "{op}: {}", a.text());
        let ct = a.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("content type");
        assert!(
            ct.starts_with(if v12 {
                "application/soap+xml"
            } else {
                "text/xml"
            }),
            "{op}: {ct}"
        );
        body_child(&a)
    }
}

fn envelope(v12: bool, op: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><s:Envelope xmlns:s=\"{}\"><s:Body><{op} xmlns=\"{NS}\">{inner}</{op}></s:Body></s:Envelope>",
        if v12 { S12 } else { S11 }
    )
}

fn xml_of<T: serde::Serialize>(root: &str, v: &T) -> String {
    xml_soap::encode(root, NS, v).expect("serializes")
}

fn body_child(a: &Reply) -> Element {
    let env = xml_guard::parse(&a.body, &Limits::default()).expect("the answer is XML");
    assert_eq!(env.name, "Envelope", "{}", a.text());
    let body = env.child("Body").expect("a Body");
    body.children.first().cloned().expect("a Body child")
}

/// (fault code, error code, [(path, code)]) of a fault answer.
fn fault(a: &Reply) -> (String, String, Vec<(String, String)>) {
    let f = body_child(a);
    assert_eq!(f.name, "Fault", "not a fault: {}", a.text());
    let (code, detail) = match f.child("faultcode") {
        Some(c) => (c.text.clone(), f.child("detail").expect("detail")),
        None => (
            f.child("Code")
                .and_then(|c| c.child_text("Value"))
                .expect("Code/Value")
                .to_owned(),
            f.child("Detail").expect("Detail"),
        ),
    };
    let err = detail.child("error").expect("xf:error in the detail");
    assert_eq!(err.ns.as_deref(), Some(NS));
    assert!(!err.child_text("message_zh").unwrap_or_default().is_empty());
    let fields = err
        .children
        .iter()
        .filter(|c| c.name == "fields")
        .map(|c| {
            (
                c.child_text("path").unwrap_or_default().to_owned(),
                c.child_text("code").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (
        code,
        err.child_text("code").unwrap_or_default().to_owned(),
        fields,
    )
}

fn invalid_petition() -> Petition {
    let mut p = sample_petition(900);
    p.complainants[0].id_number = Some("430102199001011234".to_owned());
    p.appeal.division = "999999".to_owned();
    p
}

#[tokio::test]
async fn wsdl_and_schemas_are_served_unsigned_with_the_hub_address() {
    let t = TestHub::start().await;
    let req = Request::get(format!("{WS}?wsdl"))
        .header(header::HOST, "hub.example.gov.cn:8443")
        .header("x-forwarded-proto", "https")
        .body(Body::empty())
        .expect("request");
    let a = common::send(&t.app, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let text = a.text();
    assert!(text.contains("location=\"https://hub.example.gov.cn:8443/ws/PetitionService\""));
    assert!(text.contains("schemaLocation=\"https://hub.example.gov.cn:8443/ws/xsd/xfhub.xsd\""));
    assert!(
        !text.contains("localhost"),
        "every address is the hub's own"
    );
    for op in [
        "SubmitPetition",
        "GetPetition",
        "QueryPetitions",
        "WriteBackHandling",
        "SubmitWorkOrder",
        "GetCodeTable",
    ] {
        assert!(
            text.contains(&format!("<wsdl:operation name=\"{op}\">")),
            "{op}"
        );
    }
    let xsd = common::send(
        &t.app,
        Request::get("/ws/xsd/xfhub.xsd")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(xsd.status, StatusCode::OK);
    assert_eq!(xsd.body, xfhub_contracts::XFHUB_XSD.as_bytes());
    let missing = common::send(
        &t.app,
        Request::get("/ws/xsd/../Cargo.toml")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_ne!(missing.status, StatusCode::OK);
    let plain_get = common::send(&t.app, Request::get(WS).body(Body::empty()).expect("req")).await;
    assert_eq!(plain_get.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn operations_share_the_rest_path() {
    let t = TestHub::start().await;
    let p = sample_petition(1);
    let receipt = t
        .call(false, "SubmitPetition", &xml_of("petition", &p))
        .await;
    assert_eq!(receipt.name, "SubmitPetitionResponse");
    let receipt = receipt.child("receipt").expect("receipt");
    assert_eq!(receipt.child_text("status"), Some("created"));
    let id = receipt.child_text("id").expect("id").to_owned();
    // A repeat over SOAP 1.2 answers the first receipt, as REST does.
    let again = t
        .call(true, "SubmitPetition", &xml_of("petition", &p))
        .await;
    assert_eq!(
        again.child("receipt").and_then(|r| r.child_text("id")),
        Some(id.as_str())
    );
    // The REST route sees the same record and answers the same receipt for the same body.
    let rest = common::send(
        &t.app,
        t.client.post_json(
            "/api/v1/petitions",
            &serde_json::to_value(&p).expect("json"),
        ),
    )
    .await;
    assert_eq!(rest.status, StatusCode::OK);
    assert_eq!(rest.json()["id"], id.as_str());

    // GetPetition returns the canonical record; it decodes back to the submitted petition.
    let got = t
        .call(false, "GetPetition", &format!("<id>{id}</id>"))
        .await;
    let record = got.child("record").expect("record");
    let data: Petition = xml_soap::decode(record.child("data").expect("data")).expect("a petition");
    let stored: Value = common::send(&t.app, t.client.get(&format!("/api/v1/petitions/{id}")))
        .await
        .json();
    assert_eq!(serde_json::to_value(&data).expect("json"), stored["data"]);

    // QueryPetitions: filters and paging of the REST listing.
    let p2 = sample_petition(2);
    t.call(false, "SubmitPetition", &xml_of("petition", &p2))
        .await;
    let page = t.call(false, "QueryPetitions", "<limit>1</limit>").await;
    assert_eq!(
        page.children.iter().filter(|c| c.name == "items").count(),
        1
    );
    let cursor = page
        .child_text("next_cursor")
        .expect("a next page")
        .to_owned();
    let next = t
        .call(
            false,
            "QueryPetitions",
            &format!("<cursor>{cursor}</cursor><limit>1</limit>"),
        )
        .await;
    assert_eq!(
        next.children.iter().filter(|c| c.name == "items").count(),
        1
    );
    assert!(next.child("next_cursor").is_none());
    let division = &p.appeal.division;
    let filtered = t
        .call(
            false,
            "QueryPetitions",
            &format!("<division>{division}</division>"),
        )
        .await;
    for item in filtered.children.iter().filter(|c| c.name == "items") {
        let d = item
            .child("data")
            .and_then(|d| d.child("appeal"))
            .and_then(|a| a.child_text("division"));
        assert_eq!(d, Some(division.as_str()));
    }

    // SubmitWorkOrder and GetCodeTable.
    let wo = t
        .call(
            true,
            "SubmitWorkOrder",
            &xml_of("workorder", &sample_workorder(1)),
        )
        .await;
    assert_eq!(
        wo.child("receipt").and_then(|r| r.child_text("kind")),
        Some("workorder")
    );
    let table = t.call(false, "GetCodeTable", "<name>forms</name>").await;
    let table = table.child("code_table").expect("code_table");
    assert_eq!(table.child_text("name"), Some("forms"));
    assert!(table
        .children
        .iter()
        .any(|e| e.name == "entries" && e.child_text("code") == Some("0001")));
}

#[tokio::test]
async fn faults_carry_the_rest_codes_and_fields() {
    let t = TestHub::start().await;
    let bad = invalid_petition();
    let rest = common::send(
        &t.app,
        t.client.post_json(
            "/api/v1/petitions",
            &serde_json::to_value(&bad).expect("json"),
        ),
    )
    .await;
    assert_eq!(rest.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut rest_fields: Vec<(String, String)> = rest.json()["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or_default().to_owned(),
                f["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    rest_fields.sort();
    assert!(rest_fields.len() >= 2, "{rest_fields:?}");

    let a = t
        .soap(
            false,
            &envelope(false, "SubmitPetition", &xml_of("petition", &bad)),
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "SOAP 1.1 faults are 500"
    );
    let (code, err, mut fields) = fault(&a);
    fields.sort();
    assert_eq!(
        (code.as_str(), err.as_str()),
        ("soap:Client", "validation_failed")
    );
    assert_eq!(fields, rest_fields, "the same field errors as REST");
    let a = t
        .soap(
            true,
            &envelope(true, "SubmitPetition", &xml_of("petition", &bad)),
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "SOAP 1.2 Sender faults are 400"
    );
    assert_eq!(fault(&a).0, "soap:Sender");

    // A shape error names the field, like the JSON route's schema_mismatch.
    let wrong = envelope(false, "SubmitPetition", "<petition><source><system>api</system><id>x</id><version>abc</version></source></petition>");
    let (_, err, fields) = fault(&t.soap(false, &wrong).await);
    assert_eq!(err, "schema_mismatch");
    assert_eq!(fields[0].0, "petition.source.version");
    // Version conflict, unknown record, unknown operation.
    let p = sample_petition(5);
    t.call(false, "SubmitPetition", &xml_of("petition", &p))
        .await;
    let mut other = p.clone();
    other.appeal.summary.push_str("（改）");
    assert_eq!(
        fault(
            &t.soap(
                false,
                &envelope(false, "SubmitPetition", &xml_of("petition", &other))
            )
            .await
        )
        .1,
        "version_conflict"
    );
    let nobody = uuid::Uuid::now_v7();
    assert_eq!(
        fault(
            &t.soap(
                false,
                &envelope(false, "GetPetition", &format!("<id>{nobody}</id>"))
            )
            .await
        )
        .1,
        "not_found"
    );
    assert_eq!(
        fault(&t.soap(false, &envelope(false, "DeletePetition", "")).await).1,
        "soap_unknown_operation"
    );
    let unknown_field = envelope(false, "GetCodeTable", "<name>forms</name><extra>1</extra>");
    assert_eq!(
        fault(&t.soap(false, &unknown_field).await).1,
        "schema_mismatch"
    );

    // Signing: unsigned, wrong secret, replayed nonce; scopes. Faults, not JSON.
    let unsigned = Request::post(WS)
        .header(header::CONTENT_TYPE, "text/xml")
        .body(Body::from(envelope(
            false,
            "GetCodeTable",
            "<name>forms</name>",
        )))
        .expect("request");
    let a = common::send(&t.app, unsigned).await;
    let (code, err, fields) = fault(&a);
    assert_eq!(
        (code.as_str(), err.as_str()),
        ("soap:Client", "auth_missing")
    );
    assert_eq!(fields.len(), 4, "every missing header is named");
    let forged = t.client.with_secret("not-the-secret");
    let a = t
        .soap_as(
            &forged,
            true,
            &envelope(true, "GetCodeTable", "<name>forms</name>"),
        )
        .await;
    assert_eq!(fault(&a).0, "soap:Sender");
    assert_eq!(fault(&a).1, "auth_bad_signature");
    let body = envelope(false, "GetCodeTable", "<name>forms</name>");
    let now = common::now_ms();
    let once = t.client.signed_at(
        Method::POST,
        WS,
        Some("text/xml"),
        body.as_bytes(),
        now,
        "nonce-soap-1",
    );
    assert_eq!(common::send(&t.app, once).await.status, StatusCode::OK);
    let replay = t.client.signed_at(
        Method::POST,
        WS,
        Some("text/xml"),
        body.as_bytes(),
        now,
        "nonce-soap-1",
    );
    assert_eq!(
        fault(&common::send(&t.app, replay).await).1,
        "auth_nonce_reused"
    );
    let submit_only = TestClient::create(&t.hub, "submit only", &["submit"], &["*"], &["*"]).await;
    let a = t
        .soap_as(
            &submit_only,
            false,
            &envelope(false, "GetCodeTable", "<name>forms</name>"),
        )
        .await;
    assert_eq!(fault(&a).1, "auth_scope_denied");
    let reader = TestClient::create(&t.hub, "reader", &["read"], &["*"], &["*"]).await;
    let a = t
        .soap_as(
            &reader,
            false,
            &envelope(false, "GetCodeTable", "<name>forms</name>"),
        )
        .await;
    assert_eq!(
        fault(&a).1,
        "auth_scope_denied",
        "the endpoint is in the submit group"
    );
    let other_district =
        TestClient::create(&t.hub, "tianxin", ALL_SCOPES, &["*"], &["430103"]).await;
    let p = sample_petition(6);
    let a = t
        .soap_as(
            &other_district,
            false,
            &envelope(false, "SubmitPetition", &xml_of("petition", &p)),
        )
        .await;
    if p.appeal.division != "430103" {
        assert_eq!(fault(&a).1, "auth_division_denied");
    }
    // A body that is not SOAP at all.
    let a = t.soap(false, "{\"not\": \"xml\"}").await;
    assert_eq!(fault(&a).1, "malformed_xml");
    let json_ct = t
        .client
        .signed_raw(Method::POST, WS, Some("application/json"), b"{}".to_vec());
    assert_eq!(
        fault(&common::send(&t.app, json_ct).await).1,
        "unsupported_media_type"
    );
}

#[tokio::test]
async fn write_back_stores_a_process_event_and_publishes_petition_updated() {
    let t = TestHub::start().await;
    let mut p = sample_petition(11);
    p.handling = Default::default();
    let r = t
        .call(false, "SubmitPetition", &xml_of("petition", &p))
        .await;
    let id = r
        .child("receipt")
        .and_then(|r| r.child_text("id"))
        .expect("id")
        .to_owned();
    let at = (p.acceptance.registered_at + chrono::Duration::hours(2)).to_rfc3339();
    let result = |kind: &str, extra: &str| {
        format!("<handling_result><petition_id>{id}</petition_id><result>{kind}</result><unit>岳麓区城管局</unit><text>已受理</text><occurred_at>{at}</occurred_at>{extra}</handling_result>")
    };
    let wb = t
        .call(false, "WriteBackHandling", &result("accepted", ""))
        .await;
    assert_eq!(wb.child_text("duplicate"), Some("false"));
    assert_eq!(wb.child_text("status"), Some("accepted"));
    let seq = wb.child_text("event_seq").expect("seq").to_owned();
    let ev = wb.child("process_event").expect("event");
    assert_eq!(ev.child_text("kind"), Some("accepted"));
    assert_eq!(
        ev.child("petition_source").and_then(|s| s.child_text("id")),
        Some(p.source.id.as_str())
    );

    // The record's handling is updated, its source version kept.
    let rec: Value = common::send(&t.app, t.client.get(&format!("/api/v1/petitions/{id}")))
        .await
        .json();
    assert_eq!(rec["status"], "accepted");
    assert_eq!(rec["version"], p.source.version);
    assert_eq!(rec["data"]["handling"]["responsible_unit"], "岳麓区城管局");
    // Personal numbers stay sealed at rest and readable through the API.
    assert_eq!(
        rec["data"]["complainants"][0]["mobile"],
        p.complainants[0]
            .mobile
            .clone()
            .map_or(Value::Null, Value::from)
    );

    // One petition.updated (the record) and one process_event.recorded (the event) in the outbox.
    let rows = sqlx::query("SELECT message_type, envelope FROM outbox_messages ORDER BY seq")
        .fetch_all(t.hub.state.store.reader())
        .await
        .expect("outbox");
    let types: Vec<String> = rows
        .iter()
        .map(|r| r.get::<String, _>("message_type"))
        .collect();
    assert_eq!(
        types,
        [
            "petition.received",
            "petition.updated",
            "process_event.recorded"
        ]
    );
    let updated: Value = serde_json::from_str(&rows[1].get::<String, _>("envelope")).expect("json");
    assert_eq!(updated["payload"]["id"], id.as_str());
    assert_eq!(updated["payload"]["status"], "accepted");
    let mobile = p.complainants[0].mobile.clone().unwrap_or_default();
    assert!(
        !rows[1].get::<String, _>("envelope").contains(&mobile),
        "sealed in messages"
    );
    let recorded: Value =
        serde_json::from_str(&rows[2].get::<String, _>("envelope")).expect("json");
    assert_eq!(recorded["causation_id"], updated["message_id"]);
    assert_eq!(recorded["payload"]["kind"], "accepted");

    // A repeat stores nothing new.
    let again = t
        .call(true, "WriteBackHandling", &result("accepted", ""))
        .await;
    assert_eq!(again.child_text("duplicate"), Some("true"));
    assert_eq!(again.child_text("event_seq"), Some(seq.as_str()));
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM process_events")
        .fetch_one(t.hub.state.store.reader())
        .await
        .expect("count")
        .get("n");
    assert_eq!(n, 1);

    // Invalid results name their fields; an unknown petition is not found.
    let (_, err, fields) = fault(
        &t.soap(
            false,
            &envelope(false, "WriteBackHandling", &result("transferred", "")),
        )
        .await,
    );
    assert_eq!(err, "validation_failed");
    assert_eq!(
        fields,
        [(
            "handling_result.target_org".to_owned(),
            "required".to_owned()
        )]
    );
    let t2 = t
        .call(
            false,
            "WriteBackHandling",
            &result("transferred", "<target_org>天心区信访局</target_org>"),
        )
        .await;
    assert_eq!(
        t2.child("process_event")
            .and_then(|e| e.child_text("target_org")),
        Some("天心区信访局")
    );
    let concluded = t
        .call(false, "WriteBackHandling", &result("concluded", ""))
        .await;
    assert_eq!(concluded.child_text("status"), Some("concluded"));
    let late = fault(
        &t.soap(
            false,
            &envelope(false, "WriteBackHandling", &result("replied", "")),
        )
        .await,
    );
    assert_eq!(
        late.2,
        [(
            "handling_result.result".to_owned(),
            "petition_concluded".to_owned()
        )]
    );
    let nobody = uuid::Uuid::now_v7();
    let missing = result("accepted", "").replace(&id, &nobody.to_string());
    assert_eq!(
        fault(
            &t.soap(false, &envelope(false, "WriteBackHandling", &missing))
                .await
        )
        .1,
        "not_found"
    );
    // The audit chain has the write-backs.
    let audits: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'petition.write_back'")
            .fetch_one(t.hub.state.store.reader())
            .await
            .expect("count")
            .get("n");
    assert_eq!(audits, 3);
}

#[tokio::test]
async fn hostile_documents_are_refused_and_the_hub_stays_up() {
    let t = TestHub::start().await;
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE s:Envelope [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><s:Envelope xmlns:s=\"{S11}\"><s:Body><GetCodeTable xmlns=\"{NS}\"><name>&c;</name></GetCodeTable></s:Body></s:Envelope>"
    );
    assert_eq!(fault(&t.soap(false, &laughs).await).1, "xml_dtd_forbidden");
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><s:Envelope xmlns:s=\"{S11}\"><s:Body><GetCodeTable xmlns=\"{NS}\"><name>&xxe;</name></GetCodeTable></s:Body></s:Envelope>"
    );
    let a = t.soap(false, &xxe).await;
    assert_eq!(fault(&a).1, "xml_dtd_forbidden");
    assert!(!a.text().contains("root:"), "no file content leaks");
    let undeclared = envelope(false, "GetCodeTable", "<name>&xxe;</name>");
    assert_eq!(
        fault(&t.soap(false, &undeclared).await).1,
        "xml_entity_forbidden"
    );
    let deep = envelope(
        false,
        "GetCodeTable",
        &format!("{}{}", "<name>".repeat(100), "</name>".repeat(100)),
    );
    assert_eq!(fault(&t.soap(false, &deep).await).1, "xml_too_deep");
    let wrong_ns =
        envelope(false, "GetCodeTable", "<name>forms</name>").replace(NS, "urn:someone-else");
    let (_, err, _) = fault(&t.soap(false, &wrong_ns).await);
    assert_eq!(err, "xml_wrong_namespace");
    let v12_in_v11 = envelope(true, "GetCodeTable", "<name>forms</name>");
    assert_eq!(
        fault(&t.soap(false, &v12_in_v11).await).1,
        "soap_version_mismatch"
    );
    let latin1 =
        envelope(false, "GetCodeTable", "<name>forms</name>").replace("UTF-8", "ISO-8859-1");
    assert_eq!(
        fault(&t.soap(false, &latin1).await).1,
        "xml_encoding_unsupported"
    );
    let too_big = envelope(
        false,
        "GetCodeTable",
        &format!("<name>{}</name>", "x".repeat(3 * 1024 * 1024)),
    );
    let a = t.soap(false, &too_big).await;
    assert_eq!(fault(&a).1, "body_too_large");

    // A GBK-declared submission is decoded: the Chinese text arrives intact.
    let mut p = sample_petition(31);
    p.appeal.summary = "小区旁工地夜间施工噪音扰民，要求依法处理".to_owned();
    let utf8 = envelope(false, "SubmitPetition", &xml_of("petition", &p)).replace("UTF-8", "GBK");
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&utf8);
    assert!(!unmappable);
    let req = t.client.signed_raw(
        Method::POST,
        WS,
        Some("text/xml; charset=GBK"),
        gbk.into_owned(),
    );
    let a = common::send(&t.app, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let id = body_child(&a)
        .child("receipt")
        .and_then(|r| r.child_text("id"))
        .expect("id")
        .to_owned();
    let rec: Value = common::send(&t.app, t.client.get(&format!("/api/v1/petitions/{id}")))
        .await
        .json();
    assert_eq!(rec["data"]["appeal"]["summary"], p.appeal.summary.as_str());
    // The same GBK bytes declared as UTF-8 are refused, not stored as mojibake.
    let lie = encoding_rs::GBK
        .encode(&envelope(false, "GetCodeTable", "<name>芙蓉区</name>"))
        .0
        .into_owned();
    let req = t.client.signed_raw(Method::POST, WS, Some("text/xml"), lie);
    assert_eq!(
        fault(&common::send(&t.app, req).await).1,
        "xml_encoding_invalid"
    );

    // Still serving.
    let ok = t.call(false, "GetCodeTable", "<name>forms</name>").await;
    assert_eq!(ok.name, "GetCodeTableResponse");
}

#[tokio::test]
async fn zeep_calls_every_operation() {
    let t = TestHub::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = t.app.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    let reader =
        TestClient::create(&t.hub, "zeep reader", &["submit", "read"], &["*"], &["*"]).await;
    let p = sample_petition(41);
    let mut bad = invalid_petition();
    bad.source.id = "zeep-bad".to_owned();
    let rest = common::send(
        &t.app,
        t.client.post_json(
            "/api/v1/petitions",
            &serde_json::to_value(&bad).expect("json"),
        ),
    )
    .await;
    let invalid_fields: Vec<Value> = rest.json()["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| json!([f["path"], f["code"]]))
        .collect();
    let input = json!({
        "base": format!("http://{addr}"),
        "full": {"app_key": t.client.app_key, "secret": t.client.secret},
        "reader": {"app_key": reader.app_key, "secret": reader.secret},
        "petition": p,
        "petition2": sample_petition(42),
        "expected_mobile": p.complainants[0].mobile.clone().unwrap_or_else(|| sample_mobile(41)),
        "invalid_petition": bad,
        "invalid_fields": invalid_fields,
        "workorder": sample_workorder(41),
        "writeback_time": (p.acceptance.registered_at + chrono::Duration::hours(1)).to_rfc3339(),
    });
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("zeep-input.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&input).expect("json")).expect("write input");
    if let Some(out) = python::run("zeep_check.py", vec![path.display().to_string()]).await {
        eprintln!("{out}");
        assert!(out.contains("all checks passed"));
    }
}
