//! Operator commands that work on the store directly: partner clients, the audit chain, and
//! re-encryption of stored personal data after a key rotation. They can run while a hub is
//! serving the same store (SQLite allows one writer at a time and waits; PostgreSQL is shared).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;
use xfhub_schemas::CodeTables;
use xfhub_security::keys::KeyRing;
use xfhub_security::sign;
use xfhub_store::{now_ms, AuditDraft, ClientRecord, ResealTable, Store, StoreOptions};

use crate::auth::{INFO_SETS, OPERATION_SCOPES};
use crate::config::Config;
use crate::keys::Keys;

/// Opens the store and the key ring of a configuration.
pub async fn open(config: &Config) -> anyhow::Result<(Store, Keys)> {
    let url = config.database_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let store = Store::open(StoreOptions::new(url)).await?;
    let keys = Keys::load(config)?;
    check_ring_matches(&store, &keys.current()).await?;
    Ok((store, keys))
}

/// Refuses a key ring that cannot open what the store already holds (a lost or wrong key
/// file; a ring generated afresh next to old data): better not to start than to write data
/// nobody can read next to data nobody can read.
pub async fn check_ring_matches(store: &Store, ring: &KeyRing) -> anyhow::Result<()> {
    let mut sealed: Vec<String> = store
        .list_clients()
        .await?
        .into_iter()
        .take(20)
        .map(|c| c.secret_sealed)
        .collect();
    sealed.extend(
        store
            .reseal_scan(ResealTable::Records, "", 20)
            .await?
            .into_iter()
            .map(|(_, t)| t),
    );
    let known = ring.ids();
    for text in &sealed {
        for part in text.split("enc:v1:").skip(1) {
            let id = part.split(':').next().unwrap_or_default();
            if !known.iter().any(|k| k == id) {
                bail!(
                    "the store holds data sealed with key {id:?}, which the key ring (fingerprint {}) \
                     does not have: restore the key file (or XFHUB_KEYS) that belongs to this store",
                    ring.fingerprint()
                );
            }
        }
    }
    Ok(())
}

fn cli_audit(action: &str, target: &str, detail: String) -> AuditDraft {
    AuditDraft {
        actor: "cli".to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: "ok".to_owned(),
        remote: "local".to_owned(),
        detail,
    }
}

