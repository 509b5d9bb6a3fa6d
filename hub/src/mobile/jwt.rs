//! Staff tokens: JWTs of the unified identity service, verified against its JWKS.
//!
//! Keys are cached by `kid`. The set is fetched again when it is older than `jwks_ttl_secs`,
//! and at once when a token names a `kid` the cache does not hold (the provider rotated),
//! at most once per `jwks_min_refresh_secs` so that tokens with made-up kids cannot make the
//! hub hammer the provider. A key the provider stopped publishing is dropped at the next fetch.
//! The algorithm comes from the key (OKP -> EdDSA, RSA -> RS256, EC -> ES256), never from the
//! token's header alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::AppConfig;
use crate::error::ApiError;

/// The claims the hub reads from a staff token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StaffClaims {
    /// User id.
    pub sub: String,
    pub name: String,
    /// Organisation code.
    pub org: String,
    /// Division code of the organisation's jurisdiction.
    pub org_division: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: i64,
}

impl StaffClaims {
    /// Whether a record of `division` lies in the organisation's jurisdiction: division codes
    /// are hierarchical (`43` province, `4301` city, `430102` district), so trailing `00`
    /// pairs of the org's code widen it (`430100` covers every `4301xx`).
    pub fn covers(&self, division: &str) -> bool {
        division.starts_with(scope_prefix(&self.org_division))
    }
}

/// The prefix of the division codes a jurisdiction covers.
pub fn scope_prefix(org_division: &str) -> &str {
    let mut p = org_division;
    while p.len() > 2 && p.ends_with("00") {
        p = &p[..p.len() - 2];
    }
    p
}

struct Cached {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
    last_forced: Option<Instant>,
}

/// The identity provider's keys, shared by every request.
#[derive(Clone)]
pub struct JwksCache {
    url: Option<String>,
    issuer: String,
    audience: String,
    ttl: Duration,
    min_refresh: Duration,
    leeway: u64,
    http: reqwest::Client,
    cached: Arc<tokio::sync::Mutex<Cached>>,
    /// Keys fetched so far (for the log and tests).
    fetches: Arc<Mutex<u64>>,
}

fn unauthorized(code: &str, en: &str, zh: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, en, zh)
}

fn invalid() -> ApiError {
    unauthorized(
        "auth_token_invalid",
        "the bearer token is not valid",
        "登录凭证无效，请重新登录",
    )
}

impl JwksCache {
    pub fn new(config: &AppConfig) -> JwksCache {
        JwksCache {
            url: config.jwks_url.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl: Duration::from_secs(config.jwks_ttl_secs),
            min_refresh: Duration::from_secs(config.jwks_min_refresh_secs),
            leeway: config.leeway_secs,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client builds"),
            cached: Arc::new(tokio::sync::Mutex::new(Cached {
                keys: HashMap::new(),
                fetched: None,
                last_forced: None,
            })),
            fetches: Arc::new(Mutex::new(0)),
        }
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        *self.fetches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bearer token of `headers`, verified.
    pub async fn verify_headers(&self, headers: &HeaderMap) -> Result<StaffClaims, ApiError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorized(
                    "auth_token_missing",
                    "a bearer token of the unified identity service is required",
                    "缺少统一身份认证登录凭证",
                )
            })?;
        self.verify(token).await
    }

    /// Verifies a token: signature with the key its `kid` names, `iss`, `aud`, `exp`.
    pub async fn verify(&self, token: &str) -> Result<StaffClaims, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let kid = header.kid.ok_or_else(invalid)?;
        let (key, alg) = self.key(&kid).await?;
        if header.alg != alg {
            return Err(invalid());
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = self.leeway;
        match jsonwebtoken::decode::<StaffClaims>(token, &key, &v) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(unauthorized(
                    "auth_token_expired",
                    "the bearer token has expired",
                    "登录凭证已过期，请重新登录",
                )),
                _ => {
                    tracing::info!(error = %e, "StaffTokenRefused");
                    Err(invalid())
                }
            },
        }
    }

    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), ApiError> {
        let mut c = self.cached.lock().await;
        let stale = c.fetched.is_none_or(|at| at.elapsed() >= self.ttl);
        if stale {
            self.refresh(&mut c).await;
        }
        if let Some(k) = c.keys.get(kid) {
            return Ok(k.clone());
        }
        // Unknown kid: the provider may have rotated. Fetch once, not more often than allowed.
        let may_force = c
            .last_forced
            .is_none_or(|at| at.elapsed() >= self.min_refresh);
        if !stale && may_force {
            c.last_forced = Some(Instant::now());
            self.refresh(&mut c).await;
        }
        c.keys.get(kid).cloned().ok_or_else(invalid)
    }

    async fn refresh(&self, c: &mut Cached) {
        let Some(url) = &self.url else {
            return;
        };
        let fetched = async {
            let resp = self.http.get(url).send().await?.error_for_status()?;
            resp.json::<JwkSet>().await
        }
        .await;
        *self.fetches.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        match fetched {
            Ok(set) => {
                let mut keys = HashMap::new();
                for jwk in &set.keys {
                    let Some(kid) = jwk.common.key_id.clone() else {
                        continue;
                    };
                    let alg = match &jwk.algorithm {
                        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                        AlgorithmParameters::RSA(_) => Algorithm::RS256,
                        AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                        // Shared secrets are never accepted from a published key set.
                        AlgorithmParameters::OctetKey(_) => continue,
                    };
                    if let Ok(key) = DecodingKey::from_jwk(jwk) {
                        keys.insert(kid, (key, alg));
                    }
                }
                tracing::info!(keys = keys.len(), "JwksFetched");
                c.keys = keys;
                c.fetched = Some(Instant::now());
            }
            Err(e) => {
                // Keep the keys we have; try again at the next request.
                tracing::warn!(error = %e, "JwksFetchFailed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jurisdictions_widen_by_trailing_zero_pairs() {
        assert_eq!(scope_prefix("430100"), "4301");
        assert_eq!(scope_prefix("430102"), "430102");
        assert_eq!(scope_prefix("430000"), "43");
        let c = StaffClaims {
            sub: "u".into(),
            name: "n".into(),
            org: "o".into(),
            org_division: "430102".into(),
            roles: vec![],
            exp: 0,
        };
        assert!(c.covers("430102"));
        assert!(!c.covers("430103"));
    }
}
