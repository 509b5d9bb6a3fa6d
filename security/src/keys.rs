//! The key ring for data at rest.
//!
//! A [`KeyRing`] holds data keys by id (`k1`, `k2`, ...), the id of the active one (new values
//! are sealed with it; every key of the ring can still open), and a separate blind-index key
//! (blind indexes and keyed digests must stay stable across rotations, so that key never
//! rotates with the data keys). All key bytes are zeroized when dropped, and neither `Debug`
//! nor any error message shows them.
//!
//! TOML form (what [`KeyRing::to_toml`] writes and [`KeyRing::from_toml`] reads):
//!
//! ```toml
//! active = "k2"
//! blind_index_key = "<base64 of 32 bytes>"
//!
//! [keys]
//! k1 = "<base64 of 32 bytes>"
//! k2 = "<base64 of 32 bytes>"
//! ```
//!
//! Base64 is read in the standard or the URL-safe alphabet, padded or not; it is written in
//! the standard alphabet with padding. Key ids are 1 to 32 characters of `A-Z a-z 0-9 _ -`.

use std::collections::BTreeMap;
use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

use crate::hmac_sm3;

/// Length in bytes of every key of the ring.
pub const KEY_LEN: usize = 32;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const B64_STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const B64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// One data key: the 32 stored bytes and the two keys derived from them. Zeroized on drop.
pub(crate) struct KeyMaterial {
    raw: [u8; KEY_LEN],
    /// SM4 key: first 16 bytes of HMAC-SM3(raw, "xfhub-enc").
    pub(crate) enc: [u8; 16],
    /// MAC key: HMAC-SM3(raw, "xfhub-mac").
    pub(crate) mac: [u8; 32],
}

impl KeyMaterial {
    fn new(raw: [u8; KEY_LEN]) -> Self {
        let mut e = hmac_sm3(&raw, &[b"xfhub-enc"]);
        let mut enc = [0u8; 16];
        enc.copy_from_slice(&e[..16]);
        e.zeroize();
        let mac = hmac_sm3(&raw, &[b"xfhub-mac"]);
        Self { raw, enc, mac }
    }

    fn random() -> Self {
        let mut raw = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut raw);
        Self::new(raw)
    }

    /// Key check value: non-secret, identifies the key without revealing it.
    fn check_value(&self) -> [u8; 32] {
        hmac_sm3(&self.raw, &[b"xfhub-kcv"])
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        self.raw.zeroize();
        self.enc.zeroize();
        self.mac.zeroize();
    }
}

