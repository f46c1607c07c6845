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
//! BHATTI-IDENTIFY 1 <compact JSON of Identity>\n
//! ```
//!
//! Compact JSON has no raw newline or control byte (they are escaped in
//! strings), and the console's input is raw (no byte is special), so the
//! JSON goes as it is: every byte crosses an emulated UART, a few bytes
//! per interrupt, which makes the line's length most of the time a
//! restore spends on it. Other lines (nothing else is ever written there
//! by the host) are ignored.
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

#[cfg(test)]
use crate::token::hex;

/// What starts an identify line (then the JSON, then `\n`).
pub const LINE_PREFIX: &str = "BHATTI-IDENTIFY 1 ";

/// Longest identify line lohar accepts (prefix, JSON and newline).
pub const MAX_LINE_LEN: usize = 512 * 1024;

/// Bytes of entropy sent with every identity (the kernel's CRNG key is
/// 256 bits).
pub const ENTROPY_LEN: usize = 32;

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
    #[error("identify payload: {0}")]
    Json(#[from] serde_json::Error),
}

impl Identity {
    /// The whole line, newline included.
    pub fn to_line(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{LINE_PREFIX}{json}\n")
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
        Ok(serde_json::from_slice(payload)?)
    }

    /// The entropy bytes (`None` if `entropy` is not hex).
    pub fn entropy_bytes(&self) -> Option<Vec<u8>> {
        unhex(self.entropy.as_bytes())
    }
}

/// `text` (a console's output) with every line that holds an identify
/// line replaced by a note: a guest whose console echoed its input (an
/// agent older than identify) would otherwise show its new token and
/// environment in error messages and logs built from the console.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.contains(LINE_PREFIX.trim_end()) {
            out.push_str("[identify line withheld]\n");
        } else {
            out.push_str(line);
        }
    }
    out
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
    fn a_line_round_trips_without_control_bytes() {
        let id = sample();
        let line = id.to_line();
        assert!(line.ends_with('\n'));
        let body = &line.as_bytes()[..line.len() - 1];
        assert!(!body.iter().any(u8::is_ascii_control), "{line:?}");
        assert_eq!(Identity::from_line(line.as_bytes()).expect("parses"), id);
        assert_eq!(id.entropy_bytes(), Some(vec![7; ENTROPY_LEN]));
    }

    #[test]
    fn redact_withholds_identify_lines_only() {
        let line = sample().to_line();
        let text = format!("boot ok\n{line}after\nlast");
        let out = redact(&text);
        assert_eq!(out, "boot ok\n[identify line withheld]\nafter\nlast");
        assert!(!out.contains(&sample().token));
    }

    #[test]
    fn other_lines_are_refused_with_the_reason() {
        assert!(matches!(
            Identity::from_line(b"hello"),
            Err(IdentifyError::NotIdentify)
        ));
        let not_json = format!("{LINE_PREFIX}{{\"auth\":1}}\n");
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
