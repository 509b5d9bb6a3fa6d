//! Exchange packages (issue 6): export by info set and cursor, import into a fresh hub giving
//! the same canonical records, tampered packages refused whole with a reason and nothing
//! imported, records rejected one by one with the rest applied, the person register's
//! precedence rules, and `xfhub exchange verify` from a terminal.

mod common;

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use sqlx::Row;
use xfhub::app::Hub;
use xfhub::config::Config;
use xfhub::exchange::Rule;
use xfhub_schemas::{sample_petition, sample_workorder, Petition};
use xfhub_transforms::exchange::{self as fmt, FileEntry, Manifest, Signature};
use xfhub_transforms::xml_guard::{self, Limits};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use common::{Reply, TestClient};

struct TestHub {
    hub: Hub,
    app: Router,
    client: TestClient,
    _dir: tempfile::TempDir,
}

impl TestHub {
    async fn start() -> TestHub {
        TestHub::with(|_| {}).await
    }

    async fn with(tune: impl FnOnce(&mut Config)) -> TestHub {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        tune(&mut config);
        let hub = Hub::start(config).await.expect("the hub starts");
        let app = hub.router();
        let client = TestClient::full(&hub, "exchange tests").await;
        TestHub {
            hub,
            app,
            client,
            _dir: dir,
        }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        common::send(&self.app, req).await
    }

    async fn submit(&self, p: &Petition) {
        let a = self
            .send(
                self.client
                    .post_json("/api/v1/petitions", &serde_json::to_value(p).expect("json")),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text());
    }

    async fn pull(&self, infoset: &str, since: i64, limit: u64) -> Vec<u8> {
        let a = self
            .send(self.client.get(&format!(
                "/exchange/packages?infoset={infoset}&since={since}&limit={limit}"
            )))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.headers[header::CONTENT_TYPE], "application/zip");
        a.body.to_vec()
    }

    async fn push(&self, package: Vec<u8>) -> Reply {
        let req = self.client.signed_raw(
            Method::POST,
            "/exchange/packages",
            Some("application/zip"),
            package,
        );
        self.send(req).await
    }

    /// Every petition as (source id -> canonical data), personal numbers in clear.
    async fn petitions(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let uri = match &cursor {
                Some(c) => format!("/api/v1/petitions?limit=500&cursor={c}"),
                None => "/api/v1/petitions?limit=500".to_owned(),
            };
            let page = self.send(self.client.get(&uri)).await.json();
            for item in page["items"].as_array().expect("items") {
                out.insert(
                    item["data"]["source"]["id"]
                        .as_str()
                        .expect("id")
                        .to_owned(),
                    item["data"].clone(),
                );
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query(sql)
            .fetch_one(self.hub.state.store.reader())
            .await
            .expect("count")
            .get::<i64, _>(0)
    }
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    (0..a.len())
        .map(|i| {
            let mut f = a.by_index(i).expect("entry");
            let mut data = Vec::new();
            f.read_to_end(&mut data).expect("read");
            (f.name().to_owned(), data)
        })
        .collect()
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, data) in files {
        z.start_file(name.as_str(), opts).expect("start");
        z.write_all(data).expect("write");
    }
    z.finish().expect("finish").into_inner()
}

fn manifest_of(files: &[(String, Vec<u8>)]) -> Manifest {
    let (_, m) = files
        .iter()
        .find(|(n, _)| n == fmt::MANIFEST)
        .expect("manifest");
    let root = xml_guard::parse(m, &Limits::default()).expect("xml");
    fmt::read_document(&root, "manifest").expect("a manifest")
}

fn entry(name: &str, data: &[u8], records: u64) -> FileEntry {
    use sha2::Digest;
    FileEntry {
        name: name.to_owned(),
        size: data.len() as u64,
        records,
        sm3: hex::encode(sm3::Sm3::digest(data)),
        sha256: hex::encode(sha2::Sha256::digest(data)),
    }
}

