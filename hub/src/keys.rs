//! The key ring for personal data at rest, as the running hub holds it.
//!
//! Source, in this order:
//!
//! 1. the environment variable [`KEYS_ENV`] (`XFHUB_KEYS`), holding the TOML text of the ring
//!    (the format of `KeyRing::to_toml`); the file is then not read;
//! 2. the key file (`[security] key_file`, default `<data_dir>/keys.toml`);
//! 3. neither: a fresh ring is generated and written to the key file (mode 0600), and
//!    `KeyRingCreated` is logged with its fingerprint.
//!
//! A running hub polls the key file every 2 s ([`Keys::watch`]) and swaps in the new ring
//! when the file changed, so a rotation done by `xfhub keys rotate` ([`rotate_file`]) reaches
//! it without a restart. A file that does not parse, that changes the blind-index key, or that
//! gives an existing key id other bytes never replaces the ring in use: the reload fails with
//! the reason and the old ring stays. Logs and errors show key ids and fingerprints, never key
//! bytes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use xfhub_security::KeyRing;
use zeroize::Zeroizing;

use crate::config::Config;

/// Environment variable holding the key ring TOML; overrides the key file.
pub const KEYS_ENV: &str = "XFHUB_KEYS";

/// How often [`Keys::watch`] looks at the key file.
pub const WATCH_PERIOD: Duration = Duration::from_secs(2);

/// The key ring in force, shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<Inner>,
}

struct Inner {
    ring: RwLock<Arc<KeyRing>>,
    source: Source,
    /// What the key file looked like when the ring in force was read from it.
    stamp: Mutex<Option<Stamp>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Env,
    File(PathBuf),
}

/// Identity of one version of the key file: modification time, length and inode (a rotation
/// renames a new file into place, so the inode changes even within one mtime tick).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp_of(path: &Path) -> std::io::Result<Stamp> {
    let m = fs::metadata(path)?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino,
    })
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("source", &self.inner.source)
            .field("ring", &*self.current())
            .finish()
    }
}

impl Keys {
    /// Loads the ring from `XFHUB_KEYS`, else from the key file, else generates and writes one.
    pub fn load(config: &Config) -> anyhow::Result<Keys> {
        let env = match std::env::var_os(KEYS_ENV) {
            None => None,
            Some(v) => Some(
                v.into_string()
                    .map_err(|_| anyhow::anyhow!("{KEYS_ENV} is not valid UTF-8"))?,
            ),
        };
        Self::load_from(&config.key_file(), env.map(Zeroizing::new))
    }

