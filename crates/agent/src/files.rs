//! Files: [`Client::read_file`] (a streaming, cancellable body),
//! [`Client::stat`], [`Client::ls`]; writes are in `file_write.rs`
//! ([`Client::write_file`]).
//!
//! Reads decode frames straight into the caller's buffer: [`FileReader`] is
//! an `AsyncRead` with a small state machine (header → STDOUT payload
//! copied in place → … → EXIT), so a 64 MiB read holds no more than the
//! caller's buffer. Dropping the reader closes the connection, which makes
//! the agent abort the read; a reader read to its end gives a reused
//! connection back to the pool.
//!
//! A read checks what the agent sends: a negative size, a full read whose
//! body differs from a nonzero announced size, or a windowed read longer
//! than `max_bytes` is [`Error::Protocol`], logged with the peer. Size 0
//! means unknown (a v1 agent reading procfs): the body is taken as sent.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bhatti_proto::frame::{self, FrameType, HEADER_LEN};
use bhatti_proto::messages::{
    self, FileInfo, FileReadRequest, FileReadResponse, PathRequest, json_frame,
};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::Client;
use crate::connector::BoxStream;
use crate::error::{self, Error, ErrorCode, Result};

/// Line-based read options; all `None` reads the whole file as bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// First line to send, 1-based.
    pub offset: Option<i64>,
    /// Lines to send.
    pub limit: Option<i64>,
    /// Bytes to send at most (may cut a line).
    pub max_bytes: Option<i64>,
}

impl Client {
    /// Opens a file for reading. The returned reader carries the file's
    /// total size and mode; its body streams as it is read.
    pub async fn read_file(&self, path: &str, opts: ReadOptions) -> Result<FileReader> {
        let req = FileReadRequest {
            path: path.to_owned(),
            offset: opts.offset,
            limit: opts.limit,
            max_bytes: opts.max_bytes,
        };
        let frame = json_frame(FrameType::FILE_READ_REQ, &req)?;
        let opts = &opts;
        let open = reply!(|c| {
            let f = c.expect(FrameType::FILE_READ_RESP, "file read").await?;
            let resp: FileReadResponse = c.decode("FILE_READ_RESP", &f.payload)?;
            let Ok(size) = u64::try_from(resp.size) else {
                let msg = format!("FILE_READ_RESP size {} is negative", resp.size);
                return Err(c.note("file read", Error::Protocol(msg)));
            };
            // What the body may hold at most: a full read sends the size it
            // announced (0: unknown, from a v1 agent reading procfs); a
            // windowed read at most `max_bytes`.
            let full = *opts == ReadOptions::default();
            let limit = match opts.max_bytes.filter(|m| *m > 0) {
                Some(m) => Some(m as u64),
                None if full && size > 0 => Some(size),
                None => None,
            };
            // The body is read later: the stream goes to the reader, which
            // gives it back to the pool at EXIT 0.
            let pool = c.reusable.then(|| self.pool.clone()).flatten();
            c.reusable = false;
            Ok(FileReader {
                size: resp.size,
                mode: resp.mode,
                stream: std::mem::replace(&mut c.stream, Box::new(tokio::io::empty())),
                state: ReadState::header(),
                code: None,
                peer: c.peer.clone(),
                limit,
                exact: full && size > 0,
                received: 0,
                pool,
            })
        });
        self.unary(frame.kind, &frame.payload, open).await
    }

    /// Stats a path (symlinks followed).
    pub async fn stat(&self, path: &str) -> Result<FileInfo> {
        let frame = json_frame(FrameType::FILE_STAT_REQ, &path_req(path))?;
        self.unary_json(
            frame.kind,
            &frame.payload,
            FrameType::FILE_STAT_RESP,
            "stat",
        )
        .await
    }

    /// Lists a directory (entries lstat'ed). Above 10,000 entries the agent
    /// caps the list and appends one sentinel entry with the true total.
    pub async fn ls(&self, path: &str) -> Result<Vec<FileInfo>> {
        let frame = json_frame(FrameType::FILE_LS_REQ, &path_req(path))?;
        self.unary_json(frame.kind, &frame.payload, FrameType::FILE_LS_RESP, "ls")
            .await
    }
}

