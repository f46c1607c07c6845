//! Frames: `[u32 BE length][u8 type][payload]`, where `length` counts the
//! type byte and the payload but not itself.
//!
//! Every rule about the bytes lives here; the sync and async codecs call
//! [`encode`] and [`parse_header`] and never re-implement them.

use std::fmt;

/// Largest allowed value of the length field (type byte + payload).
pub const MAX_FRAME_LEN: u32 = 1_048_576;
/// Largest payload a frame can carry.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN as usize - 1;
/// Bytes before the payload: 4 length bytes and the type byte.
pub const HEADER_LEN: usize = 5;

/// A frame type byte. A newtype rather than an enum so that unknown types
/// survive decoding and can be skipped (forward compatibility).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameType(pub u8);

impl FrameType {
    pub const STDIN: Self = Self(0x01);
    pub const STDOUT: Self = Self(0x02);
    pub const STDERR: Self = Self(0x03);
    pub const RESIZE: Self = Self(0x04);
    pub const EXIT: Self = Self(0x05);
    pub const ERROR: Self = Self(0x06);
    pub const KILL: Self = Self(0x07);
    pub const EXEC_REQ: Self = Self(0x10);
    pub const AUTH: Self = Self(0x11);
    pub const FWD_REQ: Self = Self(0x20);
    pub const FWD_RESP: Self = Self(0x21);
    pub const EXEC_LIST_REQ: Self = Self(0x30);
    pub const EXEC_LIST_RESP: Self = Self(0x31);
    pub const EXEC_KILL: Self = Self(0x32);
    pub const SESSION_INFO: Self = Self(0x33);
    pub const ACTIVITY_REQ: Self = Self(0x40);
    pub const ACTIVITY_RESP: Self = Self(0x41);
    pub const FILE_READ_REQ: Self = Self(0x50);
    pub const FILE_READ_RESP: Self = Self(0x51);
    pub const FILE_WRITE_REQ: Self = Self(0x52);
    pub const FILE_WRITE_RESP: Self = Self(0x53);
    pub const FILE_STAT_REQ: Self = Self(0x54);
    pub const FILE_STAT_RESP: Self = Self(0x55);
    pub const FILE_LS_REQ: Self = Self(0x56);
    pub const FILE_LS_RESP: Self = Self(0x57);
    /// Extension (protocol version 2, guest → host): the machine-readable
    /// code of the ERROR frame that follows, `{"code":"not_found"}`. v1
    /// hosts skip it as an unknown type. See [`crate::error_code`].
    pub const ERROR_CODE: Self = Self(0x08);
    /// Extension (protocol version 4, host → guest, on a piped exec's or a
    /// TTY session's connection): `{"signal": 15}` for the process group.
    /// See [`crate::ext`].
    pub const SIGNAL: Self = Self(0x09);
    /// Extension (v4): `{"path", "mode"?, "user"?}` → MKDIR_RESP.
    pub const MKDIR_REQ: Self = Self(0x58);
    /// Extension (v4): `{"created": bool, "entry": EntryInfo}`.
    pub const MKDIR_RESP: Self = Self(0x59);
    /// Extension (v4): `{"source", "destination", "user"?}` → MOVE_RESP.
    pub const MOVE_REQ: Self = Self(0x5a);
    /// Extension (v4): EntryInfo of the destination.
    pub const MOVE_RESP: Self = Self(0x5b);
    /// Extension (v4): `{"path"}` → REMOVE_RESP.
    pub const REMOVE_REQ: Self = Self(0x5c);
    /// Extension (v4): `{"status":"ok"}`.
    pub const REMOVE_RESP: Self = Self(0x5d);
    /// Extension (v4): `{"path"}` → STAT2_RESP (lstat, extended).
    pub const STAT2_REQ: Self = Self(0x5e);
    /// Extension (v4): EntryInfo.
    pub const STAT2_RESP: Self = Self(0x5f);
    /// Extension (v4): `{"path", "depth"?}` → LS2_RESP.
    pub const LS2_REQ: Self = Self(0x60);
    /// Extension (v4): `{"entries": [EntryInfo], "truncated": bool}`.
    pub const LS2_RESP: Self = Self(0x61);
    /// Extension (v4): `{"path", "recursive"?}` → WATCH_RESP, then
    /// WATCH_EVENT frames until the host closes.
    pub const WATCH_REQ: Self = Self(0x62);
    /// Extension (v4): `{"path": "<watched directory>"}`: the watch is set.
    pub const WATCH_RESP: Self = Self(0x63);
    /// Extension (v4): `{"type": "create", "name": "a/b.txt", "is_dir"?}`.
    pub const WATCH_EVENT: Self = Self(0x64);
    /// Extension (v4): empty → CAPS_RESP.
    pub const CAPS_REQ: Self = Self(0x70);
    /// Extension (v4): `{"version": 4, "features": [...]}`.
    pub const CAPS_RESP: Self = Self(0x71);
    /// Extension (v5, guest → host): KeptInfo, the first frame of a kept
    /// exec (`"keep": true`) and of a KEPT_ATTACH. See [`crate::kept`].
    pub const KEPT_INFO: Self = Self(0x34);
    /// Extension (v5): empty → KEPT_LIST_RESP.
    pub const KEPT_LIST_REQ: Self = Self(0x35);
    /// Extension (v5): `{"commands": [KeptInfo]}`.
    pub const KEPT_LIST_RESP: Self = Self(0x36);
    /// Extension (v5): `{"id": "k1"}` → KEPT_INFO, replay, live output, EXIT.
    pub const KEPT_ATTACH: Self = Self(0x37);
    /// Extension (v6, host → guest, empty): sent right after AUTH (or
    /// first, without a token), it makes the control connection reusable:
    /// after each reply to a reusable request the agent reads the next
    /// request from it. `docs/protocol.md`, "Version 6".
    pub const REUSE: Self = Self(0x12);
    /// Extension (v7, host → guest, empty) → SYNC_RESP once a `sync()`
    /// that started after the request arrived has finished: what the
    /// guest wrote before it is on its disks. `docs/protocol.md`,
    /// "Version 7".
    pub const SYNC_REQ: Self = Self(0x72);
    /// Extension (v7, guest → host, empty): the sync asked for is done.
    pub const SYNC_RESP: Self = Self(0x73);

