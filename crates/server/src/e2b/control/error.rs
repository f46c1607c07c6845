//! The control plane's errors, answered in E2B's shape:
//! `{"code": <HTTP status>, "message": "..."}` (the SDK reads `message`;
//! 401, 429 and 503 become its `AuthenticationException`,
//! `RateLimitException` and `ServiceBusyException`, anything else a
//! `SandboxException` carrying the status).

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bhatti_store::StoreError;
use serde::Serialize;

use crate::error::ApiError;
use crate::service::ServiceError;

/// Why a control-plane request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("missing or invalid API key (X-API-Key: a bhatti API key)")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("sandbox {0} not found")]
    NoSandbox(String),
    #[error(
        "template {0} not found: not one of your templates or images, nor a built-in tier \
         (busybox, minimal, interpreter, dev), nor \"base\" or \"code-interpreter-v1\" \
         (when its tier is built)"
    )]
    NoTemplate(String),
    /// The template's server did not start listening in time (the
    /// sandbox was destroyed).
    #[error("{0}")]
    NotReady(String),
    #[error("sandbox {0} is already paused")]
    AlreadyPaused(String),
    #[error("sandbox {0} is already running")]
    AlreadyRunning(String),
    #[error("sandbox {0} is paused; connect or resume it first")]
    Paused(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// What the service layer (or a layer below) refused, with the status
    /// the native API gives it.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// E2B's error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: u16,
    pub message: String,
}

impl ControlError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::BadRequest(_) => 400,
            Self::NoSandbox(_) | Self::NoTemplate(_) | Self::NoRoute(_) => 404,
            Self::AlreadyPaused(_) | Self::AlreadyRunning(_) | Self::Paused(_) => 409,
            Self::RateLimited { .. } => 429,
            Self::MethodNotAllowed => 405,
            Self::NotReady(_) => 500,
            Self::Api(e) => e.status(),
        }
    }

    /// The body, its message cut as the native API cuts it.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            Self::Api(e) => e.body().error,
            other => crate::error::shorten(&other.to_string()),
        };
        ErrorBody {
            code: self.status(),
            message,
        }
    }
}

impl From<ServiceError> for ControlError {
    fn from(e: ServiceError) -> Self {
        Self::Api(e.into())
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl From<crate::service::Invalid> for ControlError {
    fn from(e: crate::service::Invalid) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = self.body();
        if status.is_server_error() {
            tracing::warn!(error = %body.message, "e2b request failed");
        }
        let mut resp = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after, .. } = self {
            let secs = retry_after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// Result of control-plane handlers.
pub type ControlResult<T> = Result<T, ControlError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_the_status_as_code() {
        let e = ControlError::NoSandbox("sb-1".into());
        let v = serde_json::to_value(e.body()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"code": 404, "message": "sandbox sb-1 not found"})
        );
        let api = ControlError::from(StoreError::NotFound("sandbox x".into()));
        assert_eq!((api.status(), api.body().code), (404, 404));
        assert_eq!(ControlError::AlreadyPaused("x".into()).status(), 409);
        assert_eq!(ControlError::Unauthorized.status(), 401);
    }
}