/// Splits a comma list, trimming blanks.
pub fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks scopes, info sets and divisions of a new client; every error at once.
pub fn check_grants(
    scopes: &[String],
    info_sets: &[String],
    divisions: &[String],
) -> Result<(), Vec<String>> {
    let tables = CodeTables::embedded();
    let mut errors = Vec::new();
    for s in scopes {
        if !OPERATION_SCOPES.contains(&s.as_str()) {
            errors.push(format!(
                "scope {s:?}: not one of {}",
                OPERATION_SCOPES.join(", ")
            ));
        }
    }
    for s in info_sets {
        if s != "*" && !INFO_SETS.contains(&s.as_str()) {
            errors.push(format!(
                "info set {s:?}: not one of {} or *",
                INFO_SETS.join(", ")
            ));
        }
    }
    for d in divisions {
        if d != "*" && !tables.is_known("divisions", d) {
            errors.push(format!(
                "division {d:?}: not a current division code (or *)"
            ));
        }
    }
    if scopes.is_empty() {
        errors.push("scopes: at least one is needed".to_owned());
    }
    if divisions.is_empty() {
        errors.push("divisions: at least one division code, or *".to_owned());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Creates a client; returns (app key, secret). The secret is shown once and stored sealed.
pub async fn add_client(
    store: &Store,
    ring: &KeyRing,
    name: &str,
    scopes: Vec<String>,
    info_sets: Vec<String>,
    divisions: Vec<String>,
) -> anyhow::Result<(String, String)> {
    if name.trim().is_empty() {
        bail!("name: must not be empty");
    }
    check_grants(&scopes, &info_sets, &divisions)
        .map_err(|e| anyhow::anyhow!("invalid client:\n  {}", e.join("\n  ")))?;
    let app_key = sign::new_app_key();
    let secret = sign::new_secret();
    let now = now_ms();
    let detail = format!(
        "scopes={} info_sets={} divisions={}",
        scopes.join(","),
        info_sets.join(","),
        divisions.join(",")
    );
    store
        .put_client(
            ClientRecord {
                app_key: app_key.clone(),
                name: name.trim().to_owned(),
                secret_sealed: ring.seal(&secret),
                old_secret_sealed: None,
                old_valid_until_ms: None,
                scopes,
                info_sets,
                divisions,
                disabled: false,
                created_at_ms: now,
                updated_at_ms: now,
            },
            cli_audit("client.add", &app_key, detail),
        )
        .await?;
    Ok((app_key, secret))
}

async fn existing(store: &Store, app_key: &str) -> anyhow::Result<ClientRecord> {
    store
        .get_client(app_key)
        .await?
        .with_context(|| format!("no client with app key {app_key}"))
}

/// Issues a new secret; the old one stays valid for `grace_secs`. Returns the new secret.
pub async fn rotate_client(
    store: &Store,
    ring: &KeyRing,
    app_key: &str,
    grace_secs: u64,
) -> anyhow::Result<String> {
    let mut c = existing(store, app_key).await?;
    let secret = sign::new_secret();
    let now = now_ms();
    c.old_secret_sealed = Some(std::mem::replace(&mut c.secret_sealed, ring.seal(&secret)));
    c.old_valid_until_ms = Some(now + grace_secs as i64 * 1000);
    c.updated_at_ms = now;
    store
        .put_client(
            c,
            cli_audit("client.rotate", app_key, format!("grace_secs={grace_secs}")),
        )
        .await?;
    Ok(secret)
}

/// Disables or re-enables a client.
pub async fn set_disabled(store: &Store, app_key: &str, disabled: bool) -> anyhow::Result<()> {
    let mut c = existing(store, app_key).await?;
    c.disabled = disabled;
    c.updated_at_ms = now_ms();
    let action = if disabled {
        "client.disable"
    } else {
        "client.enable"
    };
    store
        .put_client(c, cli_audit(action, app_key, String::new()))
        .await?;
    Ok(())
}

/// Checks the whole audit chain. Ok(count) when intact; Err names the first broken entry.
pub async fn verify_audit(
    store: &Store,
) -> anyhow::Result<Result<usize, xfhub_security::audit::ChainBreak>> {
    let mut prev = xfhub_security::audit::GENESIS.to_owned();
    let mut after = 0;
    let mut count = 0;
    loop {
        let page = store.audit_page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        let (last_seq, last_hash) = (last.entry.seq, last.hash.clone());
        let entries: Vec<_> = page
            .iter()
            .map(|r| (&r.entry, r.prev_hash.as_str(), r.hash.as_str()))
            .collect();
        match xfhub_security::audit::verify_chain_from(&prev, entries) {
            Ok(n) => count += n,
            Err(brk) => return Ok(Err(brk)),
        }
        prev = last_hash;
        after = last_seq;
    }
    Ok(Ok(count))
}

/// Re-seals every value under a key other than the active one, in a JSON value.
fn reseal_value(ring: &KeyRing, v: &mut Value) -> anyhow::Result<bool> {
    match v {
        Value::String(s) => reseal_text(ring, s),
        Value::Array(a) => {
            let mut changed = false;
            for x in a {
                changed |= reseal_value(ring, x)?;
            }
            Ok(changed)
        }
        Value::Object(o) => {
            let mut changed = false;
            for (_, x) in o.iter_mut() {
                changed |= reseal_value(ring, x)?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

fn reseal_text(ring: &KeyRing, s: &mut String) -> anyhow::Result<bool> {
    match KeyRing::key_id_of(s) {
        Some(id) if id != ring.active_id() => {
            let clear = ring
                .open_bytes(s)
                .map_err(|e| anyhow::anyhow!("cannot open a sealed value: {e}"))?;
            *s = ring.seal_bytes(&clear);
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Re-seals one stored text: a sealed value, or JSON holding sealed values.
fn reseal_stored(ring: &KeyRing, text: &str) -> anyhow::Result<Option<String>> {
    if KeyRing::is_sealed(text) {
        let mut s = text.to_owned();
        return Ok(reseal_text(ring, &mut s)?.then_some(s));
    }
    let Ok(mut v) = serde_json::from_str::<Value>(text) else {
        return Ok(None);
    };
    Ok(if reseal_value(ring, &mut v)? {
        Some(serde_json::to_string(&v)?)
    } else {
        None
    })
}

/// Progress of a re-encryption.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    pub scanned: u64,
    pub resealed: u64,
}

/// Re-encrypts everything stored under older keys with the active key, table by table, in
/// batches; each batch records its position, so an interrupted run resumes where it stopped.
/// Reads keep working throughout: every key stays in the ring.
pub async fn reseal_all(
    store: &Store,
    ring: &KeyRing,
    attachments: Option<&Path>,
    mut progress: impl FnMut(&str, ResealReport),
) -> anyhow::Result<ResealReport> {
    let active = ring.active_id().to_owned();
    let mut total = ResealReport::default();
    for table in ResealTable::ALL {
        let mut cursor = match store.rotation_cursor(table).await? {
            Some((target, cursor)) if target == active => cursor,
            _ => String::new(),
        };
        let mut report = ResealReport::default();
        loop {
            let rows = store.reseal_scan(table, &cursor, 500).await?;
            let Some((last, _)) = rows.last() else { break };
            let last = last.clone();
            let mut updates = Vec::new();
            for (key, text) in rows {
                report.scanned += 1;
                if let Some(new) = reseal_stored(ring, &text)? {
                    updates.push((key, text, new));
                }
            }
            report.resealed += store.reseal(table, updates).await?;
            store.set_rotation_cursor(table, &active, &last).await?;
            cursor = last;
            progress(table.name(), report);
        }
        total.scanned += report.scanned;
        total.resealed += report.resealed;
    }
    // The app channel's attachment files.
    if let Some(dir) = attachments {
        // Plain file I/O on this task: `xfhub keys reseal` is a command of its own, and the key
        // ring (which wipes its keys on drop) is not cloned into a blocking thread.
        let report = reseal_attachment_files(dir, ring)?;
        progress(ATTACHMENT_FILES, report);
        total.scanned += report.scanned;
        total.resealed += report.resealed;
    }
    // Client secrets.
    for mut c in store.list_clients().await? {
        let mut changed = reseal_text(ring, &mut c.secret_sealed)?;
        if let Some(old) = c.old_secret_sealed.as_mut() {
            changed |= reseal_text(ring, old)?;
        }
        total.scanned += 1;
        if changed {
            let key = c.app_key.clone();
            store
                .put_client(c, cli_audit("client.reseal", &key, format!("key={active}")))
                .await?;
            total.resealed += 1;
        }
    }
    store
        .audit(cli_audit(
            "keys.reseal",
            &active,
            format!("scanned={} resealed={}", total.scanned, total.resealed),
        ))
        .await?;
    Ok(total)
}

/// Progress name of the attachment files' pass of [`reseal_all`].
pub const ATTACHMENT_FILES: &str = "app attachment files";

/// Re-encrypts the app channel's sealed attachment files (`<data_dir>/app/attachments`, one
/// file per content digest) that are under an older key. Each is rewritten whole through a
/// temporary file and a rename, so a reader sees the old file or the new one, and both open
/// (every key stays in the ring). A file already under the active key is left alone, so an
/// interrupted pass simply runs again. Files that are not sealed values are skipped: the
/// directory holds nothing else, except an upload's temporary file while it is written.
pub fn reseal_attachment_files(dir: &Path, ring: &KeyRing) -> anyhow::Result<ResealReport> {
    let mut report = ResealReport::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // No complaint with an attachment yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if !path.is_file() || path.extension().is_some() {
            continue;
        }
        let mut text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        if !KeyRing::is_sealed(&text) {
            continue;
        }
        report.scanned += 1;
        if reseal_text(ring, &mut text)? {
            let tmp = path.with_extension("reseal");
            std::fs::write(&tmp, &text).with_context(|| format!("write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("replace {}", path.display()))?;
            report.resealed += 1;
        }
    }
    Ok(report)
}

/// Key ids still in use in stored text of a table (for reports and tests).
pub async fn key_ids_in_use(store: &Store, table: ResealTable) -> anyhow::Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let rows = store.reseal_scan(table, &cursor, 1000).await?;
        let Some((last, _)) = rows.last() else { break };
        cursor = last.clone();
        for (_, text) in rows {
            for part in text.split("enc:v1:").skip(1) {
                if let Some(id) = part.split(':').next() {
                    ids.insert(id.to_owned());
                }
            }
        }
    }
    Ok(ids)
}
