//! `xfhub`: the integration hub of the Changsha petition work information management system.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use xfhub::config::{self, Config};
use xfhub::{api, app, bench, telemetry};

/// mimalloc instead of glibc's malloc: see `xfhub::alloc`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets the allocator's options before `main`, before the first allocation: mimalloc reads
/// whether to commit an arena eagerly when it creates one, and it creates its first arena at
/// the first allocation (set in `main`, they came too late: the import ran 10 % slower and
/// held 20-30 MB more than with the same options given in the environment).
#[allow(
    unsafe_code,
    reason = "a constructor placed in .init_array, as ctor requires"
)]
#[ctor::ctor(unsafe)]
fn configure_allocator() {
    xfhub::alloc::configure();
}

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
    /// Start the mock provincial sharing site and 12345 platform and a hub pulling from them,
    /// so that records flow in at once (see the README, "Watch records flow in").
    Demo(xfhub::demo::DemoArgs),
    /// Load a running hub: N petitions with C clients, against its echo route as baseline.
    Bench(bench::BenchArgs),
    /// Print the signature headers (HMAC-SM3) of a request, as curl arguments or JSON.
    Sign(SignArgs),
    /// The key ring for personal data at rest.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Partner systems allowed to call the hub (app key, secret, scopes, divisions).
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The routing table (routes.toml).
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Standard exchange packages: pull from a hub, verify a file, import into a hub.
    Exchange {
        #[command(subcommand)]
        command: xfhub::exchange::cli::ExchangeCommand,
    },
    /// Import an Excel workbook into the store (progress bar, summary, error report). Exits 0
    /// when every row was imported or a repeat, 2 when rows were rejected, 1 on failure.
    Import {
        /// The .xlsx or .xls file.
        file: PathBuf,
        /// petition | workorder | key_person | word_list
        #[arg(long)]
        kind: String,
        /// Where to write the error report (default: FILE.errors.xlsx beside the file).
        #[arg(long)]
        errors: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Export petitions or work orders of a date range as .xlsx (numbers masked unless
    /// --clear-pii).
    Export {
        /// petition | workorder
        #[arg(long)]
        kind: String,
        /// Complaint (call) date from, inclusive, YYYY-MM-DD.
        #[arg(long)]
        from: Option<String>,
        /// Complaint (call) date to, inclusive, YYYY-MM-DD.
        #[arg(long)]
        to: Option<String>,
        /// Only this division code.
        #[arg(long)]
        division: Option<String>,
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
        /// Write identity and phone numbers in clear (the export is audited either way).
        #[arg(long)]
        clear_pii: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum RoutesCommand {
    /// Validate a routing table file: prints every error and warning; exits 1 on errors.
    Check { file: PathBuf },
    /// Run the sample messages of a cases file (`[[case]]` with name, type, division, optional
    /// payload, expect) through a table; prints PASS or FAIL per case and exits 1 on a mismatch.
    Test {
        cases: PathBuf,
        /// Routing table file (default: the built-in table).
        #[arg(long)]
        table: Option<PathBuf>,
    },
}

/// Which store a command works on (as `serve` would open it).
#[derive(Debug, clap::Args)]
struct Target {
    /// Configuration file (database, data directory, key file).
    #[arg(long, short, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// Data directory (default ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL (overrides the file).
    #[arg(long, env = "XFHUB_DATABASE_URL")]
    database_url: Option<String>,
}

impl Target {
    fn config(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(u) = &self.database_url {
            cfg.database_url = Some(u.clone());
        }
        Ok(cfg)
    }
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Create a client; prints its app key and secret (the secret is shown only this once).
    Add {
        /// Name of the partner system.
        #[arg(long)]
        name: String,
        /// Comma list of: submit, read, write_back, export, import, admin, pii:read.
        #[arg(long)]
        scopes: String,
        /// Comma list of info sets (petition, workorder, process_event) or `*`.
        #[arg(long, default_value = "*")]
        info_sets: String,
        /// Comma list of division codes the client's data may concern, or `*`.
        #[arg(long)]
        divisions: String,
        #[command(flatten)]
        target: Target,
    },
    /// List clients (never their secrets).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Issue a new secret; the old one stays valid for the grace period.
    Rotate {
        app_key: String,
        /// Seconds the old secret stays valid (default: `[security] secret_grace_secs`).
        #[arg(long)]
        grace_secs: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Refuse every request of a client.
    Disable {
        app_key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Accept a disabled client again.
    Enable {
        app_key: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain; names the first broken entry and exits 1 if there is one.
    Verify {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, clap::Args)]
struct SignArgs {
    /// The client's app key.
    #[arg(long)]
    app_key: String,
    /// The client's secret exactly as issued. Prefer the environment variable XFHUB_SECRET,
    /// which keeps it out of the process list and the shell history.
    #[arg(long, env = "XFHUB_SECRET", hide_env_values = true)]
    secret: String,
    /// HTTP method, e.g. POST.
    #[arg(long)]
    method: String,
    /// Path and query exactly as they will be sent, e.g. '/api/v1/petitions?x=1'.
    #[arg(long)]
    path: String,
    /// File holding the exact body bytes (`-`: standard input); no body when absent. Send the
    /// same bytes, e.g. with curl --data-binary @FILE (curl -d strips newlines).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Timestamp in milliseconds since the Unix epoch (default: now).
    #[arg(long)]
    timestamp: Option<u64>,
    /// Nonce (default: 32 random hex digits). Never reuse one.
    #[arg(long)]
    nonce: Option<String>,
    /// Print the headers as a JSON object instead of curl arguments.
    #[arg(long)]
    json: bool,
    /// Also print the body's SM3 and the string to sign on standard error.
    #[arg(long)]
    show_string: bool,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-encrypt everything stored under older keys with the active key. Resumable: an
    /// interrupted run continues where it stopped. `keys rotate` runs it too.
    Reseal {
        #[command(flatten)]
        target: Target,
    },
    /// Add a fresh data key to the key file and make it active (atomic rewrite, mode 0600);
    /// prints the new key id and the ring's fingerprint. A running hub picks it up within 2 s.
    Rotate {
        /// Configuration file naming the key file (`[security] key_file`, else
        /// `<data_dir>/keys.toml`).
        #[arg(long, short, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// Data directory holding keys.toml (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Database that receives the audit entry of the rotation (overrides the file).
        #[arg(long, env = "XFHUB_DATABASE_URL")]
        database_url: Option<String>,
    },
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
        Command::Demo(args) => {
            telemetry::init_logs(&config::LogConfig {
                filter: "warn".to_owned(),
                json: false,
            });
            rt.block_on(xfhub::demo::run(args))
        }
        Command::Openapi => {
            print!("{}", api::openapi_yaml());
            Ok(())
        }
        Command::Bench(args) => rt.block_on(bench::run(args)),
        Command::Sign(args) => sign(args),
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    config,
                    data_dir,
                    database_url,
                },
        } => {
            let mut cfg = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(u) = database_url {
                cfg.database_url = Some(u);
            }
            telemetry::init_logs(&config::LogConfig {
                filter: "warn".to_owned(),
                json: false,
            });
            rt.block_on(async {
                rotate_keys(cfg.clone()).await?;
                reseal(&cfg).await
            })
        }
        Command::Keys {
            command: KeysCommand::Reseal { target },
        } => {
            let cfg = quiet(&target)?;
            rt.block_on(reseal(&cfg))
        }
        Command::Clients { command } => rt.block_on(clients(command)),
        Command::Import {
            file,
            kind,
            errors,
            quiet: no_bar,
            target,
        } => {
            let cfg = quiet(&target)?;
            let code = rt.block_on(xfhub::excel::cli::import(
                &cfg, &file, &kind, errors, no_bar,
            ))?;
            std::process::exit(code);
        }
        Command::Export {
            kind,
            from,
            to,
            division,
            status,
            out,
            clear_pii,
            target,
        } => {
            let cfg = quiet(&target)?;
            let args = xfhub::excel::cli::ExportArgs {
                kind,
                from,
                to,
                division,
                status,
                out,
                clear_pii,
            };
            rt.block_on(xfhub::excel::cli::export(&cfg, args))
        }
        Command::Exchange { command } => rt.block_on(xfhub::exchange::cli::run(command)),
        Command::Routes { command } => {
            if !routes(command) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify { target },
        } => {
            let cfg = quiet(&target)?;
            rt.block_on(async {
                let (store, _) = xfhub::admin_cli::open(&cfg).await?;
                let result = xfhub::admin_cli::verify_audit(&store).await?;
                store.close().await;
                match result {
                    Ok(n) => {
                        println!("audit chain intact: {n} entries");
                        Ok(())
                    }
                    Err(brk) => {
                        eprintln!("audit chain BROKEN: {brk}");
                        std::process::exit(1);
                    }
                }
            })
        }
    }
}

/// `xfhub routes check | test`; false when the command should exit 1.
fn routes(command: RoutesCommand) -> bool {
    use xfhub_routes::cases::{parse_cases, run_cases};
    use xfhub_routes::TableSource;

    let load = |source: &TableSource| match source.load(app::CONSUMER_QUEUES) {
        Ok((table, warnings)) => {
            for w in &warnings {
                println!("warning: {w}");
            }
            Some(table)
        }
        Err(errors) => {
            for e in &errors {
                println!("error: {e}");
            }
            println!("{source}: {} error(s)", errors.len());
            None
        }
    };
    match command {
        RoutesCommand::Check { file } => {
            let source = TableSource::File(file);
            let Some(table) = load(&source) else {
                return false;
            };
            let enabled = table.rules.iter().filter(|r| r.enabled).count();
            println!(
                "{source}: valid, version {}, {} rules ({enabled} enabled)",
                table.version,
                table.rules.len()
            );
            true
        }
        RoutesCommand::Test { cases, table } => {
            let source = table.map_or(TableSource::BuiltIn, TableSource::File);
            let Some(table) = load(&source) else {
                return false;
            };
            let parsed = std::fs::read_to_string(&cases)
                .map_err(|e| e.to_string())
                .and_then(|text| parse_cases(&text));
            let cases_list = match parsed {
                Ok(c) => c,
                Err(e) => {
                    println!("error: {}: {e}", cases.display());
                    return false;
                }
            };
            let results = run_cases(&table, &cases_list);
            for r in &results {
                println!("{r}");
            }
            let failed = results.iter().filter(|r| !r.passed()).count();
            println!(
                "{} passed, {failed} failed (table {source}, version {})",
                results.len() - failed,
                table.version
            );
            failed == 0
        }
    }
}

/// The configuration of a store command, with logs kept to warnings.
fn quiet(target: &Target) -> anyhow::Result<Config> {
    let cfg = target.config()?;
    telemetry::init_logs(&config::LogConfig {
        filter: "warn".to_owned(),
        json: false,
    });
    Ok(cfg)
}

async fn reseal(cfg: &Config) -> anyhow::Result<()> {
    let (store, keys) = xfhub::admin_cli::open(cfg).await?;
    let ring = keys.current();
    let attachments = xfhub::mobile::attachments_dir(&cfg.data_dir);
    let report = xfhub::admin_cli::reseal_all(&store, &ring, Some(&attachments), |table, r| {
        eprintln!(
            "  {table}: {} scanned, {} re-encrypted",
            r.scanned, r.resealed
        );
    })
    .await?;
    store.close().await;
    println!(
        "re-encrypted {} of {} stored values under key {}",
        report.resealed,
        report.scanned,
        ring.active_id()
    );
    Ok(())
}

async fn set_disabled(app_key: &str, target: &Target, disabled: bool) -> anyhow::Result<()> {
    let cfg = quiet(target)?;
    let (store, _) = xfhub::admin_cli::open(&cfg).await?;
    xfhub::admin_cli::set_disabled(&store, app_key, disabled).await?;
    store.close().await;
    println!(
        "{app_key}: {}",
        if disabled { "disabled" } else { "enabled" }
    );
    Ok(())
}

async fn clients(command: ClientsCommand) -> anyhow::Result<()> {
    use xfhub::admin_cli::{self as cli, list};
    match command {
        ClientsCommand::Add {
            name,
            scopes,
            info_sets,
            divisions,
            target,
        } => {
            let cfg = quiet(&target)?;
            let (store, keys) = cli::open(&cfg).await?;
            let (app_key, secret) = cli::add_client(
                &store,
                &keys.current(),
                &name,
                list(&scopes),
                list(&info_sets),
                list(&divisions),
            )
            .await?;
            store.close().await;
            println!("app_key: {app_key}");
            println!("secret: {secret}");
            eprintln!("(the secret is not stored in clear and cannot be shown again)");
        }
        ClientsCommand::List { target } => {
            let cfg = quiet(&target)?;
            let (store, _) = cli::open(&cfg).await?;
            let all = store.list_clients().await?;
            store.close().await;
            println!(
                "{:<22} {:<9} {:<28} {:<14} {:<20} name",
                "app_key", "state", "scopes", "info_sets", "divisions"
            );
            for c in all {
                println!(
                    "{:<22} {:<9} {:<28} {:<14} {:<20} {}",
                    c.app_key,
                    if c.disabled { "disabled" } else { "active" },
                    c.scopes.join(","),
                    c.info_sets.join(","),
                    c.divisions.join(","),
                    c.name
                );
            }
        }
        ClientsCommand::Rotate {
            app_key,
            grace_secs,
            target,
        } => {
            let cfg = quiet(&target)?;
            let grace = grace_secs.unwrap_or(cfg.security.secret_grace_secs);
            let (store, keys) = cli::open(&cfg).await?;
            let secret = cli::rotate_client(&store, &keys.current(), &app_key, grace).await?;
            store.close().await;
            println!("app_key: {app_key}");
            println!("secret: {secret}");
            eprintln!("(the previous secret stays valid for {grace} s)");
        }
        ClientsCommand::Disable { app_key, target } => {
            set_disabled(&app_key, &target, true).await?
        }
        ClientsCommand::Enable { app_key, target } => {
            set_disabled(&app_key, &target, false).await?
        }
    }
    Ok(())
}

/// `xfhub sign`: the four signature headers of one request.
fn sign(args: SignArgs) -> anyhow::Result<()> {
    use std::io::Read;
    use xfhub_security::sign;

    if !args.path.starts_with('/') {
        anyhow::bail!("--path must start with `/` (path and query as sent, no scheme or host)");
    }
    let body = match &args.body_file {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b)?;
            b
        }
        Some(p) => {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("--body-file {}: {e}", p.display()))?
        }
    };
    let timestamp = match args.timestamp {
        Some(t) => i64::try_from(t)?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let nonce = args.nonce.unwrap_or_else(sign::new_nonce);
    let headers = sign::sign_headers(
        &args.app_key,
        args.secret.as_bytes(),
        &args.method,
        &args.path,
        &body,
        timestamp,
        &nonce,
    );
    if args.show_string {
        let (path, query) = args.path.split_once('?').unwrap_or((&args.path, ""));
        eprintln!("body SM3: {}", sign::body_digest(&body));
        eprintln!(
            "string to sign:\n{}\n",
            sign::string_to_sign(
                &args.method,
                path,
                query,
                &timestamp.to_string(),
                &nonce,
                &body
            )
        );
    }
    if args.json {
        println!("{}", headers_json(&headers));
    } else {
        println!("{}", curl_args(&headers));
    }
    Ok(())
}

/// The headers as a JSON object.
fn headers_json(headers: &[(&str, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The headers as curl arguments, one `-H 'name: value'` a line, joined by backslash-newline:
/// paste them into a curl command line, or splice them in with
/// `eval "curl ... $(xfhub sign ...)"`. Single quotes in values are escaped for the shell.
fn curl_args(headers: &[(&str, String)]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    headers
        .iter()
        .map(|(k, v)| format!("-H {}", quote(&format!("{k}: {v}"))))
        .collect::<Vec<_>>()
        .join(" \\\n")
}

/// `xfhub keys rotate`.
async fn rotate_keys(cfg: Config) -> anyhow::Result<()> {
    let path = cfg.key_file();
    if std::env::var_os(xfhub::keys::KEYS_ENV).is_some() {
        eprintln!(
            "warning: {} is set; a hub started with it uses that ring, not {}",
            xfhub::keys::KEYS_ENV,
            path.display()
        );
    }
    let id = xfhub::keys::rotate_file(&path)?;
    let ring = xfhub::keys::load_file(&path)?;
    println!("new active key: {id}");
    println!("key ring fingerprint: {}", ring.fingerprint());
    // Key management is audited; the rotation itself is done whatever happens here.
    let audited = async {
        let store =
            xfhub_store::Store::open(xfhub_store::StoreOptions::new(cfg.database_url())).await?;
        let draft = xfhub_store::AuditDraft {
            actor: "cli".to_owned(),
            action: "keys.rotate".to_owned(),
            target: id.clone(),
            outcome: "ok".to_owned(),
            remote: "local".to_owned(),
            detail: format!("fingerprint={}", ring.fingerprint()),
        };
        let r = store.audit(draft).await;
        store.close().await;
        r.map(|_| ())
    };
    if let Err(e) = audited.await {
        eprintln!("warning: the rotation is done, but its audit entry could not be written: {e:#}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of README.md ("Signing requests"), pinned: the same inputs give the
    /// same signature, and the README shows it.
    #[test]
    fn readme_signing_example() {
        let body = include_bytes!("../../contracts/examples/petition.json");
        let headers = xfhub_security::sign::sign_headers(
            "xf0123456789abcdef01",
            b"xfhub-readme-example-secret-0123456789abcdef",
            "POST",
            "/api/v1/petitions",
            body,
            1_735_689_600_000,
            "7d3f0c2a9b8e4f61a5c7d2e3f4a5b6c7",
        );
        let digest = xfhub_security::sign::body_digest(body);
        let out = curl_args(&headers);
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&digest),
            "README lacks the body SM3 {digest}"
        );
        assert!(readme.contains(&out), "README lacks the headers:\n{out}");
        assert_eq!(
            headers_json(&headers),
            format!(
                r#"{{"x-app-key":"xf0123456789abcdef01","x-nonce":"7d3f0c2a9b8e4f61a5c7d2e3f4a5b6c7","x-signature":"{}","x-timestamp":"1735689600000"}}"#,
                headers[3].1
            )
        );
    }

    #[test]
    fn curl_args_are_shell_quoted() {
        let headers = [
            ("x-app-key", "it's".to_owned()),
            ("x-nonce", "n".to_owned()),
        ];
        assert_eq!(
            curl_args(&headers),
            "-H 'x-app-key: it'\\''s' \\\n-H 'x-nonce: n'"
        );
    }
}
