//! The one error type at the HTTP edge: a stable machine code, an English and a Chinese
//! message, and the field errors, never internals. SOAP faults (later) carry the same codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use xfhub_schemas::FieldError;

/// One field's problem, as the API reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiFieldError {
    /// Path of the field, e.g. `complainants[0].id_number`.
    pub path: String,
    /// Stable machine code, e.g. `id_number_checksum`.
    pub code: String,
    pub message: String,
    pub message_zh: String,
}

impl From<FieldError> for ApiFieldError {
    fn from(e: FieldError) -> Self {
        ApiFieldError {
            path: e.path,
            code: e.code,
            message: e.message,
            message_zh: e.message_zh,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine code: `validation_failed`, `malformed_json`, `version_conflict`, ...
    pub code: String,
    pub message: String,
    pub message_zh: String,
    pub fields: Vec<ApiFieldError>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        message_zh: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                message_zh: message_zh.into(),
                fields: Vec::new(),
            },
        }
    }

    pub fn with_field(
        mut self,
        path: &str,
        code: &str,
        message: impl Into<String>,
        message_zh: impl Into<String>,
    ) -> Self {
        self.body.fields.push(ApiFieldError {
            path: path.to_owned(),
            code: code.to_owned(),
            message: message.into(),
            message_zh: message_zh.into(),
        });
        self
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{} field(s) failed validation", errors.len()),
            format!("{} 个字段校验未通过", errors.len()),
        );
        e.body.fields = errors.into_iter().map(ApiFieldError::from).collect();
        e
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
            "记录不存在",
        )
    }

    pub fn bad_param(param: &str, reason: &str, reason_zh: &str) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("invalid query parameter {param}: {reason}"),
            format!("查询参数 {param} 无效：{reason_zh}"),
        )
        .with_field(param, "invalid_parameter", reason, reason_zh)
    }

    /// An internal failure: logged with its cause, answered without it.
    pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, context, "InternalError");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the hub could not store or read the data; nothing was acknowledged, retry later",
            "数据暂时无法保存或读取，本次请求未被受理，请稍后重试",
        )
    }
}

/// The stable code of an error answer, kept on the response for middleware (auditing).
#[derive(Debug, Clone)]
pub struct ErrorCode(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("xfhub_http_errors_total", "code" => self.body.code.clone()).increment(1);
        let code = ErrorCode(self.body.code.clone());
        let mut resp = (self.status, Json(self.body)).into_response();
        resp.extensions_mut().insert(code);
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body.code)
    }
}
