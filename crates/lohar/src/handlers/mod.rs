//! Request handlers, one module per request type (`fsops` serves the four
//! small file requests of protocol version 4: MKDIR, MOVE, REMOVE, STAT2),
//! all of one shape:
//!
//! ```text
//! pub async fn handle(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error>
//! ```
//!
//! A handler owns its connection until the operation ends. Its module's
//! `Error` enum implements [`Reply`]: errors the client should hear about
//! become an ERROR_CODE frame with the error's [`ErrorCode`] followed by
//! the v1 ERROR frame with its text, in one write (sent by
//! [`crate::server`]); transport errors (the peer is gone) are only logged.
//! Codes come from the errno ([`IoText`]) or the handler's situation, never
//! from the message text.
//!
//! Two entries differ on purpose: `exec::dispatch` routes an EXEC_REQ to
//! `session::attach`, `session::create` or `exec::handle` (PROTOCOL.md's
//! order), and `forward::handle` takes the raw stream, because after its
//! handshake the connection is no longer framed.

pub mod activity;
pub mod caps;
pub mod entry;
pub mod exec;
pub mod file_ls;
pub mod file_read;
pub mod file_stat;
pub mod file_write;
pub mod forward;
pub mod fsops;
pub mod kept;
pub mod ls2;
pub mod remove_tree;
pub mod session;
pub mod session_kill;
pub mod session_list;
pub mod sync;
pub mod watch;

use std::fmt;
use std::io;

pub use bhatti_proto::ErrorCode;
use bhatti_proto::messages::MessageError;

/// How a handler error is reported.
pub trait Reply: fmt::Display {
    /// The machine-readable code sent in the ERROR_CODE frame before the
    /// ERROR frame with this error's text; `None` when there is nobody to
    /// answer (the connection itself failed) and the error is only logged.
    fn code(&self) -> Option<ErrorCode>;
}

/// A request payload that did not decode is the request's fault; a frame
/// that could not be built (too large) is a limit.
impl Reply for MessageError {
    fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            MessageError::Frame(_) => ErrorCode::TooLarge,
            MessageError::Json { .. } | MessageError::Short { .. } => ErrorCode::InvalidRequest,
        })
    }
}

/// The connection failed: nobody to answer.
impl Reply for crate::conn::ConnError {
    fn code(&self) -> Option<ErrorCode> {
        None
    }
}

impl Reply for crate::sessions::SessionError {
    fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Self::TooMany(_) => ErrorCode::LimitReached,
            Self::NotFound => ErrorCode::SessionNotFound,
        })
    }
}

/// The signal of a SIGNAL frame (protocol version 4): a named signal
/// (1–31); anything else, or a payload that is not `{"signal": n}`, is
/// `None` and the frame is ignored (a stream has no way to refuse one
/// frame without ending).
pub fn parse_signal(payload: &[u8]) -> Option<rustix::process::Signal> {
    let req: bhatti_proto::ext::SignalRequest = serde_json::from_slice(payload).ok()?;
    let sig = rustix::process::Signal::from_named_raw(req.signal);
    if sig.is_none() {
        crate::debug!("SIGNAL {}: not a signal, ignored", req.signal);
    }
    sig
}

/// An OS error as the client hears it: the short text of [`io_text`] and
/// the code its errno maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoText {
    pub text: String,
    pub code: ErrorCode,
}

impl IoText {
    pub fn new(e: &io::Error) -> Self {
        Self {
            text: io_text(e),
            code: ErrorCode::from_io(e),
        }
    }

    /// A failure that has no errno (e.g. a task that panicked).
    pub fn other(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            code: ErrorCode::Io,
        }
    }
}

impl From<&io::Error> for IoText {
    fn from(e: &io::Error) -> Self {
        Self::new(e)
    }
}

impl fmt::Display for IoText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An OS error as short lowercase text without the "(os error N)" suffix,
/// e.g. `no such file or directory` (the wording clients match on).
pub fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Why a command did not start, naming its program: `/bin/bash: no such
/// file or directory` (piped execs and TTY sessions alike).
pub fn start_failure(program: &std::path::Path, e: crate::children::ChildError) -> String {
    match e {
        crate::children::ChildError::Spawn(io) => format!(
            "{}: {}",
            bhatti_proto::text::short(&program.to_string_lossy()),
            io_text(&io)
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_text_is_lowercase_without_errno() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_text(&e), "no such file or directory");
        let e = io::Error::from_raw_os_error(libc::EISDIR);
        assert_eq!(io_text(&e), "is a directory");
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_text(&e), "connection refused");
        assert_eq!(io_text(&io::Error::other("Custom")), "custom");
    }

    #[test]
    fn io_text_carries_the_errno_code() {
        let t = IoText::new(&io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            (t.text.as_str(), t.code),
            ("no such file or directory", ErrorCode::NotFound)
        );
        let t = IoText::new(&io::Error::from_raw_os_error(libc::ENOTDIR));
        assert_eq!(t.code, ErrorCode::NotADirectory);
        assert_eq!(t.to_string(), "not a directory");
        assert_eq!(IoText::other("join").code, ErrorCode::Io);
    }
}
