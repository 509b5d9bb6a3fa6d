//! Payloads of the messages the modules publish. `sms.requested` has the shape of
//! `xfhub_connectors::sms::SmsRequest` (its consumer's contract; the modules do not depend on
//! the connectors crate, and `hub/tests/modules.rs` checks that the two stay one shape).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use xfhub_schemas::Envelope;

pub const SMS_REQUESTED: &str = "sms.requested";
pub const ALERT_RAISED: &str = "alert.raised";
pub const ALERT_DISPATCHED: &str = "alert.dispatched";
pub const PETITION_ASSIGNED: &str = "petition.assigned";

/// `sms.requested`: numbers sealed with the hub's key ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsRequested {
    pub request_id: Uuid,
    pub template: String,
    pub params: BTreeMap<String, String>,
    pub recipients: Vec<SmsRecipient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsRecipient {
    /// Sealed mobile number.
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `petition.assigned`: the dispatch module assigned a petition to a responsible unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PetitionAssigned {
    pub record_id: Uuid,
    pub source_id: String,
    pub unit: String,
    pub rule_id: String,
}

/// An `sms.requested` envelope caused by `cause`.
pub fn sms_envelope(
    cause: Option<&Envelope<Value>>,
    division: &str,
    req: &SmsRequested,
) -> Envelope<Value> {
    let payload = serde_json::to_value(req).expect("an SMS request serializes");
    match cause {
        Some(c) => {
            let mut e = Envelope::caused_by(c, SMS_REQUESTED, payload);
            e.division = division.to_owned();
            e
        }
        None => Envelope::new(SMS_REQUESTED, "xfhub", division, payload),
    }
}
