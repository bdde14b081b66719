//! Errors in the shape each API's clients read: OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` and Ollama's
//! `{"error": "..."}`, with the status that says what went wrong.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use streamer_reason::ReasonError;

/// Which API's error shape to answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Ollama,
}

/// A request that could not be answered.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    /// OpenAI's `code`, e.g. `context_length_exceeded`.
    pub code: Option<&'static str>,
    pub param: Option<String>,
    /// Seconds for `Retry-After` (busy).
    pub retry_after_s: Option<u32>,
    pub dialect: Dialect,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
            retry_after_s: None,
            dialect: Dialect::OpenAi,
        }
    }

    /// 400: the request is malformed or asks for something unsupported.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the offending field.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.to_string()),
            ..Self::bad_request(message)
        }
    }

    /// 401: no or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing or wrong bearer token (Authorization: Bearer ...); the server's token is in the environment variable its [http] section names",
            )
        }
    }

    /// 404: a model this server does not hold.
    pub fn unknown_model(asked: &str, served: &str) -> Self {
        Self {
            code: Some("model_not_found"),
            param: Some("model".into()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("model `{asked}` is not served here; this server has `{served}` (GET /v1/models)"),
            )
        }
    }

    pub fn in_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }
}

impl From<ReasonError> for ApiError {
    fn from(e: ReasonError) -> Self {
        match e {
            ReasonError::PromptTooLong { .. } => Self {
                code: Some("context_length_exceeded"),
                param: Some("messages".into()),
                ..Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    e.to_string(),
                )
            },
            ReasonError::Busy { .. } => Self {
                retry_after_s: Some(2),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_busy",
                    e.to_string(),
                )
            },
            // The cameras have had the model to themselves for a while:
            // come back later than for a full queue.
            ReasonError::CamerasBusy { .. } => Self {
                retry_after_s: Some(15),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_busy",
                    e.to_string(),
                )
            },
            ReasonError::Closed | ReasonError::WorkerGone => Self {
                retry_after_s: Some(5),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    e.to_string(),
                )
            },
            ReasonError::NoVision | ReasonError::Image(_) | ReasonError::Grammar(_) => {
                Self::bad_request(e.to_string())
            }
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                other.to_string(),
            ),
        }
    }
}

impl ApiError {
    /// The body alone (for an error inside a stream).
    pub fn body(&self) -> serde_json::Value {
        match self.dialect {
            Dialect::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
            Dialect::Ollama => json!({"error": self.message}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, "served request failed: {}", self.message);
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
