//! API errors with Marathon's bodies: `{"message": ...}`, 422 with `details`, 409 with the
//! deployments in the way, 403 for what the caller's role does not allow.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_marathon::ValidationError;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    BadRequest(String),
    Invalid(ValidationError),
    /// Locked by running deployments (their ids).
    Locked(Vec<String>),
    Conflict(String),
    /// The caller is known but may not do this (403).
    Forbidden(String),
    /// What Marathon answers with a 500 (its unmapped exceptions), with its message.
    Internal(String),
    /// This replica cannot take the request now (it stopped leading): 503 with
    /// `Retry-After: 1`, so that clients ask again and reach the leader.
    Unavailable(String),
}

impl ApiError {
    pub fn app_not_found(id: &str) -> ApiError {
        ApiError::NotFound(format!("App '{id}' does not exist"))
    }
}

impl From<crate::service_ports::ServicePortError> for ApiError {
    fn from(e: crate::service_ports::ServicePortError) -> Self {
        use crate::service_ports::ServicePortError;
        match e {
            ServicePortError::Conflict(_) => ApiError::Conflict(e.to_string()),
            // Marathon's PortRangeExhaustedException has no mapping of its own: a 500.
            ServicePortError::Exhausted => ApiError::Internal(e.to_string()),
        }
    }
}

/// An app change the scheduler refused, with Marathon's status and text.
impl From<crate::scheduler::AppError> for ApiError {
    fn from(e: crate::scheduler::AppError) -> Self {
        use crate::scheduler::AppError;
        match e {
            AppError::Locked { deployments } => ApiError::Locked(deployments),
            AppError::Exists(_) => ApiError::Conflict(e.to_string()),
            AppError::NotFound(id) => ApiError::app_not_found(&id),
            AppError::ServicePorts(e) => e.into(),
        }
    }
}

/// The state could not be changed (a record that cannot be encoded, a store read failing):
/// Marathon answers its unmapped exceptions with a 500.
impl From<crate::core::CoreError> for ApiError {
    fn from(e: crate::core::CoreError) -> Self {
        match e {
            crate::core::CoreError::Deposed | crate::core::CoreError::Interrupted => {
                ApiError::Unavailable(e.to_string())
            }
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

/// A query parameter that does not parse is the client's mistake.
impl From<cairn_http::ParamError> for ApiError {
    fn from(e: cairn_http::ParamError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Invalid(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, json!({ "message": m })),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({ "message": m })),
            ApiError::Invalid(e @ ValidationError::Syntax(_)) => {
                (StatusCode::BAD_REQUEST, e.body())
            }
            ApiError::Invalid(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.body()),
            ApiError::Locked(ids) => (
                StatusCode::CONFLICT,
                json!({
                    "message": format!(
                        "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{}'.",
                        ids.first().map(String::as_str).unwrap_or_default()
                    ),
                    "deployments": ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
                }),
            ),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, json!({ "message": m })),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, json!({ "message": m })),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, json!({ "message": m })),
            ApiError::Unavailable(m) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "1")],
                    Json(json!({ "message": m })),
                )
                    .into_response();
            }
        };
        (status, Json(body)).into_response()
    }
}
