//! `xfhub`: the integration hub of the Changsha petition work information management system.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use xfhub::config::{self, Config};
use xfhub::{api, app, bench, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "xfhub",
    version,
    about = "Integration hub of the Changsha petition system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub (embedded defaults: SQLite in ./data, embedded bus, 127.0.0.1:8080).
    Serve {
        /// TOML configuration file; every field is optional.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address (overrides the file).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (overrides the file).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Database URL, sqlite:// or postgres:// (overrides the file).
        #[arg(long, env = "XFHUB_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Print the OpenAPI document (YAML), as checked in at contracts/openapi.yaml.
    Openapi,
    /// Load a running hub: N petitions with C clients, against its echo route as baseline.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            database_url,
        } => {
            let mut cfg = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(u) = database_url {
                cfg.database_url = Some(u);
            }
            cfg.validate().map_err(|errors| config::ConfigError {
                path: "command line".to_owned(),
                errors,
            })?;
            telemetry::init_logs(&cfg.log);
            rt.block_on(app::serve(cfg))
        }
        Command::Openapi => {
            print!("{}", api::openapi_yaml());
            Ok(())
        }
        Command::Bench(args) => rt.block_on(bench::run(args)),
    }
}
