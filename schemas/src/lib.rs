//! Canonical schemas of xfhub.
//!
//! Every inbound shape (REST JSON, provincial XML, 12345 JSON, Excel rows, exchange packages) is
//! mapped into these types before it is validated and stored; every outbound shape is mapped from
//! them. This crate does no I/O: code tables are compiled in from `data/` and parsed at start-up.
//!
//! - [`codes`]: code tables (data, versioned) and their validation as a set.
//! - [`validate`]: normalization and validation of petitions and work orders, every error at once.
//! - [`xml`]: the canonical XML form of the same types.
//! - [`samples`]: valid, realistic records for tests and load generation.

pub mod codes;
pub mod envelope;
pub mod petition;
pub mod samples;
pub mod validate;
pub mod workorder;
pub mod xml;

pub use codes::{CodeEntry, CodeTable, CodeTableError, CodeTables};
pub use envelope::{Envelope, MessageType, Record};
pub use petition::*;
pub use samples::{sample_petition, sample_workorder};
pub use validate::{validate_petition, validate_workorder, FieldError};
pub use workorder::*;
pub use xml::{from_xml, to_xml, XmlError};
