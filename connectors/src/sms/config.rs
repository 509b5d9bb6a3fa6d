//! `[sms]`: the SMS gateway connector's settings.

use serde::Deserialize;

/// Settings of the SMS connector (`[sms]` in the hub's configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// Base URL of the HTTP SMS gateway, e.g. `https://sms.example.gov.cn`. Unset: the SMS
    /// consumer does not run and `sms.requested` messages wait in their durable queue.
    pub gateway_url: Option<String>,
    /// Access key the hub signs its gateway calls with.
    pub access_key: String,
    /// Its secret. The environment variable `XFHUB_SMS_SECRET` overrides it (keep secrets
    /// out of configuration files).
    pub access_secret: String,
    /// Sign name (签名) printed in every text, as registered with the carrier.
    pub sign_name: String,
    /// Most numbers per gateway call (the gateway accepts up to 1,000).
    pub max_numbers_per_call: usize,
    /// Timeout of one gateway call, in milliseconds.
    pub timeout_ms: u64,
    /// Texts per second through the gateway, all numbers together.
    pub gateway_per_sec: u32,
    /// Texts that may go at once above that rate.
    pub gateway_burst: u32,
    /// Texts to one number per minute (a text over a limit is recorded `rate_limited`, not sent).
    pub phone_per_minute: u32,
    /// Texts to one number per hour.
    pub phone_per_hour: u32,
    /// Texts to one number per day.
    pub phone_per_day: u32,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            gateway_url: None,
            access_key: String::new(),
            access_secret: String::new(),
            sign_name: "长沙信访".to_owned(),
            max_numbers_per_call: 1000,
            timeout_ms: 10_000,
            gateway_per_sec: 50,
            gateway_burst: 50,
            phone_per_minute: 3,
            phone_per_hour: 20,
            phone_per_day: 50,
        }
    }
}

impl SmsConfig {
    /// Every error at once, each prefixed `sms.<field>`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if let Some(url) = &self.gateway_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errors.push("sms.gateway_url: must start with http:// or https://".to_owned());
            }
            if self.access_key.is_empty() {
                errors.push("sms.access_key: required when sms.gateway_url is set".to_owned());
            }
        }
        if self.sign_name.trim().is_empty() || self.sign_name.chars().count() > 12 {
            errors.push("sms.sign_name: 1 to 12 characters".to_owned());
        }
        if !(1..=1000).contains(&self.max_numbers_per_call) {
            errors.push("sms.max_numbers_per_call: must be between 1 and 1000".to_owned());
        }
        if self.timeout_ms < 100 {
            errors.push("sms.timeout_ms: must be at least 100".to_owned());
        }
        for (name, v) in [
            ("gateway_per_sec", self.gateway_per_sec),
            ("gateway_burst", self.gateway_burst),
            ("phone_per_minute", self.phone_per_minute),
            ("phone_per_hour", self.phone_per_hour),
            ("phone_per_day", self.phone_per_day),
        ] {
            if v == 0 {
                errors.push(format!("sms.{name}: must be at least 1"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The secret: `XFHUB_SMS_SECRET` when set, else `access_secret`.
    pub fn secret(&self) -> String {
        std::env::var("XFHUB_SMS_SECRET").unwrap_or_else(|_| self.access_secret.clone())
    }
}
