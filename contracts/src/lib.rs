//! The interface contracts xfhub publishes, as checked-in files.
//!
//! The gateway generates its OpenAPI document from code; `openapi.yaml` here is the reviewed,
//! checked-in copy that partners read. The hub's test `openapi_matches_contract` fails when the
//! two drift; regenerate with `xfhub openapi > contracts/openapi.yaml`.

/// The checked-in OpenAPI 3.1 document of the REST interface.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// The WSDL of the SOAP service `PetitionService` (document/literal; SOAP 1.1 and 1.2). The hub
/// serves it at `/ws/PetitionService?wsdl` with its own address and schema locations.
pub const PETITION_SERVICE_WSDL: &str = include_str!("../wsdl/PetitionService.wsdl");

/// Canonical types, XML documents and SOAP operation elements (namespace `urn:xfhub:v1`).
pub const XFHUB_XSD: &str = include_str!("../xsd/xfhub.xsd");

/// Exchange package header, manifest, data files and signature (`urn:xfhub:exchange:v1`).
pub const EXCHANGE_XSD: &str = include_str!("../xsd/exchange.xsd");

/// Namespace of the canonical types and of the SOAP operation elements.
pub const NS_XFHUB: &str = "urn:xfhub:v1";
/// Namespace of the exchange package files.
pub const NS_EXCHANGE: &str = "urn:xfhub:exchange:v1";

/// The schema files by the name they are served under (`/ws/xsd/{name}`).
pub fn xsd(name: &str) -> Option<&'static str> {
    match name {
        "xfhub.xsd" => Some(XFHUB_XSD),
        "exchange.xsd" => Some(EXCHANGE_XSD),
        _ => None,
    }
}
