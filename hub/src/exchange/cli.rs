//! `xfhub exchange pull | verify | import`: exchange packages from a terminal.
//!
//! - `pull` downloads a package from a running hub (signed GET, streamed to a file), verifies
//!   it with the same secret and prints its manifest: record count and the next cursor.
//! - `verify` checks a package file (structure, limits, signature, digests, schema) without a
//!   hub and prints every problem; exit status 1 when it is invalid.
//! - `import` pushes a package file to a running hub (signed POST) and prints the report.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use xfhub_security::sign;
use zip::ZipArchive;

use super::import::{verify, PackageLimits};
use super::ExchangeConfig;

#[derive(Debug, clap::Subcommand)]
pub enum ExchangeCommand {
    /// Download a package from a hub into a file and verify it.
    Pull {
        #[command(flatten)]
        hub: HubArgs,
        /// petition | workorder | process_event
        #[arg(long)]
        infoset: String,
        /// Cursor: cursor_to of the previous package (default 0).
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Most records in the package.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
        /// File to write the package to.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Check a package file: structure, limits, signature, digests, schema.
    Verify {
        file: PathBuf,
        /// The secret the package is signed with (the puller's or pusher's).
        #[arg(long, env = "XFHUB_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Push a package file to a hub and print the import report.
    Import {
        #[command(flatten)]
        hub: HubArgs,
        file: PathBuf,
    },
}

/// Where the hub is and who calls it.
#[derive(Debug, clap::Args)]
pub struct HubArgs {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The client's app key.
    #[arg(long)]
    app_key: String,
    /// The client's secret. Prefer the environment variable XFHUB_SECRET.
    #[arg(long, env = "XFHUB_SECRET", hide_env_values = true)]
    secret: String,
}

fn signed(
    client: &reqwest::Client,
    hub: &HubArgs,
    method: reqwest::Method,
    path_and_query: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let headers = sign::sign_headers(
        &hub.app_key,
        hub.secret.as_bytes(),
        method.as_str(),
        path_and_query,
        &body,
        xfhub_store::now_ms(),
        &sign::new_nonce(),
    );
    let mut req = client.request(
        method,
        format!("{}{path_and_query}", hub.url.trim_end_matches('/')),
    );
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.body(body)
}

fn check_file(path: &PathBuf, secret: &str) -> anyhow::Result<super::import::Verified> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut archive = match ZipArchive::new(file) {
        Ok(a) => a,
        Err(e) => bail!(
            "package_not_zip: {} is not a readable zip file: {e}",
            path.display()
        ),
    };
    let c = ExchangeConfig::default();
    let limits = PackageLimits {
        max_entries: c.max_entries,
        max_entry_bytes: c.max_entry_bytes,
        max_total_bytes: c.max_total_bytes,
        max_ratio: c.max_ratio,
    };
    match verify(&mut archive, secret.as_bytes(), &limits) {
        Ok(v) => Ok(v),
        Err(problems) => {
            for p in &problems {
                eprintln!("{}\t{}\t{} / {}", p.code, p.entry, p.message, p.message_zh);
            }
            bail!("the package is invalid: {} problem(s)", problems.len())
        }
    }
}

pub async fn run(cmd: ExchangeCommand) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    match cmd {
        ExchangeCommand::Pull {
            hub,
            infoset,
            since,
            limit,
            out,
        } => {
            let target =
                format!("/exchange/packages?infoset={infoset}&since={since}&limit={limit}");
            let resp = signed(&client, &hub, reqwest::Method::GET, &target, Vec::new())
                .send()
                .await
                .context("call the hub")?;
            if !resp.status().is_success() {
                let status = resp.status();
                bail!(
                    "the hub answered {status}: {}",
                    resp.text().await.unwrap_or_default()
                );
            }
            let mut file =
                File::create(&out).with_context(|| format!("create {}", out.display()))?;
            let mut resp = resp;
            while let Some(chunk) = resp.chunk().await.context("the download broke off")? {
                file.write_all(&chunk)?;
            }
            file.sync_all()?;
            let v = check_file(&out, &hub.secret)?;
            println!(
                "{}: {} {} records, cursor {} -> {} (next: --since {}){}",
                out.display(),
                v.manifest.record_count,
                v.manifest.infoset,
                v.manifest.cursor_from,
                v.manifest.cursor_to,
                v.manifest.cursor_to,
                if v.manifest.more {
                    ", more to pull"
                } else {
                    ""
                }
            );
        }
        ExchangeCommand::Verify { file, secret } => {
            let v = check_file(&file, &secret)?;
            println!(
                "valid: package {} from {}, {} {} records in {} data file(s), cursor {} -> {}",
                v.manifest.package_serial,
                v.header.sender,
                v.manifest.record_count,
                v.manifest.infoset,
                v.data.len(),
                v.manifest.cursor_from,
                v.manifest.cursor_to
            );
        }
        ExchangeCommand::Import { hub, file } => {
            let bytes = std::fs::read(&file).with_context(|| format!("read {}", file.display()))?;
            let resp = signed(
                &client,
                &hub,
                reqwest::Method::POST,
                "/exchange/packages",
                bytes,
            )
            .header("content-type", "application/zip")
            .send()
            .await
            .context("call the hub")?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            println!("{text}");
            if !status.is_success() {
                bail!("the hub refused the package ({status})");
            }
        }
    }
    Ok(())
}
