//! Mock of the provincial government information sharing site (湖南省政务信息共享网站): a SOAP
//! 1.1 WebService with its WSDL whose `QueryChangedPetitions` operation returns the Changsha
//! petition records of the provincial smart petition system changed since a cursor, at most
//! 100 a page, in the national column style, documents declared UTF-8 or GBK. Requests are
//! signed (HMAC-SM3 headers of `xfhub_security::sign`).
//!
//! Routes: `GET /provincial/ws?wsdl`, `POST /provincial/ws`, and the admin routes of
//! [`crate::core::admin_routes`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use quick_xml::escape::escape;
use serde::{Deserialize, Serialize};
use xfhub_transforms::provincial::{self as tp, MAX_PAGE_SIZE, NAMESPACE};

use crate::core::Core;
use crate::faults::{check_signature, reset_body, Action, Credentials, Faults, SignatureError};
use crate::feed::Feed;
use crate::generator::Generator;
use crate::render::{encode_record, provincial_xml};

/// Path of the service.
pub const SERVICE_PATH: &str = "/provincial/ws";

/// Document encoding of the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocEncoding {
    #[default]
    Utf8,
    Gbk,
}

/// Settings of the provincial mock.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvincialConfig {
    /// Address to listen on (`127.0.0.1:0`: any free port).
    pub listen: SocketAddr,
    /// Generator seed: the same seed serves the same records.
    pub seed: u64,
    /// Records in the backlog.
    pub records: u64,
    /// The credentials the hub signs with.
    pub credentials: Credentials,
    /// Declared encoding of the answers.
    pub encoding: DocEncoding,
    /// Move `advance_batch` records one stage on every this many milliseconds (0: never).
    pub advance_every_ms: u64,
    pub advance_batch: usize,
    /// Keep a ledger of what was served (`GET /mock/ledger`); memory grows with it.
    pub ledger: bool,
    pub faults: Faults,
}

impl Default for ProvincialConfig {
    fn default() -> Self {
        ProvincialConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 1,
            records: 1000,
            credentials: Credentials {
                app_key: "xfhub-provincial".to_owned(),
                secret: "provincial-demo-secret".to_owned(),
            },
            encoding: DocEncoding::Utf8,
            advance_every_ms: 0,
            advance_batch: 10,
            ledger: false,
            faults: Faults::default(),
        }
    }
}

struct Mock {
    core: Arc<Core>,
    generator: Generator,
    encoding: DocEncoding,
}

/// A running provincial mock.
#[derive(Clone)]
pub struct ProvincialMock {
    pub addr: SocketAddr,
    pub core: Arc<Core>,
    generator: Generator,
}

impl std::fmt::Debug for ProvincialMock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvincialMock")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ProvincialMock {
    /// Starts the mock in the background (inside a tokio runtime).
    pub async fn start(cfg: ProvincialConfig) -> std::io::Result<ProvincialMock> {
        cfg.faults
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.join("; ")))?;
        let generator = Generator::new(cfg.seed);
        let (g1, g2) = (generator.clone(), generator.clone());
        let feed = Feed::new(
            cfg.records,
            cfg.seed,
            move |i| g1.initial_version(i),
            move |i| g2.petition_max_version(i),
            cfg.ledger,
        );
        let core = Arc::new(Core::new(
            cfg.seed,
            cfg.credentials.clone(),
            feed,
            cfg.faults.clone(),
            Generator::petition_id,
        ));
        let mock = Arc::new(Mock {
            core: core.clone(),
            generator: generator.clone(),
            encoding: cfg.encoding,
        });
        let app = Router::new()
            .route(SERVICE_PATH, get(wsdl).post(query))
            .with_state(mock)
            .merge(crate::core::admin_routes(core.clone()));
        let addr = crate::faults::spawn(cfg.listen, app).await?;
        crate::core::spawn_advance(
            core.clone(),
            Duration::from_millis(cfg.advance_every_ms),
            cfg.advance_batch,
        );
        tracing::info!(%addr, records = cfg.records, encoding = ?cfg.encoding, "ProvincialMockStarted");
        Ok(ProvincialMock {
            addr,
            core,
            generator,
        })
    }

    /// `http://addr/provincial/ws`
    pub fn url(&self) -> String {
        format!("http://{}{SERVICE_PATH}", self.addr)
    }

    pub fn generator(&self) -> &Generator {
        &self.generator
    }
}

