//! The pull connectors inside the hub: `GET /admin/connectors`, import errors reprocessed after
//! a code map fix, and a hub killed in the middle of a pull that resumes from its cursor with
//! no loss and no duplicate.

mod common;
#[allow(dead_code)] // reason: this suite uses a subset of the process harness
mod support;
#[path = "../../connectors/tests/verify/mod.rs"]
mod verify;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use xfhub::app::Hub;
use xfhub::config::Config;
use xfhub_connectors::pull::PullSettings;
use xfhub_mocks::faults::{Credentials, Faults};
use xfhub_mocks::hotline12345::{update_time, HotlineConfig, HotlineMock};
use xfhub_mocks::provincial::{ProvincialConfig, ProvincialMock};
use xfhub_mocks::render::Malformation;
use xfhub_store::{Store, StoreOptions};

use common::{assert_error_body, send, TestClient};

fn creds(name: &str) -> Credentials {
    Credentials {
        app_key: format!("hub-{name}"),
        secret: format!("secret-of-{name}"),
    }
}

fn pull(url: String, name: &str, map: Option<std::path::PathBuf>) -> PullSettings {
    let c = creds(name);
    PullSettings {
        enabled: true,
        url,
        app_key: c.app_key,
        secret: c.secret,
        interval_ms: 50,
        page_size: 100,
        timeout_ms: 2_000,
        backoff_base_ms: 10,
        backoff_max_ms: 200,
        code_map_file: map,
        ..PullSettings::default()
    }
}

/// Faults that make one in five records carry a code the embedded code maps lack.
fn unknown_codes() -> Faults {
    Faults {
        malformed_share: 0.2,
        malformed_kinds: vec![Malformation::UnknownCode],
        ..Faults::default()
    }
}

