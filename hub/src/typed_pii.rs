//! Personal numbers of canonical records already read into their type: each sealed slot is
//! opened, then masked unless the caller may see it in clear. The same result as
//! `pii::open_document` followed by `pii::mask_document` on the JSON form, without going through
//! `serde_json::Value` and back (the exports convert up to a million records: that detour cost
//! a third of their time). The exchange export's tests hold the two forms equal.

use xfhub_schemas::{Petition, WorkOrder};
use xfhub_security::keys::KeyRing;
use xfhub_security::pii::{self, Slot};
use xfhub_security::seal::SealError;

/// Opens (and with `mask`, masks) the identity and mobile numbers of every complainant.
pub fn open_petition(ring: &KeyRing, p: &mut Petition, mask: bool) -> Result<(), SealError> {
    for c in &mut p.complainants {
        pii::open_slot(ring, Slot::IdNumber, &mut c.id_number, mask)?;
        pii::open_slot(ring, Slot::Phone, &mut c.mobile, mask)?;
    }
    Ok(())
}

/// Opens (and with `mask`, masks) the caller's phone number.
pub fn open_workorder(ring: &KeyRing, w: &mut WorkOrder, mask: bool) -> Result<(), SealError> {
    pii::open_slot(ring, Slot::Phone, &mut w.caller_phone, mask)
}
