//! One accepted connection: a frame writer shared by the tasks that produce
//! output, and a cancel-safe frame reader for handlers that listen while
//! they also do other work.
//!
//! Locks: [`FrameWriter`] is an `Arc<tokio::sync::Mutex<write half>>`; a
//! frame is encoded into one buffer and written with one `write_all` under
//! the lock, so frames from concurrent producers never interleave, and a
//! slow peer back-pressures every producer (no unbounded queue).
//!
//! Reading: no task. [`Frames::recv`] reads from the socket when it is
//! polled and keeps what it read across cancelled calls
//! ([`bhatti_proto::frame_reader`]), so handlers race it against their
//! other work in `select!`. Buffering per connection is one read buffer
//! and at most one frame (1 MiB); a handler that does not call `recv`
//! back-pressures the host through the socket. Dropping the [`Frames`]
//! releases the read half; the socket closes when the writer goes too. A
//! reused connection (protocol version 6, [`crate::server`]) reads its
//! requests with the same [`Reader`] and lends it to each request's
//! handler behind a mutex; the handler's [`Conn`] or [`Frames`] holds the
//! lock until it is dropped.

use std::sync::Arc;

use bhatti_proto::frame::{self, Frame, FrameError, FrameType};
use bhatti_proto::frame_reader::FrameReader;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A byte stream the agent serves: Unix socket, TCP or vsock.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// Errors of the connection plumbing: the peer is gone or misbehaved.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection: {0}")]
    Frame(#[from] FrameError),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Shared, cloneable writer of whole frames.
#[derive(Clone)]
pub struct FrameWriter {
    inner: Arc<Mutex<WriteHalf<BoxStream>>>,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameWriter")
    }
}

impl FrameWriter {
    /// Encodes and writes one frame.
    pub async fn send(&self, kind: FrameType, payload: &[u8]) -> Result<(), ConnError> {
        let buf = frame::encode(kind, payload)?;
        self.send_encoded(&buf).await
    }

    /// Writes a frame already encoded (see [`FrameBuf`]).
    pub async fn send_encoded(&self, buf: &[u8]) -> Result<(), ConnError> {
        let mut w = self.inner.lock().await;
        w.write_all(buf).await?;
        Ok(())
    }

    /// Sends an ERROR_CODE frame with `code` and the ERROR frame with
    /// `msg`, in one write so no other producer's frame comes between.
    pub async fn error(&self, code: bhatti_proto::ErrorCode, msg: &str) -> Result<(), ConnError> {
        let buf = bhatti_proto::error_code::encode_error(code, msg)?;
        self.send_encoded(&buf).await
    }

    /// Sends an EXIT frame.
    pub async fn exit(&self, code: i32) -> Result<(), ConnError> {
        self.send(FrameType::EXIT, &bhatti_proto::messages::encode_exit(code))
            .await
    }

    /// Sends a JSON frame.
    pub async fn json<T: serde::Serialize>(
        &self,
        kind: FrameType,
        msg: &T,
    ) -> Result<(), ConnError> {
        let payload = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        self.send(kind, &payload).await
    }
}

/// A buffer with room for a frame header in front of the payload, so bulk
/// data (file content, process output) is read straight into the frame and
/// written without another copy.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    /// A buffer for payloads of up to `cap` bytes (capped at the maximum).
    pub fn new(cap: usize) -> Self {
        let cap = cap.min(frame::MAX_PAYLOAD_LEN);
        Self {
            buf: vec![0u8; frame::HEADER_LEN + cap],
        }
    }

    /// The payload area to read into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[frame::HEADER_LEN..]
    }

    /// Finishes a frame of type `kind` whose payload is the first `n`
    /// payload bytes; returns the whole encoded frame.
    pub fn finish(&mut self, kind: FrameType, n: usize) -> &[u8] {
        let n = n.min(self.buf.len() - frame::HEADER_LEN);
        // n <= MAX_PAYLOAD_LEN, so n + 1 fits the u32 length field.
        let len = (n as u32 + 1).to_be_bytes();
        self.buf[..4].copy_from_slice(&len);
        self.buf[4] = kind.0;
        &self.buf[..frame::HEADER_LEN + n]
    }
}

