//! Blocking codec over `std::io::{Read, Write}`.
//!
//! `write_frame` issues one `write_all` of a buffer that holds the whole
//! frame, so writers sharing a socket cannot interleave header and payload.

use std::io::{ErrorKind, Read, Write};

use crate::frame::{self, Frame, FrameError, FrameType, HEADER_LEN};

/// Writes one frame with a single `write_all` call.
pub fn write_frame<W: Write + ?Sized>(
    w: &mut W,
    kind: FrameType,
    payload: &[u8],
) -> Result<(), FrameError> {
    let buf = frame::encode(kind, payload)?;
    w.write_all(&buf)?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream (no byte at all);
/// a stream that ends inside a frame is [`FrameError::Truncated`].
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_header(r, &mut header)?;
    let Some((kind, len)) = frame::header_after_read(got, &header)? else {
        return Ok(None);
    };
    // `len` is bounded by MAX_PAYLOAD_LEN; reading into reserved capacity
    // avoids zero-filling the buffer first.
    let mut payload = Vec::with_capacity(len);
    r.take(len as u64).read_to_end(&mut payload)?;
    frame::frame_after_read(kind, len, payload).map(Some)
}

/// Reads a header until it is complete or the stream ends; returns the
/// bytes read. A bad length field fails as soon as its four bytes are in.
fn read_header<R: Read + ?Sized>(
    r: &mut R,
    header: &mut [u8; HEADER_LEN],
) -> Result<usize, FrameError> {
    let mut filled = 0;
    while filled < HEADER_LEN {
        match r.read(&mut header[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        frame::check_partial_header(header, filled)?;
    }
    Ok(filled)
}
