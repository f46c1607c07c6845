//! The API's error type. [`ApiError::status`] is the one place that maps
//! errors to HTTP status codes; every response body is `{"error": "..."}`.
//! Errors of the layers below (store, engine, guest agent) are classified
//! here too, so that handlers only write `?`.

use bhatti_engine::engine::EngineError;
use bhatti_store::StoreError;

/// The guest agent client's error.
pub use bhatti_agent::Error as AgentError;
use serde::Serialize;

/// An error as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0} not found")]
    NotFound(String),
    /// 404 with a message that already says what is missing.
    #[error("{0}")]
    Missing(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("Content-Length is required")]
    LengthRequired,
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized => 401,
            Self::NotFound(_) | Self::Missing(_) => 404,
            Self::MethodNotAllowed => 405,
            Self::LengthRequired => 411,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::TooManyRequests(_) => 429,
            Self::BadGateway(_) => 502,
            Self::Unavailable(_) => 503,
            Self::GatewayTimeout(_) => 504,
            Self::Internal(_) => 500,
        }
    }

    /// The response body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // NotFound's text already names the thing ("sandbox web").
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Conflict(what) => Self::Conflict(format!("{what} already exists")),
            StoreError::InUse(msg) => Self::Conflict(msg),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let mut resp = (status, axum::Json(self.body())).into_response();
        if matches!(self, Self::PayloadTooLarge(_)) {
            // The body was refused unread: the connection cannot carry
            // another request, so say so (a client that pooled it would
            // otherwise send its next request into a closing socket).
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(id) => Self::NotFound(format!("sandbox {id}")),
            EngineError::AlreadyExists(_) | EngineError::VolumeBusy(_) => {
                Self::Conflict(e.to_string())
            }
            EngineError::Spec(s) => Self::BadRequest(s.to_string()),
            EngineError::State(s) => Self::Conflict(s.to_string()),
            EngineError::NoSnapshot(_) => Self::Conflict(e.to_string()),
            EngineError::Agent(a) => Self::from(a),
            EngineError::NotReady(_) => Self::Unavailable(e.to_string()),
            EngineError::Network(ref n) if n.to_string().contains("exhausted") => {
                Self::Unavailable(e.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AgentError> for ApiError {
    /// What the guest said: a missing path or session is 404, anything else
    /// the agent refused is the request's fault (400); a guest that cannot
    /// be reached or answers nonsense is 502; a deadline is 504.
    fn from(e: AgentError) -> Self {
        match &e {
            AgentError::Agent(msg) => {
                let lower = msg.to_ascii_lowercase();
                if lower.contains("no such file") || lower.contains("session not found") {
                    Self::Missing(msg.clone())
                } else {
                    Self::BadRequest(msg.clone())
                }
            }
            AgentError::InvalidRequest(msg) => Self::BadRequest(msg.clone()),
            AgentError::Timeout(_) => Self::GatewayTimeout(e.to_string()),
            AgentError::AuthRefused(_)
            | AgentError::Transport(_)
            | AgentError::Protocol(_)
            | AgentError::Closed(_) => Self::BadGateway(format!("sandbox agent: {e}")),
        }
    }
}

impl From<crate::secrets::SecretError> for ApiError {
    fn from(e: crate::secrets::SecretError) -> Self {
        Self::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses_and_json() {
        let nf = ApiError::from(StoreError::NotFound("sandbox web".into()));
        assert_eq!(nf.status(), 404);
        assert_eq!(
            serde_json::to_string(&nf.body()).expect("json"),
            r#"{"error":"sandbox web not found"}"#
        );
        let c = ApiError::from(StoreError::Conflict("sandbox web".into()));
        assert_eq!(
            (c.status(), c.to_string().as_str()),
            (409, "sandbox web already exists")
        );
        assert_eq!(
            ApiError::from(StoreError::InUse("volume busy".into())).status(),
            409
        );
        let corrupt = StoreError::Corrupt {
            what: "spec",
            detail: "x".into(),
        };
        assert_eq!(ApiError::from(corrupt).status(), 500);
        assert_eq!(ApiError::Unauthorized.status(), 401);
        assert_eq!(ApiError::TooManyRequests("slow down".into()).status(), 429);
    }
}