/// The package with a new manifest (as given) signed with `secret`.
fn resign(files: &[(String, Vec<u8>)], manifest: &Manifest, signer: &str, secret: &str) -> Vec<u8> {
    let manifest_text = fmt::document("manifest", manifest).expect("xml");
    let sig = Signature {
        algorithm: "HMAC-SM3".to_owned(),
        signer: signer.to_owned(),
        signed_file: fmt::MANIFEST.to_owned(),
        value: xfhub::exchange::export::sign_manifest(secret.as_bytes(), manifest_text.as_bytes()),
    };
    let mut out: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter(|(n, _)| n != fmt::MANIFEST && n != fmt::SIGNATURE)
        .cloned()
        .collect();
    out.push((fmt::MANIFEST.to_owned(), manifest_text.into_bytes()));
    out.push((
        fmt::SIGNATURE.to_owned(),
        fmt::document("signature", &sig).expect("xml").into_bytes(),
    ));
    zip_of(&out)
}

/// The same package signed for another client (the data platform pushes with its own key).
fn signed_for(package: &[u8], client: &TestClient) -> Vec<u8> {
    let files = unzip(package);
    resign(
        &files,
        &manifest_of(&files),
        &client.app_key,
        &client.secret,
    )
}

/// (seq, id) of every record of a package.
fn record_keys(package: &[u8]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for (name, data) in unzip(package) {
        if !name.starts_with("data/") {
            continue;
        }
        xml_guard::parse_streaming(
            &data,
            &Limits {
                max_bytes: usize::MAX,
                ..Limits::default()
            },
            1,
            |e| {
                out.push((
                    e.child_text("seq")
                        .unwrap_or_default()
                        .parse()
                        .unwrap_or(-1),
                    e.child_text("id").unwrap_or_default().to_owned(),
                ));
                Ok(())
            },
        )
        .expect("data file");
    }
    out
}

