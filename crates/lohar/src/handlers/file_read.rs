//! FILE_READ_REQ: FILE_READ_RESP (total size, mode), the content as STDOUT
//! frames, then EXIT 0.
//!
//! One blocking-pool task opens the file and reads it straight into
//! encoded frames (small frames batched, so a small file is one write:
//! RESP + STDOUT + EXIT), passing them over a channel of two messages to
//! this task, which writes them. When the host closes the connection the
//! write fails, the channel closes, and the reading thread stops at its
//! next chunk. With `offset`/`limit`/`max_bytes` above zero the content is cut
//! by [`LineWindow`].

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use bhatti_proto::frame::{self, FrameType};
use bhatti_proto::messages::{
    FileReadRequest, FileReadResponse, MessageError, decode_json, encode_exit, json_frame,
    mode_string,
};
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError, FrameBuf};
use crate::handlers::{ErrorCode, IoText, Reply};

/// File bytes per STDOUT frame.
pub const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("open {path}: {msg}")]
    Open { path: String, msg: IoText },
    #[error("read {path}: is a directory")]
    IsDir { path: String },
    #[error("read {path}: {msg}")]
    Read { path: String, msg: IoText },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::Open { msg, .. } | Error::Read { msg, .. } => Some(msg.code),
            Error::IsDir { .. } => Some(ErrorCode::IsADirectory),
            Error::Conn(e) => e.code(),
        }
    }
}

pub async fn handle(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: FileReadRequest = decode_json("FileReadRequest", payload)?;
    let window = LineWindow::new(req.offset, req.limit, req.max_bytes);
    let (tx, mut rx) = mpsc::channel::<Msg>(2);
    let path = req.path.clone();
    let reader = tokio::task::spawn_blocking(move || stream_file(&path, window, &tx));
    let writer = conn.writer;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Frames(bytes) => {
                writer.send_encoded(&bytes).await?;
                agent.touch();
            }
            Msg::Last(bytes) => {
                writer.send_encoded(&bytes).await?;
                break;
            }
            Msg::Fail(e) => return Err(e),
        }
    }
    let _ = reader.await;
    Ok(())
}

/// What the reading thread hands to the connection task: encoded frames
/// (the last batch ends with EXIT 0), or an error to report.
#[derive(Debug)]
enum Msg {
    Frames(Vec<u8>),
    Last(Vec<u8>),
    Fail(Error),
}

/// Frames smaller than this are batched into one write with their
/// neighbours (a small file goes out as RESP + STDOUT + EXIT in one write).
const BATCH: usize = 64 * 1024;

/// Opens `path` and streams FILE_READ_RESP, STDOUT frames and EXIT into
/// `tx`, until EOF, the end of the window, or the receiver is gone.
fn stream_file(path: &str, window: Option<LineWindow>, tx: &mpsc::Sender<Msg>) {
    match open(path) {
        Ok((file, resp)) => pump_file(path, file, resp, window, tx),
        Err(e) => {
            let _ = tx.blocking_send(Msg::Fail(e));
        }
    }
}

/// Opens `path` for reading and encodes its FILE_READ_RESP frame.
fn open(path: &str) -> Result<(File, Vec<u8>), Error> {
    let open_err = |e: std::io::Error| Error::Open {
        path: path.to_owned(),
        msg: IoText::new(&e),
    };
    let file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if meta.is_dir() {
        return Err(Error::IsDir {
            path: path.to_owned(),
        });
    }
    let resp = FileReadResponse {
        size: i64::try_from(meta.len()).unwrap_or(i64::MAX),
        mode: mode_string(meta.permissions().mode()),
    };
    let resp = json_frame(FrameType::FILE_READ_RESP, &resp)
        .map_err(|e| e.to_string())
        .and_then(|f| frame::encode(f.kind, &f.payload).map_err(|e| e.to_string()))
        .map_err(|msg| Error::Read {
            path: path.to_owned(),
            msg: IoText::other(msg),
        })?;
    Ok((file, resp))
}

/// Reads `file` into STDOUT frames after the frames already in `pending`,
/// then EXIT 0; stops early when the receiver is gone.
fn pump_file(
    path: &str,
    mut file: File,
    mut pending: Vec<u8>,
    mut window: Option<LineWindow>,
    tx: &mpsc::Sender<Msg>,
) {
    let send = |m: Msg| tx.blocking_send(m).is_ok();
    loop {
        let mut buf = FrameBuf::new(READ_CHUNK);
        let n = match file.read(buf.payload_mut()) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if !pending.is_empty() {
                    send(Msg::Frames(std::mem::take(&mut pending)));
                }
                send(Msg::Fail(Error::Read {
                    path: path.to_owned(),
                    msg: IoText::new(&e),
                }));
                return;
            }
        };
        let (start, end, done) = match &mut window {
            _ if n == 0 => (0, 0, true),
            None => (0, n, false),
            Some(w) => w.feed(&buf.payload_mut()[..n]),
        };
        if start < end {
            if pending.len() + (end - start) <= BATCH {
                let payload = &buf.payload_mut()[start..end];
                let _ = frame::encode_into(&mut pending, FrameType::STDOUT, payload);
            } else {
                if !pending.is_empty() && !send(Msg::Frames(std::mem::take(&mut pending))) {
                    return;
                }
                let frame = if start == 0 {
                    buf.into_frame(FrameType::STDOUT, end)
                } else {
                    frame::encode(FrameType::STDOUT, &buf.payload_mut()[start..end])
                        .unwrap_or_default()
                };
                if !send(Msg::Frames(frame)) {
                    return;
                }
            }
        }
        if done {
            let _ = frame::encode_into(&mut pending, FrameType::EXIT, &encode_exit(0));
            send(Msg::Last(pending));
            return;
        }
    }
}

