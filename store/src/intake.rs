//! Turns a validated canonical record into an [`IngestItem`]: key columns, the keyed digest of
//! its canonical form, and its personal data sealed with blind-index entries. Every inbound
//! surface (REST, SOAP, XML, Excel, pull connectors, the app) goes through here, so a record
//! stores and dedups the same whichever way it came in.

use serde_json::value::RawValue;
use serde_json::Value;
use xfhub_schemas::{Petition, WorkOrder};
use xfhub_security::keys::KeyRing;
use xfhub_security::pii::{self, DocKind};

use crate::writer::IngestItem;
use crate::{RecordKind, Result};

/// Blind-index entries: (field, keyed digest).
type Blind = Vec<(String, String)>;

/// A validated petition, sealed and ready for [`crate::Store::ingest`] or a
/// [`crate::Txn`]. Audit, nonce and correlation id are left for the caller.
pub fn petition_item(p: &Petition, ring: &KeyRing) -> Result<IngestItem> {
    let (digest, data, blind) = seal(serde_json::to_value(p)?, DocKind::Petition, ring)?;
    Ok(IngestItem {
        kind: RecordKind::Petition,
        source_system: p.source.system.clone(),
        source_id: p.source.id.clone(),
        version: p.source.version,
        digest,
        division: p.appeal.division.clone(),
        form: Some(p.appeal.form.clone()),
        purpose: Some(p.appeal.purpose.clone()),
        content_class: Some(p.appeal.content_class.clone()),
        status: p.status().as_str().to_owned(),
        occurred_on: p.acceptance.complaint_date.to_string(),
        data,
        correlation_id: None,
        blind,
        audit: None,
        nonce: None,
    })
}

/// A validated 12345 work order, sealed and ready to store (see [`petition_item`]).
pub fn workorder_item(w: &WorkOrder, ring: &KeyRing) -> Result<IngestItem> {
    let (digest, data, blind) = seal(serde_json::to_value(w)?, DocKind::WorkOrder, ring)?;
    Ok(IngestItem {
        kind: RecordKind::Workorder,
        source_system: w.source.system.clone(),
        source_id: w.source.id.clone(),
        version: w.source.version,
        digest,
        division: w.division.clone(),
        form: w.channel.clone(),
        // Work orders keep their order type in the purpose column (its filter is `order_type`).
        purpose: Some(w.order_type.clone()),
        content_class: None,
        status: w.state.clone(),
        occurred_on: w.call_time.date_naive().to_string(),
        data,
        correlation_id: None,
        blind,
        audit: None,
        nonce: None,
    })
}

/// The keyed digest of a document, the document with its personal data sealed (as JSON
/// text), and its blind-index entries.
fn seal(mut doc: Value, kind: DocKind, ring: &KeyRing) -> Result<(String, Box<RawValue>, Blind)> {
    // The digest covers the normalized canonical form, so the same content always hashes the
    // same; it is keyed, because the document holds personal data.
    let canonical = serde_json::to_vec(&doc)?;
    let digest = ring.keyed_digest(&canonical);
    // Identity and phone numbers are sealed before anything is stored or published.
    let blind = pii::seal_document(ring, kind, &mut doc)
        .into_iter()
        .map(|b| (b.field.to_owned(), b.digest))
        .collect();
    Ok((digest, serde_json::value::to_raw_value(&doc)?, blind))
}
