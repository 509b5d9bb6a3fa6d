//! Partner request signing with HMAC-SM3.
//!
//! A partner holds an app key (public, names the partner) and a secret (issued once by
//! [`new_secret`]). Each request carries four headers: [`HEADER_APP_KEY`],
//! [`HEADER_TIMESTAMP`] (milliseconds since the Unix epoch), [`HEADER_NONCE`] (unique per
//! request) and [`HEADER_SIGNATURE`], the lowercase hex HMAC-SM3, keyed with the UTF-8 bytes of
//! the secret **as issued** (the text, not its base64 decoding), over the string to sign:
//!
//! ```text
//! METHOD (upper case) \n
//! path (as sent, without the query) \n
//! canonical query (pairs sorted, see canonical_query) \n
//! timestamp (header value as sent) \n
//! nonce (header value as sent) \n
//! lowercase hex SM3 of the raw body bytes (of the empty string when there is no body)
//! ```
//!
//! There is no trailing newline. `security/README.md` has a worked example that partners can
//! reproduce; the unit test `sign_known_answer` pins the same numbers.
//!
//! The server checks the timestamp against its clock with [`check_timestamp`], the nonce
//! against the nonces seen within the window (its own storage), and the signature with
//! [`verify`] (constant time).

use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::{hmac_sm3, sm3_hex};

/// Header naming the partner (see [`new_app_key`]).
pub const HEADER_APP_KEY: &str = "x-app-key";
/// Header with the request time in milliseconds since the Unix epoch, decimal.
pub const HEADER_TIMESTAMP: &str = "x-timestamp";
/// Header with a value unique per request (see [`new_nonce`]).
pub const HEADER_NONCE: &str = "x-nonce";
/// Header with the lowercase hex HMAC-SM3 signature.
pub const HEADER_SIGNATURE: &str = "x-signature";

/// Lowercase hex SM3 of the raw body bytes.
pub fn body_digest(body: &[u8]) -> String {
    sm3_hex(body)
}

/// Canonical form of a query string (without the leading `?`).
///
/// The query is split on `&`; empty segments are dropped; each `key=value` pair is kept
/// byte for byte as sent (no percent-decoding, no re-encoding); pairs are sorted by key, then
/// by value, in byte order (a pair without `=` has an empty value) and joined again with `&`.
/// The order in which the client sent the parameters therefore does not matter, their
/// spelling does. An empty query gives `""`.
pub fn canonical_query(query: &str) -> String {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut pairs: Vec<(&str, &str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k, v, p)
        })
        .collect();
    // Third element breaks the tie between `a` and `a=` so the order is total.
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(_, _, p)| *p)
        .collect::<Vec<_>>()
        .join("&")
}

/// The string that is signed: `METHOD\npath\ncanonical_query\ntimestamp\nnonce\nbody_digest`.
pub fn string_to_sign(
    method: &str,
    path: &str,
    query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path,
        canonical_query(query),
        timestamp,
        nonce,
        body_digest(body)
    )
}

fn raw_signature(
    secret: &[u8],
    method: &str,
    path: &str,
    query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> [u8; 32] {
    let sts = string_to_sign(method, path, query, timestamp, nonce, body);
    hmac_sm3(secret, &[sts.as_bytes()])
}

/// Lowercase hex HMAC-SM3, keyed with `secret`, over [`string_to_sign`].
pub fn sign(
    secret: &[u8],
    method: &str,
    path: &str,
    query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    hex::encode(raw_signature(
        secret, method, path, query, timestamp, nonce, body,
    ))
}

/// Whether `signature_hex` is the signature of the request. The comparison runs in constant
/// time; a signature that is not 64 hex digits (either case) is simply invalid.
#[allow(clippy::too_many_arguments)] // reason: mirrors `sign` plus the signature under test
pub fn verify(
    secret: &[u8],
    signature_hex: &str,
    method: &str,
    path: &str,
    query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> bool {
    let Ok(given) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    if given.len() != 32 {
        return false;
    }
    let expected = raw_signature(secret, method, path, query, timestamp, nonce, body);
    expected.ct_eq(given.as_slice()).into()
}

/// The four signing headers for a request, in the order app key, timestamp, nonce, signature.
///
/// `path_and_query` is the request target as sent (`/api/v1/petitions?a=1`); it is split at
/// the first `?`. Convenience for clients, mock partners and tests.
pub fn sign_headers(
    app_key: &str,
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: i64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let timestamp = now_ms.to_string();
    let signature = sign(secret, method, path, query, &timestamp, nonce, body);
    vec![
        (HEADER_APP_KEY, app_key.to_string()),
        (HEADER_TIMESTAMP, timestamp),
        (HEADER_NONCE, nonce.to_string()),
        (HEADER_SIGNATURE, signature),
    ]
}

/// Why a timestamp header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not a decimal number of milliseconds (empty, signs, spaces, letters, overflow).
    #[error("timestamp is not a number of milliseconds since the epoch")]
    NotANumber,
    /// Further from the server's clock than the window allows.
    #[error("timestamp is {skew_ms} ms away from the server clock, more than the allowed {window_ms} ms")]
    OutsideWindow {
        /// `now - timestamp` (negative when the timestamp is in the future).
        skew_ms: i64,
        /// The window that was exceeded.
        window_ms: i64,
    },
}

/// Parses a timestamp header (ASCII digits only, milliseconds since the epoch) and checks that
/// `|now_ms - ts| <= window_ms`. Returns the parsed timestamp.
pub fn check_timestamp(ts: &str, now_ms: i64, window_ms: i64) -> Result<i64, TimestampError> {
    if ts.is_empty() || ts.len() > 18 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimestampError::NotANumber);
    }
    let t: i64 = ts.parse().map_err(|_| TimestampError::NotANumber)?;
    let skew = i128::from(now_ms) - i128::from(t);
    if skew.abs() <= i128::from(window_ms) {
        Ok(t)
    } else {
        Err(TimestampError::OutsideWindow {
            skew_ms: i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX }),
            window_ms,
        })
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// A fresh nonce: 32 lowercase hex characters (128 random bits).
pub fn new_nonce() -> String {
    hex::encode(random_bytes::<16>())
}

