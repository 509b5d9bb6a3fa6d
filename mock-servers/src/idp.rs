//! Mock unified identity provider (统一身份认证): issues signed JWTs (EdDSA / Ed25519) carrying
//! the user, the user's organisation and roles; publishes its public keys as a JWKS and rotates
//! them. After a rotation new tokens are signed with the new key; the previous `keep_retired`
//! keys stay in the JWKS so tokens issued before the rotation still verify until they expire.
//!
//! HTTP surface:
//! - `GET /.well-known/jwks.json`: the JWKS (`kty = OKP`, `crv = Ed25519`, `kid`, `x`).
//! - `POST /token` with `{"sub","name","org","org_division","roles",["ttl_secs"]}`: a token.
//! - `POST /rotate`: a new signing key; answers `{"kid"}`.
//!
//! Start in-process with [`MockIdp::start`] or as `xfhub-mocks idp [--listen ADDR]`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Settings of the mock identity provider.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    pub listen: SocketAddr,
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of every token.
    pub audience: String,
    /// Lifetime of a token unless the request asks for another.
    pub token_ttl_secs: i64,
    /// Retired keys kept in the JWKS after a rotation.
    pub keep_retired: usize,
}

impl Default for IdpConfig {
    fn default() -> Self {
        IdpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            issuer: "https://idp.xiangyiban.example".to_owned(),
            audience: "xfhub".to_owned(),
            token_ttl_secs: 900,
            keep_retired: 1,
        }
    }
}

/// The claims of a staff token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffClaims {
    pub iss: String,
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Organisation code.
    pub org: String,
    /// Division code of the organisation's jurisdiction (`430100` = the whole city).
    pub org_division: String,
    pub roles: Vec<String>,
    pub iat: i64,
    pub exp: i64,
}

/// What `POST /token` takes.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenRequest {
    pub sub: String,
    pub name: String,
    pub org: String,
    pub org_division: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Lifetime; negative values give a token that is already expired (for tests).
    #[serde(default)]
    pub ttl_secs: Option<i64>,
}

/// One Ed25519 signing key.
struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl SigningKey {
    fn generate(n: u64) -> SigningKey {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("a fresh key parses");
        SigningKey {
            kid: format!(
                "idp-{n}-{}",
                &uuid::Uuid::now_v7().simple().to_string()[24..]
            ),
            pkcs8: doc.as_ref().to_vec(),
            public: pair.public_key().as_ref().to_vec(),
        }
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&self.public),
        })
    }
}

struct Keys {
    /// Newest last: the last one signs.
    keys: Vec<SigningKey>,
    generated: u64,
    jwks_requests: u64,
}

struct Inner {
    config: IdpConfig,
    keys: Mutex<Keys>,
}

/// A running mock identity provider.
pub struct MockIdp {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MockIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIdp")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockIdp {
    /// Starts the mock (port 0: any free port) with one signing key.
    pub async fn start(config: IdpConfig) -> std::io::Result<MockIdp> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            config,
            keys: Mutex::new(Keys {
                keys: vec![SigningKey::generate(1)],
                generated: 1,
                jwks_requests: 0,
            }),
        });
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/token", post(token))
            .route("/rotate", post(rotate))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockIdp { inner, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The JWKS address.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url())
    }

    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    pub fn audience(&self) -> &str {
        &self.inner.config.audience
    }

    /// A token for `req`, signed with the current key.
    pub fn issue(&self, req: &TokenRequest) -> String {
        self.inner.issue(req)
    }

    /// Rotates: a new key signs from now on; returns its kid.
    pub fn rotate(&self) -> String {
        self.inner.rotate()
    }

    /// The kid that signs now.
    pub fn current_kid(&self) -> String {
        let k = self.inner.keys.lock().unwrap_or_else(|e| e.into_inner());
        k.keys.last().expect("at least one key").kid.clone()
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_requests(&self) -> u64 {
        self.inner
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .jwks_requests
    }
}

impl Inner {
    fn issue(&self, req: &TokenRequest) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = StaffClaims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: req.sub.clone(),
            name: req.name.clone(),
            org: req.org.clone(),
            org_division: req.org_division.clone(),
            roles: req.roles.clone(),
            iat: now,
            exp: now + req.ttl_secs.unwrap_or(self.config.token_ttl_secs),
        };
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let key = keys.keys.last().expect("at least one key");
        sign_claims(&claims, &key.kid, &key.pkcs8)
    }

    fn rotate(&self) -> String {
        let mut k = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        k.generated += 1;
        let key = SigningKey::generate(k.generated);
        let kid = key.kid.clone();
        k.keys.push(key);
        let keep = self.config.keep_retired + 1;
        while k.keys.len() > keep {
            k.keys.remove(0);
        }
        kid
    }
}

/// Signs `claims` (EdDSA) with a PKCS#8 Ed25519 key under `kid`. Public so that tests can forge
/// tokens with a key the provider never published.
pub fn sign_claims<C: Serialize>(claims: &C, kid: &str, pkcs8: &[u8]) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(pkcs8))
        .expect("an Ed25519 key signs")
}

/// A fresh PKCS#8 Ed25519 key (for tests forging tokens).
pub fn generate_pkcs8() -> Vec<u8> {
    SigningKey::generate(0).pkcs8
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let mut k = inner.keys.lock().unwrap_or_else(|e| e.into_inner());
    k.jwks_requests += 1;
    let keys: Vec<Value> = k.keys.iter().rev().map(SigningKey::jwk).collect();
    Json(json!({ "keys": keys }))
}

async fn token(State(inner): State<Arc<Inner>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<TokenRequest>(&body) {
        Ok(req) if !req.sub.is_empty() && req.org_division.len() == 6 => {
            let ttl = req.ttl_secs.unwrap_or(inner.config.token_ttl_secs);
            Json(json!({
                "access_token": inner.issue(&req),
                "token_type": "Bearer",
                "expires_in": ttl,
            }))
            .into_response()
        }
        Ok(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": "sub and a six-digit org_division are required"})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": e.to_string()})),
        )
            .into_response(),
    }
}

async fn rotate(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({ "kid": inner.rotate() }))
}

/// `xfhub-mocks idp [--listen ADDR]`: runs until ctrl-c.
pub fn cli(args: &[String]) -> i32 {
    let mut config = IdpConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 9104)),
        ..Default::default()
    };
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => config.listen = addr,
                Err(e) => {
                    eprintln!("xfhub-mocks idp: --listen {v}: {e}");
                    return 2;
                }
            },
            _ => {
                eprintln!("usage: xfhub-mocks idp [--listen ADDR]");
                return 2;
            }
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xfhub-mocks idp: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        match MockIdp::start(config).await {
            Ok(idp) => {
                println!(
                    "identity provider: {}  (JWKS: {})",
                    idp.url(),
                    idp.jwks_url()
                );
                let _ = tokio::signal::ctrl_c().await;
                0
            }
            Err(e) => {
                eprintln!("xfhub-mocks idp: {e}");
                1
            }
        }
    })
}
