//! XML over HTTP (issue 6): the REST resources with canonical XML bodies under `/xml/v1`,
//! sharing the REST path (idempotency, validation, error codes, masking), errors as `<error>`
//! documents; and lxml validating samples, the hub's own answers (XML, SOAP) and an exchange
//! package against `contracts/xsd`.

mod common;
#[path = "py/python.rs"]
mod python;

use std::io::{Cursor, Read};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use xfhub::app::Hub;
use xfhub::config::Config;
use xfhub_schemas::{sample_petition, sample_workorder, Petition, WorkOrder};
use xfhub_transforms::xml_guard::{self, Element, Limits};
use xfhub_transforms::xml_soap;

use common::{Reply, TestClient};

const NS: &str = "urn:xfhub:v1";

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
        let client = TestClient::full(&hub, "xml tests").await;
        TestHub {
            hub,
            app,
            client,
            _dir: dir,
        }
    }

    async fn post_xml(&self, uri: &str, body: &str) -> Reply {
        let req = self.client.signed_raw(
            Method::POST,
            uri,
            Some("application/xml"),
            body.as_bytes().to_vec(),
        );
        common::send(&self.app, req).await
    }

    async fn get(&self, uri: &str) -> Reply {
        common::send(&self.app, self.client.get(uri)).await
    }
}

fn xml_of<T: serde::Serialize>(root: &str, v: &T) -> String {
    xml_soap::encode(root, NS, v).expect("serializes")
}

fn doc(a: &Reply) -> Element {
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ct")
            .starts_with("application/xml"),
        "{:?}",
        a.headers
    );
    let e = xml_guard::parse(&a.body, &Limits::default()).expect("XML");
    assert_eq!(e.ns.as_deref(), Some(NS), "{}", a.text());
    e
}

/// (code, [(path, code)]) of an `<error>` document.
fn error(a: &Reply) -> (String, Vec<(String, String)>) {
    let e = doc(a);
    assert_eq!(e.name, "error", "{}", a.text());
    assert!(!e.child_text("message_zh").unwrap_or_default().is_empty());
    let fields = e
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
    (e.child_text("code").unwrap_or_default().to_owned(), fields)
}

#[tokio::test]
async fn xml_resources_share_the_rest_path() {
    let t = TestHub::start().await;
    let p = sample_petition(1);
    let a = t
        .post_xml("/xml/v1/petitions", &xml_of("petition", &p))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let receipt = doc(&a);
    assert_eq!(receipt.name, "receipt");
    let id = receipt.child_text("id").expect("id").to_owned();
    assert_eq!(
        a.headers[header::LOCATION],
        format!("/xml/v1/petitions/{id}")
    );
    // A repeat over REST JSON answers the first receipt: one submission path.
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

    // The record reads back as the same canonical petition in XML and JSON.
    let rec = doc(&t.get(&format!("/xml/v1/petitions/{id}")).await);
    assert_eq!(rec.name, "petition_record");
    let data: Petition = xml_soap::decode(rec.child("data").expect("data")).expect("a petition");
    let json: Value = t.get(&format!("/api/v1/petitions/{id}")).await.json();
    assert_eq!(serde_json::to_value(&data).expect("json"), json["data"]);
    assert_eq!(data, p, "the caller holds pii:read: nothing masked");

    // Listing with the REST filters.
    t.post_xml(
        "/xml/v1/petitions",
        &xml_of("petition", &sample_petition(2)),
    )
    .await;
    let page = doc(&t.get("/xml/v1/petitions?limit=1").await);
    assert_eq!(page.name, "petition_page");
    assert_eq!(
        page.children.iter().filter(|c| c.name == "items").count(),
        1
    );
    assert!(page.child("next_cursor").is_some());

    // Work orders and code tables.
    let w = sample_workorder(1);
    let a = t
        .post_xml("/xml/v1/workorders", &xml_of("workorder", &w))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let wid = doc(&a).child_text("id").expect("id").to_owned();
    let got: WorkOrder = xml_soap::decode(
        doc(&t.get(&format!("/xml/v1/workorders/{wid}")).await)
            .child("data")
            .expect("data"),
    )
    .expect("a work order");
    assert_eq!(got, w);
    let table = doc(&t.get("/xml/v1/code-tables/divisions").await);
    assert_eq!(table.child_text("name"), Some("divisions"));

    // Masked without pii:read, as over REST.
    let reader = TestClient::create(&t.hub, "reader", &["read"], &["*"], &["*"]).await;
    let masked = common::send(&t.app, reader.get(&format!("/xml/v1/petitions/{id}"))).await;
    let masked: Petition =
        xml_soap::decode(doc(&masked).child("data").expect("data")).expect("a petition");
    assert_ne!(masked.complainants[0].mobile, p.complainants[0].mobile);
}

