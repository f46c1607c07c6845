//! The API's error type. [`ApiError::status`] is the one place that maps
//! errors to HTTP status codes; every response body is `{"error": "..."}`.
//! A message never echoes a client's input whole: [`ApiError::body`] cuts
//! every word (a name, a path, a serde excerpt) to an
//! [`excerpt`](crate::service::validate::excerpt) and the whole message to
//! [`MAX_MESSAGE_CHARS`], whatever layer wrote it.
//! Errors of the layers below (store, engine, guest agent) are classified
//! here too, so that handlers only write `?`.

use bhatti_agent::{AgentFailure, ErrorCode};
use bhatti_engine::engine::EngineError;
use bhatti_engine::network::{NetworkError, PoolError};
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
    /// The guest refused: a permission or a read-only file system.
    #[error("{0}")]
    Forbidden(String),
    /// The guest's disk is full.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but cannot be carried out (a snapshot that cannot be
    /// restored).
    #[error("{0}")]
    Unprocessable(String),
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

/// Longest message an error body carries, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// `msg` with each whitespace-separated word cut to an excerpt and the
/// whole cut to [`MAX_MESSAGE_CHARS`] (`…` marks each cut).
pub fn shorten(msg: &str) -> String {
    use crate::service::validate::EXCERPT_CHARS;
    let mut out = String::with_capacity(msg.len().min(4 * MAX_MESSAGE_CHARS));
    let (mut word, mut kept) = (0usize, 0usize);
    for c in msg.chars() {
        word = if c.is_whitespace() { 0 } else { word + 1 };
        if word > EXCERPT_CHARS {
            if word == EXCERPT_CHARS + 1 {
                out.push('…');
            }
            continue;
        }
        if kept == MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
        kept += 1;
    }
    out
}

