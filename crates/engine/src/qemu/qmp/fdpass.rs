//! Handing QEMU an open file: the `getfd` command sent with the
//! descriptor as `SCM_RIGHTS` ancillary data on the QMP socket. QEMU keeps
//! it under the given name (`fd:NAME` in a migration URI) until it is used
//! and closed.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
use serde_json::json;
use tokio::io::Interest;

use super::{QmpClient, QmpError};

impl QmpClient {
    /// `getfd NAME` with `fd` attached.
    pub async fn send_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        let after = self.command_timeout;
        super::within(after, self.send_fd_inner(name, fd)).await
    }

    async fn send_fd_inner(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        let (id, bytes) = self.request("getfd", Some(json!({ "fdname": name })))?;
        let stream: &tokio::net::UnixStream = self.writer.as_ref();
        let mut sent = 0;
        while sent < bytes.len() {
            stream.writable().await?;
            let r = stream.try_io(Interest::WRITABLE, || {
                // The descriptor goes with the first bytes only.
                let fds = [fd.as_fd()];
                let mut space =
                    [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut anc = SendAncillaryBuffer::new(&mut space);
                if sent == 0 && !anc.push(SendAncillaryMessage::ScmRights(&fds)) {
                    return Err(std::io::Error::other("no room for SCM_RIGHTS"));
                }
                let iov = [std::io::IoSlice::new(&bytes[sent..])];
                sendmsg(stream, &iov, &mut anc, SendFlags::NOSIGNAL).map_err(std::io::Error::from)
            });
            match r {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.await_reply("getfd", id).await?;
        Ok(())
    }
}