    /// Every frame type of the frozen v1 table in PROTOCOL.md, in table order.
    pub const ALL: [Self; 25] = [
        Self::STDIN,
        Self::STDOUT,
        Self::STDERR,
        Self::RESIZE,
        Self::EXIT,
        Self::ERROR,
        Self::KILL,
        Self::EXEC_REQ,
        Self::AUTH,
        Self::FWD_REQ,
        Self::FWD_RESP,
        Self::EXEC_LIST_REQ,
        Self::EXEC_LIST_RESP,
        Self::EXEC_KILL,
        Self::SESSION_INFO,
        Self::ACTIVITY_REQ,
        Self::ACTIVITY_RESP,
        Self::FILE_READ_REQ,
        Self::FILE_READ_RESP,
        Self::FILE_WRITE_REQ,
        Self::FILE_WRITE_RESP,
        Self::FILE_STAT_REQ,
        Self::FILE_STAT_RESP,
        Self::FILE_LS_REQ,
        Self::FILE_LS_RESP,
    ];

    /// Frame types added after v1 (`docs/protocol.md`), in the order added.
    pub const EXTENSIONS: [Self; 24] = [
        Self::ERROR_CODE,
        Self::SIGNAL,
        Self::MKDIR_REQ,
        Self::MKDIR_RESP,
        Self::MOVE_REQ,
        Self::MOVE_RESP,
        Self::REMOVE_REQ,
        Self::REMOVE_RESP,
        Self::STAT2_REQ,
        Self::STAT2_RESP,
        Self::LS2_REQ,
        Self::LS2_RESP,
        Self::WATCH_REQ,
        Self::WATCH_RESP,
        Self::WATCH_EVENT,
        Self::CAPS_REQ,
        Self::CAPS_RESP,
        Self::KEPT_INFO,
        Self::KEPT_LIST_REQ,
        Self::KEPT_LIST_RESP,
        Self::KEPT_ATTACH,
        Self::REUSE,
        Self::SYNC_REQ,
        Self::SYNC_RESP,
    ];

