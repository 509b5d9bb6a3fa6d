//! Request extractors that answer bad input with [`ApiError`]s naming the field and reason.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body: 415 without a JSON content type, 413 over the body limit, 400 for malformed
/// JSON, 422 naming the field path for JSON of the wrong shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
                "请求体必须为 JSON（Content-Type: application/json）",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the body is larger than this route accepts",
                    "请求体超过允许的大小",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    e.body_text(),
                    "请求体读取失败",
                )
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON, telling a syntax error (400) from a shape error at a path (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
                "请求体不是合法的 JSON",
            )
        } else {
            let reason = inner.to_string();
            let mut path = if path == "." { String::new() } else { path };
            // serde names a missing field in its message, not in the path: put it in the path.
            if let Some(field) = reason
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                path = if path.is_empty() {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
            }
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "schema_mismatch",
                format!("the body does not match the schema at {path}: {reason}"),
                format!("请求体字段 {path} 格式不符合接口规范"),
            )
            .with_field(&path, "schema_mismatch", reason, "字段类型或名称不符合规范")
        }
    })?;
    // Only whitespace may follow the value: `{...} xyz` is not JSON.
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
            "请求体不是合法的 JSON",
        )
    })?;
    Ok(value)
}

/// A path parameter: one that cannot be decoded (e.g. `%ff`) is a 400 `invalid_path` naming
/// the parameter, in the error shape of every other answer.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PathParam(v))
            .map_err(|e| {
                ApiError::new(
                    e.status(),
                    "invalid_path",
                    e.body_text(),
                    "请求路径参数无效",
                )
            })
    }
}

/// Query parameters: unknown or malformed parameters are a 400 naming the parameter.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded_de(q);
        de.map(Query)
    }
}

fn serde_urlencoded_de<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    // axum's Query rejection text names the field; keep it and give it our shape.
    axum::extract::Query::<T>::try_from_uri(&format!("/?{q}").parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string is malformed",
            "查询字符串格式错误",
        )
    })?)
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| {
        let reason = e.body_text();
        let detail = reason
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&reason)
            .to_owned();
        // serde_urlencoded names the parameter before the first colon.
        let param = detail
            .split(':')
            .next()
            .filter(|p| !p.contains(' '))
            .unwrap_or("query")
            .to_owned();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("invalid query: {detail}"),
            "查询参数无效",
        )
        .with_field(&param, "invalid_query", detail, "查询参数无效")
    })
}
