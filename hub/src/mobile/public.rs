//! The public complaint channel: accounts, complaints, query, evaluation.
//!
//! Accounts are keyed by blind indexes of the identity and mobile numbers; both numbers are
//! sealed. Passwords and recovery answers are hashed with Argon2id. A public session is an
//! opaque bearer token whose SHA-256 digest is stored. Answers never tell whether an account or
//! a case exists: a wrong login name and a wrong password answer the same, failed logins are
//! counted per login name whether it exists or not, and a query with a wrong code or a wrong
//! name answers the same `case_not_found`.

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::body::Bytes;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{FixedOffset, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;
use xfhub_connectors::xiangyiban::{notification_envelope, NotificationRequest};
use xfhub_modules::messages::{sms_envelope, SmsRecipient, SmsRequested};
use xfhub_schemas::validate::{check_id_number, normalize_mobile};
use xfhub_schemas::{
    validate_petition, Acceptance, Appeal, Attachment, Complainant, Evaluation, Handling, Petition,
    SourceRef,
};
use xfhub_security::keys::KeyRing;
use xfhub_security::pii::{self, DocKind};
use xfhub_store::{now_ms, IngestOutcome, RecordKind, Stmt, Txn};

use super::files;
use super::guard::{client_ip, Action};
use crate::app::AppState;
use crate::error::ApiError;

/// The SMS template of verification codes (migration 0009).
pub const SMS_TEMPLATE: &str = "app_verify_code";

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8")
}

fn store_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("app channel", &e)
}

fn err(status: StatusCode, code: &str, en: &str, zh: &str) -> ApiError {
    ApiError::new(status, code, en, zh)
}

fn bad_json(e: serde_json::Error) -> ApiError {
    err(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        &format!("the body is not the expected JSON: {e}"),
        "请求内容格式错误",
    )
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(bad_json)
}

fn field(e: ApiError, path: &str, code: &str, en: &str, zh: &str) -> ApiError {
    e.with_field(path, code, en, zh)
}

fn invalid_input() -> ApiError {
    err(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "some fields are not valid",
        "部分字段填写有误",
    )
}

fn mobile_blind(ring: &KeyRing, mobile: &str) -> String {
    ring.blind_index("app_mobile", mobile)
}

fn id_blind(ring: &KeyRing, id: &str) -> String {
    ring.blind_index("app_id_number", id)
}

fn name_blind(ring: &KeyRing, name: &str) -> String {
    ring.blind_index("app_name", name.trim())
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// Query codes: 12 characters without look-alikes (no 0/O, 1/I/L).
fn query_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn hash_secret(secret: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(store_err)?
    .map_err(store_err)
}

/// A hash of a password nobody has: unknown login names are checked against it, so that they
/// take as long as known ones.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$BJGbCCy1jFeLCmYXAmzB5Pr5cZsmrV7oMx7KM8GcLKk";

async fn verify_secret(secret: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Password policy: 8 to 64 characters with at least one letter and one digit.
fn password_ok(p: &str) -> bool {
    let n = p.chars().count();
    (8..=64).contains(&n)
        && p.chars().any(|c| c.is_ascii_alphabetic())
        && p.chars().any(|c| c.is_ascii_digit())
}

/// The handling unit of a region, `None` when the region has no complaint entry.
pub async fn region_unit(s: &AppState, division: &str) -> Result<Option<String>, ApiError> {
    let row = Stmt::new("SELECT unit FROM app_region_units WHERE division = $1")
        .bind(division)
        .query()
        .fetch_optional(s.store.reader())
        .await
        .map_err(store_err)?;
    row.map(|r| r.try_get::<String, _>("unit"))
        .transpose()
        .map_err(store_err)
}

/// `GET /api/v1/app/public/regions`: the regions a citizen can choose, with their units.
#[utoipa::path(get, path = "/api/v1/app/public/regions", tag = "app", responses((status = 200, description = "regions with their handling units")))]
pub async fn regions(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = Stmt::new("SELECT division, unit FROM app_region_units ORDER BY division")
        .query()
        .fetch_all(s.store.reader())
        .await
        .map_err(store_err)?;
    let mut out = Vec::new();
    for r in rows {
        let division: String = r.try_get("division").map_err(store_err)?;
        let name = s
            .tables
            .lookup("divisions", &division)
            .map(|e| e.name_zh.clone())
            .unwrap_or_default();
        out.push(json!({"division": division, "name": name, "unit": r.try_get::<String, _>("unit").map_err(store_err)?}));
    }
    Ok(Json(json!({ "regions": out })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub mobile: String,
    /// `register` or `reset`.
    pub purpose: String,
}

/// `POST /api/v1/app/public/sms-codes`: sends a verification code as an `sms.requested`
/// message through the outbox (the SMS connector delivers it). Answers the same whether an
/// account with that mobile exists or not.
#[utoipa::path(post, path = "/api/v1/app/public/sms-codes", tag = "app", request_body = CodeRequest, responses((status = 202, description = "a code was sent (also when no account uses the number)"), (status = 422, description = "invalid number or purpose", body = crate::error::ErrorBody), (status = 429, description = "sms_code_too_soon, sms_code_limit or rate_limited", body = crate::error::ErrorBody)))]
pub async fn send_code(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CodeRequest = parse(&body)?;
    if req.purpose != "register" && req.purpose != "reset" {
        return Err(field(
            invalid_input(),
            "purpose",
            "invalid_value",
            "register or reset",
            "应为 register 或 reset",
        ));
    }
    let Some(mobile) = normalize_mobile(&req.mobile) else {
        return Err(field(
            invalid_input(),
            "mobile",
            "mobile_format",
            "not a mainland mobile number",
            "手机号码格式错误",
        ));
    };
    let ring = s.keys.current();
    let blind = mobile_blind(&ring, &mobile);
    let cfg = &s.app.config;
    s.app
        .guard
        .check(Action::SmsCode, &client_ip(&ext, &headers), Some(&blind))?;
    let now = now_ms();
    let hour_ago = now - 3_600_000;
    let rows = Stmt::new(
        "SELECT created_at FROM app_sms_codes WHERE mobile_blind = $1 AND created_at > $2",
    )
    .bind(&blind)
    .bind(hour_ago)
    .query()
    .fetch_all(s.store.reader())
    .await
    .map_err(store_err)?;
    let latest = rows
        .iter()
        .filter_map(|r| r.try_get::<i64, _>("created_at").ok())
        .max();
    if latest.is_some_and(|t| now - t < i64::from(cfg.sms_code_interval_secs) * 1000) {
        return Err(err(
            StatusCode::TOO_MANY_REQUESTS,
            "sms_code_too_soon",
            "a code was sent to this number a moment ago; wait before asking again",
            "验证码发送过于频繁，请稍后再试",
        ));
    }
    if rows.len() >= cfg.sms_codes_per_hour as usize {
        return Err(err(
            StatusCode::TOO_MANY_REQUESTS,
            "sms_code_limit",
            "too many codes were sent to this number in the last hour",
            "该号码一小时内获取验证码次数已达上限",
        ));
    }
    let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
    let id = Uuid::now_v7();
    let req_msg = SmsRequested {
        request_id: id,
        template: SMS_TEMPLATE.to_owned(),
        params: BTreeMap::from([("code".to_owned(), code.clone())]),
        recipients: vec![SmsRecipient {
            phone: ring.seal(&mobile),
            role: Some("app_user".to_owned()),
        }],
        reason: Some(format!("app_{}", req.purpose)),
    };
    let txn = Txn {
        publish: vec![sms_envelope(None, "430100", &req_msg)],
        statements: vec![Stmt::new(
            "INSERT INTO app_sms_codes (id, purpose, mobile_blind, code_digest, attempts, expires_at, created_at) VALUES ($1, $2, $3, $4, 0, $5, $6)",
        )
        .bind(id.to_string())
        .bind(&req.purpose)
        .bind(&blind)
        .bind(ring.keyed_digest(format!("app-sms|{id}|{code}").as_bytes()))
        .bind(now + i64::from(cfg.sms_code_ttl_secs) * 1000)
        .bind(now)],
        ..Default::default()
    };
    s.store.transact(txn).await.map_err(store_err)?;
    s.relay.notify();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"sent": true, "expires_in": cfg.sms_code_ttl_secs})),
    )
        .into_response())
}

