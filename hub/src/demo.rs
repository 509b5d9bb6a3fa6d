//! `xfhub demo`: the mock provincial sharing site and 12345 platform, and a hub pulling from
//! them, in one process, so that a newcomer sees records flow in. The mocks move records on
//! (accepted, replied, concluded, evaluated) every few seconds, so updates keep arriving; a
//! share of malformed records lands in the import-error store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use xfhub_mocks::faults::{Credentials, Faults};
use xfhub_mocks::hotline12345::{HotlineConfig, HotlineMock};
use xfhub_mocks::provincial::{DocEncoding, ProvincialConfig, ProvincialMock};
use xfhub_security::sign;

use crate::config::Config;

/// Options of `xfhub demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Data directory of the demo hub (SQLite, key ring).
    #[arg(long, default_value = "./demo-data")]
    pub data_dir: PathBuf,
    /// Address of the demo hub.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Records in each mock's backlog.
    #[arg(long, default_value_t = 2000)]
    pub records: u64,
    /// Every this many milliseconds, 20 records of each mock move one stage on.
    #[arg(long, default_value_t = 3000)]
    pub advance_every_ms: u64,
    /// Share of records the mocks serve malformed (they go to the import-error store).
    #[arg(long, default_value_t = 0.02)]
    pub malformed_share: f64,
}

/// Runs the demo until ctrl-c.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let faults = Faults {
        malformed_share: args.malformed_share,
        ..Faults::default()
    };
    let p_creds = Credentials {
        app_key: "xfhub-demo-provincial".to_owned(),
        secret: sign::new_secret(),
    };
    let h_creds = Credentials {
        app_key: "xfhub-demo-12345".to_owned(),
        secret: sign::new_secret(),
    };
    let provincial = ProvincialMock::start(ProvincialConfig {
        seed: 2024,
        records: args.records,
        credentials: p_creds.clone(),
        encoding: DocEncoding::Gbk,
        advance_every_ms: args.advance_every_ms,
        advance_batch: 20,
        faults: faults.clone(),
        ..ProvincialConfig::default()
    })
    .await?;
    let hotline = HotlineMock::start(HotlineConfig {
        seed: 2024,
        records: args.records,
        credentials: h_creds.clone(),
        advance_every_ms: args.advance_every_ms,
        advance_batch: 20,
        faults,
        ..HotlineConfig::default()
    })
    .await?;
    let mut config = Config {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        ..Config::default()
    };
    for (settings, url, creds) in [
        (
            &mut config.connectors.provincial,
            provincial.url(),
            &p_creds,
        ),
        (&mut config.connectors.hotline12345, hotline.url(), &h_creds),
    ] {
        settings.enabled = true;
        settings.url = url;
        settings.app_key = creds.app_key.clone();
        settings.secret = creds.secret.clone();
        settings.interval_ms = 1000;
    }
    config
        .validate()
        .map_err(|errors| crate::config::ConfigError {
            path: "demo".to_owned(),
            errors,
        })?;
    // A client to look around with.
    let (store, keys) = crate::admin_cli::open(&config).await?;
    let (app_key, secret) = crate::admin_cli::add_client(
        &store,
        &keys.current(),
        "demo",
        ["read", "admin", "pii:read"].map(str::to_owned).to_vec(),
        vec!["*".to_owned()],
        vec!["*".to_owned()],
    )
    .await?;
    store.close().await;
    let base = format!("http://{}", args.listen);
    println!("xfhub demo");
    println!(
        "  provincial sharing site (mock, SOAP, GBK): {}  WSDL: {}?wsdl",
        provincial.url(),
        provincial.url()
    );
    println!(
        "  12345 platform (mock, REST):               {}/api/v1/workorders/changed",
        hotline.url()
    );
    println!(
        "  hub:                                       {base}  (data in {})",
        args.data_dir.display()
    );
    println!("  look around with signed requests (the xcurl helper of the README, \"Post a first petition\"):");
    println!("    export XFHUB_APP_KEY='{app_key}' XFHUB_SECRET='{secret}'");
    println!("    xcurl GET /admin/connectors");
    println!("    xcurl GET '/api/v1/petitions?limit=5'");
    println!("    xcurl GET '/api/v1/workorders?limit=5'");
    println!("    xcurl GET /admin/import-errors");
    println!(
        "  faults, while it runs: curl -X PUT -d '{{\"error_share\":0.3}}' http://{}/mock/faults",
        provincial.addr
    );
    tokio::spawn(progress(base, app_key, secret));
    crate::app::serve(config).await
}

/// Prints each connector's counts every 3 seconds.
async fn progress(base: String, app_key: String, secret: String) {
    let client = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    loop {
        tick.tick().await;
        let path = "/admin/connectors";
        let mut req = client.get(format!("{base}{path}"));
        for (k, v) in sign::sign_headers(
            &app_key,
            secret.as_bytes(),
            "GET",
            path,
            b"",
            chrono::Utc::now().timestamp_millis(),
            &sign::new_nonce(),
        ) {
            req = req.header(k, v);
        }
        let Ok(resp) = req.send().await else { continue };
        let Ok(list) = resp.json::<Vec<Value>>().await else {
            continue;
        };
        let line: Vec<String> = list
            .iter()
            .map(|c| {
                format!(
                    "{} {}: {} records ({} new, {} updated, {} rejected)",
                    c["name"].as_str().unwrap_or(""),
                    c["state"].as_str().unwrap_or(""),
                    c["totals"]["records"],
                    c["counts"]["created"],
                    c["counts"]["updated"],
                    c["totals"]["rejected"]
                )
            })
            .collect();
        println!("  {}", line.join(" | "));
    }
}