/// Data keys by id, the active id and the blind-index key. See the [module docs](self).
pub struct KeyRing {
    active: String,
    pub(crate) keys: BTreeMap<String, KeyMaterial>,
    pub(crate) blind: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("ids", &self.ids())
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Why a key ring text was refused. Messages name fields and ids, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not TOML; position only, the offending line is not quoted (it may hold a
    /// key).
    #[error("key ring is not valid TOML at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// The parser's message, without the source text.
        message: String,
    },
    /// Valid TOML but not a valid key ring: every problem found (top-level fields first, then
    /// the keys sorted by id).
    #[error("key ring is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Decodes a base64 key, reporting problems without its content.
fn decode_key(what: &str, text: &str, problems: &mut Vec<String>) -> Option<[u8; KEY_LEN]> {
    let text = text.trim();
    let decoded = B64_STD
        .decode(text)
        .or_else(|_| B64_URL.decode(text))
        .map(Zeroizing::new);
    match decoded {
        Err(_) => {
            problems.push(format!("{what}: not valid base64"));
            None
        }
        Ok(bytes) if bytes.len() != KEY_LEN => {
            problems.push(format!(
                "{what}: must be {KEY_LEN} bytes, has {}",
                bytes.len()
            ));
            None
        }
        Ok(bytes) => {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(&bytes);
            Some(k)
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl KeyRing {
    /// A fresh ring: one random data key `k1`, active, and a random blind-index key.
    pub fn generate() -> KeyRing {
        let mut blind = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(blind.as_mut());
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_string(), KeyMaterial::random());
        KeyRing {
            active: "k1".into(),
            keys,
            blind,
        }
    }

    /// Reads the TOML form (see the [module docs](self)). Unknown fields, a missing or unknown
    /// `active`, bad base64, keys of the wrong length, bad ids, an empty `[keys]` table and a
    /// blind-index key equal to a data key are all reported together.
    pub fn from_toml(text: &str) -> Result<KeyRing, KeyError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            KeyError::Syntax {
                line,
                column,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        let mut problems = Vec::new();

        let mut fields: Vec<&String> = table.keys().collect();
        fields.sort();
        for k in fields {
            if !matches!(k.as_str(), "active" | "blind_index_key" | "keys") {
                problems.push(format!("unknown field `{k}`"));
            }
        }

        let active = match table.get("active") {
            None => {
                problems.push("`active` is missing".into());
                None
            }
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                problems.push("`active` must be a string".into());
                None
            }
        };

        let blind = match table.get("blind_index_key") {
            None => {
                problems.push("`blind_index_key` is missing".into());
                None
            }
            Some(toml::Value::String(s)) => decode_key("`blind_index_key`", s, &mut problems),
            Some(_) => {
                problems.push("`blind_index_key` must be a base64 string".into());
                None
            }
        }
        .map(Zeroizing::new);

        let mut keys = BTreeMap::new();
        match table.get("keys") {
            None => problems.push("`[keys]` is missing".into()),
            Some(toml::Value::Table(t)) => {
                if t.is_empty() {
                    problems.push("`[keys]` holds no key".into());
                }
                let mut entries: Vec<(&String, &toml::Value)> = t.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (id, v) in entries {
                    let what = format!("key `{id}`");
                    if !valid_id(id) {
                        problems.push(format!(
                            "{what}: an id is 1 to 32 characters of A-Z a-z 0-9 _ -"
                        ));
                    }
                    match v {
                        toml::Value::String(s) => {
                            if let Some(raw) = decode_key(&what, s, &mut problems) {
                                keys.insert(id.clone(), KeyMaterial::new(raw));
                            }
                        }
                        _ => problems.push(format!("{what}: must be a base64 string")),
                    }
                }
            }
            Some(_) => problems.push("`keys` must be a table".into()),
        }

        if let Some(a) = &active {
            let declared =
                matches!(table.get("keys"), Some(toml::Value::Table(t)) if t.contains_key(a));
            if !declared {
                problems.push(format!(
                    "`active` names key `{a}`, which is not in `[keys]`"
                ));
            }
        }
        if let Some(b) = &blind {
            for (id, k) in &keys {
                if bool::from(subtle::ConstantTimeEq::ct_eq(&k.raw[..], &b[..])) {
                    problems.push(format!(
                        "`blind_index_key` must differ from data key `{id}`"
                    ));
                }
            }
        }

        match (active, blind) {
            (Some(active), Some(blind)) if problems.is_empty() => Ok(KeyRing {
                active,
                keys,
                blind,
            }),
            _ => Err(KeyError::Invalid(problems)),
        }
    }

    /// Same as [`KeyRing::from_toml`]; named for callers that hold the TOML in an environment
    /// variable's value (the crate itself never reads the environment).
    pub fn from_env_value(s: &str) -> Result<KeyRing, KeyError> {
        Self::from_toml(s)
    }

    /// The TOML form. **Contains every key in clear**: write it only where secrets belong.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("active = \"{}\"\n", self.active));
        out.push_str(&format!(
            "blind_index_key = \"{}\"\n\n[keys]\n",
            STANDARD.encode(self.blind.as_ref())
        ));
        for (id, k) in &self.keys {
            out.push_str(&format!("{id} = \"{}\"\n", STANDARD.encode(k.raw)));
        }
        out
    }

    /// Adds a fresh random key with the next id (`k<N+1>` where `N` is the largest number of an
    /// id of the form `k<N>`), makes it active and returns its id. Old keys stay, for opening
    /// values sealed under them until they are re-sealed.
    pub fn rotate(&mut self) -> String {
        let max = self
            .keys
            .keys()
            .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let id = format!("k{}", max + 1);
        self.keys.insert(id.clone(), KeyMaterial::random());
        self.active = id.clone();
        id
    }

    /// Id of the key that seals new values.
    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Ids of every data key, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Short non-secret identifier of the ring for logs: the first 8 hex digits of SM3 over
    /// the active id and, for each key in id order, its id and a key check value
    /// (HMAC-SM3(key, "xfhub-kcv")). Two rings with the same ids but different keys therefore
    /// have different fingerprints, and rotating changes it.
    pub fn fingerprint(&self) -> String {
        use sm3::{Digest, Sm3};
        let mut h = Sm3::new();
        h.update(self.active.as_bytes());
        for (id, k) in &self.keys {
            h.update([0u8]);
            h.update(id.as_bytes());
            h.update([0u8]);
            h.update(k.check_value());
        }
        hex::encode(h.finalize())[..8].to_string()
    }

    /// The active key, which always exists.
    pub(crate) fn active_key(&self) -> &KeyMaterial {
        &self.keys[&self.active]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn generate_and_rotate() {
        let mut ring = KeyRing::generate();
        assert_eq!(ring.active_id(), "k1");
        assert_eq!(ring.ids(), ["k1"]);
        let f1 = ring.fingerprint();
        assert_eq!(f1.len(), 8);
        assert_eq!(ring.rotate(), "k2");
        assert_eq!(ring.rotate(), "k3");
        assert_eq!(ring.active_id(), "k3");
        assert_eq!(ring.ids(), ["k1", "k2", "k3"]);
        assert_ne!(ring.fingerprint(), f1);
        // Two fresh rings share ids but not keys.
        assert_ne!(
            KeyRing::generate().fingerprint(),
            KeyRing::generate().fingerprint()
        );
    }

    #[test]
    fn rotate_after_custom_ids() {
        let text = format!(
            "active = \"k9\"\nblind_index_key = \"{}\"\n[keys]\nk9 = \"{}\"\nlegacy = \"{}\"\n",
            b64(&[1; 32]),
            b64(&[2; 32]),
            b64(&[3; 32])
        );
        let mut ring = KeyRing::from_toml(&text).unwrap();
        assert_eq!(ring.rotate(), "k10");
    }

    #[test]
    fn toml_round_trip() {
        let mut ring = KeyRing::generate();
        ring.rotate();
        let text = ring.to_toml();
        let back = KeyRing::from_toml(&text).unwrap();
        assert_eq!(back.active_id(), "k2");
        assert_eq!(back.ids(), ["k1", "k2"]);
        assert_eq!(back.fingerprint(), ring.fingerprint());
        assert_eq!(back.to_toml(), text);
        let env = KeyRing::from_env_value(&text).unwrap();
        assert_eq!(env.fingerprint(), ring.fingerprint());
    }

    #[test]
    fn lenient_base64_on_read() {
        let key: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(250))
            .collect();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key);
        assert!(url.contains('-') || url.contains('_'), "{url}");
        let text = format!(
            "active = \"k1\"\nblind_index_key = \"{}\"\n[keys]\nk1 = \"{url}\"\n",
            b64(&[9; 32]).trim_end_matches('=')
        );
        let ring = KeyRing::from_toml(&text).unwrap();
        assert_eq!(&ring.keys["k1"].raw[..], &key[..]);
    }

