//! Async codec over tokio's `AsyncRead`/`AsyncWrite`; same rules as
//! [`crate::sync_io`], taken from [`crate::frame`].

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{self, Frame, FrameError, FrameType, HEADER_LEN};

/// Writes one frame with a single `write_all` of one buffer.
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    kind: FrameType,
    payload: &[u8],
) -> Result<(), FrameError> {
    let buf = frame::encode(kind, payload)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream (no byte at all);
/// a stream that ends inside a frame is [`FrameError::Truncated`].
///
/// Cancel safety: not cancel safe (a cancelled read may have consumed part
/// of a frame). Callers that race reads against other events should run the
/// reader in its own task and pass frames over a channel.
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_header(r, &mut header).await?;
    let Some((kind, len)) = frame::header_after_read(got, &header)? else {
        return Ok(None);
    };
    // `len` is bounded by MAX_PAYLOAD_LEN; reading into reserved capacity
    // avoids zero-filling the buffer first.
    let mut payload = Vec::with_capacity(len);
    (&mut *r).take(len as u64).read_to_end(&mut payload).await?;
    frame::frame_after_read(kind, len, payload).map(Some)
}

/// Reads a header until it is complete or the stream ends; returns the
/// bytes read. A bad length field fails as soon as its four bytes are in.
async fn read_header<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    header: &mut [u8; HEADER_LEN],
) -> Result<usize, FrameError> {
    let mut filled = 0;
    while filled < HEADER_LEN {
        match r.read(&mut header[filled..]).await? {
            0 => break,
            n => filled += n,
        }
        frame::check_partial_header(header, filled)?;
    }
    Ok(filled)
}
