//! FILE_READ_REQ: FILE_READ_RESP (total size, mode), the content as STDOUT
//! frames, then EXIT 0.
//!
//! # Threads, locks, I/O
//! A full read of a small regular file (up to [`INLINE_MAX`] bytes, the
//! common case: configs, sources) is served on the runtime's thread: one
//! non-blocking open, `fstat`, `fstatfs` and one read, a few µs, then one
//! write of RESP + STDOUT + EXIT. The open is `O_NONBLOCK`, so a FIFO or
//! device swapped in under the path cannot stall the runtime; anything
//! that is not a small regular file, and any error, goes the general way.
//!
//! Generally, one blocking-pool task opens the file and reads it straight into
//! encoded frames (small frames batched, so a small file is one write:
//! RESP + STDOUT + EXIT), passing them over a channel of two messages to
//! this task, which writes them. When the host closes the connection the
//! write fails, the channel closes, and the reading thread stops at its
//! next chunk. With `offset`/`limit`/`max_bytes` above zero the content is cut
//! by [`LineWindow`].
//!
//! Sizes: FILE_READ_RESP carries the size the content will have, so that
//! a host may use it as a length. A regular file's full read sends exactly
//! its size at open (a file growing meanwhile is cut there). A block device
//! reports 0 in `stat`; its size is where a seek to the end lands. Files
//! that report 0 but have content (character devices, most of procfs) and
//! every file of a kernel pseudo file system (sysfs reports 4096 for any
//! attribute) are read ahead into memory up to the agent's `max_unsized_read` limit: at
//! end of file within it, the size is what was read; a windowed read that
//! completes within it is sent with size 0 (unknown); anything else is
//! `too_large` — never a silent empty body.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;

use bhatti_proto::frame::{self, FrameType};
use bhatti_proto::messages::{
    FileReadRequest, FileReadResponse, MessageError, decode_json, encode_exit, json_frame,
    mode_string,
};
use bhatti_proto::text::short;
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
    #[error(
        "read {path}: the file reports no size and has more than {cap} bytes; \
         read a part of it with max_bytes"
    )]
    Unsized { path: String, cap: usize },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::Open { msg, .. } | Error::Read { msg, .. } => Some(msg.code),
            Error::IsDir { .. } => Some(ErrorCode::IsADirectory),
            Error::Unsized { .. } => Some(ErrorCode::TooLarge),
            Error::Conn(e) => e.code(),
        }
    }
}