/// Line-based cut of a byte stream: skip to line `offset` (1-based), then
/// pass at most `limit` lines and at most `max_bytes` bytes, whichever ends
/// first (`max_bytes` may cut a line). Fed chunk by chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineWindow {
    skip_lines: u64,
    lines_left: Option<u64>,
    bytes_left: Option<u64>,
}

impl LineWindow {
    /// `None` when no parameter is above zero (the whole file is sent).
    pub fn new(offset: Option<i64>, limit: Option<i64>, max_bytes: Option<i64>) -> Option<Self> {
        let pos = |v: Option<i64>| v.filter(|v| *v > 0).map(|v| v as u64);
        let (offset, limit, max_bytes) = (pos(offset), pos(limit), pos(max_bytes));
        if offset.is_none() && limit.is_none() && max_bytes.is_none() {
            return None;
        }
        Some(Self {
            skip_lines: offset.map_or(0, |o| o - 1),
            lines_left: limit,
            bytes_left: max_bytes,
        })
    }

    /// Returns the range of `chunk` to send and whether the window is
    /// complete (nothing after this chunk will be sent).
    pub fn feed(&mut self, chunk: &[u8]) -> (usize, usize, bool) {
        let mut start = 0;
        while self.skip_lines > 0 {
            match memchr(b'\n', &chunk[start..]) {
                Some(p) => {
                    start += p + 1;
                    self.skip_lines -= 1;
                }
                None => return (0, 0, false),
            }
        }
        let mut end = chunk.len();
        let mut done = false;
        if let Some(left) = &mut self.lines_left {
            let mut pos = start;
            while *left > 0 {
                match memchr(b'\n', &chunk[pos..end]) {
                    Some(p) => {
                        pos += p + 1;
                        *left -= 1;
                    }
                    None => {
                        pos = end;
                        break;
                    }
                }
            }
            if *left == 0 {
                end = pos;
                done = true;
            }
        }
        if let Some(left) = &mut self.bytes_left {
            let len = (end - start) as u64;
            if len >= *left {
                end = start + *left as usize;
                *left = 0;
                done = true;
            } else {
                *left -= len;
            }
        }
        (start, end, done)
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `data` through a window in chunks of `step` bytes.
    fn cut(data: &[u8], offset: i64, limit: i64, max: i64, step: usize) -> Vec<u8> {
        let mut w = LineWindow::new(Some(offset), Some(limit), Some(max)).expect("window");
        let mut out = Vec::new();
        for chunk in data.chunks(step) {
            let (s, e, done) = w.feed(chunk);
            out.extend_from_slice(&chunk[s..e]);
            if done {
                break;
            }
        }
        out
    }

    const TEXT: &[u8] = b"one\ntwo\nthree\nfour\nfive";

    #[test]
    fn no_parameters_means_no_window() {
        assert_eq!(LineWindow::new(None, Some(0), Some(-3)), None);
    }

    #[test]
    fn offset_limit_and_max_bytes_in_any_chunking() {
        for step in [1, 2, 3, 5, 7, 64] {
            assert_eq!(cut(TEXT, 2, 2, 0, step), b"two\nthree\n", "step {step}");
            assert_eq!(cut(TEXT, 4, 0, 0, step), b"four\nfive", "step {step}");
            assert_eq!(cut(TEXT, 0, 1, 0, step), b"one\n", "step {step}");
            assert_eq!(cut(TEXT, 0, 0, 6, step), b"one\ntw", "step {step}");
            // Whichever hits first: bytes here, lines there.
            assert_eq!(cut(TEXT, 2, 3, 5, step), b"two\nt", "step {step}");
            assert_eq!(cut(TEXT, 2, 1, 100, step), b"two\n", "step {step}");
            // Offset past the end: empty, not an error.
            assert_eq!(cut(TEXT, 99, 0, 0, step), b"", "step {step}");
            // Limit beyond the end: everything from the offset.
            assert_eq!(cut(TEXT, 5, 10, 0, step), b"five", "step {step}");
        }
    }

    #[test]
    fn binary_and_crlf_are_bytes() {
        let data = b"a\r\n\x00\xff\nz";
        assert_eq!(cut(data, 2, 1, 0, 2), b"\x00\xff\n");
    }
}