    /// [`Keys::load`] with the environment value passed in.
    fn load_from(path: &Path, env: Option<Zeroizing<String>>) -> anyhow::Result<Keys> {
        if let Some(text) = env {
            if text.trim().is_empty() {
                bail!(
                    "{KEYS_ENV} is set but empty; unset it to use the key file {}",
                    path.display()
                );
            }
            let ring = KeyRing::from_env_value(&text).context(KEYS_ENV)?;
            tracing::info!(
                source = KEYS_ENV,
                active = ring.active_id(),
                fingerprint = %ring.fingerprint(),
                "KeyRingLoaded"
            );
            return Ok(Keys::new(ring, Source::Env, None));
        }
        match stamp_of(path) {
            Ok(stamp) => {
                let ring = read_ring(path)?;
                tracing::info!(
                    key_file = %path.display(),
                    active = ring.active_id(),
                    fingerprint = %ring.fingerprint(),
                    "KeyRingLoaded"
                );
                Ok(Keys::new(ring, Source::File(path.to_owned()), Some(stamp)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ring = KeyRing::generate();
                let text = Zeroizing::new(ring.to_toml());
                if !create_file(path, text.as_bytes())? {
                    // Another process created it between our look and our write: use theirs.
                    return Self::load_from(path, None);
                }
                tracing::info!(
                    key_file = %path.display(),
                    active = ring.active_id(),
                    fingerprint = %ring.fingerprint(),
                    "KeyRingCreated"
                );
                let stamp = stamp_of(path).ok();
                Ok(Keys::new(ring, Source::File(path.to_owned()), stamp))
            }
            Err(e) => Err(e).with_context(|| format!("key file {}", path.display())),
        }
    }

    fn new(ring: KeyRing, source: Source, stamp: Option<Stamp>) -> Keys {
        Keys {
            inner: Arc::new(Inner {
                ring: RwLock::new(Arc::new(ring)),
                source,
                stamp: Mutex::new(stamp),
            }),
        }
    }

    /// A ring held in memory only (tests, tools): never reloads.
    pub fn fixed(ring: KeyRing) -> Keys {
        Keys::new(ring, Source::Env, None)
    }

    /// The ring in force. Hold the `Arc` for one operation, then ask again.
    pub fn current(&self) -> Arc<KeyRing> {
        self.inner
            .ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The key file the ring comes from (None when it comes from `XFHUB_KEYS`).
    pub fn key_file(&self) -> Option<&Path> {
        match &self.inner.source {
            Source::File(p) => Some(p),
            Source::Env => None,
        }
    }

    /// Re-reads the key file. Returns whether the ring in force changed. On any error the ring
    /// in force stays. A ring from `XFHUB_KEYS` never changes (returns `false`).
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Source::File(path) = &self.inner.source else {
            return Ok(false);
        };
        let stamp = stamp_of(path).with_context(|| format!("key file {}", path.display()))?;
        let new = read_ring(path)?;
        let old = self.current();
        check_successor(&old, &new).with_context(|| {
            format!(
                "key file {}: refused, the ring in force ({}) stays",
                path.display(),
                old.fingerprint()
            )
        })?;
        *self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner()) = Some(stamp);
        if new.fingerprint() == old.fingerprint() {
            return Ok(false);
        }
        let removed: Vec<String> = old
            .ids()
            .into_iter()
            .filter(|id| !new.ids().contains(id))
            .collect();
        if !removed.is_empty() {
            tracing::warn!(
                key_file = %path.display(),
                removed = ?removed,
                "KeyRingKeysRemoved: values still sealed under these ids can no longer be opened"
            );
        }
        tracing::info!(
            key_file = %path.display(),
            active = new.active_id(),
            fingerprint = %new.fingerprint(),
            previous = %old.fingerprint(),
            "KeyRingReloaded"
        );
        *self.inner.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(true)
    }

    /// Reloads whenever the key file changes (polled every [`WATCH_PERIOD`]) until `stop`.
    pub async fn watch(self, stop: CancellationToken) {
        self.watch_every(WATCH_PERIOD, stop).await
    }

    async fn watch_every(self, period: Duration, stop: CancellationToken) {
        let Source::File(path) = self.inner.source.clone() else {
            return;
        };
        let mut seen = self
            .inner
            .stamp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut missing_reported = false;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let stamp = match stamp_of(&path) {
                Ok(s) => s,
                Err(e) => {
                    if !missing_reported {
                        tracing::warn!(key_file = %path.display(), error = %e, "KeyFileUnreadable: the ring in force stays");
                        missing_reported = true;
                    }
                    continue;
                }
            };
            missing_reported = false;
            if seen.as_ref() == Some(&stamp) {
                continue;
            }
            // Remember this version even when it fails, so a bad file is reported once.
            seen = Some(stamp);
            if let Err(e) = self.reload() {
                tracing::error!(error = format!("{e:#}"), "KeyRingReloadFailed");
            }
        }
    }
}

/// Reads and parses a key file (for tools; the hub uses [`Keys::load`]).
pub fn load_file(path: &Path) -> anyhow::Result<KeyRing> {
    read_ring(path)
}

/// Reads and parses a key file, warning when group or others have any access to it.
fn read_ring(path: &Path) -> anyhow::Result<KeyRing> {
    warn_if_open(path);
    let text = Zeroizing::new(
        fs::read_to_string(path).with_context(|| format!("key file {}", path.display()))?,
    );
    KeyRing::from_toml(&text).with_context(|| format!("key file {}", path.display()))
}