#[tokio::test]
async fn xml_errors_carry_the_rest_codes() {
    let t = TestHub::start().await;
    let mut bad = sample_petition(5);
    bad.appeal.division = "999999".to_owned();
    let a = t
        .post_xml("/xml/v1/petitions", &xml_of("petition", &bad))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error(&a),
        (
            "validation_failed".to_owned(),
            vec![("appeal.division".to_owned(), "unknown_code".to_owned())]
        )
    );
    let wrong_root = t
        .post_xml(
            "/xml/v1/petitions",
            &xml_of("workorder", &sample_workorder(1)),
        )
        .await;
    assert_eq!(error(&wrong_root).0, "schema_mismatch");
    let shape = xml_of("petition", &sample_petition(6)).replace("<version>", "<version>x");
    let (code, fields) = error(&t.post_xml("/xml/v1/petitions", &shape).await);
    assert_eq!(
        (code.as_str(), fields[0].0.as_str()),
        ("schema_mismatch", "source.version")
    );
    let no_ns = xfhub_schemas::to_xml("petition", &sample_petition(7)).expect("xml");
    assert_eq!(
        error(&t.post_xml("/xml/v1/petitions", &no_ns).await).0,
        "xml_wrong_namespace"
    );
    let dtd = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE petition [<!ENTITY x SYSTEM \"file:///etc/hostname\">]>{}",
        xml_of("petition", &sample_petition(8))
    );
    assert_eq!(
        error(&t.post_xml("/xml/v1/petitions", &dtd).await).0,
        "xml_dtd_forbidden"
    );
    let json = t.client.signed_raw(
        Method::POST,
        "/xml/v1/petitions",
        Some("application/json"),
        b"{}".to_vec(),
    );
    let a = common::send(&t.app, json).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error(&a).0, "unsupported_media_type");
    // Refusals of the middleware are XML on this path too.
    let unsigned = Request::get("/xml/v1/petitions")
        .body(Body::empty())
        .expect("req");
    let a = common::send(&t.app, unsigned).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error(&a).0, "auth_missing");
    assert_eq!(
        error(&t.get("/xml/v1/petitions?limit=0").await).0,
        "invalid_parameter"
    );
    assert_eq!(
        error(&t.get("/xml/v1/petitions/not-a-uuid").await).0,
        "invalid_id"
    );
    assert_eq!(
        error(&t.get("/xml/v1/code-tables/nope").await).0,
        "unknown_code_table"
    );
}