fn path_req(path: &str) -> PathRequest {
    PathRequest {
        path: path.to_owned(),
    }
}

/// The body of a file read: an `AsyncRead` that ends at the agent's EXIT 0.
/// Errors the agent reports mid-read surface as `io::Error`s wrapping an
/// [`Error`]; [`FileReader::read_all`] unwraps them. Dropping the reader
/// aborts the read.
pub struct FileReader {
    size: i64,
    mode: String,
    stream: BoxStream,
    state: ReadState,
    /// The code of an ERROR_CODE frame, for the ERROR frame that follows.
    code: Option<ErrorCode>,
    /// Names the agent in log lines.
    peer: Arc<str>,
    /// Most content bytes the agent may send (see [`Client::read_file`]).
    limit: Option<u64>,
    /// The body must be exactly `limit` bytes (a full read of known size).
    exact: bool,
    /// Content bytes received so far.
    received: u64,
    /// Where the stream goes after EXIT 0 (a reused connection).
    pool: Option<Arc<crate::pool::Pool>>,
}

impl Drop for FileReader {
    fn drop(&mut self) {
        if let (ReadState::Done, Some(pool)) = (&self.state, self.pool.take()) {
            pool.put(std::mem::replace(
                &mut self.stream,
                Box::new(tokio::io::empty()),
            ));
        }
    }
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("size", &self.size)
            .field("mode", &self.mode)
            .finish()
    }
}

enum ReadState {
    /// Collecting a frame header.
    Header {
        buf: [u8; HEADER_LEN],
        filled: usize,
    },
    /// Inside a STDOUT payload: copied straight to the caller.
    Data { left: usize },
    /// Collecting a small control payload (EXIT, ERROR_CODE, ERROR, other
    /// known type).
    Control {
        kind: FrameType,
        buf: Vec<u8>,
        filled: usize,
    },
    /// Discarding the payload of an unknown frame type.
    Skip { left: usize },
    /// EXIT 0 received.
    Done,
    /// An error was returned; further reads fail.
    Failed,
}

impl ReadState {
    fn header() -> Self {
        Self::Header {
            buf: [0; HEADER_LEN],
            filled: 0,
        }
    }
}

/// What one step of the read state machine asks of `poll_read`.
enum Step {
    /// The state changed; go on.
    Next,
    /// Return this to the caller.
    Ready(Poll<io::Result<()>>),
}

impl FileReader {
    /// Total size of the file (whatever part of it is sent).
    pub fn size(&self) -> i64 {
        self.size
    }

