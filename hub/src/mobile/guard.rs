//! Abuse protection of the public channel: rate limits per client IP and per account on
//! register, login, submit, query and SMS codes (governor keyed limiters, in memory per
//! instance). Lockout after failed logins and the SMS code limits are kept in the store
//! (`app_login_failures`, `app_sms_codes`) so that they hold across restarts and instances.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AppConfig;
use crate::error::ApiError;

/// The limited actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Register,
    Login,
    Submit,
    Query,
    SmsCode,
}

impl Action {
    fn index(self) -> usize {
        self as usize
    }
}

/// Keyed limiters per action: one keyed by client IP, one by account.
#[derive(Clone)]
pub struct Guard {
    per_ip: Arc<Vec<DefaultKeyedRateLimiter<String>>>,
    per_account: Arc<Vec<DefaultKeyedRateLimiter<String>>>,
}

fn limiters(per_minute: u32) -> Vec<DefaultKeyedRateLimiter<String>> {
    let n = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
    (0..5)
        .map(|_| RateLimiter::keyed(Quota::per_minute(n)))
        .collect()
}

fn limited() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; wait a minute and try again",
        "请求过于频繁，请稍后再试",
    )
}

impl Guard {
    pub fn new(config: &AppConfig) -> Guard {
        Guard {
            per_ip: Arc::new(limiters(config.per_ip_per_minute)),
            per_account: Arc::new(limiters(config.per_account_per_minute)),
        }
    }

    /// Takes one request of `action` from the IP's bucket and, when given, the account's.
    pub fn check(&self, action: Action, ip: &str, account: Option<&str>) -> Result<(), ApiError> {
        let i = action.index();
        if self.per_ip[i].check_key(&ip.to_owned()).is_err() {
            tracing::info!(action = ?action, "AppRateLimited: ip");
            return Err(limited());
        }
        if let Some(a) = account {
            if self.per_account[i].check_key(&a.to_owned()).is_err() {
                tracing::info!(action = ?action, "AppRateLimited: account");
                return Err(limited());
            }
        }
        Ok(())
    }
}

/// The client's IP as `crate::client_ip` resolved it: the peer address, or behind a trusted
/// proxy (`[server] trusted_proxies`) the forwarded client. A forwarding header from any other
/// peer is ignored: a client could pick its own bucket with it.
pub fn client_ip(ext: &axum::http::Extensions, _headers: &HeaderMap) -> String {
    crate::client_ip::client_of(ext)
        .map(|c| c.ip.to_string())
        .unwrap_or_default()
}
