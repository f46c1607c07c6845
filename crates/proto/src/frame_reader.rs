//! A cancel-safe frame reader over tokio's `AsyncRead`: the bytes it has
//! read stay in the reader, so a [`FrameReader::recv`] dropped before it
//! completes (a `select!` branch that lost, a timeout) loses nothing, and
//! the next call goes on where it stopped. That lets a task race incoming
//! frames against its other work without a reader task and a channel in
//! between.
//!
//! Buffering: small frames are read through a buffer of [`READ_BUF`] bytes,
//! so a request's header and payload (and any frames behind it) come in
//! with one read. A frame whose payload is larger than that is read
//! straight into its own payload, never past its end. The rules of the
//! bytes are [`crate::frame`]'s, as for the other codecs: a bad length
//! field fails as soon as its four bytes are in.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::frame::{self, Frame, FrameError, FrameType, HEADER_LEN};

/// Bytes read at once while frames are small.
pub const READ_BUF: usize = 8 * 1024;

/// Reads frames from `R`, keeping partial ones across cancelled calls.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    /// Bytes read and not yet returned start at `start`.
    buf: Vec<u8>,
    start: usize,
    /// A large frame being read straight into its payload: its type and
    /// full payload length.
    large: Option<(FrameType, usize, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        Self {
            io,
            buf: Vec::new(),
            start: 0,
            large: None,
        }
    }

    /// The next frame. `Ok(None)` is a clean end of stream (between
    /// frames); a stream that ends inside a frame is
    /// [`FrameError::Truncated`].
    ///
    /// Cancel safe: dropping the future before it completes loses no byte.
    pub async fn recv(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some((kind, want, payload)) = &mut self.large {
                let (kind, want) = (*kind, *want);
                if payload.len() < want {
                    let rest = (want - payload.len()) as u64;
                    if (&mut self.io).take(rest).read_buf(payload).await? == 0 {
                        let got = HEADER_LEN + payload.len();
                        self.large = None;
                        return Err(truncated(got, HEADER_LEN + want));
                    }
                    continue;
                }
                let payload = self.large.take().map(|l| l.2).unwrap_or_default();
                return Ok(Some(Frame { kind, payload }));
            }
            if let Some(f) = self.parse()? {
                return Ok(Some(f));
            }
            if self.large.is_some() {
                continue;
            }
            if self.fill().await? == 0 {
                let avail = &self.buf[self.start..];
                let cut = (!avail.is_empty()).then(|| truncated(avail.len(), wanted(avail)));
                self.buf.clear();
                self.start = 0;
                return cut.map_or(Ok(None), Err);
            }
        }
    }

    /// A whole small frame from the buffer, if one is there; moves a large
    /// frame's buffered bytes into [`Self::large`].
    fn parse(&mut self) -> Result<Option<Frame>, FrameError> {
        let avail = &self.buf[self.start..];
        let mut header = [0u8; HEADER_LEN];
        let filled = avail.len().min(HEADER_LEN);
        header[..filled].copy_from_slice(&avail[..filled]);
        frame::check_partial_header(&header, filled)?;
        if filled < HEADER_LEN {
            return Ok(None);
        }
        let (kind, len) = frame::parse_header(&header)?;
        if avail.len() >= HEADER_LEN + len {
            let payload = avail[HEADER_LEN..HEADER_LEN + len].to_vec();
            self.consume(HEADER_LEN + len);
            return Ok(Some(Frame { kind, payload }));
        }
        if len > READ_BUF {
            let mut payload = Vec::with_capacity(len);
            payload.extend_from_slice(&avail[HEADER_LEN..]);
            let all = avail.len();
            self.consume(all);
            self.large = Some((kind, len, payload));
        }
        Ok(None)
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream.
    async fn fill(&mut self) -> Result<usize, FrameError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let spare = self.buf.capacity() - self.buf.len();
        if spare < READ_BUF / 2 {
            self.buf.reserve(READ_BUF - spare);
        }
        Ok(self.io.read_buf(&mut self.buf).await?)
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

/// The length of the frame that `avail` begins, or the header's when not
/// even that is in.
fn wanted(avail: &[u8]) -> usize {
    match avail.first_chunk::<HEADER_LEN>() {
        Some(h) => frame::parse_header(h).map_or(HEADER_LEN, |(_, len)| HEADER_LEN + len),
        None => HEADER_LEN,
    }
}

fn truncated(got: usize, want: usize) -> FrameError {
    FrameError::Truncated { got, want }
}
