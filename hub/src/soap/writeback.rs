//! `WriteBackHandling`: a responsible unit writes back a handling result. In one transaction the
//! hub stores it as a canonical `ProcessEvent` (`process_events`, the cursor of the
//! `process_event` exchange info set), brings the petition's handling block up to date (the
//! record keeps its source version: the source system's next version must not collide with a
//! hub-made one), publishes `petition.updated` with the updated record (the same payload shape
//! as every `petition.updated`) and `process_event.recorded` with the event, and appends an audit
//! entry. A repeat of the same result (petition, kind, time) stores nothing and answers
//! `duplicate = true`.

use axum::http::StatusCode;
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use tokio::sync::Mutex;
use uuid::Uuid;
use xfhub_schemas::{Envelope, Petition, ProcessEvent, Record};
use xfhub_store::{AuditDraft, RecordKind, Stmt, StoredRecord, Txn};
use xfhub_transforms::xml_guard::Element;
use xfhub_transforms::xml_writeback::{self, HandlingResult};

use super::{decode_child, encode, use_nonce, CallContext};
use crate::app::AppState;
use crate::auth::info_set_denied;
use crate::error::ApiError;

/// Type of the message carrying a written-back process event.
pub const PROCESS_EVENT_RECORDED: &str = "process_event.recorded";

/// Write-backs read, change and write a record's body: one at a time in this process, so two
/// write-backs to one petition never lose each other's change. (A new source version arriving
/// meanwhile is caught by the version guard of the update and the result is applied to it.)
static WRITEBACKS: Mutex<()> = Mutex::const_new(());

#[derive(Serialize)]
struct Answer {
    event_seq: i64,
    duplicate: bool,
    status: String,
    process_event: ProcessEvent,
}

fn with_prefix(mut e: ApiError) -> ApiError {
    for f in &mut e.body.fields {
        f.path = format!("handling_result.{}", f.path);
    }
    e
}