    /// The protocol name of a known type, `None` for unknown bytes.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::STDIN => "STDIN",
            Self::STDOUT => "STDOUT",
            Self::STDERR => "STDERR",
            Self::RESIZE => "RESIZE",
            Self::EXIT => "EXIT",
            Self::ERROR => "ERROR",
            Self::KILL => "KILL",
            Self::EXEC_REQ => "EXEC_REQ",
            Self::AUTH => "AUTH",
            Self::FWD_REQ => "FWD_REQ",
            Self::FWD_RESP => "FWD_RESP",
            Self::EXEC_LIST_REQ => "EXEC_LIST_REQ",
            Self::EXEC_LIST_RESP => "EXEC_LIST_RESP",
            Self::EXEC_KILL => "EXEC_KILL",
            Self::SESSION_INFO => "SESSION_INFO",
            Self::ACTIVITY_REQ => "ACTIVITY_REQ",
            Self::ACTIVITY_RESP => "ACTIVITY_RESP",
            Self::FILE_READ_REQ => "FILE_READ_REQ",
            Self::FILE_READ_RESP => "FILE_READ_RESP",
            Self::FILE_WRITE_REQ => "FILE_WRITE_REQ",
            Self::FILE_WRITE_RESP => "FILE_WRITE_RESP",
            Self::FILE_STAT_REQ => "FILE_STAT_REQ",
            Self::FILE_STAT_RESP => "FILE_STAT_RESP",
            Self::FILE_LS_REQ => "FILE_LS_REQ",
            Self::FILE_LS_RESP => "FILE_LS_RESP",
            Self::ERROR_CODE => "ERROR_CODE",
            Self::SIGNAL => "SIGNAL",
            Self::MKDIR_REQ => "MKDIR_REQ",
            Self::MKDIR_RESP => "MKDIR_RESP",
            Self::MOVE_REQ => "MOVE_REQ",
            Self::MOVE_RESP => "MOVE_RESP",
            Self::REMOVE_REQ => "REMOVE_REQ",
            Self::REMOVE_RESP => "REMOVE_RESP",
            Self::STAT2_REQ => "STAT2_REQ",
            Self::STAT2_RESP => "STAT2_RESP",
            Self::LS2_REQ => "LS2_REQ",
            Self::LS2_RESP => "LS2_RESP",
            Self::WATCH_REQ => "WATCH_REQ",
            Self::WATCH_RESP => "WATCH_RESP",
            Self::WATCH_EVENT => "WATCH_EVENT",
            Self::CAPS_REQ => "CAPS_REQ",
            Self::CAPS_RESP => "CAPS_RESP",
            Self::KEPT_INFO => "KEPT_INFO",
            Self::KEPT_LIST_REQ => "KEPT_LIST_REQ",
            Self::KEPT_LIST_RESP => "KEPT_LIST_RESP",
            Self::KEPT_ATTACH => "KEPT_ATTACH",
            Self::REUSE => "REUSE",
            Self::SYNC_REQ => "SYNC_REQ",
            Self::SYNC_RESP => "SYNC_RESP",
            _ => return None,
        })
    }

    /// Whether this side knows the type (v1 or an extension).
    pub fn is_known(self) -> bool {
        self.name().is_some()
    }

    /// Whether the type is in the frozen v1 table (a v1 peer knows it).
    pub fn is_v1(self) -> bool {
        Self::ALL.contains(&self)
    }
}

impl fmt::Debug for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "0x{:02x}", self.0),
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One decoded frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameType,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: FrameType, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            kind,
            payload: payload.into(),
        }
    }

    /// The payload as text (lossy), for ERROR frames and logs.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("len", &self.payload.len())
            .finish()
    }
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame payload of {0} bytes exceeds the maximum of {MAX_PAYLOAD_LEN}")]
    PayloadTooLarge(usize),
    #[error("frame length {0} exceeds the maximum of {MAX_FRAME_LEN}")]
    LengthTooLarge(u32),
    #[error("frame length 0 is invalid (the type byte counts)")]
    ZeroLength,
    #[error("unexpected end of stream inside a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("frame I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds a whole frame (header and payload) in one buffer, so that it can
/// be written with one write call.
pub fn encode(kind: FrameType, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = frame_len(payload.len())?;
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.push(kind.0);
    buf.extend_from_slice(payload);
    Ok(buf)
}

