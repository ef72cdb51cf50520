//! HTTP errors: a status and a message naming what was wrong, sent as the plain-text body.

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

    /// Consul answers refusals that come from its server side (Raft, validation in the RPC
    /// layer) with 500 and the reason as the body.
    pub fn internal(message: impl Into<String>) -> Self {
        HttpError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
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

/// Consul answers errors in plain text, and clients match on the text's start (for example
/// `Invalid Session TTL`), so the message is the whole body. A 503 (the write queue full,
/// catalogd stopping) says when to try again.
impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            self.message,
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

impl From<WriteError> for HttpError {
    fn from(e: WriteError) -> Self {
        let status = match &e {
            WriteError::Apply(ApplyError::Invalid(_)) => StatusCode::BAD_REQUEST,
            WriteError::Apply(ApplyError::Rpc(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            WriteError::Apply(ApplyError::NotFound(_)) => StatusCode::NOT_FOUND,
            WriteError::Apply(ApplyError::Forbidden(_)) => StatusCode::FORBIDDEN,
            WriteError::Apply(ApplyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            WriteError::Apply(ApplyError::Txn(_)) => StatusCode::CONFLICT,
            WriteError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WriteError::Closed | WriteError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        HttpError {
            status,
            message: e.to_string(),
        }
    }
}

pub type HttpResult = Result<Response, HttpError>;
