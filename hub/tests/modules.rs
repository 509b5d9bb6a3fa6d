//! End to end, against the real `xfhub` binary and the mock SMS gateway (issue 8): a petition
//! with a sensitive word, submitted through REST, ends with its tags, an alert, and exactly one
//! text at the gateway for each recipient (the unit's responsible leader and direct handler),
//! delivered as the gateway reports; also when the hub is killed (`kill -9`) after the gateway
//! accepted the texts and before the SMS consumer recorded and acked them. No personal number
//! (the petitioner's or a role holder's) reaches the hub's logs.

#[allow(dead_code)] // reason: this suite uses part of the shared process harness
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use xfhub::config::Config;
use xfhub_mocks::sms::{MockSmsGateway, SmsMockConfig};
use xfhub_modules::alerts::{self, RoleHolderInput};
use xfhub_modules::dispatch::{self, AssignmentRule};
use xfhub_modules::warning::{self, WordEntry};
use xfhub_store::Txn;

use support::{assert_logs_free_of_pii, create_client, Api, HubProcess, SETTLE_TIMEOUT};

const UNIT: &str = "芙蓉区人力资源和社会保障局";
const LEADER: &str = "13912340001";
const HANDLER: &str = "13912340002";

/// The sensitive word of petition `i`: four characters from the middle of its summary.
fn sensitive_word(i: u64) -> String {
    let summary = xfhub_schemas::sample_petition(i).appeal.summary;
    summary.chars().skip(8).take(4).collect()
}

/// Registers the role holders, the assignment rule of petition `i`'s content class, the
/// sensitive word of each petition, and the gateway as a client (`read`, `write_back`), in
/// the store of `data_dir` before the hub starts. Returns the gateway's (app key, secret).
async fn set_up(data_dir: &Path, petitions: &[u64]) -> (String, String) {
    let config = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    let (store, keys) = xfhub::admin_cli::open(&config)
        .await
        .expect("open the store");
    let ring = keys.current();
    let mut statements = Vec::new();
    for (id, role, mobile) in [
        ("leader", "responsible_leader", LEADER),
        ("handler", "handler", HANDLER),
    ] {
        let input = RoleHolderInput {
            name: format!("测试{id}"),
            role: role.into(),
            post: None,
            org: UNIT.into(),
            mobile: mobile.into(),
        };
        let m = alerts::check_role_holder(&input).expect("a valid role holder");
        statements.push(alerts::put_role_holder_stmt(id, &input, &m, &ring));
    }
    for &i in petitions {
        let p = xfhub_schemas::sample_petition(i);
        let rule = AssignmentRule {
            id: format!("rule-{i}"),
            content_class_prefix: p.appeal.content_class.clone(),
            division: Some(p.appeal.division.clone()),
            unit: UNIT.into(),
            priority: 0,
        };
        statements.push(dispatch::put_rule_stmt(&rule));
        statements.push(warning::put_word_stmt(&WordEntry {
            list: "sensitive".into(),
            word: sensitive_word(i),
            category: None,
        }));
    }
    store
        .transact(Txn {
            statements,
            ..Txn::default()
        })
        .await
        .expect("set up");
    let gateway = xfhub::admin_cli::add_client(
        &store,
        &ring,
        "sms-gateway",
        vec!["read".into(), "write_back".into()],
        vec!["*".into()],
        vec!["*".into()],
    )
    .await
    .expect("the gateway client");
    store.close().await;
    gateway
}

fn hub_config(mock: &MockSmsGateway) -> String {
    format!(
        "[sms]\ngateway_url = \"{}\"\naccess_key = \"sms-mock-key\"\naccess_secret = \"sms-mock-secret\"\n\
         [bus]\nretry_base_ms = 100\nretry_max_ms = 1000\n",
        mock.url()
    )
}

async fn start_mock() -> MockSmsGateway {
    MockSmsGateway::start(
        ([127, 0, 0, 1], 0).into(),
        SmsMockConfig {
            per_number: (100, 100, 100),
            retry_unit: Duration::from_millis(200),
            ..SmsMockConfig::default()
        },
    )
    .await
    .expect("start the mock gateway")
}