fn warn_if_open(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    key_file = %path.display(),
                    mode = format!("{mode:04o}"),
                    "KeyFilePermissions: group or others can access the key file; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Non-secret check values of a ring: for the blind-index key and each data key, SM3 over a
/// label and the key's canonical text. Lets two rings be compared key by key without keeping
/// or logging key bytes.
fn check_values(ring: &KeyRing) -> BTreeMap<String, String> {
    let text = Zeroizing::new(ring.to_toml());
    let mut out = BTreeMap::new();
    let Ok(table) = toml::from_str::<toml::Table>(&text) else {
        return out;
    };
    let kcv = |v: &toml::Value| {
        let s = Zeroizing::new(v.as_str().unwrap_or_default().to_owned());
        xfhub_security::sm3_hex(format!("xfhub-hub-kcv\0{}", &*s).as_bytes())
    };
    if let Some(b) = table.get("blind_index_key") {
        out.insert(String::new(), kcv(b));
    }
    if let Some(keys) = table.get("keys").and_then(|k| k.as_table()) {
        for (id, v) in keys {
            out.insert(id.clone(), kcv(v));
        }
    }
    out
}

/// Whether `new` may replace `old` in a running hub: the blind-index key must stay (blind
/// indexes and keyed digests would stop matching) and a key id kept must keep its bytes
/// (values sealed under it would no longer open).
fn check_successor(old: &KeyRing, new: &KeyRing) -> anyhow::Result<()> {
    let (a, b) = (check_values(old), check_values(new));
    let mut problems = Vec::new();
    if a.get("") != b.get("") {
        problems
            .push("blind_index_key differs from the ring in force (it never rotates)".to_owned());
    }
    for (id, v) in a.iter().filter(|(id, _)| !id.is_empty()) {
        if b.get(id).is_some_and(|w| w != v) {
            problems.push(format!(
                "key `{id}` has other bytes than in the ring in force"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

/// Adds a fresh key to the ring in `path`, makes it active and writes the file back atomically
/// (temporary file with mode 0600, fsync, rename). Returns the new active key id. Values sealed
/// under older keys stay readable; re-sealing them is a separate step.
pub fn rotate_file(path: &Path) -> anyhow::Result<String> {
    if !path.exists() {
        bail!(
            "no key file at {}: `xfhub serve` creates one on its first start",
            path.display()
        );
    }
    let _lock = RotationLock::take(path)?;
    let mut ring = read_ring(path)?;
    let id = ring.rotate();
    let text = Zeroizing::new(ring.to_toml());
    replace_file(path, text.as_bytes())?;
    tracing::info!(
        key_file = %path.display(),
        active = %id,
        fingerprint = %ring.fingerprint(),
        "KeyRingRotated"
    );
    Ok(id)
}

/// `<path>.lock`, created exclusively for the time of a rotation so that two rotations cannot
/// both read the same ring and write different new keys under the same id.
struct RotationLock(PathBuf);

impl RotationLock {
    fn take(path: &Path) -> anyhow::Result<RotationLock> {
        let lock = sibling(path, ".lock");
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => Ok(RotationLock(lock)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "{} exists: another rotation is running (remove the file if none is)",
                lock.display()
            ),
            Err(e) => Err(e).with_context(|| format!("creating {}", lock.display())),
        }
    }
}

impl Drop for RotationLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `bytes` to a new temporary file beside `path` (mode 0600) and syncs it.
fn write_temp(path: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tmp = sibling(path, &format!(".tmp.{}.{nanos}", std::process::id()));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let write = || -> std::io::Result<()> {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    Ok(tmp)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(path: &Path) {
    // Makes the rename durable; not every platform can open a directory, so best effort.
    if let Ok(d) = File::open(parent_dir(path)) {
        let _ = d.sync_all();
    }
}

/// Creates `path` with `bytes` (mode 0600) only if it does not exist, atomically: the content
/// is complete before the name appears. Returns false when the file already existed.
fn create_file(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    let tmp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Replaces `path` with `bytes` (mode 0600) atomically.
fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = write_temp(path, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("replacing {}", path.display()));
    }
    sync_dir(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("sub").join("keys.toml")
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generated_ring_is_written_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir);
        let first = Keys::load_from(&path, None).unwrap();
        assert!(path.exists(), "the ring was written");
        assert_eq!(first.key_file(), Some(path.as_path()));
        let again = Keys::load_from(&path, None).unwrap();
        assert_eq!(first.current().fingerprint(), again.current().fingerprint());
        assert_eq!(again.current().active_id(), "k1");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["keys.toml"]);
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir);
        Keys::load_from(&path, None).unwrap();
        assert_eq!(mode(&path), 0o600);
        // A rotation keeps the mode even when the file had been opened up.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        rotate_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir);
        let from_file = Keys::load_from(&path, None).unwrap();
        let other = KeyRing::generate();
        let env = Zeroizing::new(other.to_toml());
        let keys = Keys::load_from(&path, Some(env)).unwrap();
        assert_eq!(keys.current().fingerprint(), other.fingerprint());
        assert_ne!(
            keys.current().fingerprint(),
            from_file.current().fingerprint()
        );
        assert_eq!(keys.key_file(), None);
        // Rotating the file does not touch a ring from the environment.
        rotate_file(&path).unwrap();
        assert!(!keys.reload().unwrap());
        assert_eq!(keys.current().fingerprint(), other.fingerprint());
        // Nothing is generated when the environment gives the ring.
        let fresh = dir.path().join("none.toml");
        Keys::load_from(&fresh, Some(Zeroizing::new(other.to_toml()))).unwrap();
        assert!(!fresh.exists());
        // Set but empty or invalid: refused, with the variable's name.
        let err = Keys::load_from(&fresh, Some(Zeroizing::new(" ".into()))).unwrap_err();
        assert!(
            format!("{err:#}").contains("XFHUB_KEYS is set but empty"),
            "{err:#}"
        );
        let err = Keys::load_from(&fresh, Some(Zeroizing::new("active = 1".into()))).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("XFHUB_KEYS: key ring is invalid"),
            "{err:#}"
        );
    }

    #[test]
    fn a_bad_file_is_refused_and_the_ring_in_force_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir);
        // At start: a clear error naming the file, no key material.
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            "active = \"k1\"\nblind_index_key = \"c2VjcmV0\"\n[keys]\nk1 = \"c2VjcmV0\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Keys::load_from(&path, None).unwrap_err());
        assert!(
            err.starts_with(&format!("key file {}: key ring is invalid", path.display())),
            "{err}"
        );
        assert!(err.contains("must be 32 bytes"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");

        // While running: every kind of bad file leaves the ring as it was.
        fs::remove_file(&path).unwrap();
        let keys = Keys::load_from(&path, None).unwrap();
        let before = keys.current().fingerprint();
        let good = fs::read_to_string(&path).unwrap();
        let mut other_k1 = KeyRing::generate();
        let same_blind_other_k1 = {
            // Same blind-index key, other bytes under `k1`.
            let mine: toml::Table = toml::from_str(&good).unwrap();
            let mut t: toml::Table = toml::from_str(&other_k1.to_toml()).unwrap();
            t.insert("blind_index_key".into(), mine["blind_index_key"].clone());
            toml::to_string(&t).unwrap()
        };
        other_k1.rotate();
        let cases = [
            ("not toml", "active = \n".to_owned(), "not valid TOML"),
            ("empty", String::new(), "`active` is missing"),
            ("other ring", other_k1.to_toml(), "blind_index_key differs"),
            (
                "k1 replaced",
                same_blind_other_k1,
                "key `k1` has other bytes",
            ),
        ];
        for (name, text, want) in cases {
            fs::write(&path, &text).unwrap();
            let err = format!("{:#}", keys.reload().unwrap_err());
            assert!(err.contains(want), "{name}: {err}");
            assert_eq!(keys.current().fingerprint(), before, "{name}");
        }
        // Put back: unchanged; then a real rotation is taken.
        fs::write(&path, &good).unwrap();
        assert!(!keys.reload().unwrap());
        let id = rotate_file(&path).unwrap();
        assert_eq!(id, "k2");
        assert!(keys.reload().unwrap());
        assert_eq!(keys.current().active_id(), "k2");
        assert_eq!(keys.current().ids(), ["k1", "k2"]);
    }

    #[test]
    fn rotation_refuses_a_missing_file_and_a_concurrent_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir);
        let err = format!("{:#}", rotate_file(&path).unwrap_err());
        assert!(err.contains("no key file at"), "{err}");
        Keys::load_from(&path, None).unwrap();
        let lock = RotationLock::take(&path).unwrap();
        let err = format!("{:#}", rotate_file(&path).unwrap_err());
        assert!(err.contains("another rotation is running"), "{err}");
        drop(lock);
        assert_eq!(rotate_file(&path).unwrap(), "k2");
        assert_eq!(rotate_file(&path).unwrap(), "k3");
    }

    #[tokio::test]
    async fn the_watcher_picks_up_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_path(&dir);
        let keys = Keys::load_from(&path, None).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            keys.clone()
                .watch_every(Duration::from_millis(20), stop.clone()),
        );
        rotate_file(&path).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while keys.current().active_id() != "k2" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "rotation not picked up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        task.await.unwrap();
    }
}
