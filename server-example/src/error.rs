//! The one error type of the HTTP API, and its JSON shape.
//!
//! Every refusal leaves the server as `{"error": {"code": "snake_case", "message": "human text"}}`
//! with the status `PROTOCOL.md` assigns to the code. WebSocket `error` frames carry the same
//! [`ErrorBody`]. Internal failures are logged with their detail and answered with a generic
//! `internal` error, so nothing about the server's insides leaks to clients.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401 `unauthorized`: no token, a malformed, unknown or revoked token, or a wrong code.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: authenticated, but not allowed (not a member, not an admin, bad Origin).
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 400 `invalid_request`: malformed JSON, wrong field types, values out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// 413 `payload_too_large`: a body, a message's content or a frame over its limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 409 `group_full`: the group would exceed its member cap.
    #[error("a group holds at most {members_max} members")]
    GroupFull {
        /// The cap.
        members_max: u32,
    },
    /// 429 `rate_limited`: too many requests, frames or wrong codes.
    #[error("{message}")]
    RateLimited {
        /// What was limited.
        message: String,
        /// When trying again may succeed (sent as `Retry-After`, rounded up to seconds).
        retry_after: Option<Duration>,
    },
    /// 409 `conflict`: the request contradicts the current state.
    #[error("{0}")]
    Conflict(String),
    /// 405 `method_not_allowed`: the path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 501 `not_implemented`: a part of the protocol this build does not serve yet.
    #[error("{0}")]
    NotImplemented(String),
    /// 503 `unavailable`: the server is at its connection limit or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// 500 `internal`: a failure inside the server; the detail is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The `code` on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::InvalidRequest(_) => "invalid_request",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::GroupFull { .. } => "group_full",
            Self::RateLimited { .. } => "rate_limited",
            Self::Conflict(_) => "conflict",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::NotImplemented(_) => "not_implemented",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::GroupFull { .. } | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `{"code", "message"}` pair, as sent in responses and in WebSocket `error` frames.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
        }
    }

    /// A 500 for `detail`, which is logged here and not sent to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let detail = detail.to_string();
        tracing::error!(%detail, "internal error");
        Self::Internal(detail)
    }

    /// A 413 for `what` over `bytes_max`.
    pub fn too_large(what: &str, bytes_max: u64) -> Self {
        Self::PayloadTooLarge(format!("{what} is larger than {bytes_max} bytes"))
    }

    /// A 429 with an optional retry delay.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::RateLimited {
            message: message.into(),
            retry_after,
        }
    }
}

/// The inner object of an error response and the `data` of an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// Machine-readable, snake_case.
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: &'a ErrorBody,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response =
            (self.status(), axum::Json(ErrorEnvelope { error: &body })).into_response();
        if let Self::RateLimited {
            retry_after: Some(after),
            ..
        } = &self
        {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<crate::accounts::StoreError> for ApiError {
    fn from(error: crate::accounts::StoreError) -> Self {
        Self::internal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_follow_the_protocol() {
        let cases = [
            (ApiError::Unauthorized("x".into()), "unauthorized", 401),
            (ApiError::Forbidden("x".into()), "forbidden", 403),
            (ApiError::NotFound("x".into()), "not_found", 404),
            (ApiError::InvalidRequest("x".into()), "invalid_request", 400),
            (ApiError::too_large("content", 1), "payload_too_large", 413),
            (ApiError::GroupFull { members_max: 256 }, "group_full", 409),
            (ApiError::rate_limited("x", None), "rate_limited", 429),
            (ApiError::Conflict("x".into()), "conflict", 409),
        ];
        for (error, code, status) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(error.status().as_u16(), status);
        }
    }
}
