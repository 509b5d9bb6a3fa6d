//! Field encryption, blind indexes and keyed digests.
//!
//! A sealed value is the text `enc:v1:<key id>:<base64url without padding of iv | ct | tag>`:
//!
//! - `iv`: 16 random bytes, fresh for every value (two seals of the same text differ);
//! - `ct`: SM4-CTR (128-bit big-endian counter starting at `iv`) of the plaintext under the
//!   key's SM4 key (first 16 bytes of HMAC-SM3(key, "xfhub-enc"));
//! - `tag`: the full 32-byte HMAC-SM3, under the key's MAC key (HMAC-SM3(key, "xfhub-mac")),
//!   of `"enc:v1" 0x00 | len(key id) as one byte | key id | iv | ct` (encrypt-then-MAC; the
//!   key id and the version are authenticated too).
//!
//! Opening checks the tag in constant time before decrypting anything. A sealed value is not
//! bound to the record or field it sits in: whoever can write the store can swap two sealed
//! values of the same ring; record-level integrity is the store's and the audit chain's
//! business.
//!
//! A blind index (`HMAC-SM3(blind key, field | 0x00 | value)`) lets the store find a record
//! by an exact identity or phone number without holding it in clear; a keyed digest
//! (`HMAC-SM3(blind key, data)`) is the idempotency digest of a document that contains
//! personal data (a plain SM3 of such a document could be brute-forced back to the number).
//! The two inputs cannot collide in practice: field names are fixed identifiers followed by a
//! NUL byte, while digested documents are JSON text, which never holds a raw NUL.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ctr::cipher::{KeyIvInit, StreamCipher};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::hmac_sm3;
use crate::keys::{KeyMaterial, KeyRing};

type Sm4Ctr = ctr::Ctr128BE<sm4::Sm4>;

/// Prefix of every sealed value of format version 1.
pub const SEALED_PREFIX: &str = "enc:v1:";
const IV_LEN: usize = 16;
const TAG_LEN: usize = 32;

/// Why a sealed value could not be opened. Messages never carry the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The text does not start with `enc:`: it is not a sealed value.
    #[error("value is not sealed")]
    NotSealed,
    /// Sealed under a key id this ring does not hold.
    #[error("value is sealed under key `{0}`, which the key ring does not hold")]
    UnknownKey(String),
    /// The tag does not match: the value was altered, or sealed under another key with the
    /// same id.
    #[error("sealed value failed its integrity check")]
    Tampered,
    /// Looks sealed but cannot be parsed (unknown version, bad key id, bad base64, too short),
    /// or [`KeyRing::open`] found bytes that are not UTF-8 (sealed with `seal_bytes`).
    #[error("sealed value is malformed")]
    Malformed,
}

/// The parts of `enc:v1:<id>:<payload>` when the text has that shape.
fn split_sealed(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix(SEALED_PREFIX)?;
    let (id, payload) = rest.split_once(':')?;
    let id_ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let payload_ok = payload.len() >= 4
        && payload
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (id_ok && payload_ok).then_some((id, payload))
}

fn tag(key: &KeyMaterial, id: &str, iv: &[u8], ct: &[u8]) -> [u8; TAG_LEN] {
    // Key ids are at most 32 bytes (checked on load and on parse), so one length byte suffices.
    let id_len = [u8::try_from(id.len()).unwrap_or(u8::MAX)];
    hmac_sm3(&key.mac, &[b"enc:v1\0", &id_len, id.as_bytes(), iv, ct])
}

impl KeyRing {
    /// Seals UTF-8 text with the active key: `enc:v1:<active id>:<base64url>`.
    pub fn seal(&self, plaintext: &str) -> String {
        self.seal_bytes(plaintext.as_bytes())
    }

