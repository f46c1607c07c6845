//! Machine-readable error codes: the ERROR_CODE frame (protocol version 2,
//! an extension of v1; see `docs/protocol.md`).
//!
//! v1's ERROR frame carries only a UTF-8 message, and that payload stays
//! exactly as it was. An agent that speaks version 2 sends one ERROR_CODE
//! frame (`{"code":"not_found"}`) immediately before each ERROR frame, both
//! in one write ([`encode_error`]). A v1 host skips the unknown frame type
//! and reads the ERROR frame as before; a version 2 host attaches the code
//! to the ERROR that follows; against a v1 agent (no ERROR_CODE) the host
//! sees [`ErrorCode::Other`].
//!
//! Codes are a closed set. An unknown code string (a newer agent) decodes
//! as [`ErrorCode::Other`], and so does a payload that is not the expected
//! JSON: a code is a hint for classification, never a reason to fail.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

use crate::frame::{self, FrameError, FrameType};

/// Why the agent refused or failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A path does not exist (ENOENT).
    NotFound,
    /// No session has the requested id (attach, EXEC_KILL).
    SessionNotFound,
    /// A file operation met a directory (EISDIR).
    IsADirectory,
    /// A directory operation met something else (ENOTDIR).
    NotADirectory,
    /// The request itself is malformed or out of range (bad JSON, empty
    /// argv, negative size, invalid mode, empty path).
    InvalidRequest,
    /// EACCES / EPERM.
    PermissionDenied,
    /// EEXIST.
    AlreadyExists,
    /// A read-only file system (EROFS).
    ReadOnly,
    /// No space or quota left (ENOSPC, EDQUOT).
    NoSpace,
    /// More than a limit allows (a write above the agent's write limit,
    /// EFBIG, more data than announced).
    TooLarge,
    /// Too many sessions or connections.
    LimitReached,
    /// The command could not be started.
    StartFailed,
    /// The connection's token is missing or wrong.
    AuthRequired,
    /// The first frame was of a type the port does not serve.
    UnexpectedFrame,
    /// Another I/O error.
    Io,
    /// A code this side does not know, or no code at all (a v1 agent).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 16] = [
        Self::NotFound,
        Self::SessionNotFound,
        Self::IsADirectory,
        Self::NotADirectory,
        Self::InvalidRequest,
        Self::PermissionDenied,
        Self::AlreadyExists,
        Self::ReadOnly,
        Self::NoSpace,
        Self::TooLarge,
        Self::LimitReached,
        Self::StartFailed,
        Self::AuthRequired,
        Self::UnexpectedFrame,
        Self::Io,
        Self::Other,
    ];

    /// The wire name, e.g. `not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::SessionNotFound => "session_not_found",
            Self::IsADirectory => "is_a_directory",
            Self::NotADirectory => "not_a_directory",
            Self::InvalidRequest => "invalid_request",
            Self::PermissionDenied => "permission_denied",
            Self::AlreadyExists => "already_exists",
            Self::ReadOnly => "read_only",
            Self::NoSpace => "no_space",
            Self::TooLarge => "too_large",
            Self::LimitReached => "limit_reached",
            Self::StartFailed => "start_failed",
            Self::AuthRequired => "auth_required",
            Self::UnexpectedFrame => "unexpected_frame",
            Self::Io => "io",
            Self::Other => "other",
        }
    }

    /// The code of an OS error, from its errno (as `std` classifies it).
    pub fn from_io(e: &io::Error) -> Self {
        use io::ErrorKind as K;
        match e.kind() {
            K::NotFound => Self::NotFound,
            K::IsADirectory => Self::IsADirectory,
            K::NotADirectory => Self::NotADirectory,
            K::PermissionDenied => Self::PermissionDenied,
            K::AlreadyExists => Self::AlreadyExists,
            K::ReadOnlyFilesystem => Self::ReadOnly,
            K::StorageFull | K::QuotaExceeded => Self::NoSpace,
            K::FileTooLarge => Self::TooLarge,
            K::InvalidInput | K::InvalidFilename => Self::InvalidRequest,
            _ => Self::Io,
        }
    }

    /// The code an ERROR_CODE payload names; [`ErrorCode::Other`] for an
    /// unknown code or a payload that is not `{"code": "..."}`.
    pub fn from_payload(payload: &[u8]) -> Self {
        serde_json::from_slice::<ErrorCodeInfo>(payload)
            .map(|i| i.code)
            .unwrap_or(Self::Other)
    }

    /// The ERROR_CODE payload for this code.
    pub fn payload(self) -> Vec<u8> {
        format!(r#"{{"code":"{}"}}"#, self.as_str()).into_bytes()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ERROR_CODE payload: `{"code": "not_found"}`. Fields added later are
/// optional and ignored by older readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCodeInfo {
    pub code: ErrorCode,
}

/// Encodes an ERROR_CODE frame followed by an ERROR frame carrying `msg`
/// (UTF-8, unchanged from v1) into one buffer, to be sent with one write
/// so that nothing can come between them. A message longer than
/// [`crate::text::MESSAGE_MAX`] characters is cut (it can only be that
/// long by quoting input whole, which it must not).
pub fn encode_error(code: ErrorCode, msg: &str) -> Result<Vec<u8>, FrameError> {
    let msg = crate::text::cap(msg);
    let code = code.payload();
    let mut buf = Vec::with_capacity(2 * frame::HEADER_LEN + code.len() + msg.len());
    frame::encode_into(&mut buf, FrameType::ERROR_CODE, &code)?;
    frame::encode_into(&mut buf, FrameType::ERROR, msg.as_bytes())?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_is_the_serde_name() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("json");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(ErrorCode::from_payload(&code.payload()), code);
        }
    }
}
