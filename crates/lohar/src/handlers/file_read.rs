//! FILE_READ_REQ: FILE_READ_RESP (total size, mode), the content as STDOUT
//! frames, then EXIT 0.
//!
//! A blocking thread (tokio's blocking pool) reads the file straight into
//! encoded frames and passes them over a channel of two frames to this
//! task, which writes them. When the host closes the connection the write
//! fails, the channel closes, and the reading thread stops at its next
//! chunk. With `offset`/`limit`/`max_bytes` above zero the content is cut
//! by [`LineWindow`].

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{
    FileReadRequest, FileReadResponse, MessageError, decode_json, mode_string,
};
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError, FrameBuf};
use crate::handlers::{Reply, io_text};

/// File bytes per STDOUT frame.
pub const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("open {path}: {msg}")]
    Open { path: String, msg: String },
    #[error("read {path}: is a directory")]
    IsDir { path: String },
    #[error("read {path}: {msg}")]
    Read { path: String, msg: String },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn reply(&self) -> bool {
        !matches!(self, Error::Conn(_))
    }
}

pub async fn handle(_agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: FileReadRequest = decode_json("FileReadRequest", payload)?;
    let path = req.path.clone();
    let opened =
        tokio::task::spawn_blocking(move || -> Result<(File, std::fs::Metadata), Error> {
            let file = File::open(&path).map_err(|e| Error::Open {
                path: path.clone(),
                msg: io_text(&e),
            })?;
            let meta = file.metadata().map_err(|e| Error::Open {
                path: path.clone(),
                msg: io_text(&e),
            })?;
            if meta.is_dir() {
                return Err(Error::IsDir { path });
            }
            Ok((file, meta))
        })
        .await
        .map_err(|e| Error::Read {
            path: req.path.clone(),
            msg: e.to_string(),
        })??;
    let (file, meta) = opened;
    let writer = conn.writer;
    writer
        .json(
            FrameType::FILE_READ_RESP,
            &FileReadResponse {
                size: i64::try_from(meta.len()).unwrap_or(i64::MAX),
                mode: mode_string(meta.permissions().mode()),
            },
        )
        .await?;

    let window = LineWindow::new(req.offset, req.limit, req.max_bytes);
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    let reader = tokio::task::spawn_blocking(move || stream_file(file, window, &tx));
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(frame) => writer.send_encoded(&frame).await?,
            Err(e) => {
                return Err(Error::Read {
                    path: req.path,
                    msg: io_text(&e),
                });
            }
        }
    }
    let _ = reader.await;
    writer.exit(0).await?;
    Ok(())
}

/// Reads `file` into encoded STDOUT frames until EOF, the window is full,
/// or the receiver is gone.
fn stream_file(
    mut file: File,
    mut window: Option<LineWindow>,
    tx: &mpsc::Sender<std::io::Result<Vec<u8>>>,
) {
    loop {
        let mut buf = FrameBuf::new(READ_CHUNK);
        let n = match file.read(buf.payload_mut()) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let (frame, done) = match &mut window {
            None => (buf.finish(FrameType::STDOUT, n).to_vec(), false),
            Some(w) => {
                let (start, end, done) = w.feed(&buf.payload_mut()[..n]);
                if start == end {
                    if done {
                        return;
                    }
                    continue;
                }
                let payload = &buf.payload_mut()[start..end];
                let frame =
                    bhatti_proto::frame::encode(FrameType::STDOUT, payload).unwrap_or_default();
                (frame, done)
            }
        };
        if tx.blocking_send(Ok(frame)).is_err() || done {
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
