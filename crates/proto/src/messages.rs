//! JSON payloads with the exact field names and omission rules of
//! PROTOCOL.md, and the binary RESIZE / EXIT payloads.
//!
//! Golden-byte tests in `tests/messages.rs` pin every field name: renaming a
//! field here breaks them on purpose.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::frame::{self, Frame, FrameError, FrameType};

/// Why a payload could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The decoder's text is cut ([`crate::text::JSON_ERROR_MAX`]): serde
    /// quotes the offending value, which may be megabytes long.
    #[error("invalid {what} JSON: {}", crate::text::cut(&source.to_string(), crate::text::JSON_ERROR_MAX))]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} payload must be at least {want} bytes, got {got}")]
    Short {
        what: &'static str,
        want: usize,
        got: usize,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Default rows of a new TTY when the request has none.
pub const DEFAULT_ROWS: u16 = 24;
/// Default columns of a new TTY when the request has none.
pub const DEFAULT_COLS: u16 = 80;

/// EXEC_REQ. Optional fields are omitted when absent; `argv` is always sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Present means: attach to this existing session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Absent or 0: a detached session is never idle-killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_sec: Option<i64>,
    /// Extension (`docs/protocol.md`, "user"): run the new command or
    /// session as this guest user, a name from the guest's `/etc/passwd`
    /// or a numeric uid. Absent: the sandbox's `exec_user`, else root.
    /// Ignored on attach. A v1 agent ignores the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Extension (`docs/protocol.md`, version 5): keep the piped exec
    /// reconnectable (KEPT_INFO first, output kept in a ring for
    /// KEPT_ATTACH). Ignored for TTY sessions and on attach. A v1 agent
    /// ignores the field; send it only to an agent listing `keep`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep: bool,
    /// Extension (version 5): the host's label of a kept exec, echoed in
    /// KeptInfo (at most [`crate::kept::MAX_TAG`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Extension (`docs/protocol.md`, version 7): send EXIT without
    /// waiting for the `sync()` that follows a piped exec (kept or not);
    /// the agent starts that sync within 20 ms. The host asks for a finished
    /// sync with SYNC_REQ when it needs one (before it pauses or
    /// snapshots the VM). A v1 agent ignores the field and syncs first;
    /// send it only to an agent listing `sync`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub defer_sync: bool,
    /// Extension (version 7): the command's stdin is closed from the
    /// start (it reads end of file), as if an empty STDIN frame had
    /// followed the request, without that frame. Piped execs without
    /// `keep`. Send it only to an agent listing `stdin_closed`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin_closed: bool,
    /// Extension (version 7): the command's stdin is `/dev/null` (as
    /// `</dev/null` in a shell), not a pipe. Piped execs, kept or not.
    /// Send it only to an agent listing `stdin_null`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin_null: bool,
}

impl ExecRequest {
    /// A piped exec of `argv`.
    pub fn command<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Rows with the protocol default applied.
    pub fn rows_or_default(&self) -> u16 {
        self.rows.filter(|r| *r > 0).unwrap_or(DEFAULT_ROWS)
    }

    /// Columns with the protocol default applied.
    pub fn cols_or_default(&self) -> u16 {
        self.cols.filter(|c| *c > 0).unwrap_or(DEFAULT_COLS)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// SESSION_INFO and the elements of EXEC_LIST_RESP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session_id: String,
    /// The session's argv joined with spaces.
    pub argv: String,
    pub tty: bool,
    pub running: bool,
    /// Omitted while the session runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub attached: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// EXEC_KILL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecKillRequest {
    pub session_id: String,
}

/// ACTIVITY_RESP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityInfo {
    /// Unix seconds; 0 when nothing happened yet.
    pub last_activity_unix: i64,
    /// Sessions still running.
    pub active_sessions: u32,
    pub attached_sessions: u32,
}

/// FILE_STAT_RESP and the elements of FILE_LS_RESP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Base name.
    pub name: String,
    pub size: i64,
    /// Four-digit octal permission string, e.g. `"0644"`.
    pub mode: String,
    pub is_dir: bool,
    /// Unix seconds.
    pub mtime: i64,
}

/// FILE_READ_REQ. Any of `offset` (1-based line), `limit` (lines) and
/// `max_bytes` above zero makes the read line-based.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReadRequest {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<i64>,
}

/// FILE_READ_RESP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReadResponse {
    /// Total size of the file, whatever part of it is sent.
    pub size: i64,
    pub mode: String,
}

/// FILE_WRITE_REQ; `size` bytes of STDIN frames follow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWriteRequest {
    pub path: String,
    pub mode: String,
    pub size: i64,
    /// Extension (`docs/protocol.md`, "user"): the written file (and the
    /// directories the write creates) belong to this guest user, a name
    /// or a numeric uid, also when the file existed. Absent: new files
    /// belong to the sandbox's `exec_user`, else the sandbox user; a
    /// replaced file keeps its owner. A v1 agent ignores the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// FILE_WRITE_RESP, FWD_RESP: `{"status":"ok"}` or
/// `{"status":"error","message":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StatusResponse {
    pub fn ok() -> Self {
        Self {
            status: "ok".into(),
            message: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            status: "error".into(),
            message: Some(message.into()),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// FILE_STAT_REQ and FILE_LS_REQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRequest {
    pub path: String,
}

/// FWD_REQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardRequest {
    pub port: u16,
}

/// Formats permission bits as PROTOCOL.md's four-digit octal string.
pub fn mode_string(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// Parses a permission string such as `"0644"` or `"755"`; `None` when it is
/// not octal or has bits beyond `0o7777`.
pub fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// RESIZE payload: rows then columns, big-endian u16 each.
pub fn encode_resize(rows: u16, cols: u16) -> [u8; 4] {
    let [r0, r1] = rows.to_be_bytes();
    let [c0, c1] = cols.to_be_bytes();
    [r0, r1, c0, c1]
}

/// Parses a RESIZE payload (4 or more bytes; extra bytes ignored).
pub fn parse_resize(payload: &[u8]) -> Result<(u16, u16), MessageError> {
    let b = payload.first_chunk::<4>().ok_or(MessageError::Short {
        what: "RESIZE",
        want: 4,
        got: payload.len(),
    })?;
    Ok((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

/// EXIT payload: i32 big-endian, two's complement.
pub fn encode_exit(code: i32) -> [u8; 4] {
    code.to_be_bytes()
}

/// Parses an EXIT payload (4 or more bytes; extra bytes ignored).
pub fn parse_exit(payload: &[u8]) -> Result<i32, MessageError> {
    let b = payload.first_chunk::<4>().ok_or(MessageError::Short {
        what: "EXIT",
        want: 4,
        got: payload.len(),
    })?;
    Ok(i32::from_be_bytes(*b))
}

/// Encodes `msg` as JSON and wraps it in a frame of type `kind`.
pub fn json_frame<T: Serialize>(kind: FrameType, msg: &T) -> Result<Frame, MessageError> {
    let payload = serde_json::to_vec(msg).map_err(|source| MessageError::Json {
        what: "outgoing",
        source,
    })?;
    if payload.len() > frame::MAX_PAYLOAD_LEN {
        return Err(FrameError::PayloadTooLarge(payload.len()).into());
    }
    Ok(Frame::new(kind, payload))
}

/// Decodes a JSON payload; `what` names the message in the error.
pub fn decode_json<T: DeserializeOwned>(
    what: &'static str,
    payload: &[u8],
) -> Result<T, MessageError> {
    serde_json::from_slice(payload).map_err(|source| MessageError::Json { what, source })
}
