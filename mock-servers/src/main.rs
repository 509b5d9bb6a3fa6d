//! `xfhub-mocks`: runs the mock partner systems.
//!
//! - `xfhub-mocks sms ...`: the SMS gateway (see `xfhub_mocks::sms`).
//! - `xfhub-mocks partners [--config mocks.toml] [--seed N] [--records N] ...`: the provincial
//!   sharing site (SOAP) and the 12345 platform (REST), until ctrl-c. The configuration file
//!   has a `[provincial]` and a `[hotline12345]` table with the fields of
//!   `ProvincialConfig` / `HotlineConfig` (listen, seed, records, credentials, encoding,
//!   advance_every_ms, advance_batch, ledger, and `[*.faults]`); flags override it. Faults can
//!   be changed while running: `PUT /mock/faults` on either mock.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use xfhub_mocks::hotline12345::{HotlineConfig, HotlineMock};
use xfhub_mocks::provincial::{DocEncoding, ProvincialConfig, ProvincialMock};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    provincial: ProvincialConfig,
    hotline12345: HotlineConfig,
}

/// The provincial sharing site and the 12345 platform, as mocks.
#[derive(Debug, Parser)]
#[command(name = "xfhub-mocks partners")]
struct PartnersArgs {
    /// TOML file with `[provincial]` and `[hotline12345]` settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Generator seed of both mocks.
    #[arg(long)]
    seed: Option<u64>,
    /// Records in each mock's backlog.
    #[arg(long)]
    records: Option<u64>,
    /// Address of the provincial mock (default 127.0.0.1:9101).
    #[arg(long)]
    provincial_listen: Option<SocketAddr>,
    /// Address of the 12345 mock (default 127.0.0.1:9102).
    #[arg(long)]
    hotline_listen: Option<SocketAddr>,
    /// Declare and encode the provincial answers in GBK.
    #[arg(long)]
    gbk: bool,
    /// Move 10 records of each mock one stage on every this many milliseconds.
    #[arg(long)]
    advance_every_ms: Option<u64>,
}

fn partners(args: &[String]) -> anyhow::Result<()> {
    let a = PartnersArgs::try_parse_from(args)?;
    let mut cfg = match &a.config {
        Some(path) => toml::from_str::<FileConfig>(&std::fs::read_to_string(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => {
            let mut c = FileConfig::default();
            c.provincial.listen = SocketAddr::from(([127, 0, 0, 1], 9101));
            c.hotline12345.listen = SocketAddr::from(([127, 0, 0, 1], 9102));
            c
        }
    };
    if let Some(s) = a.seed {
        cfg.provincial.seed = s;
        cfg.hotline12345.seed = s;
    }
    if let Some(n) = a.records {
        cfg.provincial.records = n;
        cfg.hotline12345.records = n;
    }
    if let Some(l) = a.provincial_listen {
        cfg.provincial.listen = l;
    }
    if let Some(l) = a.hotline_listen {
        cfg.hotline12345.listen = l;
    }
    if a.gbk {
        cfg.provincial.encoding = DocEncoding::Gbk;
    }
    if let Some(ms) = a.advance_every_ms {
        cfg.provincial.advance_every_ms = ms;
        cfg.hotline12345.advance_every_ms = ms;
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let p = ProvincialMock::start(cfg.provincial.clone()).await?;
        let h = HotlineMock::start(cfg.hotline12345.clone()).await?;
        println!(
            "provincial sharing site (SOAP): {}  (WSDL: {}?wsdl)",
            p.url(),
            p.url()
        );
        println!("  app key {}", cfg.provincial.credentials.app_key);
        println!(
            "12345 platform (REST):          {}/api/v1/workorders/changed",
            h.url()
        );
        println!("  app key {}", cfg.hotline12345.credentials.app_key);
        println!(
            "faults: PUT http://{}/mock/faults, http://{}/mock/faults",
            p.addr, h.addr
        );
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("sms") {
        std::process::exit(xfhub_mocks::sms::cli(&args[1..]));
    }
    if args.get(1).map(String::as_str) == Some("idp") {
        std::process::exit(xfhub_mocks::idp::cli(&args[1..]));
    }
    if args.get(1).map(String::as_str) == Some("appmsg") {
        std::process::exit(xfhub_mocks::appmsg::cli(&args[1..]));
    }
    if args.get(1).map(String::as_str) == Some("partners") {
        if let Err(e) = partners(&args[1..]) {
            eprintln!("xfhub-mocks partners: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    eprintln!(
        "usage: xfhub-mocks sms ... | xfhub-mocks partners [--config FILE] [--seed N] [--records N] \
         [--provincial-listen ADDR] [--hotline-listen ADDR] [--gbk] [--advance-every-ms MS]"
    );
    std::process::exit(2);
}