/// The kind of error a response carries ([`ApiError::kind`]), as a
/// response extension for the metrics middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind(pub &'static str);

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
            Self::Forbidden(_) => 403,
            Self::MethodNotAllowed => 405,
            Self::InsufficientStorage(_) => 507,
            Self::LengthRequired => 411,
            Self::Conflict(_) => 409,
            Self::Unprocessable(_) => 422,
            Self::PayloadTooLarge(_) => 413,
            Self::TooManyRequests(_) => 429,
            Self::BadGateway(_) => 502,
            Self::Unavailable(_) => 503,
            Self::GatewayTimeout(_) => 504,
            Self::Internal(_) => 500,
        }
    }

    /// The error's kind, as `bhatti_errors_total` labels it
    /// ([`crate::metrics`]): the variant's name in snake case.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) | Self::Missing(_) => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::LengthRequired => "length_required",
            Self::Conflict(_) => "conflict",
            Self::Unprocessable(_) => "unprocessable",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::TooManyRequests(_) => "too_many_requests",
            Self::BadGateway(_) => "bad_gateway",
            Self::Unavailable(_) => "unavailable",
            Self::GatewayTimeout(_) => "gateway_timeout",
            Self::Internal(_) => "internal",
        }
    }

    /// The response body, its message [`shorten`]ed.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: shorten(&self.to_string()),
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
        let body = self.body();
        if status.is_server_error() {
            tracing::warn!(error = %body.error, "request failed");
        }
        let mut resp = (status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(ErrorKind(self.kind()));
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
            EngineError::NoSnapshot(_)
            | EngineError::SnapshotExists(_)
            | EngineError::Unsupported(_)
            | EngineError::Interrupted(_) => Self::Conflict(e.to_string()),
            EngineError::SnapshotNotFound(id) => Self::NotFound(format!("snapshot {id}")),
            EngineError::SnapshotBroken { .. } => Self::Unprocessable(e.to_string()),
            EngineError::ImageInUse { .. } => Self::Conflict(e.to_string()),
            EngineError::Image(bhatti_engine::image::ImageError::NotStored(_)) => {
                Self::Missing(e.to_string())
            }
            EngineError::Agent(a) => Self::from(a),
            EngineError::NotReady(_) => Self::Unavailable(e.to_string()),
            EngineError::Network(NetworkError::Pool(PoolError::Exhausted(_))) => {
                Self::Unavailable(e.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AgentError> for ApiError {
    /// What the guest said, by its code (`from_agent_failure`); a guest
    /// that cannot be reached or answers nonsense is 502; a deadline is 504.
    fn from(e: AgentError) -> Self {
        match &e {
            AgentError::Agent(f) => from_agent_failure(f),
            AgentError::InvalidRequest(msg) => Self::BadRequest(msg.clone()),
            AgentError::Timeout(_) => Self::GatewayTimeout(e.to_string()),
            AgentError::AuthRefused(_)
            | AgentError::Transport(_)
            | AgentError::Protocol(_)
            | AgentError::Closed(_) => Self::BadGateway(format!("sandbox agent: {e}")),
        }
    }
}

impl From<crate::service::Invalid> for ApiError {
    fn from(e: crate::service::Invalid) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<crate::service::ServiceError> for ApiError {
    /// The service layer's errors: a broken input rule is 400, a quota
    /// 429, a missing secret 404, a lost sandbox 409; store and
    /// engine errors map as they do everywhere.
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        match e {
            S::Invalid(_) => Self::BadRequest(e.to_string()),
            S::Quota { .. } | S::Storage { .. } => Self::TooManyRequests(e.to_string()),
            S::NoSecret(name) => Self::NotFound(format!("secret {name}")),
            S::Unavailable { .. } => Self::Conflict(e.to_string()),
            S::Store(s) => s.into(),
            S::Engine(en) => en.into(),
            S::Secret(s) => s.into(),
            S::Corrupt { .. } | S::Random(_) => Self::Internal(e.to_string()),
        }
    }
}

/// The status of an error the agent reported, chosen from its code alone
/// (the text is passed on, never parsed): a missing path or session is
/// 404; a refused permission or a read-only file system 403; a full disk
/// 507; a write over the agent's limit 413; too many sessions 429; the
/// agent failing on its own side (I/O), refusing our token or our frame
/// 502; anything else the agent refused — including every error of a v1
/// agent, which sends no code — is the request's fault (400).
fn from_agent_failure(f: &AgentFailure) -> ApiError {
    let msg = f.message.clone();
    match f.code {
        ErrorCode::NotFound | ErrorCode::SessionNotFound => ApiError::Missing(msg),
        ErrorCode::TooLarge => ApiError::PayloadTooLarge(msg),
        ErrorCode::LimitReached => ApiError::TooManyRequests(msg),
        ErrorCode::Io | ErrorCode::AuthRequired | ErrorCode::UnexpectedFrame => {
            ApiError::BadGateway(format!("sandbox agent: {msg}"))
        }
        ErrorCode::PermissionDenied | ErrorCode::ReadOnly => ApiError::Forbidden(msg),
        ErrorCode::NoSpace => ApiError::InsufficientStorage(msg),
        ErrorCode::InvalidRequest
        | ErrorCode::IsADirectory
        | ErrorCode::NotADirectory
        | ErrorCode::AlreadyExists
        | ErrorCode::StartFailed
        | ErrorCode::Other => ApiError::BadRequest(msg),
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

    /// The status of an agent error with `code`, as the engine passes it on.
    fn agent_status(code: ErrorCode, msg: &str) -> (u16, String) {
        let e = AgentError::Agent(AgentFailure::new(code, msg));
        let api = ApiError::from(EngineError::Agent(e));
        (api.status(), api.to_string())
    }

    #[test]
    fn agent_codes_choose_the_status() {
        let table = [
            (ErrorCode::NotFound, 404),
            (ErrorCode::SessionNotFound, 404),
            (ErrorCode::IsADirectory, 400),
            (ErrorCode::NotADirectory, 400),
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::PermissionDenied, 403),
            (ErrorCode::AlreadyExists, 400),
            (ErrorCode::ReadOnly, 403),
            (ErrorCode::NoSpace, 507),
            (ErrorCode::TooLarge, 413),
            (ErrorCode::LimitReached, 429),
            (ErrorCode::StartFailed, 400),
            (ErrorCode::AuthRequired, 502),
            (ErrorCode::UnexpectedFrame, 502),
            (ErrorCode::Io, 502),
            (ErrorCode::Other, 400),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (code, status) in table {
            assert_eq!(agent_status(code, "m").0, status, "{code}");
        }
    }

    #[test]
    fn the_agent_text_is_passed_on_and_never_parsed() {
        // What lohar sends for the cases the API tests rely on.
        let cases = [
            (
                ErrorCode::NotFound,
                "open /tmp/d/missing: no such file or directory",
                404,
            ),
            (
                ErrorCode::NotFound,
                "stat /nope: no such file or directory",
                404,
            ),
            (
                ErrorCode::NotADirectory,
                "ls /etc/hostname: not a directory",
                400,
            ),
            (ErrorCode::IsADirectory, "read /tmp/d: is a directory", 400),
            (ErrorCode::SessionNotFound, "session not found", 404),
            (
                ErrorCode::StartFailed,
                "start: no such file or directory",
                400,
            ),
        ];
        for (code, msg, status) in cases {
            assert_eq!(agent_status(code, msg), (status, msg.to_owned()));
        }
        // A v1 agent sends no code: its wording is not guessed from.
        assert_eq!(
            agent_status(ErrorCode::Other, "stat /x: no such file or directory").0,
            400
        );
        assert_eq!(agent_status(ErrorCode::Other, "session not found").0, 400);
    }

    #[test]
    fn agent_transport_errors_are_502_and_deadlines_504() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for e in [
            AgentError::Transport(io),
            AgentError::Protocol("unexpected EXIT frame".into()),
            AgentError::Closed("stat"),
            AgentError::AuthRefused("auth required".into()),
        ] {
            let api = ApiError::from(e);
            assert_eq!(api.status(), 502, "{api}");
            assert!(api.to_string().starts_with("sandbox agent: "), "{api}");
        }
        let t = ApiError::from(AgentError::Timeout(std::time::Duration::from_secs(1)));
        assert_eq!(t.status(), 504);
        assert_eq!(
            ApiError::from(AgentError::InvalidRequest("x".into())).status(),
            400
        );
    }

    #[test]
    fn bodies_quote_only_a_prefix_of_long_input() {
        let huge = "a".repeat(1 << 20);
        let nf = ApiError::from(StoreError::NotFound(format!("sandbox {huge}")));
        let body = nf.body().error;
        assert_eq!(body, format!("sandbox {}… not found", "a".repeat(100)));
        let spaced = "ab ".repeat(1 << 18);
        let e = ApiError::BadRequest(format!("bad: {spaced}"));
        assert!(e.body().error.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(e.body().error.ends_with('…'));
        assert_eq!(shorten("short message"), "short message");
    }

    #[test]
    fn an_exhausted_address_pool_is_503_by_its_type() {
        let subnet = std::net::Ipv4Addr::new(10, 99, 0, 0);
        let e = EngineError::Network(NetworkError::Pool(PoolError::Exhausted(subnet)));
        assert_eq!(ApiError::from(e).status(), 503);
        let other = EngineError::Network(NetworkError::Pool(PoolError::InUse(subnet)));
        assert_eq!(ApiError::from(other).status(), 500);
        let cfg = EngineError::Network(NetworkError::Config("exhausted".into()));
        assert_eq!(
            ApiError::from(cfg).status(),
            500,
            "the text does not decide"
        );
    }

    #[test]
    fn image_errors_map_to_statuses() {
        let in_use = EngineError::ImageInUse {
            image: "sha256:ab".into(),
            users: vec!["sb-1".into()],
        };
        let e = ApiError::from(in_use);
        assert_eq!(e.status(), 409);
        assert!(e.body().error.contains("sb-1"), "{}", e.body().error);
        let gone = EngineError::Image(bhatti_engine::image::ImageError::NotStored("x".into()));
        assert_eq!(ApiError::from(gone).status(), 404);
    }

    #[test]
    fn snapshot_errors_map_to_statuses_with_their_message() {
        let id: bhatti_engine::snapshot::SnapshotId = "snap-1".parse().expect("id");
        let status = |e: EngineError| ApiError::from(e).status();
        assert_eq!(status(EngineError::SnapshotNotFound(id.clone())), 404);
        assert_eq!(status(EngineError::SnapshotExists(id.clone())), 409);
        let broken = EngineError::SnapshotBroken {
            id,
            problem: "mem.snap is cut short".into(),
        };
        let e = ApiError::from(broken);
        assert_eq!(e.status(), 422);
        assert!(e.body().error.contains("cut short"), "{}", e.body().error);
        let e = ApiError::from(EngineError::Unsupported("volumes cannot be forked".into()));
        assert_eq!(
            (e.status(), e.body().error.as_str()),
            (409, "volumes cannot be forked")
        );
    }
}