/// A fresh partner secret: 32 random bytes as base64url without padding (43 characters). The
/// HMAC key is this text itself, as UTF-8.
pub fn new_secret() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A fresh app key: `xf` followed by 18 lowercase hex characters.
pub fn new_app_key() -> String {
    format!("xf{}", hex::encode(random_bytes::<9>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"Qm9ndXMgc2VjcmV0IGZvciB0aGUgUkVBRE1FIGV4YW1wbGU";

    struct Req<'a> {
        secret: &'a [u8],
        method: &'a str,
        path: &'a str,
        query: &'a str,
        ts: &'a str,
        nonce: &'a str,
        body: &'a [u8],
    }

    const BASE: Req<'static> = Req {
        secret: SECRET,
        method: "POST",
        path: "/api/v1/petitions",
        query: "division=430102&page=2",
        ts: "1735689600000",
        nonce: "7d3f0c2a9b8e4f61a5c7d2e3f4a5b6c7",
        body: br#"{"source_id":"XF-2025-000001","title":"\u8def\u706f\u4e0d\u4eae"}"#,
    };

    fn sign_req(r: &Req<'_>) -> String {
        sign(r.secret, r.method, r.path, r.query, r.ts, r.nonce, r.body)
    }

    #[test]
    fn sm3_known_answer() {
        assert_eq!(
            body_digest(b"abc"),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            body_digest(b""),
            "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
        );
    }

    /// Known answer for the whole signing scheme. Partners reproduce exactly these values with
    /// the worked example of `security/README.md`; if this test fails, the canonical string
    /// changed and every partner integration breaks: update the README only on purpose.
    #[test]
    fn sign_known_answer() {
        let body = br#"{"source_id":"XF-2025-000001"}"#;
        assert_eq!(
            body_digest(body),
            "3b7f705e55ef755807abb3489c39787148d4c250a304d95979291d316ff176d6"
        );
        let sts = string_to_sign(
            "post",
            "/api/v1/petitions",
            "page=2&division=430102",
            "1735689600000",
            "7d3f0c2a9b8e4f61a5c7d2e3f4a5b6c7",
            body,
        );
        assert_eq!(
            sts,
            "POST\n/api/v1/petitions\ndivision=430102&page=2\n1735689600000\n\
             7d3f0c2a9b8e4f61a5c7d2e3f4a5b6c7\n\
             3b7f705e55ef755807abb3489c39787148d4c250a304d95979291d316ff176d6"
        );
        let sig = sign(
            b"xfhub-readme-example-secret-0123456789abcdef",
            "post",
            "/api/v1/petitions",
            "page=2&division=430102",
            "1735689600000",
            "7d3f0c2a9b8e4f61a5c7d2e3f4a5b6c7",
            body,
        );
        // Cross-checked with Python's hashlib/hmac (OpenSSL SM3).
        assert_eq!(
            sig,
            "7d865d1134ad73bb78505a9ce119cbaf0117b9f9b764b5de4b0551db611882f0"
        );
    }

    #[test]
    fn signature_valid_and_headers_agree() {
        let sig = sign_req(&BASE);
        assert_eq!(sig.len(), 64);
        assert!(verify(
            BASE.secret,
            &sig,
            BASE.method,
            BASE.path,
            BASE.query,
            BASE.ts,
            BASE.nonce,
            BASE.body
        ));
        // Upper-case hex and lower-case method are accepted.
        assert!(verify(
            BASE.secret,
            &sig.to_ascii_uppercase(),
            "post",
            BASE.path,
            BASE.query,
            BASE.ts,
            BASE.nonce,
            BASE.body
        ));
        let headers = sign_headers(
            "xf0123456789abcdef01",
            BASE.secret,
            BASE.method,
            &format!("{}?{}", BASE.path, BASE.query),
            BASE.body,
            1_735_689_600_000,
            BASE.nonce,
        );
        let names: Vec<_> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                HEADER_APP_KEY,
                HEADER_TIMESTAMP,
                HEADER_NONCE,
                HEADER_SIGNATURE
            ]
        );
        assert_eq!(headers[1].1, BASE.ts);
        assert_eq!(headers[3].1, sig);
    }

    #[test]
    fn every_signed_field_matters() {
        let sig = sign_req(&BASE);
        let cases: Vec<(&str, Req<'static>, bool)> = vec![
            (
                "method",
                Req {
                    method: "PUT",
                    ..BASE
                },
                false,
            ),
            (
                "path",
                Req {
                    path: "/api/v1/workorders",
                    ..BASE
                },
                false,
            ),
            (
                "query value",
                Req {
                    query: "division=430103&page=2",
                    ..BASE
                },
                false,
            ),
            (
                "query parameter added",
                Req {
                    query: "division=430102&page=2&x=1",
                    ..BASE
                },
                false,
            ),
            (
                "query order is irrelevant",
                Req {
                    query: "page=2&division=430102",
                    ..BASE
                },
                true,
            ),
            (
                "timestamp",
                Req {
                    ts: "1735689600001",
                    ..BASE
                },
                false,
            ),
            (
                "nonce",
                Req {
                    nonce: "7d3f0c2a9b8e4f61a5c7d2e3f4a5b6c8",
                    ..BASE
                },
                false,
            ),
            (
                "body",
                Req {
                    body: br#"{"source_id":"XF-2025-000002","title":"\u8def\u706f\u4e0d\u4eae"}"#,
                    ..BASE
                },
                false,
            ),
            ("empty body", Req { body: b"", ..BASE }, false),
            (
                "secret",
                Req {
                    secret: b"another-secret",
                    ..BASE
                },
                false,
            ),
        ];
        for (name, r, want) in cases {
            let got = verify(
                r.secret, &sig, r.method, r.path, r.query, r.ts, r.nonce, r.body,
            );
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn malformed_signatures_are_invalid() {
        let sig = sign_req(&BASE);
        for bad in ["", "zz", &sig[..62], &format!("{sig}00"), "not hex at all"] {
            assert!(
                !verify(
                    BASE.secret,
                    bad,
                    BASE.method,
                    BASE.path,
                    BASE.query,
                    BASE.ts,
                    BASE.nonce,
                    BASE.body
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn canonical_query_cases() {
        let cases = [
            ("", ""),
            ("?", ""),
            ("a=1", "a=1"),
            ("b=2&a=1", "a=1&b=2"),
            ("a=2&a=1", "a=1&a=2"),
            ("a=1&&b=2&", "a=1&b=2"),
            ("b&a=", "a=&b"),
            ("a=&a", "a&a="),
            ("name=%E5%BC%A0&id=1", "id=1&name=%E5%BC%A0"),
            ("ab=1&a=2", "a=2&ab=1"),
            ("?z=9&y=8", "y=8&z=9"),
        ];
        for (q, want) in cases {
            assert_eq!(canonical_query(q), want, "{q:?}");
        }
    }

    #[test]
    fn timestamp_window() {
        let now = 1_735_689_600_000_i64;
        let w = 300_000;
        let cases: Vec<(String, Result<i64, TimestampError>)> = vec![
            (now.to_string(), Ok(now)),
            ((now - w).to_string(), Ok(now - w)),
            ((now + w).to_string(), Ok(now + w)),
            (
                (now - w - 1).to_string(),
                Err(TimestampError::OutsideWindow {
                    skew_ms: w + 1,
                    window_ms: w,
                }),
            ),
            (
                (now + w + 1).to_string(),
                Err(TimestampError::OutsideWindow {
                    skew_ms: -(w + 1),
                    window_ms: w,
                }),
            ),
            (
                "0".into(),
                Err(TimestampError::OutsideWindow {
                    skew_ms: now,
                    window_ms: w,
                }),
            ),
            ("".into(), Err(TimestampError::NotANumber)),
            ("abc".into(), Err(TimestampError::NotANumber)),
            ("-1".into(), Err(TimestampError::NotANumber)),
            ("+1735689600000".into(), Err(TimestampError::NotANumber)),
            (" 1735689600000".into(), Err(TimestampError::NotANumber)),
            ("1735689600.5".into(), Err(TimestampError::NotANumber)),
            (
                "99999999999999999999999".into(),
                Err(TimestampError::NotANumber),
            ),
        ];
        for (ts, want) in cases {
            assert_eq!(check_timestamp(&ts, now, w), want, "{ts:?}");
        }
    }

    #[test]
    fn generated_credentials_have_their_shape() {
        let n = new_nonce();
        assert_eq!(n.len(), 32);
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(n, new_nonce());
        let s = new_secret();
        assert_eq!(s.len(), 43);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(s, new_secret());
        let k = new_app_key();
        assert_eq!(k.len(), 20);
        assert!(k.starts_with("xf"));
        assert!(k[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