impl FrameBuf {
    /// Like [`FrameBuf::finish`], but hands over the buffer itself.
    pub fn into_frame(mut self, kind: FrameType, n: usize) -> Vec<u8> {
        let len = self.finish(kind, n).len();
        self.buf.truncate(len);
        self.buf
    }
}

/// An accepted connection after its request frame was read.
pub struct Conn {
    source: Source,
    pub writer: FrameWriter,
}

/// Where a connection's next frames come from.
enum Source {
    /// The read half, untouched: a one-request connection.
    Raw(ReadHalf<BoxStream>),
    /// The reader of a reused connection ([`Conn::lent`]), lent to this
    /// request's handler until it drops it.
    Lent(OwnedMutexGuard<Reader>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

impl Conn {
    pub fn new(stream: BoxStream) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        Self {
            source: Source::Raw(reader),
            writer: FrameWriter {
                inner: Arc::new(Mutex::new(writer)),
            },
        }
    }

    /// A reused connection's [`Reader`] and writer, split before its
    /// first request.
    pub fn split(stream: BoxStream) -> (Arc<Mutex<Reader>>, FrameWriter) {
        let (reader, writer) = tokio::io::split(stream);
        let writer = FrameWriter {
            inner: Arc::new(Mutex::new(writer)),
        };
        (Arc::new(Mutex::new(Reader::new(reader))), writer)
    }

    /// One request's view of a reused connection: `reader` lent until the
    /// handler drops its [`Conn`] or [`Frames`].
    pub fn lent(reader: OwnedMutexGuard<Reader>, writer: FrameWriter) -> Self {
        Self {
            source: Source::Lent(reader),
            writer,
        }
    }

    /// The connection's incoming frames, and its writer.
    pub fn into_frames(self) -> (Frames, FrameWriter) {
        let frames = match self.source {
            Source::Raw(r) => Frames::Owned(Reader::new(r)),
            Source::Lent(g) => Frames::Lent(g),
        };
        (frames, self.writer)
    }
}

/// The frame reader of a connection: cancel safe, so a handler races
/// [`Frames::recv`] against its other work with no reader task between
/// it and the socket (see [`bhatti_proto::frame_reader`]).
pub struct Reader {
    inner: FrameReader<ReadHalf<BoxStream>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

impl Reader {
    fn new(reader: ReadHalf<BoxStream>) -> Self {
        Self {
            inner: FrameReader::new(reader),
        }
    }

    /// The next frame; `None` once the peer half-closed, disconnected or
    /// sent a malformed frame. Cancel safe.
    pub async fn recv(&mut self) -> Option<Frame> {
        match self.inner.recv().await {
            Ok(f) => f,
            Err(e) => {
                crate::debug!("read: {e}");
                None
            }
        }
    }
}

/// Incoming frames of a connection. `recv` returns `None` once the peer
/// half-closed, disconnected or sent a malformed frame.
#[derive(Debug)]
pub enum Frames {
    /// This request's own reader.
    Owned(Reader),
    /// A reused connection's reader, lent to this request.
    Lent(OwnedMutexGuard<Reader>),
}

impl Frames {
    /// The next frame. Cancel safe: a call dropped before it completes
    /// loses no byte.
    pub async fn recv(&mut self) -> Option<Frame> {
        match self {
            Frames::Owned(r) => r.recv().await,
            Frames::Lent(g) => g.recv().await,
        }
    }
}

/// Registers an owned descriptor with tokio's reactor.
pub fn register_fd(
    fd: std::os::fd::OwnedFd,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor, and the `AsyncFd`
    // takes ownership of it, so it stays open and refers to the same file
    // description until the `AsyncFd` is dropped.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)
}
