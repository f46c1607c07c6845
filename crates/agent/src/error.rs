//! The one error type of the client.
//!
//! Every operation returns [`Error`], whose variants separate what the agent
//! said (an ERROR frame), what the transport did (I/O), what the agent should
//! never have sent (protocol violation), the caller's deadline and a refused
//! token — so that callers can map each to their own response (an HTTP
//! status, a retry, a log line) without parsing strings.
//!
//! What the agent said is an [`AgentFailure`]: the machine-readable
//! [`ErrorCode`] of the ERROR_CODE frame that preceded the ERROR frame
//! (protocol version 2, `docs/protocol.md`) and the ERROR frame's text,
//! kept verbatim. A v1 agent sends no code: the failure's code is then
//! [`ErrorCode::Other`]; the text is never parsed to guess one. The one
//! exception is v1's fixed token refusal, [`AUTH_REQUIRED`], which
//! PROTOCOL.md defines word for word.

use std::fmt;
use std::io;
use std::time::Duration;

pub use bhatti_proto::ErrorCode;
use bhatti_proto::FrameError;
use bhatti_proto::messages::MessageError;

/// The text lohar sends in an ERROR frame when the token is missing or wrong.
pub const AUTH_REQUIRED: &str = "auth required";

/// An ERROR the agent sent: its code and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFailure {
    pub code: ErrorCode,
    pub message: String,
}

impl AgentFailure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The failure an ERROR frame describes; `code` is the one its
    /// ERROR_CODE frame named (`None` from a v1 agent).
    /// A message longer than [`bhatti_proto::text::MESSAGE_MAX`] characters
    /// is cut: callers pass it on (to a user, a log) whole.
    pub(crate) fn from_frame(code: Option<ErrorCode>, message: String) -> Self {
        let message = if message.len() > bhatti_proto::text::MESSAGE_MAX {
            bhatti_proto::text::cap(&message)
        } else {
            message
        };
        let code = match code {
            Some(c) => c,
            // v1's fixed wording for a refused token (PROTOCOL.md).
            None if message == AUTH_REQUIRED => ErrorCode::AuthRequired,
            None => ErrorCode::Other,
        };
        Self { code, message }
    }

    /// The machine-readable code ([`ErrorCode::Other`] from a v1 agent).
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The agent's text, verbatim.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for AgentFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentFailure {}

/// What went wrong talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent answered with an ERROR frame (or an error status).
    #[error("agent: {0}")]
    Agent(AgentFailure),
    /// The agent refused the connection's token (`auth required`).
    #[error("agent refused the token: {0}")]
    AuthRefused(String),
    /// Connecting, reading or writing failed.
    #[error("transport: {0}")]
    Transport(#[source] io::Error),
    /// The agent sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The agent closed the connection before the operation finished.
    #[error("agent closed the connection during {0}")]
    Closed(&'static str),
    /// The caller's deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The caller passed something that cannot be sent (e.g. a size above
    /// `i64::MAX`, a port the connector does not know).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// Classifies what the agent said: a refused token is
    /// [`Error::AuthRefused`], anything else [`Error::Agent`].
    pub fn from_failure(f: AgentFailure) -> Self {
        if f.code == ErrorCode::AuthRequired {
            Self::AuthRefused(f.message)
        } else {
            Self::Agent(f)
        }
    }

    /// Classifies an ERROR frame's text and the code that preceded it.
    pub(crate) fn from_agent(code: Option<ErrorCode>, text: String) -> Self {
        Self::from_failure(AgentFailure::from_frame(code, text))
    }

    /// The agent's message, when this is an agent error.
    pub fn agent_message(&self) -> Option<&str> {
        match self {
            Self::Agent(f) => Some(&f.message),
            Self::AuthRefused(m) => Some(m),
            _ => None,
        }
    }

    /// The agent's error code, when this is an agent error.
    pub fn agent_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Agent(f) => Some(f.code),
            Self::AuthRefused(_) => Some(ErrorCode::AuthRequired),
            _ => None,
        }
    }

    /// Converts an I/O error coming out of a body reader back into the
    /// client error it carries (see [`crate::files::FileReader`]).
    pub(crate) fn from_io(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(inner) = e.into_inner()
                && let Ok(err) = inner.downcast::<Error>()
            {
                return *err;
            }
            // into_inner was checked to be Some and of type Error above.
            return Self::Protocol("lost error context".into());
        }
        Self::Transport(e)
    }

    /// Wraps this error into an `io::Error` for `AsyncRead` implementations.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            Self::Transport(e) => e,
            other => io::Error::other(other),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Transport(e)
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => Self::Transport(e),
            other => Self::Protocol(other.to_string()),
        }
    }
}

impl From<MessageError> for Error {
    fn from(e: MessageError) -> Self {
        match e {
            MessageError::Frame(f) => f.into(),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// Logs `e` when it is a reply the agent should never have sent (a
/// protocol violation), naming the peer and the operation, and returns it
/// unchanged. Every path that turns agent bytes into an error goes through
/// here, so a hostile or broken agent always leaves a log line.
pub(crate) fn note(peer: &str, during: &str, e: Error) -> Error {
    if let Error::Protocol(msg) = &e {
        tracing::warn!(peer, during, "agent reply rejected: {msg}");
    }
    e
}

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;
