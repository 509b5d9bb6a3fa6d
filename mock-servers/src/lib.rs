//! Realistic fakes of xfhub's partner systems, seeded by a deterministic generator and with
//! fault injection, startable in-process from tests or through the `xfhub-mocks` binary.

pub mod appmsg;
pub mod core;
pub mod faults;
pub mod feed;
pub mod generator;
pub mod hotline12345;
pub mod idp;
pub mod provincial;
pub mod render;
pub mod sms;
