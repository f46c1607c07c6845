//! The one error type of the client.
//!
//! Every operation returns [`Error`], whose variants separate what the agent
//! said (an ERROR frame), what the transport did (I/O), what the agent should
//! never have sent (protocol violation), the caller's deadline and a refused
//! token — so that callers can map each to their own response (an HTTP
//! status, a retry, a log line) without parsing strings.

use std::io;
use std::time::Duration;

use bhatti_proto::FrameError;
use bhatti_proto::messages::MessageError;

/// The text lohar sends in an ERROR frame when the token is missing or wrong.
pub const AUTH_REQUIRED: &str = "auth required";

/// What went wrong talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent answered with an ERROR frame; the text is kept verbatim.
    #[error("agent: {0}")]
    Agent(String),
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
    /// Classifies the text of an ERROR frame.
    pub(crate) fn from_agent(text: String) -> Self {
        if text == AUTH_REQUIRED {
            Self::AuthRefused(text)
        } else {
            Self::Agent(text)
        }
    }

    /// The agent's message, when this is an agent error.
    pub fn agent_message(&self) -> Option<&str> {
        match self {
            Self::Agent(m) | Self::AuthRefused(m) => Some(m),
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

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;
