//! [`Client::write_file`]: a file streamed from any `AsyncRead`, written
//! by the agent to a temp file, fsynced and renamed over the target.
//!
//! The source is read into one frame-sized buffer (header space first) and
//! each frame is sent with one write; the file is never held in memory
//! whole. A write of at most [`SMALL_WRITE`] bytes is read first, so it can
//! go over an idle reused connection (protocol version 6) and be sent again
//! should that one turn out dead; a bigger one opens its own connection,
//! kept afterwards. Writes accept permission bits only (at most 0777).

use bhatti_proto::MAX_PAYLOAD_LEN;
use bhatti_proto::frame::{FrameType, HEADER_LEN};
use bhatti_proto::messages::{self, FileWriteRequest, StatusResponse, json_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::Client;
use crate::conn::Conn;
use crate::error::{AgentFailure, Error, ErrorCode, Result};

impl Client {
    /// Writes `size` bytes from `src` to `path` with permissions `mode`
    /// (atomically and durably on the agent's side). `mode` is permission
    /// bits only: setuid, setgid, sticky or file-type bits are
    /// [`Error::InvalidRequest`]. `src` must yield at least `size`
    /// bytes; a short source aborts the write (the agent removes its temp
    /// file) and is [`Error::InvalidRequest`]. A new file belongs to the
    /// sandbox's default owner ([`Client::write_file_as`] names one).
    pub async fn write_file<R>(&self, path: &str, mode: u32, size: u64, src: R) -> Result<()>
    where
        R: AsyncRead + Unpin,
    {
        self.write_file_as(path, mode, size, src, None).await
    }

    /// [`Client::write_file`], the file (and the directories the write
    /// creates) owned by guest `user` (a name from the guest's
    /// `/etc/passwd` or a numeric uid), also when it existed; `None` is
    /// [`Client::write_file`]: new files belong to the sandbox's
    /// `exec_user`, else the sandbox user, a replaced file keeps its
    /// owner. The agent writes as root either way: `user` sets the owner,
    /// it is no access check. Unknown user → [`Error::Agent`] with
    /// [`ErrorCode::InvalidRequest`]. Extension "user"
    /// (`docs/protocol.md`): a v1 agent ignores it.
    pub async fn write_file_as<R>(
        &self,
        path: &str,
        mode: u32,
        size: u64,
        mut src: R,
        user: Option<&str>,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin,
    {
        let size_i64 = i64::try_from(size)
            .map_err(|_| Error::InvalidRequest(format!("size {size} is too large")))?;
        if mode & !0o777 != 0 {
            return Err(Error::InvalidRequest(format!(
                "mode {mode:04o}: only permission bits (at most 0777) may be set; \
                 setuid, setgid and sticky bits are refused"
            )));
        }
        let req = FileWriteRequest {
            path: path.to_owned(),
            mode: messages::mode_string(mode),
            size: size_i64,
            user: user.map(str::to_owned),
        };
        let frame = json_frame(FrameType::FILE_WRITE_REQ, &req)?;
        if size <= SMALL_WRITE as u64 {
            // Small enough to hold: read first, so that the request can be
            // sent again should an idle connection turn out dead.
            let mut data = vec![0u8; size as usize];
            let got = fill(&mut src, &mut data).await?;
            if got < data.len() {
                return Err(short_source(got as u64, size));
            }
            let data = data.as_slice();
            let write = reply!(|c| {
                let mut src = data;
                send_body(&mut c, &mut src, size).await
            });
            return self.unary(frame.kind, &frame.payload, write).await;
        }
        let mut c = self.open_unary(frame.kind, &frame.payload).await?;
        send_body(&mut c, &mut src, size).await?;
        self.keep(c);
        Ok(())
    }
}

/// Writes up to this size are read from their source before the request
/// is sent (and may go over an idle reused connection).
const SMALL_WRITE: usize = 256 * 1024;

fn short_source(got: u64, size: u64) -> Error {
    Error::InvalidRequest(format!("source ended after {got} of {size} bytes"))
}

/// Sends a write's `size` bytes from `src` as STDIN frames and reads the
/// FILE_WRITE_RESP.
async fn send_body<R: AsyncRead + Unpin>(c: &mut Conn, src: &mut R, size: u64) -> Result<()> {
    let mut buf = vec![0u8; HEADER_LEN + (size.min(MAX_PAYLOAD_LEN as u64) as usize)];
    let mut left = size;
    while left > 0 {
        let want = left.min(MAX_PAYLOAD_LEN as u64) as usize;
        let got = fill(src, &mut buf[HEADER_LEN..HEADER_LEN + want]).await?;
        if got < want {
            // The agent removes its temp file when the connection goes.
            c.reusable = false;
            return Err(short_source(size - left + got as u64, size));
        }
        put_header(&mut buf, FrameType::STDIN, got);
        if let Err(e) = c.stream.write_all(&buf[..HEADER_LEN + got]).await {
            // The agent may have refused the write and closed; its
            // ERROR frame says why.
            return Err(match c.recv("file write").await {
                Ok(f) => crate::conn::unexpected(f),
                Err(said @ (Error::Agent(_) | Error::AuthRefused(_))) => said,
                Err(_) => e.into(),
            });
        }
        left -= got as u64;
    }
    let f = c.expect(FrameType::FILE_WRITE_RESP, "file write").await?;
    let status: StatusResponse = c.decode("FILE_WRITE_RESP", &f.payload)?;
    if status.is_ok() {
        Ok(())
    } else {
        let msg = status.message.unwrap_or(status.status);
        Err(Error::Agent(AgentFailure::new(ErrorCode::Other, msg)))
    }
}

/// Writes a frame header for a payload of `len` bytes at the start of `buf`.
fn put_header(buf: &mut [u8], kind: FrameType, len: usize) {
    // len <= MAX_PAYLOAD_LEN, so len + 1 fits in u32.
    let l = (len as u32 + 1).to_be_bytes();
    buf[..4].copy_from_slice(&l);
    buf[4] = kind.0;
}

/// Reads until `buf` is full or the source ends.
async fn fill<R: AsyncRead + Unpin>(src: &mut R, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
