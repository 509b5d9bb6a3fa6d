//! Pure mappings between partner shapes and the canonical schemas of xfhub, with the
//! external-to-canonical code maps as data files. No I/O, no tokio: every function here takes
//! bytes or values and returns canonical values or mapping errors naming the field and value.
pub mod xml_guard;

pub mod codemap;
pub mod excel;
pub mod exchange;
pub mod hotline12345;
pub mod provincial;
pub mod xml_soap;
pub mod xml_writeback;