pub async fn handle(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: FileReadRequest = decode_json("FileReadRequest", payload)?;
    let window = LineWindow::new(req.offset, req.limit, req.max_bytes);
    if window.is_none()
        && let Some(bytes) = small_file(&req.path)
    {
        conn.writer.send_encoded(&bytes).await?;
        return Ok(());
    }
    let (tx, mut rx) = mpsc::channel::<Msg>(2);
    let path = req.path.clone();
    let cap = agent.limits.max_unsized_read;
    let reader = tokio::task::spawn_blocking(move || stream_file(&path, window, cap, &tx));
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

/// Largest file read on the runtime's thread (module docs).
pub const INLINE_MAX: u64 = 64 * 1024;

/// The whole reply (RESP + STDOUT + EXIT) for a full read of `path` when
/// it is a small regular file on a real file system; `None` for anything
/// else and on any error (the general path then reports it).
fn small_file(path: &str) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    let size = meta.len();
    if !meta.is_file() || size == 0 || size > INLINE_MAX || pseudo_fs(&file) {
        return None;
    }
    let mut data = Vec::with_capacity(usize::try_from(size).ok()?);
    (&file).take(size).read_to_end(&mut data).ok()?;
    if data.len() as u64 != size {
        return None; // changed under us: the general path copes
    }
    let resp = FileReadResponse {
        size: i64::try_from(size).ok()?,
        mode: mode_string(meta.permissions().mode()),
    };
    let resp = json_frame(FrameType::FILE_READ_RESP, &resp).ok()?;
    let mut out = frame::encode(resp.kind, &resp.payload).ok()?;
    frame::encode_into(&mut out, FrameType::STDOUT, &data).ok()?;
    frame::encode_into(&mut out, FrameType::EXIT, &encode_exit(0)).ok()?;
    Some(out)
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
fn stream_file(path: &str, window: Option<LineWindow>, cap: usize, tx: &mpsc::Sender<Msg>) {
    let fail = |e| {
        let _ = tx.blocking_send(Msg::Fail(e));
    };
    match open(path, window.as_ref(), cap) {
        Ok((Source::File(file), resp)) => pump_file(path, file, resp, window, tx),
        Ok((Source::Buffered(buf), resp)) => pump_file(path, Cursor::new(buf), resp, window, tx),
        Err(e) => fail(e),
    }
}

/// Where the content comes from: the file (cut at its size for a full
/// read), or what was read ahead of an unsized file.
enum Source {
    File(std::io::Take<File>),
    Buffered(Vec<u8>),
}

/// Opens `path` for reading, finds the size of its content (see the
/// module docs) and encodes its FILE_READ_RESP frame.
fn open(path: &str, window: Option<&LineWindow>, cap: usize) -> Result<(Source, Vec<u8>), Error> {
    let open_err = |e: std::io::Error| Error::Open {
        path: short(path),
        msg: IoText::new(&e),
    };
    let read_err = |e: std::io::Error| Error::Read {
        path: short(path),
        msg: IoText::new(&e),
    };
    let mut file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if meta.is_dir() {
        return Err(Error::IsDir { path: short(path) });
    }
    let mut size = meta.len();
    if meta.file_type().is_block_device() {
        size = file.seek(SeekFrom::End(0)).map_err(read_err)?;
        file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    }
    let sized = (size > 0 && !pseudo_fs(&file)) || meta.file_type().is_block_device();
    let source = if sized {
        // A windowed read goes on to end of file; a full read sends what
        // the size announced.
        Source::File(file.take(if window.is_some() { u64::MAX } else { size }))
    } else {
        let (buf, eof) = read_ahead(&mut file, cap, window).map_err(read_err)?;
        if eof {
            size = buf.len() as u64;
        } else if window.is_none_or(|w| !w.clone().feed(&buf).2) {
            return Err(Error::Unsized {
                path: short(path),
                cap,
            });
        }
        Source::Buffered(buf)
    };
    let resp = FileReadResponse {
        size: i64::try_from(size).unwrap_or(i64::MAX),
        mode: mode_string(meta.permissions().mode()),
    };
    let resp = json_frame(FrameType::FILE_READ_RESP, &resp)
        .map_err(|e| e.to_string())
        .and_then(|f| frame::encode(f.kind, &f.payload).map_err(|e| e.to_string()))
        .map_err(|msg| Error::Read {
            path: short(path),
            msg: IoText::other(msg),
        })?;
    Ok((source, resp))
}

/// Whether `file` lives on a kernel pseudo file system (procfs, sysfs,
/// debugfs, …), whose sizes say nothing about the content: sysfs reports
/// 4096 for every attribute, procfs 0 for most files.
fn pseudo_fs(file: &File) -> bool {
    const MAGICS: [u32; 11] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0x6265_6570, // configfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0xde5e_81e4, // efivarfs
        0x6165_676c, // pstore
        0xcafe_4a11, // bpf
    ];
    rustix::fs::fstatfs(file).is_ok_and(|st| {
        // f_type is a signed or unsigned word depending on the target; the
        // magic numbers are 32-bit.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let magic = st.f_type as u32;
        MAGICS.contains(&magic)
    })
}

/// Reads an unsized file ahead: until end of file (`true`), more than
/// `cap` bytes, or — for a windowed read — the window is complete.
fn read_ahead(
    file: &mut File,
    cap: usize,
    window: Option<&LineWindow>,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut window = window.cloned();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while buf.len() <= cap {
        let n = match file.read(&mut chunk) {
            Ok(0) => return Ok((buf, true)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        if window.as_mut().is_some_and(|w| w.feed(&chunk[..n]).2) {
            return Ok((buf, false));
        }
    }
    Ok((buf, false))
}

/// Reads `file` into STDOUT frames after the frames already in `pending`,
/// then EXIT 0; stops early when the receiver is gone.
fn pump_file(
    path: &str,
    mut file: impl Read,
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
                    path: short(path),
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