    #[test]
    fn every_error_is_reported() {
        let good = b64(&[7; 32]);
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                format!("blind_index_key = \"{good}\"\n[keys]\nk1 = \"{}\"\n", b64(&[1; 32])),
                vec!["`active` is missing"],
            ),
            (
                format!(
                    "active = \"k2\"\nblind_index_key = \"{good}\"\n[keys]\nk1 = \"{}\"\n",
                    b64(&[1; 32])
                ),
                vec!["`active` names key `k2`, which is not in `[keys]`"],
            ),
            (
                format!(
                    "active = \"k1\"\nblind_index_key = \"{good}\"\n[keys]\nk1 = \"@@not base64@@\"\n"
                ),
                vec!["key `k1`: not valid base64"],
            ),
            (
                format!(
                    "active = \"k1\"\nblind_index_key = \"{good}\"\n[keys]\nk1 = \"{}\"\n",
                    b64(&[1; 16])
                ),
                vec!["key `k1`: must be 32 bytes, has 16"],
            ),
            (
                format!("active = \"k1\"\n[keys]\nk1 = \"{}\"\n", b64(&[1; 32])),
                vec!["`blind_index_key` is missing"],
            ),
            (
                format!("active = \"k1\"\nblind_index_key = \"{good}\"\n[keys]\nk1 = \"{good}\"\n"),
                vec!["`blind_index_key` must differ from data key `k1`"],
            ),
            (
                format!("active = \"k1\"\nblind_index_key = \"{good}\"\n"),
                vec![
                    "`[keys]` is missing",
                    "`active` names key `k1`, which is not in `[keys]`",
                ],
            ),
            (
                format!("active = \"k1\"\nblind_index_key = \"{good}\"\n[keys]\n"),
                vec![
                    "`[keys]` holds no key",
                    "`active` names key `k1`, which is not in `[keys]`",
                ],
            ),
            (
                // Everything wrong at once: each problem is listed.
                format!(
                    "active = 3\nblind_index_key = \"YWJj\"\nextra = true\n[keys]\nk1 = \"%%%\"\nk2 = \"{}\"\n\"bad id\" = \"{}\"\nk3 = 5\n",
                    b64(&[1; 31]),
                    b64(&[2; 32])
                ),
                vec![
                    "unknown field `extra`",
                    "`active` must be a string",
                    "`blind_index_key`: must be 32 bytes, has 3",
                    "key `bad id`: an id is 1 to 32 characters of A-Z a-z 0-9 _ -",
                    "key `k1`: not valid base64",
                    "key `k2`: must be 32 bytes, has 31",
                    "key `k3`: must be a base64 string",
                ],
            ),
        ];
        for (text, want) in cases {
            match KeyRing::from_toml(&text) {
                Err(KeyError::Invalid(got)) => assert_eq!(got, want, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_error_has_position_but_no_content() {
        let secret = b64(&[0xAB; 32]);
        let text = format!("active = \"k1\"\nblind_index_key = \"{secret}\n[keys]\n");
        let err = KeyRing::from_toml(&text).unwrap_err();
        let KeyError::Syntax { line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, 2);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&secret[..20]), "{shown}");
    }

    #[test]
    fn debug_hides_key_bytes() {
        let ring = KeyRing::generate();
        let shown = format!("{ring:?}");
        assert!(shown.contains("k1"));
        for (_, k) in ring.keys.iter() {
            assert!(!shown.contains(&STANDARD.encode(k.raw)));
            assert!(!shown.contains(&hex::encode(k.raw)));
        }
        assert!(!shown.contains(&hex::encode(ring.blind.as_ref())));
    }
}