/// Polls `GET path` until `done` holds on the answer; panics with the last answer after the
/// settle timeout.
async fn poll(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let a = api.get(path).await;
        if let Ok(a) = &a {
            if a.status == 200 && done(&a.body) {
                return a.body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: timed out; last {a:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the tags and the alert of a submitted petition; returns its record id.
async fn check_tags_and_alert(api: &Api, receipt: &Value, i: u64) -> String {
    let id = receipt["id"].as_str().expect("receipt id").to_owned();
    let word = sensitive_word(i);
    poll(api, &format!("/api/v1/tags/{id}"), |tags| {
        tags.as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["list"] == "sensitive" && t["word"] == word.as_str())
        })
    })
    .await;
    let alerts = poll(
        api,
        &format!("/api/v1/alerts?record_id={id}&kind=sensitive_word"),
        |a| a.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    assert!(alerts[0]["title"].as_str().unwrap().contains(&word));
    id
}

/// The SMS log entries caused by the dispatch of any petition.
async fn instant_pushes(api: &Api, n: usize) -> Vec<Value> {
    let log = poll(api, "/api/v1/sms?limit=100", |log| {
        log.as_array()
            .is_some_and(|l| l.len() >= n && l.iter().all(|m| m["status"] == "sent"))
    })
    .await;
    log.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sensitive_petition_is_tagged_alerted_and_texted_once_per_recipient() {
    let dir = TempDir::new().unwrap();
    let logs = TempDir::new().unwrap();
    let mock = start_mock().await;
    let creds = create_client(dir.path()).await;
    let gateway = set_up(dir.path(), &[3]).await;
    let hub = HubProcess::start_with(dir.path(), logs.path(), &creds, &hub_config(&mock)).await;
    mock.set_callback(
        &format!("http://{}/api/v1/sms/delivery-reports", hub.addr),
        Some(gateway),
    );
    let api = hub.api();
    let receipt = api.submit_petition(3).await.expect("submit");
    assert_eq!(receipt.status, 201, "{receipt:?}");
    check_tags_and_alert(&api, &receipt.body, 3).await;
    let log = instant_pushes(&api, 2).await;
    assert_eq!(log.len(), 2, "one request per template: {log:#?}");
    // Delivery reports come back through the signed callback.
    for m in &log {
        let id = m["id"].as_str().unwrap();
        let v = poll(&api, &format!("/api/v1/sms/{id}"), |v| {
            v["recipients"]
                .as_array()
                .is_some_and(|r| r.iter().all(|r| r["status"] == "delivered"))
        })
        .await;
        let phones: Vec<&str> = v["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["phone"].as_str().unwrap())
            .collect();
        assert!(
            phones == ["139****0001"] || phones == ["139****0002"],
            "masked: {phones:?}"
        );
    }
    assert_eq!(mock.texts_to(LEADER), 1);
    assert_eq!(mock.texts_to(HANDLER), 1);
    let texts = mock.texts();
    let leader = texts.iter().find(|t| t.phone == LEADER).unwrap();
    assert_eq!(leader.template_code, "instant_push_leader");
    assert_eq!(leader.template_param["unit"], UNIT);
    assert_eq!(
        mock.callbacks().1,
        0,
        "every report was answered {{\"code\":0}}"
    );
    drop(hub);
    assert_logs_free_of_pii(logs.path(), [3]);
    assert_no_role_holder_numbers(logs.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_between_send_and_ack_the_hub_texts_no_one_twice() {
    let dir = TempDir::new().unwrap();
    let logs = TempDir::new().unwrap();
    let mock = start_mock().await;
    let creds = create_client(dir.path()).await;
    let gateway = set_up(dir.path(), &[5]).await;
    let config = hub_config(&mock);
    let mut hub = HubProcess::start_with(dir.path(), logs.path(), &creds, &config).await;
    // The gateway accepts each call (the texts go out) and then holds its answer.
    mock.faults(|f| f.answer_delay = Duration::from_secs(30));
    let api = hub.api();
    let receipt = api.submit_petition(5).await.expect("submit");
    assert_eq!(receipt.status, 201, "{receipt:?}");
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while mock.texts_to(LEADER) + mock.texts_to(HANDLER) < 2 {
        assert!(
            Instant::now() < deadline,
            "the texts did not go out:\n{}",
            hub.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both texts are out, their answers held: the SMS consumer is between effect and ack.
    hub.kill9().await;
    mock.faults(|f| f.answer_delay = Duration::ZERO);
    let hub = HubProcess::start_with(dir.path(), logs.path(), &creds, &config).await;
    let recovered_before = mock.texts().len();
    mock.set_callback(
        &format!("http://{}/api/v1/sms/delivery-reports", hub.addr),
        Some(gateway),
    );
    let api = hub.api();
    check_tags_and_alert(&api, &receipt.body, 5).await;
    let log = instant_pushes(&api, 2).await;
    assert_eq!(log.len(), 2, "{log:#?}");
    for m in &log {
        assert!(
            m["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] != "failed"),
            "{m}"
        );
    }
    // Exactly one text per recipient, and still one a moment later (nothing is in flight).
    assert_eq!(mock.texts_to(LEADER), 1, "{:#?}", mock.texts());
    assert_eq!(mock.texts_to(HANDLER), 1, "{:#?}", mock.texts());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mock.texts().len(), 2);
    assert_eq!(recovered_before, 2);
    // The restarted hub learnt from the gateway what it had accepted under each out id.
    let recovered = hub.stderr().matches("SmsSendRecovered").count();
    assert_eq!(recovered, 2, "{}", hub.stderr());
    // The petition's own message was consumed once by every module (one alert, one
    // assignment: the dispatch after the restart made no second request).
    let alerts = api
        .get_ok(&format!(
            "/api/v1/alerts?record_id={}",
            receipt.body["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "sensitive_word")
            .count(),
        1
    );
    drop(hub);
    assert_logs_free_of_pii(logs.path(), [5]);
    assert_no_role_holder_numbers(logs.path());
}

/// No role holder's mobile in any hub log.
fn assert_no_role_holder_numbers(log_dir: &Path) {
    for entry in std::fs::read_dir(log_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "stderr") {
            let text = std::fs::read_to_string(&path).unwrap();
            for n in [LEADER, HANDLER] {
                assert!(!text.contains(n), "{n} in {}", path.display());
            }
        }
    }
}

/// A routes file trimmed to the trail: the modules' consumers cannot start, the hub still
/// runs, and the log names each consumer, its queue and the file to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_file_without_a_modules_queue_names_it_in_the_log() {
    let dir = TempDir::new().unwrap();
    let logs = TempDir::new().unwrap();
    let creds = create_client(dir.path()).await;
    let routes = logs.path().join("trail-only.toml");
    std::fs::write(
        &routes,
        "version = \"trail-only\"\n[[rule]]\nname = \"trail\"\nmatch = \"#\"\nto = [\"trail\"]\ntap = true\n",
    )
    .unwrap();
    let config = format!("[routes]\nfile = {:?}\n", routes.display().to_string());
    let hub = HubProcess::start_with(dir.path(), logs.path(), &creds, &config).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines: Vec<String> = hub
            .stderr()
            .lines()
            .filter(|l| l.contains("ConsumerStartError"))
            .map(str::to_owned)
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for queue in ["warning", "dispatch"] {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("consumer={queue} ")))
            .unwrap_or_else(|| panic!("no start error for {queue}: {lines:#?}"));
        assert!(line.contains(&format!("queue={queue}")), "{line}");
        assert!(
            line.contains(&format!("routes={}", routes.display())),
            "{line}"
        );
        assert!(
            line.contains("no rule of the routing table sends to"),
            "{line}"
        );
    }
    // The trail consumer has its queue and starts; the hub serves.
    assert!(
        !lines.iter().any(|l| l.contains("consumer=trail")),
        "{lines:#?}"
    );
    let receipt = hub.api().submit_petition(1).await.expect("submit");
    assert_eq!(receipt.status, 201, "{receipt:?}");
}