    /// Opens a value sealed under any key of the ring and returns the text.
    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let bytes = self.open_bytes(sealed)?;
        String::from_utf8(bytes).map_err(|_| SealError::Malformed)
    }

    /// Whether `s` has the shape of a sealed value (prefix, key id, base64url payload). Says
    /// nothing about whether it opens.
    pub fn is_sealed(s: &str) -> bool {
        split_sealed(s).is_some()
    }

    /// The key id of a sealed value, `None` when `sealed` does not have the shape of one.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        split_sealed(sealed).map(|(id, _)| id)
    }

    /// Seals raw bytes (payload blobs) with the active key; same format as [`KeyRing::seal`].
    pub fn seal_bytes(&self, data: &[u8]) -> String {
        let mut iv = [0u8; IV_LEN];
        // A thread-local CSPRNG (ChaCha, seeded and reseeded from the OS): an IV must be
        // unique and unpredictable, not drawn by a system call each (one per sealed field).
        rand::thread_rng().fill_bytes(&mut iv);
        self.seal_bytes_with_iv(data, iv)
    }

    /// [`KeyRing::seal_bytes`] with a given IV: only for known-answer tests, an IV must never
    /// repeat under one key.
    fn seal_bytes_with_iv(&self, data: &[u8], iv: [u8; IV_LEN]) -> String {
        let id = self.active_id();
        let key = self.active_key();
        let mut buf = Vec::with_capacity(IV_LEN + data.len() + TAG_LEN);
        buf.extend_from_slice(&iv);
        buf.extend_from_slice(data);
        Sm4Ctr::new(&key.enc.into(), &iv.into()).apply_keystream(&mut buf[IV_LEN..]);
        let t = tag(key, id, &iv, &buf[IV_LEN..]);
        buf.extend_from_slice(&t);
        format!("{SEALED_PREFIX}{id}:{}", URL_SAFE_NO_PAD.encode(&buf))
    }

    /// Opens a value sealed by [`KeyRing::seal_bytes`] (or [`KeyRing::seal`]) under any key
    /// of the ring.
    pub fn open_bytes(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        if !sealed.starts_with("enc:") {
            return Err(SealError::NotSealed);
        }
        let (id, payload) = split_sealed(sealed).ok_or(SealError::Malformed)?;
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let mut buf = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SealError::Malformed)?;
        if buf.len() < IV_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (body, given) = buf.split_at(buf.len() - TAG_LEN);
        let (iv, ct) = body.split_at(IV_LEN);
        let expected = tag(key, id, iv, ct);
        if !bool::from(expected.ct_eq(given)) {
            return Err(SealError::Tampered);
        }
        let mut iv_arr = [0u8; IV_LEN];
        iv_arr.copy_from_slice(iv);
        buf.truncate(buf.len() - TAG_LEN);
        let mut plain = buf.split_off(IV_LEN);
        Sm4Ctr::new(&key.enc.into(), &iv_arr.into()).apply_keystream(&mut plain);
        Ok(plain)
    }

    /// Deterministic lookup token of a normalized value: lowercase hex
    /// HMAC-SM3(blind-index key, `field` | 0x00 | `normalized_value`). The same value under
    /// two fields gives two unrelated tokens. Stable across data-key rotations.
    pub fn blind_index(&self, field: &str, normalized_value: &str) -> String {
        hex::encode(hmac_sm3(
            self.blind.as_ref(),
            &[field.as_bytes(), &[0u8], normalized_value.as_bytes()],
        ))
    }

    /// Lowercase hex HMAC-SM3(blind-index key, `data`): idempotency digest of documents that
    /// contain personal data. Stable across data-key rotations.
    pub fn keyed_digest(&self, data: &[u8]) -> String {
        hex::encode(hmac_sm3(self.blind.as_ref(), &[data]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm4_block_known_answer() {
        // GB/T 32907-2016 appendix A example 1. CTR's first keystream block is E(counter), so
        // encrypting 16 zero bytes with IV = the example plaintext yields its ciphertext.
        let k: [u8; 16] = hex::decode("0123456789abcdeffedcba9876543210")
            .unwrap()
            .try_into()
            .unwrap();
        let mut block = [0u8; 16];
        Sm4Ctr::new(&k.into(), &k.into()).apply_keystream(&mut block);
        assert_eq!(hex::encode(block), "681edf34d206965e86b3e94f536e4246");
    }

    #[test]
    fn seal_known_answer() {
        // Fixed key and IV so that the format and the key derivation cannot drift unnoticed;
        // cross-checked with OpenSSL (sm4-ctr) and Python's hmac/hashlib (SM3).
        let text = format!(
            "active = \"k1\"\nblind_index_key = \"{}\"\n[keys]\nk1 = \"{}\"\n",
            base64::engine::general_purpose::STANDARD.encode([0x22u8; 32]),
            base64::engine::general_purpose::STANDARD.encode([0x11u8; 32]),
        );
        let ring = KeyRing::from_toml(&text).unwrap();
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let sealed = ring.seal_bytes_with_iv("湘A12345 13812345678".as_bytes(), iv);
        assert_eq!(
            sealed,
            "enc:v1:k1:AAECAwQFBgcICQoLDA0OD1MKlUl3Zygry-v9u-JDZGGnfBvqQPydom1VVJOlriNqNsM4YPznsoFrIelbvXwn2ImsqsjM"
        );
        assert_eq!(ring.open(&sealed).unwrap(), "湘A12345 13812345678");
        assert_eq!(
            ring.blind_index("mobile", "13812345678"),
            "35bbffe1f8d3696a991d8a9937535be053922a34e7d23777af8807ed96b9feba"
        );
    }

    #[test]
    fn round_trip_including_chinese_text() {
        let ring = KeyRing::generate();
        for text in [
            "",
            "a",
            "430102199003071234",
            "13812345678",
            "长沙市芙蓉区五一大道 1 号，路灯不亮已三个月。",
            &"很长的诉求内容".repeat(200),
        ] {
            let sealed = ring.seal(text);
            assert!(sealed.starts_with("enc:v1:k1:"), "{sealed}");
            assert!(KeyRing::is_sealed(&sealed));
            assert_eq!(KeyRing::key_id_of(&sealed), Some("k1"));
            assert!(!sealed.contains(text) || text.len() < 2);
            assert_eq!(ring.open(&sealed).unwrap(), text);
        }
    }

    #[test]
    fn bytes_round_trip() {
        let ring = KeyRing::generate();
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let sealed = ring.seal_bytes(&data);
        assert_eq!(ring.open_bytes(&sealed).unwrap(), data);
        // Non-UTF-8 bytes do not open as text.
        let sealed = ring.seal_bytes(&[0xff, 0xfe]);
        assert_eq!(ring.open(&sealed), Err(SealError::Malformed));
    }

    #[test]
    fn random_iv_makes_seals_differ() {
        let ring = KeyRing::generate();
        let a = ring.seal("13812345678");
        let b = ring.seal("13812345678");
        assert_ne!(a, b);
        assert_eq!(ring.open(&a).unwrap(), ring.open(&b).unwrap());
    }

    #[test]
    fn every_altered_byte_is_tampered() {
        let ring = KeyRing::generate();
        let sealed = ring.seal("430102199003071234");
        let payload = sealed.strip_prefix("enc:v1:k1:").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
        // Flip one bit of every byte in turn: iv, ciphertext and tag.
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let s = format!("enc:v1:k1:{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(ring.open(&s), Err(SealError::Tampered), "byte {i}");
        }
        // Change one character in the middle of the text.
        let mut chars: Vec<char> = sealed.chars().collect();
        let mid = sealed.len() / 2 + 5;
        chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
        let s: String = chars.into_iter().collect();
        assert_eq!(ring.open(&s), Err(SealError::Tampered));
        // Truncating or extending the ciphertext.
        let mut short = raw.clone();
        short.remove(20);
        let s = format!("enc:v1:k1:{}", URL_SAFE_NO_PAD.encode(&short));
        assert_eq!(ring.open(&s), Err(SealError::Tampered));
    }

    #[test]
    fn key_id_is_authenticated() {
        let mut ring = KeyRing::generate();
        let sealed = ring.seal("13812345678");
        ring.rotate();
        let relabelled = sealed.replacen("enc:v1:k1:", "enc:v1:k2:", 1);
        assert_eq!(ring.open(&relabelled), Err(SealError::Tampered));
        assert_eq!(ring.open(&sealed).unwrap(), "13812345678");
    }

    #[test]
    fn errors() {
        let ring = KeyRing::generate();
        let other = KeyRing::generate();
        let sealed = ring.seal("x");
        let payload = sealed.strip_prefix("enc:v1:k1:").unwrap();
        let cases: Vec<(String, SealError)> = vec![
            ("13812345678".into(), SealError::NotSealed),
            ("".into(), SealError::NotSealed),
            ("enc:v2:k1:AAAAAAAA".into(), SealError::Malformed),
            ("enc:v1:k1".into(), SealError::Malformed),
            ("enc:v1::AAAAAAAA".into(), SealError::Malformed),
            ("enc:v1:k 1:AAAAAAAA".into(), SealError::Malformed),
            ("enc:v1:k1:AA+/AAAA".into(), SealError::Malformed),
            ("enc:v1:k1:AAAAAAAA".into(), SealError::Malformed),
            (
                format!("enc:v1:k7:{payload}"),
                SealError::UnknownKey("k7".into()),
            ),
            // Same id, different key: the tag does not verify.
            (other.seal("x"), SealError::Tampered),
        ];
        for (s, want) in cases {
            assert_eq!(ring.open(&s), Err(want), "{s:?}");
        }
        assert!(!KeyRing::is_sealed("13812345678"));
        assert_eq!(KeyRing::key_id_of("enc:v1:k1"), None);
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let mut ring = KeyRing::generate();
        let old = ring.seal("430102199003071234");
        assert_eq!(ring.rotate(), "k2");
        let new = ring.seal("430102199003071234");
        assert_eq!(KeyRing::key_id_of(&new), Some("k2"));
        assert_eq!(ring.open(&old).unwrap(), "430102199003071234");
        assert_eq!(ring.open(&new).unwrap(), "430102199003071234");
        // Survives a save and load.
        let back = KeyRing::from_toml(&ring.to_toml()).unwrap();
        assert_eq!(back.open(&old).unwrap(), "430102199003071234");
    }

    #[test]
    fn blind_index_is_deterministic_and_field_separated() {
        let ring = KeyRing::generate();
        let a = ring.blind_index("id_number", "430102199003071234");
        assert_eq!(a.len(), 64);
        assert_eq!(a, ring.blind_index("id_number", "430102199003071234"));
        assert_ne!(a, ring.blind_index("mobile", "430102199003071234"));
        assert_ne!(a, ring.blind_index("id_number", "430102199003071235"));
        // The separator keeps field and value apart.
        assert_ne!(ring.blind_index("ab", "c"), ring.blind_index("a", "bc"));
        // Another ring gives other tokens; rotation and reload keep them.
        assert_ne!(
            a,
            KeyRing::generate().blind_index("id_number", "430102199003071234")
        );
        let mut rotated = KeyRing::from_toml(&ring.to_toml()).unwrap();
        rotated.rotate();
        assert_eq!(a, rotated.blind_index("id_number", "430102199003071234"));
        // Keyed digest: deterministic, keyed.
        let d = ring.keyed_digest(b"{\"a\":1}");
        assert_eq!(d, rotated.keyed_digest(b"{\"a\":1}"));
        assert_ne!(d, KeyRing::generate().keyed_digest(b"{\"a\":1}"));
        assert_ne!(d, crate::sm3_hex(b"{\"a\":1}"));
    }
}