/// Appends a whole frame to `buf` (for batching several frames in one write).
pub fn encode_into(buf: &mut Vec<u8>, kind: FrameType, payload: &[u8]) -> Result<(), FrameError> {
    let len = frame_len(payload.len())?;
    buf.reserve(HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.push(kind.0);
    buf.extend_from_slice(payload);
    Ok(())
}

fn frame_len(payload_len: usize) -> Result<u32, FrameError> {
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(FrameError::PayloadTooLarge(payload_len));
    }
    // Cannot overflow: payload_len <= MAX_PAYLOAD_LEN < u32::MAX.
    Ok(payload_len as u32 + 1)
}

/// Bytes of the length field, the first part of a header.
pub const LEN_LEN: usize = 4;

/// Validates a length field and returns the payload length. A length of 0
/// or above [`MAX_FRAME_LEN`] can never start a valid frame, so readers
/// check it as soon as these four bytes arrive, without waiting for the
/// type byte (a peer that sends a bad length and then goes silent is
/// refused at once).
pub fn parse_len(len: &[u8; LEN_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(*len);
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    if len > MAX_FRAME_LEN {
        return Err(FrameError::LengthTooLarge(len));
    }
    Ok(len as usize - 1)
}

/// Validates a header and returns the frame type and the payload length.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(FrameType, usize), FrameError> {
    let len = parse_len(&[header[0], header[1], header[2], header[3]])?;
    Ok((FrameType(header[4]), len))
}

/// Checks the part of a header read so far (`filled` bytes of `header`):
/// once the length field is complete it must be valid. Codecs call this
/// after every read of a header, so a bad length fails without waiting
/// for more bytes.
pub fn check_partial_header(header: &[u8; HEADER_LEN], filled: usize) -> Result<(), FrameError> {
    if filled >= LEN_LEN {
        parse_len(&[header[0], header[1], header[2], header[3]])?;
    }
    Ok(())
}

/// Interprets the outcome of reading a header: `got` bytes landed in
/// `header`. No byte at all is a clean end of stream (`Ok(None)`); a partial
/// header is truncation. Shared by both codecs.
pub fn header_after_read(
    got: usize,
    header: &[u8; HEADER_LEN],
) -> Result<Option<(FrameType, usize)>, FrameError> {
    match got {
        0 => Ok(None),
        HEADER_LEN => parse_header(header).map(Some),
        _ => Err(FrameError::Truncated {
            got,
            want: HEADER_LEN,
        }),
    }
}

/// Builds the frame once its payload was read, or reports truncation when
/// the stream ended early. Shared by both codecs.
pub fn frame_after_read(
    kind: FrameType,
    want: usize,
    payload: Vec<u8>,
) -> Result<Frame, FrameError> {
    if payload.len() < want {
        return Err(FrameError::Truncated {
            got: payload.len(),
            want,
        });
    }
    Ok(Frame { kind, payload })
}

/// A frame found at the start of a buffer by [`try_parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub kind: FrameType,
    /// Offset of the payload in the buffer (always [`HEADER_LEN`]).
    pub payload_start: usize,
    /// Length of the payload.
    pub payload_len: usize,
    /// Bytes the whole frame occupies (`4 + length`); the next frame starts here.
    pub total_len: usize,
}

/// Outcome of [`try_parse`].
#[derive(Debug, PartialEq, Eq)]
pub enum ParseResult {
    /// A whole frame is at the start of the buffer.
    Ok(Parsed),
    /// More bytes are needed (fewer than a header, or fewer than the frame).
    Incomplete,
    /// The header can never become valid (zero or oversized length).
    Invalid(&'static str),
}

/// Looks for one whole frame at the start of `buf` without consuming it.
/// Trailing bytes after the frame are left for the next call.
pub fn try_parse(buf: &[u8]) -> ParseResult {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return ParseResult::Incomplete;
    };
    match parse_header(header) {
        Err(FrameError::ZeroLength) => ParseResult::Invalid("zero length"),
        Err(_) => ParseResult::Invalid("length over maximum"),
        Ok((kind, payload_len)) => {
            let total_len = HEADER_LEN + payload_len;
            if buf.len() < total_len {
                return ParseResult::Incomplete;
            }
            ParseResult::Ok(Parsed {
                kind,
                payload_start: HEADER_LEN,
                payload_len,
                total_len,
            })
        }
    }
}

impl ParseResult {
    /// True only when a whole frame was found.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok(_))
    }
}