#[tokio::test]
async fn export_then_import_into_a_fresh_hub_gives_identical_records() {
    let a = TestHub::start().await;
    for i in 0..25 {
        a.submit(&sample_petition(i)).await;
    }
    // A second version of one record: its first change-log entry is superseded.
    let mut v2 = sample_petition(3);
    v2.source.version += 1;
    v2.appeal.summary.push_str("（补充材料）");
    a.submit(&v2).await;
    for i in 0..3 {
        let w = sample_workorder(i);
        let r = a
            .send(a.client.post_json(
                "/api/v1/workorders",
                &serde_json::to_value(&w).expect("json"),
            ))
            .await;
        assert!(r.status.is_success());
    }

    // Paged by cursor: 10, 10, 5 records (25 distinct petitions; the superseded entry skipped).
    let first = a.pull("petition", 0, 10).await;
    let m1 = manifest_of(&unzip(&first));
    assert_eq!((m1.record_count, m1.cursor_from, m1.more), (10, 0, true));
    // The same cursor again gives the same records.
    let again = a.pull("petition", 0, 10).await;
    assert_eq!(record_keys(&first), record_keys(&again));
    assert_ne!(
        manifest_of(&unzip(&again)).package_serial,
        m1.package_serial
    );
    let mut packages = vec![first];
    let mut since = m1.cursor_to;
    loop {
        let p = a.pull("petition", since, 10).await;
        let m = manifest_of(&unzip(&p));
        assert_eq!(m.cursor_from, since);
        since = m.cursor_to;
        let more = m.more;
        packages.push(p);
        if !more {
            break;
        }
    }
    let total: usize = packages.iter().map(|p| record_keys(p).len()).sum();
    assert_eq!(total, 25);
    // Past the end: an empty package with the same cursor.
    let empty = manifest_of(&unzip(&a.pull("petition", since, 10).await));
    assert_eq!(
        (empty.record_count, empty.cursor_to, empty.more),
        (0, since, false)
    );

    // Import into a fresh hub, signed by its client.
    let b = TestHub::start().await;
    let mut inserted = 0;
    for p in &packages {
        let r = b.push(signed_for(p, &b.client)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let report = r.json();
        assert_eq!(report["rejected"], 0, "{report:#}");
        inserted += report["inserted"].as_u64().expect("inserted");
    }
    assert_eq!(inserted, 25);
    let (pa, pb) = (a.petitions().await, b.petitions().await);
    assert_eq!(pa.len(), 25);
    assert_eq!(pa, pb, "identical canonical records");
    // A repeat changes nothing: every record is skipped.
    let r = b.push(signed_for(&packages[0], &b.client)).await.json();
    assert_eq!(
        (r["inserted"].as_u64(), r["skipped"].as_u64()),
        (Some(0), Some(10))
    );
    // The person register holds one person per identity number seen.
    assert!(b.count("SELECT COUNT(*) FROM persons").await > 0);

    // Work orders and process events travel the same way.
    let wo = a.pull("workorder", 0, 100).await;
    let r = b.push(signed_for(&wo, &b.client)).await.json();
    assert_eq!(r["inserted"], 3, "{r:#}");
    let ws = b
        .send(b.client.get("/api/v1/workorders?limit=10"))
        .await
        .json();
    assert_eq!(ws["items"].as_array().map(Vec::len), Some(3));
    let exported = a
        .count("SELECT COUNT(*) FROM exchange_packages WHERE direction = 'export'")
        .await;
    assert!(exported >= 5);
    let audits = a
        .count("SELECT COUNT(*) FROM audit_log WHERE action = 'exchange.export'")
        .await;
    assert_eq!(audits, exported, "every export is audited");
}

#[tokio::test]
async fn process_events_export_and_import() {
    let a = TestHub::start().await;
    let mut p = sample_petition(70);
    p.handling = Default::default();
    a.submit(&p).await;
    let id = a.send(a.client.get("/api/v1/petitions")).await.json()["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let at = (p.acceptance.registered_at + chrono::Duration::hours(1)).to_rfc3339();
    let body = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><WriteBackHandling xmlns=\"urn:xfhub:v1\"><handling_result><petition_id>{id}</petition_id><result>accepted</result><unit>开福区信访局</unit><text>已受理</text><occurred_at>{at}</occurred_at></handling_result></WriteBackHandling></s:Body></s:Envelope>"
    );
    let r = a
        .send(a.client.signed_raw(
            Method::POST,
            "/ws/PetitionService",
            Some("text/xml"),
            body.into_bytes(),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let events = a.pull("process_event", 0, 100).await;
    assert_eq!(manifest_of(&unzip(&events)).record_count, 1);

    let b = TestHub::start().await;
    // Without its petition the event is rejected, the rest of the package still applies.
    let r = b.push(signed_for(&events, &b.client)).await.json();
    assert_eq!(
        (r["rejected"].as_u64(), r["inserted"].as_u64()),
        (Some(1), Some(0)),
        "{r:#}"
    );
    assert_eq!(r["rejects"][0]["reasons"][0]["code"], "petition_unknown");
    b.push(signed_for(&a.pull("petition", 0, 100).await, &b.client))
        .await;
    let r = b.push(signed_for(&events, &b.client)).await.json();
    assert_eq!(r["inserted"], 1, "{r:#}");
    assert_eq!(b.count("SELECT COUNT(*) FROM process_events").await, 1);
}

#[tokio::test]
async fn tampered_packages_are_refused_whole() {
    let a = TestHub::start().await;
    for i in 100..105 {
        a.submit(&sample_petition(i)).await;
    }
    let b = TestHub::start().await;
    let good = signed_for(&a.pull("petition", 0, 100).await, &b.client);
    let files = unzip(&good);
    let manifest = manifest_of(&files);
    let (ak, secret) = (b.client.app_key.clone(), b.client.secret.clone());

    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    // One byte of a data file changed (manifest and signature untouched).
    let mut one_byte = files.clone();
    let data = &mut one_byte
        .iter_mut()
        .find(|(n, _)| n.starts_with("data/"))
        .expect("data")
        .1;
    let at = data.len() / 2;
    data[at] = if data[at] == b'1' { b'2' } else { b'1' };
    cases.push((
        "one byte changed",
        zip_of(&one_byte),
        "package_digest_mismatch",
    ));
    // One byte of the zip itself changed (inside the compressed data of the first entry).
    let mut raw = good.clone();
    raw[60] ^= 0x55;
    cases.push(("one byte of the zip changed", raw, ""));
    // A wrong digest in a correctly signed manifest.
    let mut wrong = manifest.clone();
    wrong.file[1].sm3 = "0".repeat(64);
    cases.push((
        "wrong digest",
        resign(&files, &wrong, &ak, &secret),
        "package_digest_mismatch",
    ));
    // Signed with another secret, and a signature value changed.
    cases.push((
        "other secret",
        resign(&files, &manifest, &ak, "not-the-secret"),
        "package_bad_signature",
    ));
    let mut forged = files.clone();
    let sig = &mut forged
        .iter_mut()
        .find(|(n, _)| n == fmt::SIGNATURE)
        .expect("sig")
        .1;
    let text = String::from_utf8(sig.clone()).expect("utf8");
    let v = text.find("<value>").expect("value") + 7;
    let mut t = text.into_bytes();
    t[v] = if t[v] == b'a' { b'b' } else { b'a' };
    *sig = t;
    cases.push(("wrong signature", zip_of(&forged), "package_bad_signature"));
    // A manifest listing more records than the data holds (digests recomputed, re-signed).
    let mut counted = manifest.clone();
    counted.record_count += 1;
    cases.push((
        "count mismatch",
        resign(&files, &counted, &ak, &secret),
        "package_count_mismatch",
    ));
    // Entry names escaping the package.
    for evil in [
        "../evil.xml",
        "data/../../etc/passwd",
        "/abs.xml",
        "data\\000002.xml",
    ] {
        let mut f = files.clone();
        f.push((evil.to_owned(), b"<x/>".to_vec()));
        cases.push(("bad entry name", zip_of(&f), "package_bad_entry_name"));
    }
    // A zip bomb: 200 MiB of zeros, listed with its true digests and signed.
    let bomb = vec![0u8; 200 * 1024 * 1024];
    let mut f = files.clone();
    f.push(("data/000002.xml".to_owned(), bomb.clone()));
    let mut m = manifest.clone();
    m.file.push(entry("data/000002.xml", &bomb, 0));
    drop(bomb);
    cases.push(("zip bomb", resign(&f, &m, &ak, &secret), "package_zip_bomb"));
    // A data file that is not the schema (an operation flag X), digests and signature right.
    let mut bad = files.clone();
    let (name, data) = bad
        .iter_mut()
        .find(|(n, _)| n.starts_with("data/"))
        .expect("data");
    let changed =
        String::from_utf8(data.clone())
            .expect("utf8")
            .replacen("<op>I</op>", "<op>X</op>", 1);
    *data = changed.into_bytes();
    let name = name.clone();
    let mut m = manifest.clone();
    let pos = m.file.iter().position(|f| f.name == name).expect("listed");
    let data = bad
        .iter()
        .find(|(n, _)| *n == name)
        .expect("data")
        .1
        .clone();
    m.file[pos] = entry(&name, &data, m.file[pos].records);
    cases.push(("schema", resign(&bad, &m, &ak, &secret), "package_schema"));
    // A DTD in the header (billion laughs), digests and signature right.
    let mut dtd = files.clone();
    let h = &mut dtd
        .iter_mut()
        .find(|(n, _)| n == fmt::HEADER)
        .expect("header")
        .1;
    let text = String::from_utf8(h.clone()).expect("utf8").replacen(
        "?>",
        "?><!DOCTYPE h [<!ENTITY a \"aaaa\">]>",
        1,
    );
    *h = text.into_bytes();
    let hb = dtd
        .iter()
        .find(|(n, _)| n == fmt::HEADER)
        .expect("header")
        .1
        .clone();
    let mut m = manifest.clone();
    m.file[0] = entry(fmt::HEADER, &hb, 0);
    cases.push(("dtd", resign(&dtd, &m, &ak, &secret), "package_schema"));
    // Missing signature; not a zip at all.
    let unsigned: Vec<_> = files
        .iter()
        .filter(|(n, _)| n != fmt::SIGNATURE)
        .cloned()
        .collect();
    cases.push(("unsigned", zip_of(&unsigned), "package_missing_entry"));
    cases.push((
        "not a zip",
        b"PK\x03\x04 not really".to_vec(),
        "package_not_zip",
    ));

    for (what, package, code) in cases {
        let r = b.push(package).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            r.text()
        );
        let body = r.json();
        assert_eq!(body["code"], "package_invalid", "{what}");
        if !code.is_empty() {
            let codes: Vec<&str> = body["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .filter_map(|f| f["code"].as_str())
                .collect();
            assert!(
                codes.contains(&code),
                "{what}: {codes:?} should contain {code}"
            );
        }
        assert!(!body["fields"][0]["message_zh"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
        assert_eq!(
            b.count("SELECT COUNT(*) FROM records").await,
            0,
            "{what}: nothing imported"
        );
        assert_eq!(
            b.count("SELECT COUNT(*) FROM import_errors").await,
            0,
            "{what}: nothing imported"
        );
        assert_eq!(
            b.count("SELECT COUNT(*) FROM persons").await,
            0,
            "{what}: nothing imported"
        );
    }

    // 100,000 entries: refused from the central directory, before any entry is read.
    let mut z = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for i in 0..100_000 {
        z.start_file(format!("data/{:06}.xml", i % 999_999 + 1), stored)
            .ok();
    }
    let many = z.finish().expect("finish").into_inner();
    let mut archive = ZipArchive::new(Cursor::new(many.clone())).expect("zip");
    let problems = xfhub::exchange::import::verify(
        &mut archive,
        secret.as_bytes(),
        &xfhub::exchange::ExchangeConfig::default().limits(),
    )
    .expect_err("refused");
    assert_eq!(problems[0].code, "package_too_many_entries");
    let r = b.push(many).await;
    assert!(
        r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        r.text()
    );
    assert_eq!(b.count("SELECT COUNT(*) FROM records").await, 0);

    // The good package still imports.
    let r = b.push(good).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["inserted"], 5);
}

#[tokio::test]
async fn invalid_records_are_rejected_one_by_one_and_the_rest_applied() {
    let a = TestHub::start().await;
    for i in 200..204 {
        a.submit(&sample_petition(i)).await;
    }
    let b = TestHub::start().await;
    let files = unzip(&a.pull("petition", 0, 100).await);
    // Break one record's division inside the data file; digests recomputed, signed by b.
    let mut broken = files.clone();
    let (name, data) = broken
        .iter_mut()
        .find(|(n, _)| n.starts_with("data/"))
        .expect("data");
    let p = sample_petition(201);
    let text = String::from_utf8(data.clone()).expect("utf8");
    let marker = format!("<id>{}</id>", p.source.id);
    let at = text.find(&marker).expect("record of petition 201");
    let div = format!("<division>{}</division>", p.appeal.division);
    let rel = text[at..].find(&div).expect("division") + at;
    let mut changed = text.clone();
    changed.replace_range(rel..rel + div.len(), "<division>999999</division>");
    *data = changed.into_bytes();
    let name = name.clone();
    let mut m = manifest_of(&files);
    let pos = m.file.iter().position(|f| f.name == name).expect("listed");
    let d = broken
        .iter()
        .find(|(n, _)| *n == name)
        .expect("data")
        .1
        .clone();
    m.file[pos] = entry(&name, &d, m.file[pos].records);
    let r = b
        .push(resign(&broken, &m, &b.client.app_key, &b.client.secret))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let report = r.json();
    assert_eq!(
        (report["inserted"].as_u64(), report["rejected"].as_u64()),
        (Some(3), Some(1)),
        "{report:#}"
    );
    assert_eq!(report["rejects"][0]["source_id"], p.source.id.as_str());
    assert_eq!(
        report["rejects"][0]["reasons"][0]["path"],
        "appeal.division"
    );
    // The rejected record waits in the import errors, sealed.
    assert_eq!(b.count("SELECT COUNT(*) FROM import_errors").await, 1);
    let raw: String = sqlx::query("SELECT raw FROM import_errors")
        .fetch_one(b.hub.state.store.reader())
        .await
        .expect("row")
        .get(0);
    assert!(
        raw.starts_with("enc:"),
        "import errors hold personal data sealed"
    );
}

#[tokio::test]
async fn person_register_follows_the_precedence_rules() {
    // Two petitions of one complainant, registered a day apart, in one package.
    let older = sample_petition(300);
    let mut newer = sample_petition(301);
    newer.complainants[0] = older.complainants[0].clone();
    newer.complainants[0].name = Some("王小明".to_owned());
    newer.complainants[0].address = None;
    newer.acceptance.registered_at = older.acceptance.registered_at + chrono::Duration::days(1);
    newer.acceptance.complaint_date = newer.acceptance.registered_at.date_naive();
    let a = TestHub::start().await;
    a.submit(&newer).await;
    a.submit(&older).await;
    let package = a.pull("petition", 0, 100).await;

    assert!(older.complainants[0].id_number.is_some() && older.complainants[0].address.is_some());
    let older_name = older.complainants[0].name.clone().unwrap_or_default();
    // The package holds the newer petition first: `incoming` lets the later (older) one win,
    // `newer` keeps the more recently registered one whatever the order.
    for (rule, want_name) in [
        (Rule::Newer, "王小明".to_owned()),
        (Rule::Incoming, older_name),
    ] {
        let b = TestHub::with(|c| c.exchange.person_name = rule).await;
        let r = b.push(signed_for(&package, &b.client)).await.json();
        assert_eq!(r["persons_inserted"], 1, "{r:#}");
        let name: String = sqlx::query("SELECT name FROM persons")
            .fetch_one(b.hub.state.store.reader())
            .await
            .expect("a person")
            .get(0);
        assert_eq!(name, want_name, "{rule:?}");
        // An address missing in the newer petition does not erase the registered one.
        let address: Option<String> = sqlx::query("SELECT address FROM persons")
            .fetch_one(b.hub.state.store.reader())
            .await
            .expect("a person")
            .get(0);
        assert_eq!(address, older.complainants[0].address);
        // The identity number is stored sealed and matched by its blind index.
        let sealed: String = sqlx::query("SELECT id_number_sealed FROM persons")
            .fetch_one(b.hub.state.store.reader())
            .await
            .expect("a person")
            .get(0);
        assert!(sealed.starts_with("enc:"));
        assert_eq!(b.count("SELECT COUNT(*) FROM persons").await, 1);
    }
}

#[tokio::test]
async fn cli_verifies_a_package_file() {
    let a = TestHub::start().await;
    a.submit(&sample_petition(400)).await;
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("good.zip");
    std::fs::write(&good, a.pull("petition", 0, 10).await).expect("write");
    let run = |file: &std::path::Path, secret: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_xfhub"))
            .args(["exchange", "verify"])
            .arg(file)
            .env("XFHUB_SECRET", secret)
            .output()
            .expect("run xfhub")
    };
    let out = run(&good, &a.client.secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid: package XF"));
    let out = run(&good, "another-secret");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("package_bad_signature"));
}