/// Checks an SMS code; on success returns the statement marking it used (to commit with the
/// change it allows). A wrong code counts an attempt; a code entered wrong too often is void.
async fn check_code(
    s: &AppState,
    ring: &KeyRing,
    purpose: &str,
    blind: &str,
    code: &str,
) -> Result<Stmt, ApiError> {
    let wrong = || {
        field(
            err(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sms_code_invalid",
                "the SMS code is wrong or has expired",
                "短信验证码错误或已过期",
            ),
            "sms_code",
            "sms_code_invalid",
            "wrong or expired",
            "验证码错误或已过期",
        )
    };
    let now = now_ms();
    let row = Stmt::new(
        "SELECT id, code_digest, attempts FROM app_sms_codes WHERE mobile_blind = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(blind)
    .bind(purpose)
    .bind(now)
    .query()
    .fetch_optional(s.store.reader())
    .await
    .map_err(store_err)?
    .ok_or_else(wrong)?;
    let id: String = row.try_get("id").map_err(store_err)?;
    let digest: String = row.try_get("code_digest").map_err(store_err)?;
    let attempts: i64 = row.try_get("attempts").map_err(store_err)?;
    if attempts >= i64::from(s.app.config.sms_code_max_attempts) {
        return Err(wrong());
    }
    let given = ring.keyed_digest(format!("app-sms|{id}|{}", code.trim()).as_bytes());
    if given != digest {
        s.store
            .transact(Txn {
                statements: vec![Stmt::new(
                    "UPDATE app_sms_codes SET attempts = attempts + 1 WHERE id = $1",
                )
                .bind(&id)],
                ..Default::default()
            })
            .await
            .map_err(store_err)?;
        return Err(wrong());
    }
    Ok(
        Stmt::new("UPDATE app_sms_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(now)
            .bind(id),
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub name: String,
    pub id_number: String,
    pub address: String,
    pub mobile: String,
    pub sms_code: String,
    pub password: String,
    pub recovery_question: String,
    pub recovery_answer: String,
}

/// `POST /api/v1/app/public/register`.
#[utoipa::path(post, path = "/api/v1/app/public/register", tag = "app", request_body = RegisterRequest, responses((status = 201, description = "registered: {user_id}"), (status = 409, description = "registration_refused", body = crate::error::ErrorBody), (status = 422, description = "validation_failed or sms_code_invalid", body = crate::error::ErrorBody), (status = 429, description = "rate_limited", body = crate::error::ErrorBody)))]
pub async fn register(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: RegisterRequest = parse(&body)?;
    let mut e = invalid_input();
    let mut bad = false;
    let name = r.name.trim().to_owned();
    if !(2..=30).contains(&name.chars().count()) {
        e = field(
            e,
            "name",
            "name_length",
            "2 to 30 characters",
            "姓名应为2至30个字符",
        );
        bad = true;
    }
    let id_number = match check_id_number(&r.id_number) {
        Ok(n) => n,
        Err(code) => {
            e = field(
                e,
                "id_number",
                code,
                "not a valid resident identity number",
                "身份证号码无效",
            );
            bad = true;
            String::new()
        }
    };
    let address = r.address.trim().to_owned();
    if address.is_empty() || address.chars().count() > 200 {
        e = field(
            e,
            "address",
            "address_length",
            "1 to 200 characters",
            "地址应为1至200个字符",
        );
        bad = true;
    }
    let mobile = normalize_mobile(&r.mobile).unwrap_or_default();
    if mobile.is_empty() {
        e = field(
            e,
            "mobile",
            "mobile_format",
            "not a mainland mobile number",
            "手机号码格式错误",
        );
        bad = true;
    }
    if !password_ok(&r.password) {
        e = field(
            e,
            "password",
            "password_weak",
            "8 to 64 characters with letters and digits",
            "密码应为8至64位且包含字母和数字",
        );
        bad = true;
    }
    let question = r.recovery_question.trim().to_owned();
    let answer = r.recovery_answer.trim().to_owned();
    if question.is_empty()
        || question.chars().count() > 100
        || answer.is_empty()
        || answer.chars().count() > 100
    {
        e = field(
            e,
            "recovery_question",
            "required",
            "a question and an answer of 1 to 100 characters",
            "请填写密保问题及答案（1至100个字符）",
        );
        bad = true;
    }
    if bad {
        return Err(e);
    }
    let ring = s.keys.current();
    let mblind = mobile_blind(&ring, &mobile);
    s.app
        .guard
        .check(Action::Register, &client_ip(&ext, &headers), Some(&mblind))?;
    let used = check_code(&s, &ring, "register", &mblind, &r.sms_code).await?;
    let iblind = id_blind(&ring, &id_number);
    let exists = Stmt::new("SELECT id FROM app_users WHERE id_blind = $1 OR mobile_blind = $2")
        .bind(&iblind)
        .bind(&mblind)
        .query()
        .fetch_optional(s.store.reader())
        .await
        .map_err(store_err)?;
    let refused = || {
        err(
            StatusCode::CONFLICT,
            "registration_refused",
            "these details cannot be registered; if you already have an account, reset its password",
            "无法使用该信息注册；如已有账号，请找回密码",
        )
    };
    if exists.is_some() {
        return Err(refused());
    }
    let password_hash = hash_secret(r.password).await?;
    let answer_hash = hash_secret(answer.to_lowercase()).await?;
    let id = Uuid::now_v7().to_string();
    let now = now_ms();
    let txn = Txn {
        statements: vec![
            used,
            Stmt::new(
                "INSERT INTO app_users (id, name, id_number_sealed, id_blind, mobile_sealed, mobile_blind, address, password_hash, recovery_question, recovery_answer_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
            )
            .bind(&id)
            .bind(&name)
            .bind(ring.seal(&id_number))
            .bind(&iblind)
            .bind(ring.seal(&mobile))
            .bind(&mblind)
            .bind(&address)
            .bind(password_hash)
            .bind(question)
            .bind(answer_hash)
            .bind(now),
        ],
        ..Default::default()
    };
    match s.store.transact(txn).await {
        Ok(o) if o.rows_affected.first() == Some(&1) => {}
        // The code was used by a concurrent request.
        Ok(_) => return Err(refused()),
        // A concurrent registration of the same person took the unique index.
        Err(_) => return Err(refused()),
    }
    tracing::info!(user = %id, "AppUserRegistered");
    Ok((StatusCode::CREATED, Json(json!({"user_id": id}))).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub mobile: String,
    pub password: String,
}

fn bad_credentials() -> ApiError {
    err(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the mobile number or the password is wrong",
        "手机号码或密码错误",
    )
}

/// `POST /api/v1/app/public/login`: a session token.
#[utoipa::path(post, path = "/api/v1/app/public/login", tag = "app", request_body = LoginRequest, responses((status = 200, description = "{token, token_type, expires_in}"), (status = 401, description = "invalid_credentials", body = crate::error::ErrorBody), (status = 429, description = "login_locked or rate_limited", body = crate::error::ErrorBody)))]
pub async fn login(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: LoginRequest = parse(&body)?;
    let ring = s.keys.current();
    // An invalid number is a login name nobody has: same answer as a wrong password.
    let mobile = normalize_mobile(&r.mobile).unwrap_or_else(|| r.mobile.trim().to_owned());
    let blind = mobile_blind(&ring, &mobile);
    s.app
        .guard
        .check(Action::Login, &client_ip(&ext, &headers), Some(&blind))?;
    let now = now_ms();
    let cfg = &s.app.config;
    let lock =
        Stmt::new("SELECT failures, locked_until FROM app_login_failures WHERE login_blind = $1")
            .bind(&blind)
            .query()
            .fetch_optional(s.store.reader())
            .await
            .map_err(store_err)?;
    let failures = match &lock {
        Some(row) => {
            let until: i64 = row.try_get("locked_until").map_err(store_err)?;
            if until > now {
                return Err(locked(until - now));
            }
            row.try_get::<i64, _>("failures").map_err(store_err)?
        }
        None => 0,
    };
    let user = Stmt::new("SELECT id, password_hash FROM app_users WHERE mobile_blind = $1")
        .bind(&blind)
        .query()
        .fetch_optional(s.store.reader())
        .await
        .map_err(store_err)?;
    let (user_id, hash) = match user {
        Some(u) => (
            Some(u.try_get::<String, _>("id").map_err(store_err)?),
            u.try_get::<String, _>("password_hash").map_err(store_err)?,
        ),
        None => (None, DUMMY_HASH.to_owned()),
    };
    let ok = verify_secret(r.password, hash).await && user_id.is_some();
    let Some(user_id) = user_id.filter(|_| ok) else {
        // A lock that expired starts a fresh count.
        let failures = if lock.is_some() && failures >= i64::from(cfg.max_failed_logins) {
            1
        } else {
            failures + 1
        };
        let until = if failures >= i64::from(cfg.max_failed_logins) {
            now + i64::from(cfg.lockout_minutes) * 60_000
        } else {
            0
        };
        s.store
            .transact(Txn {
                statements: vec![Stmt::new(
                    "INSERT INTO app_login_failures (login_blind, failures, locked_until, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (login_blind) DO UPDATE SET failures = $2, locked_until = $3, updated_at = $4",
                )
                .bind(&blind)
                .bind(failures)
                .bind(until)
                .bind(now)],
                ..Default::default()
            })
            .await
            .map_err(store_err)?;
        tracing::info!(failures, "AppLoginFailed");
        return Err(if until > 0 {
            locked(until - now)
        } else {
            bad_credentials()
        });
    };
    let token = random_token();
    let expires = now + i64::from(cfg.session_minutes) * 60_000;
    s.store
        .transact(Txn {
            statements: vec![
                Stmt::new("DELETE FROM app_login_failures WHERE login_blind = $1").bind(&blind),
                Stmt::new("INSERT INTO app_sessions (token_digest, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(sha256_hex(token.as_bytes()))
                    .bind(&user_id)
                    .bind(expires)
                    .bind(now),
            ],
            ..Default::default()
        })
        .await
        .map_err(store_err)?;
    Ok(Json(
        json!({"token": token, "token_type": "Bearer", "expires_in": cfg.session_minutes * 60}),
    )
    .into_response())
}

fn locked(ms_left: i64) -> ApiError {
    let minutes = (ms_left + 59_999) / 60_000;
    err(
        StatusCode::TOO_MANY_REQUESTS,
        "login_locked",
        &format!("too many failed logins; try again in {minutes} minute(s)"),
        &format!("登录失败次数过多，请{minutes}分钟后再试"),
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub name: String,
    pub id_number: String,
    pub mobile: String,
    pub sms_code: String,
    pub new_password: String,
}

/// `POST /api/v1/app/public/password-reset`: name, identity number and an SMS code to the
/// account's mobile. Ends the account's sessions and its lockout.
#[utoipa::path(post, path = "/api/v1/app/public/password-reset", tag = "app", request_body = ResetRequest, responses((status = 200, description = "reset; the account's sessions end"), (status = 422, description = "reset_refused, sms_code_invalid or validation_failed", body = crate::error::ErrorBody), (status = 429, description = "rate_limited", body = crate::error::ErrorBody)))]
pub async fn reset_password(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: ResetRequest = parse(&body)?;
    if !password_ok(&r.new_password) {
        return Err(field(
            invalid_input(),
            "new_password",
            "password_weak",
            "8 to 64 characters with letters and digits",
            "密码应为8至64位且包含字母和数字",
        ));
    }
    let ring = s.keys.current();
    let mobile = normalize_mobile(&r.mobile).unwrap_or_default();
    let mblind = mobile_blind(&ring, &mobile);
    s.app
        .guard
        .check(Action::Login, &client_ip(&ext, &headers), Some(&mblind))?;
    let used = check_code(&s, &ring, "reset", &mblind, &r.sms_code).await?;
    let refused = || {
        err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reset_refused",
            "the details do not match an account",
            "信息核验未通过",
        )
    };
    let id_number = check_id_number(&r.id_number).map_err(|_| refused())?;
    let row = Stmt::new("SELECT id, name, mobile_blind FROM app_users WHERE id_blind = $1")
        .bind(id_blind(&ring, &id_number))
        .query()
        .fetch_optional(s.store.reader())
        .await
        .map_err(store_err)?
        .ok_or_else(refused)?;
    let user_id: String = row.try_get("id").map_err(store_err)?;
    let name: String = row.try_get("name").map_err(store_err)?;
    let stored_mobile: String = row.try_get("mobile_blind").map_err(store_err)?;
    if name != r.name.trim() || stored_mobile != mblind {
        return Err(refused());
    }
    let hash = hash_secret(r.new_password).await?;
    let now = now_ms();
    s.store
        .transact(Txn {
            statements: vec![
                used,
                Stmt::new("UPDATE app_users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                    .bind(hash)
                    .bind(now)
                    .bind(&user_id),
                Stmt::new("DELETE FROM app_sessions WHERE user_id = $1").bind(&user_id),
                Stmt::new("DELETE FROM app_login_failures WHERE login_blind = $1").bind(&mblind),
            ],
            ..Default::default()
        })
        .await
        .map_err(store_err)?;
    Ok(Json(json!({"reset": true})).into_response())
}

/// A signed-in public user.
struct User {
    id: String,
    name: String,
    id_number: String,
    mobile: String,
    address: String,
}

async fn user_of(s: &AppState, headers: &HeaderMap) -> Result<User, ApiError> {
    let denied = || {
        err(
            StatusCode::UNAUTHORIZED,
            "auth_session_invalid",
            "sign in first (the session is missing or has expired)",
            "请先登录（会话不存在或已过期）",
        )
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(denied)?;
    let row = Stmt::new(
        "SELECT u.id, u.name, u.id_number_sealed, u.mobile_sealed, u.address FROM app_sessions s JOIN app_users u ON u.id = s.user_id WHERE s.token_digest = $1 AND s.expires_at > $2",
    )
    .bind(sha256_hex(token.trim().as_bytes()))
    .bind(now_ms())
    .query()
    .fetch_optional(s.store.reader())
    .await
    .map_err(store_err)?
    .ok_or_else(denied)?;
    let ring = s.keys.current();
    let open = |col: &str| -> Result<String, ApiError> {
        let v: String = row.try_get(col).map_err(store_err)?;
        ring.open(&v).map_err(store_err)
    };
    Ok(User {
        id: row.try_get("id").map_err(store_err)?,
        name: row.try_get("name").map_err(store_err)?,
        id_number: open("id_number_sealed")?,
        mobile: open("mobile_sealed")?,
        address: row.try_get("address").map_err(store_err)?,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplaintForm {
    /// The region (division code) the complaint is about.
    pub division: String,
    pub content_class: String,
    pub purpose: String,
    pub summary: String,
    #[serde(default)]
    pub people_involved: Option<u32>,
}

/// `POST /api/v1/app/public/complaints` (multipart: a `complaint` JSON part and up to five
/// `file` parts). Stores the petition (source `app`, form 网上信访) routed to the region's
/// handling unit; it enters the bus as `petition.received`. Answers the query code.
#[utoipa::path(post, path = "/api/v1/app/public/complaints", tag = "app", security(("session" = [])), request_body(content = ComplaintForm, content_type = "multipart/form-data", description = "a `complaint` JSON part (ComplaintForm) and up to five `file` parts (PDF, Word, Excel; type read from the content)"), responses((status = 201, description = "{query_code, record_id, unit, attachments}"), (status = 400, description = "invalid_form", body = crate::error::ErrorBody), (status = 401, description = "auth_session_invalid", body = crate::error::ErrorBody), (status = 413, description = "attachment_too_large", body = crate::error::ErrorBody), (status = 422, description = "validation_failed (attachment_type, attachment_type_mismatch, attachments_too_many, region_unknown, ...)", body = crate::error::ErrorBody), (status = 429, description = "rate_limited", body = crate::error::ErrorBody)))]
pub async fn submit(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<Response, ApiError> {
    let user = user_of(&s, &headers).await?;
    s.app
        .guard
        .check(Action::Submit, &client_ip(&ext, &headers), Some(&user.id))?;
    let cfg = s.app.config.clone();
    let mut complaint: Option<ComplaintForm> = None;
    let mut files_in: Vec<(String, &'static str, Vec<u8>)> = Vec::new();
    let bad_form = |en: &str, zh: &str| err(StatusCode::BAD_REQUEST, "invalid_form", en, zh);
    loop {
        let part = match form.next_field().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "attachment_too_large",
                    "the upload is too large",
                    "上传内容过大",
                ));
            }
            Err(e) => {
                return Err(bad_form(
                    &format!("unreadable multipart body: {e}"),
                    "表单内容无法读取",
                ))
            }
        };
        match part.name().unwrap_or_default() {
            "complaint" => {
                let b = part
                    .bytes()
                    .await
                    .map_err(|e| bad_form(&e.to_string(), "表单内容无法读取"))?;
                complaint = Some(parse(&b)?);
            }
            "file" => {
                let i = files_in.len();
                if i >= cfg.max_attachments {
                    return Err(field(
                        invalid_input(),
                        "file",
                        "attachments_too_many",
                        &format!("at most {} attachments", cfg.max_attachments),
                        &format!("附件最多{}个", cfg.max_attachments),
                    ));
                }
                let name = part
                    .file_name()
                    .and_then(files::clean_name)
                    .ok_or_else(|| {
                        field(
                            invalid_input(),
                            &format!("file[{i}]"),
                            "required",
                            "each file needs a name",
                            "附件缺少文件名",
                        )
                    })?;
                let mut data = Vec::new();
                let mut part = part;
                while let Some(chunk) = part
                    .chunk()
                    .await
                    .map_err(|e| bad_form(&e.to_string(), "附件读取失败"))?
                {
                    data.extend_from_slice(&chunk);
                    if data.len() > cfg.max_attachment_bytes {
                        return Err(field(
                            err(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "attachment_too_large",
                                "an attachment is larger than allowed",
                                "附件超过大小限制",
                            ),
                            &format!("file[{i}]"),
                            "attachment_too_large",
                            &format!("at most {} bytes", cfg.max_attachment_bytes),
                            "单个附件不超过10MB",
                        ));
                    }
                }
                // The content decides the type; the name must agree with it.
                let ext_of = name
                    .rsplit_once('.')
                    .map(|(_, e)| e.to_ascii_lowercase())
                    .unwrap_or_default();
                let Some(kind) = files::sniff(&data) else {
                    return Err(field(
                        invalid_input(),
                        &format!("file[{i}]"),
                        "attachment_type",
                        "the content is not a PDF, Word or Excel file",
                        "附件内容不是PDF、Word或Excel文件",
                    ));
                };
                if !files::extensions_of(kind).contains(&ext_of.as_str()) {
                    return Err(field(
                        invalid_input(),
                        &format!("file[{i}]"),
                        "attachment_type_mismatch",
                        &format!("the content is {kind}; the name's extension does not match"),
                        "附件扩展名与文件内容不符",
                    ));
                }
                files_in.push((name, kind, data));
            }
            other => {
                return Err(bad_form(
                    &format!("unexpected part `{other}`"),
                    "表单包含未知字段",
                ))
            }
        }
    }
    let c =
        complaint.ok_or_else(|| bad_form("the `complaint` part is required", "缺少投诉内容"))?;
    let Some(unit) = region_unit(&s, &c.division).await? else {
        return Err(field(
            invalid_input(),
            "division",
            "region_unknown",
            "no complaint entry for this region",
            "该地区未开通投诉入口",
        ));
    };
    let now = Utc::now().with_timezone(&china());
    let code = query_code();
    let source_id = format!("APP-{}", Uuid::now_v7().simple());
    let materials: Vec<Attachment> = files_in
        .iter()
        .map(|(name, kind, data)| Attachment {
            file_name: name.clone(),
            content_type: (*kind).to_owned(),
            size_bytes: data.len() as u64,
            sha256: Some(sha256_hex(data)),
        })
        .collect();
    let petition = Petition {
        source: SourceRef {
            system: "app".to_owned(),
            id: source_id.clone(),
            version: 1,
        },
        anonymous: false,
        complainants: vec![Complainant {
            name: Some(user.name.clone()),
            mobile: Some(user.mobile.clone()),
            id_type: Some("01".to_owned()),
            id_number: Some(user.id_number.clone()),
            address: Some(user.address.clone()),
            detailed_address: None,
        }],
        appeal: Appeal {
            division: c.division.clone(),
            content_class: c.content_class,
            purpose: c.purpose,
            form: "0004".to_owned(),
            summary: c.summary,
            keywords: Vec::new(),
            materials: materials.clone(),
        },
        acceptance: Acceptance {
            complainant_count: 1,
            people_involved: c.people_involved.unwrap_or(1),
            complaint_date: now.date_naive(),
            registered_at: now,
            remarks: Some(format!("湘易办 query code {code}")),
        },
        handling: Handling {
            registering_org: Some("湘易办".to_owned()),
            responsible_unit: Some(unit.clone()),
            ..Default::default()
        },
        flags: Default::default(),
        evaluation: None,
    };
    let petition =
        validate_petition(petition, s.tables, Utc::now()).map_err(ApiError::validation)?;
    let ring = s.keys.current();
    // Sealed attachment files first (content-addressed): a failed commit leaves at most an
    // unreferenced file, never a record pointing at a missing one.
    for (_, _, data) in &files_in {
        let path = s.app.attachments_dir.join(sha256_hex(data));
        if !path.exists() {
            let sealed = ring.seal_bytes(data);
            let tmp = path.with_extension("tmp");
            tokio::fs::write(&tmp, sealed).await.map_err(store_err)?;
            tokio::fs::rename(&tmp, &path).await.map_err(store_err)?;
        }
    }
    let item = xfhub_store::intake::petition_item(&petition, &ring).map_err(store_err)?;
    let now_ms = now_ms();
    let mut statements = vec![Stmt::new(
        "INSERT INTO app_complaints (query_code, source_id, user_id, name_blind, division, unit, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&code)
    .bind(&source_id)
    .bind(&user.id)
    .bind(name_blind(&ring, &user.name))
    .bind(&c.division)
    .bind(&unit)
    .bind(now_ms)];
    for (i, m) in materials.iter().enumerate() {
        statements.push(
            Stmt::new("INSERT INTO app_attachments (query_code, seq, file_name, content_type, size_bytes, sha256) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&code)
                .bind(i as i64)
                .bind(&m.file_name)
                .bind(&m.content_type)
                .bind(m.size_bytes as i64)
                .bind(m.sha256.clone()),
        );
    }
    let out = s
        .store
        .transact(Txn {
            ingests: vec![item],
            statements,
            // The complainant's app gets a push (connectors/src/xiangyiban).
            publish: vec![notification_envelope(
                &c.division,
                &NotificationRequest {
                    notification_id: Uuid::now_v7(),
                    recipients: vec![user.id.clone()],
                    title: "投诉已提交".to_owned(),
                    body: format!("您的投诉已转{unit}办理，查询码{code}。"),
                },
            )],
            ..Default::default()
        })
        .await
        .map_err(store_err)?;
    s.relay.notify();
    let receipt = match out.ingests.first() {
        Some(IngestOutcome::Created(r)) => r.clone(),
        other => return Err(store_err(format!("unexpected ingest outcome {other:?}"))),
    };
    tracing::info!(record = %receipt.id, unit = %unit, "AppComplaintReceived");
    Ok((
        StatusCode::CREATED,
        Json(json!({"query_code": code, "record_id": receipt.id, "unit": unit, "attachments": materials.len()})),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub query_code: String,
    pub name: String,
    /// For downloads: the attachment's index.
    #[serde(default)]
    pub index: Option<usize>,
}

fn case_not_found() -> ApiError {
    err(
        StatusCode::NOT_FOUND,
        "case_not_found",
        "no case matches this query code and name",
        "未找到与查询码和姓名匹配的信访件",
    )
}

struct Case {
    query_code: String,
    source_id: String,
    user_id: String,
    unit: String,
}

async fn find_case(s: &AppState, code: &str, name: &str) -> Result<Case, ApiError> {
    let ring = s.keys.current();
    let row = Stmt::new(
        "SELECT query_code, source_id, user_id, unit FROM app_complaints WHERE query_code = $1 AND name_blind = $2",
    )
    .bind(code.trim().to_ascii_uppercase())
    .bind(name_blind(&ring, name))
    .query()
    .fetch_optional(s.store.reader())
    .await
    .map_err(store_err)?
    .ok_or_else(case_not_found)?;
    Ok(Case {
        query_code: row.try_get("query_code").map_err(store_err)?,
        source_id: row.try_get("source_id").map_err(store_err)?,
        user_id: row.try_get("user_id").map_err(store_err)?,
        unit: row.try_get("unit").map_err(store_err)?,
    })
}

/// The stored petition of a case, personal data opened.
async fn petition_of(s: &AppState, case: &Case) -> Result<(Uuid, Petition), ApiError> {
    let rec = s
        .store
        .get_record_by_source(RecordKind::Petition, "app", &case.source_id)
        .await
        .map_err(store_err)?
        .ok_or_else(case_not_found)?;
    let mut data = rec.data;
    pii::open_document(&s.keys.current(), DocKind::Petition, &mut data).map_err(store_err)?;
    let p: Petition = serde_json::from_value(data).map_err(store_err)?;
    Ok((rec.id, p))
}

/// `POST /api/v1/app/public/complaints/query` with `{query_code, name}`: status, process,
/// documents, evaluation.
#[utoipa::path(post, path = "/api/v1/app/public/complaints/query", tag = "app", request_body = QueryRequest, responses((status = 200, description = "status, process, documents, evaluation"), (status = 404, description = "case_not_found (wrong code or wrong name alike)", body = crate::error::ErrorBody), (status = 429, description = "rate_limited", body = crate::error::ErrorBody)))]
pub async fn query(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: QueryRequest = parse(&body)?;
    s.app.guard.check(
        Action::Query,
        &client_ip(&ext, &headers),
        Some(&r.query_code.trim().to_ascii_uppercase()),
    )?;
    let case = find_case(&s, &r.query_code, &r.name).await?;
    let (id, p) = petition_of(&s, &case).await?;
    let events = Stmt::new("SELECT kind, occurred_at, body FROM process_events WHERE petition_id = $1 ORDER BY occurred_at, seq")
        .bind(id.to_string())
        .query()
        .fetch_all(s.store.reader())
        .await
        .map_err(store_err)?;
    let mut process = vec![
        json!({"kind": "registered", "occurred_at": p.acceptance.registered_at, "org": "湘易办"}),
    ];
    for e in events {
        let body: String = e.try_get("body").map_err(store_err)?;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        process.push(json!({
            "kind": e.try_get::<String, _>("kind").map_err(store_err)?,
            "occurred_at": e.try_get::<String, _>("occurred_at").map_err(store_err)?,
            "org": v.get("org").cloned().unwrap_or(Value::Null),
            "opinion": v.get("opinion").or_else(|| v.get("content")).cloned().unwrap_or(Value::Null),
        }));
    }
    let documents: Vec<Value> = p
        .appeal
        .materials
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"index": i, "file_name": m.file_name, "content_type": m.content_type, "size_bytes": m.size_bytes}))
        .collect();
    Ok(Json(json!({
        "query_code": case.query_code,
        "status": p.status().as_str(),
        "unit": case.unit,
        "division": p.appeal.division,
        "summary": p.appeal.summary,
        "registered_at": p.acceptance.registered_at,
        "replied_at": p.handling.replied_at,
        "concluded": p.handling.concluded,
        "process": process,
        "documents": documents,
        "evaluation": p.evaluation,
    })))
}

/// `POST /api/v1/app/public/complaints/materials` with `{query_code, name, index}`: the file.
#[utoipa::path(post, path = "/api/v1/app/public/complaints/materials", tag = "app", request_body = QueryRequest, responses((status = 200, description = "the document's bytes"), (status = 404, description = "case_not_found or not_found", body = crate::error::ErrorBody), (status = 429, description = "rate_limited", body = crate::error::ErrorBody)))]
pub async fn download(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: QueryRequest = parse(&body)?;
    s.app.guard.check(
        Action::Query,
        &client_ip(&ext, &headers),
        Some(&r.query_code.trim().to_ascii_uppercase()),
    )?;
    let case = find_case(&s, &r.query_code, &r.name).await?;
    let row = Stmt::new("SELECT file_name, content_type, sha256 FROM app_attachments WHERE query_code = $1 AND seq = $2")
        .bind(&case.query_code)
        .bind(r.index.unwrap_or(0) as i64)
        .query()
        .fetch_optional(s.store.reader())
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::not_found("document"))?;
    let sha: String = row.try_get("sha256").map_err(store_err)?;
    let sealed = tokio::fs::read_to_string(s.app.attachments_dir.join(&sha))
        .await
        .map_err(store_err)?;
    let bytes = s.keys.current().open_bytes(&sealed).map_err(store_err)?;
    let ctype: String = row.try_get("content_type").map_err(store_err)?;
    let name: String = row.try_get("file_name").map_err(store_err)?;
    let disposition = format!("attachment; filename*=UTF-8''{}", percent(&name));
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluationRequest {
    pub query_code: String,
    pub name: String,
    /// `1` satisfied, `2` basically satisfied, `3` unsatisfied (`evaluations` code table).
    pub result: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    pub responsible_department: String,
    #[serde(default)]
    pub unsatisfied_departments: Vec<String>,
}

/// `POST /api/v1/app/public/complaints/evaluation`: once per case, by the complainant, after
/// the reply. Rules: `result` 1, 2 or 3; reasons (at most three) only when not satisfied and
/// at least one when unsatisfied; exactly one responsible department; unsatisfied departments
/// (any number) only when not satisfied. Stored as a new version of the petition
/// (`petition.updated`); a second evaluation is refused with `already_evaluated`.
#[utoipa::path(post, path = "/api/v1/app/public/complaints/evaluation", tag = "app", security(("session" = [])), request_body = EvaluationRequest, responses((status = 201, description = "evaluated"), (status = 401, description = "auth_session_invalid", body = crate::error::ErrorBody), (status = 404, description = "case_not_found", body = crate::error::ErrorBody), (status = 409, description = "already_evaluated or not_ready_for_evaluation", body = crate::error::ErrorBody), (status = 422, description = "validation_failed", body = crate::error::ErrorBody)))]
pub async fn evaluate(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_of(&s, &headers).await?;
    let r: EvaluationRequest = parse(&body)?;
    s.app
        .guard
        .check(Action::Query, &client_ip(&ext, &headers), Some(&user.id))?;
    let case = find_case(&s, &r.query_code, &r.name).await?;
    if case.user_id != user.id {
        return Err(case_not_found());
    }
    let mut e = invalid_input();
    let mut bad = false;
    let reasons: Vec<String> = r
        .reasons
        .iter()
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
        .collect();
    let unsatisfied: Vec<String> = r
        .unsatisfied_departments
        .iter()
        .map(|x| x.trim().to_owned())
        .filter(|x| !x.is_empty())
        .collect();
    match r.result.as_str() {
        "1" => {
            if !reasons.is_empty() || !unsatisfied.is_empty() {
                e = field(
                    e,
                    "reasons",
                    "evaluation_reasons",
                    "a satisfied evaluation takes no reasons and no unsatisfied departments",
                    "评价满意时不填写不满意原因和不满意部门",
                );
                bad = true;
            }
        }
        "2" | "3" => {
            if r.result == "3" && reasons.is_empty() {
                e = field(
                    e,
                    "reasons",
                    "required",
                    "give at least one reason",
                    "请至少填写一项不满意原因",
                );
                bad = true;
            }
        }
        _ => {
            e = field(
                e,
                "result",
                "code_unknown",
                "1 (satisfied), 2 (basically satisfied) or 3 (unsatisfied)",
                "评价结果应为满意、基本满意或不满意",
            );
            bad = true;
        }
    }
    if reasons.len() > 3 {
        e = field(
            e,
            "reasons",
            "evaluation_reasons",
            "at most three reasons",
            "不满意原因最多三项",
        );
        bad = true;
    }
    if r.responsible_department.trim().is_empty() {
        e = field(
            e,
            "responsible_department",
            "required",
            "name the responsible department",
            "请选择责任部门",
        );
        bad = true;
    }
    if bad {
        return Err(e);
    }
    let already = || {
        err(
            StatusCode::CONFLICT,
            "already_evaluated",
            "this case has been evaluated; an evaluation cannot be changed",
            "该信访件已评价，不能重复评价",
        )
    };
    let (id, mut p) = petition_of(&s, &case).await?;
    if p.evaluation.is_some() {
        return Err(already());
    }
    if !(p.handling.concluded || p.handling.replied_at.is_some()) {
        return Err(err(
            StatusCode::CONFLICT,
            "not_ready_for_evaluation",
            "the case can be evaluated once it has been replied to",
            "信访件答复后方可评价",
        ));
    }
    let now = Utc::now().with_timezone(&china());
    let evaluation = Evaluation {
        result: r.result.clone(),
        reasons,
        responsible_department: Some(r.responsible_department.trim().to_owned()),
        unsatisfied_departments: unsatisfied,
        evaluated_at: now,
    };
    p.evaluation = Some(evaluation.clone());
    p.source.version += 1;
    let p = validate_petition(p, s.tables, Utc::now()).map_err(ApiError::validation)?;
    let item = xfhub_store::intake::petition_item(&p, &s.keys.current()).map_err(store_err)?;
    let txn = Txn {
        ingests: vec![item],
        statements: vec![Stmt::new(
            "INSERT INTO app_evaluations (query_code, record_id, result, body, evaluated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&case.query_code)
        .bind(id.to_string())
        .bind(&evaluation.result)
        .bind(serde_json::to_string(&evaluation).map_err(store_err)?)
        .bind(now_ms())],
        ..Default::default()
    };
    match s.store.transact(txn).await {
        Ok(o) if matches!(o.ingests.first(), Some(IngestOutcome::Updated(_))) => {}
        // A concurrent evaluation won (the primary key or the version refused this one).
        _ => return Err(already()),
    }
    s.relay.notify();
    Ok((
        StatusCode::CREATED,
        Json(json!({"evaluated": true, "evaluation": evaluation})),
    )
        .into_response())
}
