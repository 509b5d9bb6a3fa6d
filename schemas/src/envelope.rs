//! The message envelope carried on the bus (DESIGN.md "Messages").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Schema version of the canonical payloads this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Well-known message types. Types are strings on the wire so that new ones need no release of
/// every consumer; these constants keep producers from misspelling them.
pub struct MessageType;

impl MessageType {
    pub const PETITION_RECEIVED: &'static str = "petition.received";
    pub const PETITION_UPDATED: &'static str = "petition.updated";
    pub const WORKORDER_RECEIVED: &'static str = "workorder.received";
    pub const WORKORDER_UPDATED: &'static str = "workorder.updated";
}

/// A message on the bus. `T` is a canonical payload; on the wire and at rest it is JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    /// Unique per message; consumers de-duplicate on it. UUIDv7, except where a message is named
    /// after what it announces (`alert.raised`: a UUIDv5 of the alert's dedup key).
    pub message_id: Uuid,
    /// `petition.received`, `workorder.received`, ...
    #[serde(rename = "type")]
    pub message_type: String,
    /// System the payload came from (`provincial`, `hotline12345`, `api`, ...).
    pub source_system: String,
    /// Id shared by every message caused, directly or not, by one inbound request.
    pub correlation_id: Uuid,
    /// Id of the message that caused this one (None for messages caused by inbound traffic).
    /// JSON writes `null`; XML writes an empty element, which reads back as None.
    #[serde(default, deserialize_with = "crate::xml::empty_as_none")]
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// Six-digit division code the payload concerns; part of the routing key.
    pub division: String,
    pub schema_version: u32,
    pub payload: T,
}

impl<T> Envelope<T> {
    /// A new envelope for inbound traffic: correlation id = message id, no causation.
    pub fn new(message_type: &str, source_system: &str, division: &str, payload: T) -> Self {
        let id = Uuid::now_v7();
        Envelope {
            message_id: id,
            message_type: message_type.to_owned(),
            source_system: source_system.to_owned(),
            correlation_id: id,
            causation_id: None,
            occurred_at: Utc::now(),
            division: division.to_owned(),
            schema_version: SCHEMA_VERSION,
            payload,
        }
    }

    /// A message caused by `cause`: same correlation id, causation = cause's id.
    pub fn caused_by<U>(cause: &Envelope<U>, message_type: &str, payload: T) -> Self {
        Envelope {
            message_id: Uuid::now_v7(),
            message_type: message_type.to_owned(),
            source_system: "xfhub".to_owned(),
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.message_id),
            occurred_at: Utc::now(),
            division: cause.division.clone(),
            schema_version: SCHEMA_VERSION,
            payload,
        }
    }

    /// `<type>.<division>`, the key the routing table matches.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.message_type, self.division)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Envelope<U> {
        Envelope {
            message_id: self.message_id,
            message_type: self.message_type,
            source_system: self.source_system,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            occurred_at: self.occurred_at,
            division: self.division,
            schema_version: self.schema_version,
            payload: f(self.payload),
        }
    }
}

/// A stored record as the hub serves and routes it: the hub's id and bookkeeping around a
/// canonical payload (`Petition`, `WorkOrder`). Message payloads are `Record<T>` too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record<T> {
    /// Hub id (UUIDv7), stable across versions of the same source record.
    pub id: Uuid,
    /// `petition` | `workorder`
    pub kind: String,
    /// Source version this record holds.
    pub version: i64,
    /// Derived status (petitions: registered, accepted, replied, concluded; work orders: state).
    pub status: String,
    /// First time the hub stored this record.
    pub received_at: DateTime<Utc>,
    /// Last time the hub stored a version of it.
    pub updated_at: DateTime<Utc>,
    pub data: T,
}