/// Samples, the hub's XML and SOAP answers and an exchange package's files, validated by lxml
/// against contracts/xsd; documents known to be invalid must fail.
#[tokio::test]
async fn lxml_validates_samples_and_the_hubs_output() {
    let t = TestHub::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let put = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.path().join(name), bytes).expect("write");
    };
    for i in 0..5 {
        put(
            &format!("sample-petition-{i}.xml"),
            xml_of("petition", &sample_petition(i)).as_bytes(),
        );
        put(
            &format!("sample-workorder-{i}.xml"),
            xml_of("workorder", &sample_workorder(i)).as_bytes(),
        );
    }
    let mut id = String::new();
    for i in 0..3 {
        let a = t
            .post_xml(
                "/xml/v1/petitions",
                &xml_of("petition", &sample_petition(i)),
            )
            .await;
        id = doc(&a).child_text("id").expect("id").to_owned();
        put(&format!("receipt-{i}.xml"), &a.body);
    }
    let w = t
        .post_xml(
            "/xml/v1/workorders",
            &xml_of("workorder", &sample_workorder(9)),
        )
        .await;
    let wid = doc(&w).child_text("id").expect("id").to_owned();
    put(
        "petition-record.xml",
        &t.get(&format!("/xml/v1/petitions/{id}")).await.body,
    );
    put(
        "workorder-record.xml",
        &t.get(&format!("/xml/v1/workorders/{wid}")).await.body,
    );
    put(
        "petition-page.xml",
        &t.get("/xml/v1/petitions?limit=2").await.body,
    );
    put(
        "workorder-page.xml",
        &t.get("/xml/v1/workorders").await.body,
    );
    put(
        "code-table.xml",
        &t.get("/xml/v1/code-tables/content_classes").await.body,
    );
    let mut bad = sample_petition(5);
    bad.appeal.division = "999999".to_owned();
    put(
        "error.xml",
        &t.post_xml("/xml/v1/petitions", &xml_of("petition", &bad))
            .await
            .body,
    );
    // SOAP answers and a fault.
    let soap = |op: &str, inner: &str| {
        format!("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><{op} xmlns=\"{NS}\">{inner}</{op}></s:Body></s:Envelope>")
    };
    let calls = [
        (
            "soap-get.xml",
            soap("GetPetition", &format!("<id>{id}</id>")),
        ),
        ("soap-query.xml", soap("QueryPetitions", "<limit>2</limit>")),
        ("soap-table.xml", soap("GetCodeTable", "<name>forms</name>")),
        (
            "soap-submit.xml",
            soap("SubmitPetition", &xml_of("petition", &sample_petition(20))),
        ),
        (
            "soap-workorder.xml",
            soap(
                "SubmitWorkOrder",
                &xml_of("workorder", &sample_workorder(20)),
            ),
        ),
    ];
    for (name, body) in calls {
        let req = t.client.signed_raw(
            Method::POST,
            "/ws/PetitionService",
            Some("text/xml"),
            body.into_bytes(),
        );
        let a = common::send(&t.app, req).await;
        assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.text());
        put(name, &a.body);
    }
    let req = t.client.signed_raw(
        Method::POST,
        "/ws/PetitionService",
        Some("text/xml"),
        soap("SubmitPetition", &xml_of("petition", &bad)).into_bytes(),
    );
    let fault = common::send(&t.app, req).await.text();
    let detail =
        &fault[fault.find("<error").expect("detail")..fault.find("</error>").expect("end") + 8];
    put("fault-detail.xml", detail.as_bytes());
    // An exchange package's files.
    let pkg = t.get("/exchange/packages?infoset=petition&limit=10").await;
    assert_eq!(pkg.status, StatusCode::OK);
    let mut zip = zip::ZipArchive::new(Cursor::new(pkg.body.to_vec())).expect("zip");
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("entry");
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).expect("read");
        put(&format!("ex-{}", f.name().replace('/', "-")), &bytes);
    }
    // Known-bad documents: the check must bite.
    let missing_appeal = xml_of("petition", &sample_petition(1));
    let s = missing_appeal.find("<appeal>").expect("appeal");
    let e = missing_appeal.find("</appeal>").expect("appeal end") + 9;
    put(
        "bad-petition-without-appeal.xml",
        format!("{}{}", &missing_appeal[..s], &missing_appeal[e..]).as_bytes(),
    );
    put(
        "bad-petition-wrong-order.xml",
        xml_of("petition", &sample_petition(1))
            .replacen("<source>", "<anonymous>false</anonymous><source>", 1)
            .as_bytes(),
    );
    let manifest = std::fs::read_to_string(dir.path().join("ex-manifest.xml")).expect("manifest");
    put(
        "bad-ex-manifest.xml",
        manifest.replacen("<sm3>", "<sm3>zz", 1).as_bytes(),
    );

    let contracts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts");
    if let Some(out) = python::run(
        "xsd_check.py",
        vec![
            contracts.display().to_string(),
            dir.path().display().to_string(),
        ],
    )
    .await
    {
        eprintln!("{out}");
        assert!(out.contains(", 0 failures"));
    }
}
