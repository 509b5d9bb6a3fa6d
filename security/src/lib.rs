//! Commercial cryptography of xfhub (GB/T 39786-2021, MLPS level 3).
//!
//! Everything here is pure computation over text and bytes that callers pass in: the crate reads
//! no file, no environment variable and opens no socket. Only SM3 (hash), SM4 (block cipher) and
//! HMAC-SM3 are used.
//!
//! - [`sign`]: partner request signing with HMAC-SM3 over a canonical string (authenticity and
//!   integrity of requests in transit, replay window via timestamp and nonce).
//! - [`keys`]: the [`KeyRing`] of data keys (rotating, old keys kept for reading) and the
//!   separate blind-index key, loaded from and saved to TOML text.
//! - [`seal`]: field encryption (`enc:v1:<key id>:<base64url>`), blind indexes for exact lookup
//!   of encrypted values, keyed digests for idempotency of documents that contain personal data.
//! - [`pii`]: sealing, opening, masking and re-sealing the personal fields (identity numbers,
//!   mobile and phone numbers) of canonical petition and work-order JSON documents and records.
//! - [`audit`]: the SM3 hash chain that makes the audit log tamper-evident.
//!
//! # Why SM4-CTR + HMAC-SM3 (encrypt-then-MAC) and not SM4-GCM
//!
//! The dependency set of the workspace (RustCrypto, `cipher` 0.4 / `digest` 0.10) has `sm4`
//! and `ctr` but no AEAD crate. An authenticated SM4 mode is not out of reach: `aes-gcm` 0.10
//! is generic over any 128-bit block cipher of `cipher` 0.4, so `AesGcm<sm4::Sm4, U12>` would be
//! SM4-GCM, but it means a new dependency (`aes-gcm`, `aead`, `ghash`, `polyval`) for no gain.
//! Encrypt-then-MAC with independent keys is a generic composition proven secure (IND-CCA2 and
//! INT-CTXT) whenever the cipher is IND-CPA and the MAC is a PRF, it is built only from the two
//! primitives that GB/T 39786 evaluators expect to see (SM4 and HMAC-SM3, both listed in GM/T
//! 0054), it tolerates a random 128-bit IV (GCM's 96-bit random nonce has a tighter collision
//! bound) and its tag check is a plain constant-time comparison that is easy to review. The
//! cost is 16 more bytes per value (a 32-byte tag instead of 16) and one more pass over the
//! data, irrelevant for fields of a few dozen bytes.
//!
//! The SM4 key and the MAC key are derived from each 32-byte key of the ring with HMAC-SM3
//! under the labels `xfhub-enc` and `xfhub-mac`, so one stored secret never serves two
//! algorithms.

#![warn(missing_docs)]

pub mod audit;
pub mod keys;
pub mod pii;
pub mod seal;
pub mod sign;

pub use audit::{chain_hash, verify_chain, AuditEntry, ChainBreak, GENESIS};
pub use keys::{KeyError, KeyRing};
pub use pii::{BlindEntry, DocKind};
pub use seal::SealError;
pub use sign::TimestampError;

use hmac::{Hmac, Mac};
use sm3::{Digest, Sm3};

/// HMAC with SM3 as the hash (GB/T 15852.2 / GM/T 0042 style HMAC, RFC 2104 construction).
pub(crate) type HmacSm3 = Hmac<Sm3>;

/// Raw HMAC-SM3 of the concatenation of `parts`.
pub(crate) fn hmac_sm3(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSm3 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Lowercase hex SM3 of `data`.
pub fn sm3_hex(data: &[u8]) -> String {
    hex::encode(Sm3::digest(data))
}