async fn connectors(app: &axum::Router, client: &TestClient) -> Vec<Value> {
    let r = send(app, client.get("/admin/connectors")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json().as_array().expect("a list").clone()
}

fn by_name<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_connectors_and_reprocessing_after_a_code_map_fix() {
    let dir = tempfile::tempdir().unwrap();
    let provincial = ProvincialMock::start(ProvincialConfig {
        seed: 5,
        records: 300,
        credentials: creds("provincial"),
        ledger: true,
        faults: unknown_codes(),
        ..ProvincialConfig::default()
    })
    .await
    .unwrap();
    let hotline = HotlineMock::start(HotlineConfig {
        seed: 6,
        records: 300,
        credentials: creds("hotline12345"),
        ledger: true,
        faults: unknown_codes(),
        ..HotlineConfig::default()
    })
    .await
    .unwrap();
    // Code map files as shipped (they lack the codes the faults send).
    let p_map = dir.path().join("provincial.toml");
    let h_map = dir.path().join("hotline12345.toml");
    std::fs::write(&p_map, xfhub_transforms::provincial::EMBEDDED_MAP).unwrap();
    std::fs::write(&h_map, xfhub_transforms::hotline12345::EMBEDDED_MAP).unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.connectors.provincial = pull(provincial.url(), "provincial", Some(p_map.clone()));
    config.connectors.hotline12345 = pull(hotline.url(), "hotline12345", Some(h_map.clone()));
    config.validate().expect("a valid configuration");
    let hub = Hub::start(config).await.unwrap();
    let app = hub.router();
    let client = TestClient::full(&hub, "ops").await;

    // Wait until both caught up with their mock.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = connectors(&app, &client).await;
        let p = by_name(&list, "provincial");
        let h = by_name(&list, "hotline12345");
        if p["cursor"].as_str().and_then(|c| c.parse::<u64>().ok())
            == Some(provincial.core.feed_len())
            && h["cursor"] == update_time(hotline.core.feed_len())
            && p["state"] == "idle"
            && h["state"] == "idle"
        {
            break;
        }
        assert!(Instant::now() < deadline, "not caught up: {list:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = connectors(&app, &client).await;
    for (name, mock_url) in [
        ("provincial", provincial.url()),
        ("hotline12345", hotline.url()),
    ] {
        let c = by_name(&list, name);
        assert_eq!(c["enabled"], true);
        assert_eq!(c["url"], mock_url);
        assert_eq!(c["breaker"], "closed");
        assert_eq!(c["consecutive_failures"], 0);
        assert!(c["last_success_at"].is_string(), "{c}");
        assert_eq!(c["code_map_version"], "2024.1");
        assert_eq!(c["counts"]["records"], 300, "{c}");
        assert_eq!(c["totals"]["records"], 300, "{c}");
        let rejected = c["counts"]["rejected"].as_u64().unwrap();
        assert!(rejected > 20, "{name}: {rejected} rejected");
        assert_eq!(c["totals"]["rejected"].as_u64(), Some(rejected));
        assert_eq!(
            c["counts"]["created"].as_u64().unwrap() + rejected,
            300,
            "{name}: {c}"
        );
        assert!(c.get("secret").is_none(), "the secret is never shown");
    }

    // The import errors name the field and the value, and hold the raw record.
    let r = send(&app, client.get("/admin/import-errors?limit=1000")).await;
    assert_eq!(r.status, StatusCode::OK);
    let errors = r.json();
    let errors = errors.as_array().unwrap();
    let p_errors: Vec<&Value> = errors
        .iter()
        .filter(|e| e["source"] == "provincial")
        .collect();
    let h_errors: Vec<&Value> = errors
        .iter()
        .filter(|e| e["source"] == "hotline12345")
        .collect();
    for e in &p_errors {
        assert_eq!(e["kind"], "petition");
        let reason = &e["reasons"][0];
        assert_eq!(reason["path"], "xfmddm", "{e}");
        assert_eq!(reason["code"], "unknown_code");
        assert!(
            reason["message"]
                .as_str()
                .unwrap()
                .contains("xfmddm = \"5\""),
            "{reason}"
        );
        assert!(
            e["raw"].as_str().unwrap().starts_with("<xfj><xfjbh>"),
            "{e}"
        );
    }
    for e in &h_errors {
        assert_eq!(e["kind"], "workorder");
        assert_eq!(e["reasons"][0]["path"], "orderType", "{e}");
        assert!(e["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("投诉建议"));
    }

    // Bad requests change nothing.
    let r = send(
        &app,
        client.post_json("/admin/import-errors/reprocess", &json!({"source": "sms"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_error_body(
        "unknown source",
        &r.json(),
        "invalid_field",
        &[("source", "unknown_code")],
    );
    let r = send(
        &app,
        client.post_json("/admin/import-errors/reprocess", &json!({"limit": 0})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = send(
        &app,
        client.post_json(
            "/admin/import-errors/reprocess",
            &json!({"everything": true}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.json()["code"], "schema_mismatch");
    // A broken code map file is refused whole; the map in force stays.
    std::fs::write(&p_map, "version = \"broken\"\n[xfxs\n").unwrap();
    let r = send(
        &app,
        client.post_json("/admin/import-errors/reprocess", &json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.json()["code"], "code_map_invalid");

    // Without a fix, reprocessing fails again with the same reasons.
    std::fs::write(&p_map, xfhub_transforms::provincial::EMBEDDED_MAP).unwrap();
    let r = send(
        &app,
        client.post_json(
            "/admin/import-errors/reprocess",
            &json!({"source": "provincial"}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["stored"], 0);
    assert_eq!(r.json()["failed"].as_u64(), Some(p_errors.len() as u64));

    // Fix both code maps: 信访目的 5 is 咨询 (05); 投诉建议 is a complaint.
    let fixed = xfhub_transforms::provincial::EMBEDDED_MAP
        .replace(
            "\"9\" = \"99\" # 其他",
            "\"9\" = \"99\" # 其他\n\"5\" = \"05\" # 咨询",
        )
        .replace("version = \"2024.1\"", "version = \"2024.2\"");
    std::fs::write(&p_map, fixed).unwrap();
    let fixed = xfhub_transforms::hotline12345::EMBEDDED_MAP
        .replace(
            "\"建议\" = \"suggestion\"",
            "\"建议\" = \"suggestion\"\n\"投诉建议\" = \"complaint\"",
        )
        .replace("version = \"2024.1\"", "version = \"2024.2\"");
    std::fs::write(&h_map, fixed).unwrap();
    let r = send(
        &app,
        client.post_json("/admin/import-errors/reprocess", &json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let report = r.json();
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(
        report["stored"].as_u64(),
        Some((p_errors.len() + h_errors.len()) as u64)
    );
    let r = send(&app, client.get("/admin/import-errors?limit=1000")).await;
    let left: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "provincial" || e["source"] == "hotline12345")
        .cloned()
        .collect();
    assert!(left.is_empty(), "every import error is resolved: {left:#?}");
    let list = connectors(&app, &client).await;
    assert_eq!(by_name(&list, "provincial")["code_map_version"], "2024.2");

    // Now every record the mocks served is stored at its latest version, published once.
    for (system, ledger) in [
        ("provincial", provincial.core.ledger()),
        ("hotline12345", hotline.core.ledger()),
    ] {
        let stored = verify::stored(&hub.state.store, system).await;
        let want: BTreeMap<String, i64> = ledger
            .iter()
            .map(|(id, s)| {
                let v = s
                    .malformed
                    .iter()
                    .copied()
                    .chain(s.max_valid)
                    .max()
                    .unwrap();
                (id.clone(), i64::from(v))
            })
            .collect();
        assert_eq!(stored, want, "{system}");
        let published = verify::published(&hub.state.store, system).await;
        assert_eq!(
            published.len(),
            300,
            "{system}: one message per stored version"
        );
        assert!(published.values().all(|n| *n == 1));
    }
    hub.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_killed_mid_pull_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Slow pages, repeats across pages, some malformed records. (No updates at the source:
    // the ledger's "served" would count a version served in the page the kill lost and then
    // superseded at the source before the restart fetched it again.)
    let faults = Faults {
        latency_ms: 40,
        duplicate_share: 0.1,
        malformed_share: 0.05,
        ..Faults::default()
    };
    let provincial = ProvincialMock::start(ProvincialConfig {
        seed: 21,
        records: 3000,
        credentials: creds("provincial"),
        ledger: true,
        faults: faults.clone(),
        ..ProvincialConfig::default()
    })
    .await
    .unwrap();
    let hotline = HotlineMock::start(HotlineConfig {
        seed: 22,
        records: 3000,
        credentials: creds("hotline12345"),
        ledger: true,
        faults,
        ..HotlineConfig::default()
    })
    .await
    .unwrap();
    let p = creds("provincial");
    let h = creds("hotline12345");
    let extra = format!(
        "[connectors.provincial]\nenabled = true\nurl = \"{}\"\napp_key = \"{}\"\nsecret = \"{}\"\ninterval_ms = 50\n\
         [connectors.hotline12345]\nenabled = true\nurl = \"{}\"\napp_key = \"{}\"\nsecret = \"{}\"\ninterval_ms = 50\n",
        provincial.url(),
        p.app_key,
        p.secret,
        hotline.url(),
        h.app_key,
        h.secret
    );
    let credentials = support::create_client(&data).await;
    let mut hub = support::HubProcess::start_with(&data, &logs, &credentials, &extra).await;
    // Kill it once both connectors committed some pages but not all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = hub.api().get_ok("/admin/connectors").await;
        let pages = |n: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == n)
                .map_or(0, |c| c["totals"]["pages"].as_i64().unwrap_or(0))
        };
        if pages("provincial") >= 3 && pages("hotline12345") >= 3 {
            assert!(pages("provincial") < 30, "still pulling when killed");
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {list:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.kill9().await;
    let mut hub = support::HubProcess::start_with(&data, &logs, &credentials, &extra).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = hub.api().get_ok("/admin/connectors").await;
        let cursor = |n: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == n)
                .and_then(|c| c["cursor"].as_str().map(str::to_owned))
        };
        if cursor("provincial") == Some(provincial.core.feed_len().to_string())
            && cursor("hotline12345") == Some(update_time(hotline.core.feed_len()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up after the restart: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.sigterm();
    assert!(hub.wait_exit(Duration::from_secs(30)).await.success());
    let url = format!("sqlite://{}", data.join("xfhub.db").display());
    let store = Store::open(StoreOptions::new(url)).await.unwrap();
    let (ok, bad) = verify::verify(&store, "provincial", &provincial.core.ledger()).await;
    assert!(ok > 2500 && bad > 30, "{ok} stored, {bad} rejected");
    verify::verify_events(&store, &provincial).await;
    verify::verify(&store, "hotline12345", &hotline.core.ledger()).await;
    store.close().await;
}
