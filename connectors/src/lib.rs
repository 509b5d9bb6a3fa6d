//! Connectors of xfhub to partner systems, one module per system. Each owns its config, its
//! HTTP client (timeouts, retry with backoff and jitter, circuit breaking) and its cursor; a
//! connector never writes to another connector's tables.

pub mod hotline12345;
pub mod provincial;
pub mod pull;
pub mod registry;
pub mod sms;
pub mod xiangyiban;

pub use registry::{Connectors, ConnectorsConfig};