async fn load(
    s: &AppState,
    id: Uuid,
    cx: &CallContext,
) -> Result<(StoredRecord, Petition), ApiError> {
    let rec = s
        .store
        .get_record(RecordKind::Petition, id)
        .await
        .map_err(|e| ApiError::internal("get record", &e))?
        .ok_or_else(|| ApiError::not_found("petition"))?;
    let division = rec
        .data
        .get("appeal")
        .and_then(|a| a.get("division"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Outside the caller's divisions a record does not exist for it.
    if !cx.caller.may_see_division(division) {
        return Err(ApiError::not_found("petition"));
    }
    // The stored body has its personal numbers sealed; they stay sealed: only the handling
    // block changes.
    let p: Petition = serde_json::from_value(rec.data.clone())
        .map_err(|e| ApiError::internal("decode stored petition", &e))?;
    Ok((rec, p))
}

fn update_stmt(rec: &StoredRecord, p: &Petition, now: i64) -> Result<Stmt, ApiError> {
    let body = serde_json::to_string(p).map_err(|e| ApiError::internal("encode petition", &e))?;
    Ok(Stmt::new(
        "UPDATE records SET body = $1, status = $2, updated_at = $3 \
         WHERE id = $4 AND version = $5 AND updated_at = $6",
    )
    .bind(body)
    .bind(p.status().as_str())
    .bind(now)
    .bind(rec.id.to_string())
    .bind(rec.version)
    .bind(rec.updated_at.timestamp_millis()))
}

async fn event_seq(
    s: &AppState,
    id: Uuid,
    ev: &ProcessEvent,
) -> Result<Option<(i64, String)>, ApiError> {
    let kind = serde_json::to_value(ev.kind).map_err(|e| ApiError::internal("kind", &e))?;
    let row = Stmt::new(
        "SELECT seq, body FROM process_events WHERE petition_id = $1 AND kind = $2 AND occurred_at = $3",
    )
    .bind(id.to_string())
    .bind(kind.as_str().unwrap_or_default())
    .bind(ev.occurred_at.to_rfc3339())
    .query()
    .fetch_optional(s.store.reader())
    .await
    .map_err(|e| ApiError::internal("read process event", &e))?;
    row.map(|r| Ok((r.try_get("seq")?, r.try_get("body")?)))
        .transpose()
        .map_err(|e: sqlx::Error| ApiError::internal("read process event", &e))
}

pub async fn handle(
    s: &AppState,
    cx: CallContext,
    op: &Element,
    correlation: Option<Uuid>,
) -> Result<String, ApiError> {
    let r: HandlingResult = decode_child(op, "handling_result")?;
    if !cx.caller.has_info_set("petition") {
        return Err(info_set_denied("petition"));
    }
    let _one_at_a_time = WRITEBACKS.lock().await;
    let (rec, mut p) = load(s, r.petition_id, &cx).await?;
    let event = xml_writeback::apply(&mut p, &r, Utc::now())
        .map_err(|errs| with_prefix(ApiError::validation(errs)))?;
    use_nonce(s, &cx.nonce).await?;
    if let Some((seq, body)) = event_seq(s, rec.id, &event).await? {
        let stored: ProcessEvent = serde_json::from_str(&body)
            .map_err(|e| ApiError::internal("decode process event", &e))?;
        return encode(
            "WriteBackHandlingResponse",
            &Answer {
                event_seq: seq,
                duplicate: true,
                status: rec.status,
                process_event: stored,
            },
        );
    }

    let now = xfhub_store::now_ms();
    let kind = serde_json::to_value(event.kind).map_err(|e| ApiError::internal("kind", &e))?;
    let kind = kind.as_str().unwrap_or_default().to_owned();
    let division = p.appeal.division.clone();
    let record = Record {
        id: rec.id,
        kind: rec.kind.clone(),
        version: rec.version,
        status: p.status().as_str().to_owned(),
        received_at: rec.received_at,
        updated_at: chrono::DateTime::from_timestamp_millis(now).unwrap_or_default(),
        data: &p,
    };
    let mut updated = Envelope::new(
        xfhub_schemas::MessageType::PETITION_UPDATED,
        &rec.source_system,
        &division,
        json(&record)?,
    );
    if let Some(c) = correlation {
        updated.correlation_id = c;
    }
    let mut recorded = Envelope::new(
        PROCESS_EVENT_RECORDED,
        &rec.source_system,
        &division,
        json(&event)?,
    );
    recorded.correlation_id = updated.correlation_id;
    recorded.causation_id = Some(updated.message_id);
    let txn = Txn {
        publish: vec![updated, recorded],
        statements: vec![
            Stmt::new(
                "INSERT INTO process_events (petition_id, kind, occurred_at, division, body, actor, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(rec.id.to_string())
            .bind(kind.as_str())
            .bind(event.occurred_at.to_rfc3339())
            .bind(division.as_str())
            .bind(serde_json::to_string(&event).map_err(|e| ApiError::internal("encode event", &e))?)
            .bind(cx.caller.app_key.as_str())
            .bind(now),
            update_stmt(&rec, &p, now)?,
        ],
        audit: vec![AuditDraft {
            actor: cx.caller.app_key.clone(),
            action: "petition.write_back".to_owned(),
            target: rec.id.to_string(),
            outcome: kind.clone(),
            remote: cx.remote.clone(),
            detail: String::new(),
        }],
        ..Txn::default()
    };
    let out = s
        .store
        .transact(txn)
        .await
        .map_err(|e| ApiError::internal("write back", &e))?;
    s.relay.notify();
    let mut status = p.status().as_str().to_owned();
    if out.rows_affected.get(1) == Some(&0) {
        // A new source version arrived between the read and the write: apply the result to it.
        status = reapply(s, &r, &cx).await?;
    }
    let (seq, _) = event_seq(s, rec.id, &event)
        .await?
        .ok_or_else(|| ApiError::internal("write back", &"event not found after commit"))?;
    encode(
        "WriteBackHandlingResponse",
        &Answer {
            event_seq: seq,
            duplicate: false,
            status,
            process_event: event,
        },
    )
}

/// Applies a result again to the record as it now stands (up to three tries), when a newer
/// version replaced the one the result was first applied to. The event is already stored.
async fn reapply(s: &AppState, r: &HandlingResult, cx: &CallContext) -> Result<String, ApiError> {
    for _ in 0..3 {
        let (rec, mut p) = load(s, r.petition_id, cx).await?;
        if xml_writeback::apply(&mut p, r, Utc::now()).is_err() {
            // The newer version already moved past this result (e.g. concluded at the source).
            return Ok(rec.status);
        }
        let txn = Txn {
            statements: vec![update_stmt(&rec, &p, xfhub_store::now_ms())?],
            ..Txn::default()
        };
        let out = s
            .store
            .transact(txn)
            .await
            .map_err(|e| ApiError::internal("write back", &e))?;
        if out.rows_affected.first() != Some(&0) {
            return Ok(p.status().as_str().to_owned());
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "write_back_contended",
        "the petition kept changing while the result was applied; the event is stored, send the result again to update the petition",
        "信访件正在频繁更新，办理节点已保存，请重新回写以更新信访件",
    ))
}

fn json<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal("encode message", &e))
}