    /// Permission string, e.g. `"0644"`.
    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// Reads the whole body into memory.
    pub async fn read_all(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0).min(1 << 26));
        self.read_to_end(&mut out).await.map_err(Error::from_io)?;
        Ok(out)
    }

    fn fail(&mut self, e: Error) -> Poll<io::Result<()>> {
        self.state = ReadState::Failed;
        let e = error::note(&self.peer, "file read", e);
        Poll::Ready(Err(e.into_io()))
    }

    /// Acts on a complete control frame.
    fn control(&mut self, kind: FrameType, payload: &[u8]) -> Step {
        Step::Ready(match kind {
            FrameType::EXIT => match messages::parse_exit(payload) {
                Ok(0) if self.exact && Some(self.received) != self.limit => {
                    self.fail(Error::Protocol(format!(
                        "file read ended after {} of the {} bytes announced",
                        self.received,
                        self.limit.unwrap_or(0)
                    )))
                }
                Ok(0) => {
                    self.state = ReadState::Done;
                    Poll::Ready(Ok(()))
                }
                Ok(code) => self.fail(Error::Protocol(format!(
                    "file read ended with exit code {code}"
                ))),
                Err(e) => self.fail(e.into()),
            },
            FrameType::ERROR_CODE => {
                self.code = Some(ErrorCode::from_payload(payload));
                self.state = ReadState::header();
                return Step::Next;
            }
            FrameType::ERROR => {
                let text = String::from_utf8_lossy(payload).into_owned();
                let code = self.code.take();
                self.fail(Error::from_agent(code, text))
            }
            other => self.fail(Error::Protocol(format!(
                "unexpected {other} frame in a file read"
            ))),
        })
    }

    /// Reads into `buf` from the stream: the bytes read (0 at the end of
    /// the stream).
    fn read_some(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        Pin::new(&mut self.stream)
            .poll_read(cx, &mut rb)
            .map_ok(|()| rb.filled().len())
    }

    /// The step for a read that brought no bytes: pending, an I/O error
    /// (the state is kept), or the end of the stream (the read fails).
    fn stalled(&mut self, read: Poll<io::Result<usize>>) -> Step {
        Step::Ready(match read {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(_)) => self.fail(Error::Closed("file read")),
        })
    }

    /// One step of the state machine.
    fn step(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Step {
        match std::mem::replace(&mut self.state, ReadState::Failed) {
            ReadState::Done => {
                self.state = ReadState::Done;
                Step::Ready(Poll::Ready(Ok(())))
            }
            ReadState::Failed => Step::Ready(Poll::Ready(Err(io::Error::other(
                "file read already failed",
            )))),
            ReadState::Data { left: 0 } | ReadState::Skip { left: 0 } => {
                self.state = ReadState::header();
                Step::Next
            }
            ReadState::Data { left } => {
                self.state = ReadState::Data { left };
                let max = left.min(out.remaining());
                let n = match self.read_some(cx, out.initialize_unfilled_to(max)) {
                    Poll::Ready(Ok(n)) if n > 0 => n,
                    other => return self.stalled(other),
                };
                self.state = ReadState::Data { left: left - n };
                out.advance(n);
                Step::Ready(Poll::Ready(Ok(())))
            }
            ReadState::Header { mut buf, filled } => {
                self.state = ReadState::Header { buf, filled };
                let n = match self.read_some(cx, &mut buf[filled..]) {
                    Poll::Ready(Ok(n)) if n > 0 => n,
                    other => return self.stalled(other),
                };
                self.header(buf, filled + n)
            }
            ReadState::Skip { left } => {
                self.state = ReadState::Skip { left };
                let mut scratch = [0u8; 4096];
                let max = left.min(scratch.len());
                let n = match self.read_some(cx, &mut scratch[..max]) {
                    Poll::Ready(Ok(n)) if n > 0 => n,
                    other => return self.stalled(other),
                };
                self.state = ReadState::Skip { left: left - n };
                Step::Next
            }
            ReadState::Control {
                kind,
                mut buf,
                filled,
            } if filled < buf.len() => {
                let n = match self.read_some(cx, &mut buf[filled..]) {
                    Poll::Ready(Ok(n)) if n > 0 => n,
                    other => {
                        self.state = ReadState::Control { kind, buf, filled };
                        return self.stalled(other);
                    }
                };
                let filled = filled + n;
                self.state = ReadState::Control { kind, buf, filled };
                Step::Next
            }
            ReadState::Control { kind, buf, .. } => self.control(kind, &buf),
        }
    }

    /// Moves on from a header with `filled` of its bytes read.
    fn header(&mut self, buf: [u8; HEADER_LEN], filled: usize) -> Step {
        if filled < HEADER_LEN {
            // A bad length fails now, not when the agent closes.
            if let Err(e) = frame::check_partial_header(&buf, filled) {
                return Step::Ready(self.fail(e.into()));
            }
            self.state = ReadState::Header { buf, filled };
            return Step::Next;
        }
        let (kind, len) = match frame::parse_header(&buf) {
            Ok(h) => h,
            Err(e) => return Step::Ready(self.fail(e.into())),
        };
        // A code belongs to an ERROR right after its ERROR_CODE frame.
        if kind.is_known() && kind != FrameType::ERROR {
            self.code = None;
        }
        self.state = if kind == FrameType::STDOUT {
            self.received += len as u64;
            if let Some(limit) = self.limit.filter(|l| self.received > *l) {
                let msg = format!(
                    "file read sent {} bytes, more than the {limit} allowed",
                    self.received
                );
                return Step::Ready(self.fail(Error::Protocol(msg)));
            }
            ReadState::Data { left: len }
        } else if !kind.is_known() {
            ReadState::Skip { left: len }
        } else {
            ReadState::Control {
                kind,
                buf: vec![0; len],
                filled: 0,
            }
        };
        Step::Next
    }
}

impl AsyncRead for FileReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Step::Ready(p) = this.step(cx, out) {
                return p;
            }
        }
    }
}
