//! The message-trail consumer: a wire tap on every message. Its effect is one `consumed` hop in
//! the trail per message, committed with its ack, so the trail proves end to end that each
//! message reached a consumer exactly once.

use async_trait::async_trait;
use serde_json::Value;
use xfhub_schemas::Envelope;
use xfhub_store::Effect;

use crate::{Handler, HandlerError};

pub const TRAIL_QUEUE: &str = "trail";

/// Routing patterns of the trail consumer: everything.
pub const TRAIL_PATTERNS: &[&str] = &["#"];

#[derive(Debug, Default)]
pub struct TrailConsumer;

#[async_trait]
impl Handler for TrailConsumer {
    fn name(&self) -> &str {
        TRAIL_QUEUE
    }

    async fn handle(
        &self,
        envelope: &Envelope<Value>,
        _attempt: i64,
    ) -> Result<Vec<Effect>, HandlerError> {
        Ok(vec![Effect::Trail {
            message_id: envelope.message_id.to_string(),
            hop: "consumed".to_owned(),
            queue: Some(TRAIL_QUEUE.to_owned()),
            detail: Some(envelope.message_type.clone()),
        }])
    }
}
