//! Request handlers, one module per request type, all of one shape:
//!
//! ```text
//! pub async fn handle(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error>
//! ```
//!
//! A handler owns its connection until the operation ends. Its module's
//! `Error` enum implements [`Reply`]: errors the client should hear about
//! become one ERROR frame (sent by [`crate::server`]); transport errors
//! (the peer is gone) are only logged.
//!
//! Two entries differ on purpose: `exec::dispatch` routes an EXEC_REQ to
//! `session::attach`, `session::create` or `exec::handle` (PROTOCOL.md's
//! order), and `forward::handle` takes the raw stream, because after its
//! handshake the connection is no longer framed.

pub mod activity;
pub mod exec;
pub mod file_ls;
pub mod file_read;
pub mod file_stat;
pub mod file_write;
pub mod forward;
pub mod session;
pub mod session_kill;
pub mod session_list;

use std::io;

/// How a handler error is reported.
pub trait Reply: std::fmt::Display {
    /// Whether the message should go to the client as an ERROR frame
    /// (false when the connection itself failed).
    fn reply(&self) -> bool;
}

/// An OS error as short lowercase text without the "(os error N)" suffix,
/// e.g. `no such file or directory` (the wording clients match on).
pub fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_text_is_lowercase_without_errno() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_text(&e), "no such file or directory");
        let e = io::Error::from_raw_os_error(libc::EISDIR);
        assert_eq!(io_text(&e), "is a directory");
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_text(&e), "connection refused");
        assert_eq!(io_text(&io::Error::other("Custom")), "custom");
    }
}
