//! The interface contracts xfhub publishes, as checked-in files.
//!
//! The gateway generates its OpenAPI document from code; `openapi.yaml` here is the reviewed,
//! checked-in copy that partners read. The hub's test `openapi_matches_contract` fails when the
//! two drift; regenerate with `xfhub openapi > contracts/openapi.yaml`.

/// The checked-in OpenAPI 3.1 document of the REST interface.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");
