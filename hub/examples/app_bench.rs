//! Cost of authenticating app-channel callers, as ratios to the partner signature check
//! measured in the same run:
//! - baseline: HMAC-SM3 request signature verification (`xfhub_security::sign::verify`);
//! - staff JWT verification (EdDSA, key cached by kid) through the hub's `JwksCache`;
//! - Argon2id password verification (a login), the reason logins are rate limited per IP and
//!   per account.
//!
//! `cargo run --release -p xfhub --example app_bench [iterations]`

use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use xfhub::mobile::jwt::JwksCache;
use xfhub::mobile::AppConfig;
use xfhub_mocks::idp::{IdpConfig, MockIdp, TokenRequest};

fn per_sec(n: u64, secs: f64) -> f64 {
    n as f64 / secs
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);

    // Baseline: the partner signature check of one GET.
    let secret = b"0123456789abcdef0123456789abcdef";
    let (ts, nonce) = ("1764300000000", "n-1");
    let sig = xfhub_security::sign::sign(
        secret,
        "GET",
        "/api/v1/petitions",
        "limit=50",
        ts,
        nonce,
        b"",
    );
    let t = Instant::now();
    let mut ok = 0u64;
    for _ in 0..n {
        ok += u64::from(xfhub_security::sign::verify(
            secret,
            &sig,
            "GET",
            "/api/v1/petitions",
            "limit=50",
            ts,
            nonce,
            b"",
        ));
    }
    let hmac = per_sec(ok, t.elapsed().as_secs_f64());

    // Staff JWT through the JWKS cache (first call fetches the key set).
    let idp = MockIdp::start(IdpConfig::default())
        .await
        .expect("mock idp");
    let cfg = AppConfig {
        jwks_url: Some(idp.jwks_url()),
        issuer: idp.issuer().to_owned(),
        audience: idp.audience().to_owned(),
        ..AppConfig::default()
    };
    let cache = JwksCache::new(&cfg);
    let token = idp.issue(&TokenRequest {
        sub: "u-1".into(),
        name: "bench".into(),
        org: "XFJ".into(),
        org_division: "430102".into(),
        roles: vec!["handler".into()],
        ttl_secs: Some(3600),
    });
    cache.verify(&token).await.expect("the token verifies");
    let t = Instant::now();
    for _ in 0..n {
        cache.verify(&token).await.expect("the token verifies");
    }
    let jwt = per_sec(n, t.elapsed().as_secs_f64());

    // Argon2id (default parameters: m = 19 MiB, t = 2, p = 1), as a login checks it.
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let hash = Argon2::default()
        .hash_password(b"Secret123", &salt)
        .expect("hash")
        .to_string();
    let parsed = PasswordHash::new(&hash).expect("parse");
    let m = (n / 1000).max(10);
    let t = Instant::now();
    for _ in 0..m {
        Argon2::default()
            .verify_password(b"Secret123", &parsed)
            .expect("verifies");
    }
    let argon = per_sec(m, t.elapsed().as_secs_f64());

    println!("iterations: {n} (argon2: {m})");
    println!("partner HMAC-SM3 signature verify: {hmac:>12.0}/s  1.00x");
    println!(
        "staff JWT (EdDSA) verify:          {jwt:>12.0}/s  {:.3}x",
        jwt / hmac
    );
    println!(
        "Argon2id password verify:          {argon:>12.1}/s  {:.5}x",
        argon / hmac
    );
    println!("JWKS fetches: {}", cache.fetches());
}
