//! HTTP errors: a status and a message naming what was wrong, sent as `{"message": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::state::ApplyError;
use crate::writer::WriteError;

/// A refused request.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        HttpError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        HttpError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<WriteError> for HttpError {
    fn from(e: WriteError) -> Self {
        let status = match &e {
            WriteError::Apply(ApplyError::Invalid(_)) => StatusCode::BAD_REQUEST,
            WriteError::Apply(ApplyError::NotFound(_)) => StatusCode::NOT_FOUND,
            WriteError::Apply(ApplyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            WriteError::Apply(ApplyError::Txn(_)) => StatusCode::CONFLICT,
            WriteError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WriteError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        };
        HttpError {
            status,
            message: e.to_string(),
        }
    }
}

pub type HttpResult = Result<Response, HttpError>;