fn soap_fault(status: StatusCode, code: &str, message: &str, retry_after: Option<u64>) -> Response {
    let detail = retry_after
        .map(|s| format!("<detail><xf:retryAfter>{s}</xf:retryAfter></detail>"))
        .unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xf=\"{NAMESPACE}\">\
         <soap:Body><soap:Fault><faultcode>{}</faultcode><faultstring>{}</faultstring>{detail}</soap:Fault>\
         </soap:Body></soap:Envelope>",
        escape(code),
        escape(message)
    );
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response();
    if let Some(s) = retry_after {
        if let Ok(v) = s.to_string().parse() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

async fn wsdl(State(m): State<Arc<Mock>>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    if !q.as_deref().unwrap_or("").eq_ignore_ascii_case("wsdl") {
        return (
            StatusCode::BAD_REQUEST,
            "GET ?wsdl for the service description",
        )
            .into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let _ = &m.core;
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        WSDL.replace("{{ADDRESS}}", &format!("http://{host}{SERVICE_PATH}")),
    )
        .into_response()
}

async fn query(State(m): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> Response {
    let (action, faults) = m.core.draw();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if let Err(e) = check_signature(
        &m.core.credentials,
        &m.core.nonces,
        &headers,
        "POST",
        SERVICE_PATH,
        "",
        &body,
    ) {
        m.core.refused_signature();
        let (code, msg) = match e {
            SignatureError::Expired => (
                "soap:Client.SignatureExpired",
                "签名已过期 signature expired",
            ),
            SignatureError::Replayed => ("soap:Client.NonceReused", "请求已处理 nonce reused"),
            _ => ("soap:Client.Unauthorized", "签名校验失败 signature invalid"),
        };
        return soap_fault(StatusCode::INTERNAL_SERVER_ERROR, code, msg, None);
    }
    match action {
        Action::Serve => {}
        Action::RateLimited => {
            return soap_fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "soap:Server.RateLimited",
                "请求过于频繁 too many requests",
                Some(faults.retry_after_secs),
            )
        }
        Action::ExpiredSignature => {
            return soap_fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "soap:Client.SignatureExpired",
                "签名已过期 signature expired",
                None,
            )
        }
        Action::ServerError => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "<html><body>503 Service Temporarily Unavailable</body></html>",
            )
                .into_response()
        }
        Action::Timeout => {
            tokio::time::sleep(Duration::from_millis(faults.timeout_ms)).await;
        }
        Action::Reset => {}
    }
    let (region, cursor, size) = match tp::parse_request(&body) {
        Ok(r) => r,
        Err(e) => {
            return soap_fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "soap:Client",
                &format!("请求格式错误 malformed request: {e}"),
                None,
            )
        }
    };
    if region != "430100" {
        return soap_fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Client.Region",
            &format!("无权访问行政区划 {region} (this key sees 430100 only)"),
            None,
        );
    }
    let Ok(cursor) = cursor.parse::<u64>() else {
        return soap_fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "soap:Client.Cursor",
            "游标无效 invalid cursor",
            None,
        );
    };
    let size = match size.parse::<u32>() {
        Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n as usize,
        _ => {
            return soap_fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "soap:Client.PageSize",
                "每页条数须在1到100之间 pageSize must be 1 to 100",
                None,
            )
        }
    };
    let plan = m.core.plan(cursor, size, &faults);
    let gbk = m.encoding == DocEncoding::Gbk;
    let map = tp::embedded_map();
    let head = format!(
        "<?xml version=\"1.0\" encoding=\"{}\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xf=\"{NAMESPACE}\">\
         <soap:Body><xf:QueryChangedPetitionsResponse><xf:result><xf:code>0</xf:code>\
         <xf:message>成功</xf:message><xf:nextCursor>{}</xf:nextCursor><xf:hasMore>{}</xf:hasMore>\
         <xf:count>{}</xf:count><xf:records>",
        if gbk { "GBK" } else { "UTF-8" },
        plan.next,
        plan.has_more,
        plan.changes.len()
    );
    let mut doc = Vec::with_capacity(plan.changes.len() * 2600 + 600);
    let encode = |s: &str| -> Vec<u8> {
        if gbk {
            encoding_rs::GBK.encode(s).0.into_owned()
        } else {
            s.as_bytes().to_vec()
        }
    };
    doc.extend(encode(&head));
    for (c, malformed) in &plan.changes {
        let g = m.generator.petition(c.index, c.version);
        let xml = provincial_xml(&g, map, *malformed);
        doc.extend(encode_record(&xml, gbk, *malformed));
    }
    doc.extend(encode(
        "</xf:records></xf:result></xf:QueryChangedPetitionsResponse></soap:Body></soap:Envelope>",
    ));
    let content_type = if gbk {
        "text/xml; charset=GBK"
    } else {
        "text/xml; charset=utf-8"
    };
    if action == Action::Reset {
        let half = doc.len() / 2;
        doc.truncate(half);
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .body(reset_body(doc))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(doc))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The service description (WSDL 1.1, SOAP 1.1 document/literal).
pub const WSDL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:xf="urn:hunan:zwgx:xfxx:v1"
    targetNamespace="urn:hunan:zwgx:xfxx:v1" name="XfxxShareService">
  <wsdl:documentation>湖南省政务信息共享网站 - 智慧信访信息系统信访件共享服务。请求须携带签名头
    x-app-key、x-timestamp（毫秒，10分钟内有效）、x-nonce、x-signature（HMAC-SM3）。</wsdl:documentation>
  <wsdl:types>
    <xsd:schema targetNamespace="urn:hunan:zwgx:xfxx:v1" elementFormDefault="qualified">
      <xsd:element name="QueryChangedPetitions">
        <xsd:complexType><xsd:sequence>
          <xsd:element name="regionCode" type="xsd:string"/>
          <xsd:element name="cursor" type="xsd:string"/>
          <xsd:element name="pageSize" type="xsd:int"/>
        </xsd:sequence></xsd:complexType>
      </xsd:element>
      <xsd:element name="QueryChangedPetitionsResponse">
        <xsd:complexType><xsd:sequence>
          <xsd:element name="result">
            <xsd:complexType><xsd:sequence>
              <xsd:element name="code" type="xsd:int"/>
              <xsd:element name="message" type="xsd:string"/>
              <xsd:element name="nextCursor" type="xsd:string"/>
              <xsd:element name="hasMore" type="xsd:boolean"/>
              <xsd:element name="count" type="xsd:int"/>
              <xsd:element name="records">
                <xsd:complexType><xsd:sequence>
                  <xsd:any processContents="skip" minOccurs="0" maxOccurs="100"/>
                </xsd:sequence></xsd:complexType>
              </xsd:element>
            </xsd:sequence></xsd:complexType>
          </xsd:element>
        </xsd:sequence></xsd:complexType>
      </xsd:element>
    </xsd:schema>
  </wsdl:types>
  <wsdl:message name="QueryChangedPetitionsRequest">
    <wsdl:part name="parameters" element="xf:QueryChangedPetitions"/>
  </wsdl:message>
  <wsdl:message name="QueryChangedPetitionsResponse">
    <wsdl:part name="parameters" element="xf:QueryChangedPetitionsResponse"/>
  </wsdl:message>
  <wsdl:portType name="XfxxSharePortType">
    <wsdl:operation name="QueryChangedPetitions">
      <wsdl:input message="xf:QueryChangedPetitionsRequest"/>
      <wsdl:output message="xf:QueryChangedPetitionsResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="XfxxShareBinding" type="xf:XfxxSharePortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="QueryChangedPetitions">
      <soap:operation soapAction="urn:hunan:zwgx:xfxx:v1#QueryChangedPetitions"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="XfxxShareService">
    <wsdl:port name="XfxxSharePort" binding="xf:XfxxShareBinding">
      <soap:address location="{{ADDRESS}}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#;
