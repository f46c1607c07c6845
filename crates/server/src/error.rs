//! The API's error type. [`ApiError::status`] is the one place that maps
//! errors to HTTP status codes; every response body is `{"error": "..."}`.

use bhatti_store::StoreError;
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
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
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
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::TooManyRequests(_) => 429,
            Self::BadGateway(_) => 502,
            Self::Unavailable(_) => 503,
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
