//! Re-identification of a restored guest: the one message the host sends
//! to a guest that woke from another sandbox's snapshot (a fork child, or
//! a sandbox created from a named snapshot).
//!
//! Such a guest runs with its parent's MAC, IP address, hostname and agent
//! token, on a TAP whose bridge port admits only the child's own MAC and
//! address, so the host cannot reach it over the network. The channel is
//! the serial console's *input* (`/dev/ttyS0` in the guest, a Unix socket
//! on the host): lohar keeps the console open in non-canonical mode
//! without echo from boot on and reads lines from it. A line is
//!
//! ```text
//! BHATTI-IDENTIFY 1 <hex of the JSON of Identity>\n
//! ```
//!
//! Hex keeps the line free of bytes a terminal treats specially. Other
//! lines (nothing else is ever written there by the host) are ignored.
//! lohar checks `auth` against its current token in constant time, then
//! applies the identity (MAC and address of `eth0` with its default route,
//! hostname, entropy, agent token, environment) and writes
//! `bhatti-identify: ok <sandbox_id>` or `bhatti-identify: error <why>`
//! to its console output. The host's confirmation is the agent answering
//! at the new address with the new token. Connections the guest had open
//! at the snapshot belonged to the parent's host side and are closed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::token::hex;

/// What starts an identify line (then the hex payload, then `\n`).
pub const LINE_PREFIX: &str = "BHATTI-IDENTIFY 1 ";

/// Longest identify line lohar accepts (prefix, hex and newline).
pub const MAX_LINE_LEN: usize = 512 * 1024;

/// Bytes of entropy sent with every identity.
pub const ENTROPY_LEN: usize = 64;

/// A restored guest's new identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The guest's current agent token (its snapshot's): the sender proves
    /// it knows it. Checked in constant time.
    pub auth: String,
    /// The new agent token (PROTOCOL.md, Auth).
    pub token: String,
    /// The new sandbox's id (for lohar's log line).
    pub sandbox_id: String,
    /// The new hostname (`sethostname`, `/etc/hostname`, `/etc/hosts`).
    pub hostname: String,
    /// `eth0`'s new MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// `eth0`'s new IPv4 address, its prefix length and the default route.
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// [`ENTROPY_LEN`] random bytes, hex, mixed into the guest's pool and
    /// followed by a reseed of its CRNG (the parent's and every sibling's
    /// generator state is the same until then).
    pub entropy: String,
    /// When present, replaces the environment every later command starts
    /// with (the config drive's `env` at boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
}

/// Why a line is not a valid identify line.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error("not an identify line")]
    NotIdentify,
    #[error("identify line longer than {MAX_LINE_LEN} bytes")]
    TooLong,
    #[error("identify payload is not hex")]
    Hex,
    #[error("identify payload: {0}")]
    Json(#[from] serde_json::Error),
}

impl Identity {
    /// The whole line, newline included.
    pub fn to_line(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{LINE_PREFIX}{}\n", hex(&json))
    }

    /// Parses one line (with or without its `\n`/`\r\n`).
    pub fn from_line(line: &[u8]) -> Result<Self, IdentifyError> {
        if line.len() > MAX_LINE_LEN {
            return Err(IdentifyError::TooLong);
        }
        let line = line.trim_ascii();
        let payload = line
            .strip_prefix(LINE_PREFIX.as_bytes())
            .ok_or(IdentifyError::NotIdentify)?;
        let json = unhex(payload).ok_or(IdentifyError::Hex)?;
        Ok(serde_json::from_slice(&json)?)
    }

    /// The entropy bytes (`None` if `entropy` is not hex).
    pub fn entropy_bytes(&self) -> Option<Vec<u8>> {
        unhex(self.entropy.as_bytes())
    }
}

/// Bytes of a hex string (either case); `None` on any other byte or an
/// odd length.
pub fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Identity {
        Identity {
            auth: "a".repeat(32),
            token: "b".repeat(32),
            sandbox_id: "child-1".into(),
            hostname: "child-1".into(),
            mac: "02:00:0a:00:00:05".into(),
            ip: Ipv4Addr::new(10, 0, 0, 5),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            entropy: hex(&[7; ENTROPY_LEN]),
            env: Some(BTreeMap::from([("K".into(), "line\nbreak ü".into())])),
        }
    }

    #[test]
    fn a_line_round_trips_and_is_plain_ascii() {
        let id = sample();
        let line = id.to_line();
        assert!(line.ends_with('\n'));
        assert!(
            line.bytes()
                .all(|b| b == b'\n' || (0x20..0x7f).contains(&b))
        );
        assert_eq!(Identity::from_line(line.as_bytes()).expect("parses"), id);
        assert_eq!(id.entropy_bytes(), Some(vec![7; ENTROPY_LEN]));
    }

    #[test]
    fn other_lines_are_refused_with_the_reason() {
        assert!(matches!(
            Identity::from_line(b"hello"),
            Err(IdentifyError::NotIdentify)
        ));
        let bad = format!("{LINE_PREFIX}zz\n");
        assert!(matches!(
            Identity::from_line(bad.as_bytes()),
            Err(IdentifyError::Hex)
        ));
        let not_json = format!("{LINE_PREFIX}{}\n", hex(b"{\"auth\":1}"));
        assert!(matches!(
            Identity::from_line(not_json.as_bytes()),
            Err(IdentifyError::Json(_))
        ));
        let long = vec![b'a'; MAX_LINE_LEN + 1];
        assert!(matches!(
            Identity::from_line(&long),
            Err(IdentifyError::TooLong)
        ));
    }
}
