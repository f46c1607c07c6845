//! TAP devices inside the sandbox namespace: one per VM, attached to the
//! bridge, named `<prefix><suffix>` so that orphans are recognisable.
//!
//! # Threads, locks, I/O
//! Blocking `ip` commands (through [`super::cmd`]); no shared state. The
//! TAP is persistent (`ip tuntap add`), so it survives the VMM process:
//! a sandbox keeps its TAP across stop/start and its guest keeps its
//! address.

use std::collections::HashSet;

use super::cmd::{self, CmdError};
use crate::netns::MAX_IFNAME_LEN;

/// Errors from TAP operations.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("invalid TAP name {0:?} (1-15 chars of [A-Za-z0-9_.-])")]
    InvalidName(String),
    #[error(transparent)]
    Cmd(#[from] CmdError),
}

/// Whether `name` is a valid interface name.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The TAP name for a sandbox: `prefix` + as much of `key` as fits in an
/// interface name, with characters outside `[A-Za-z0-9_.-]` dropped.
pub fn tap_name(prefix: &str, key: &str) -> String {
    let room = MAX_IFNAME_LEN.saturating_sub(prefix.len());
    let suffix: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(room)
        .collect();
    format!("{prefix}{suffix}")
}

/// Creates `name` in `netns` (if absent), attaches it to `bridge` and
/// brings it up. Idempotent.
pub fn create(netns: &str, bridge: &str, name: &str) -> Result<(), TapError> {
    if !valid_ifname(name) {
        return Err(TapError::InvalidName(name.to_owned()));
    }
    if !exists(netns, name)? {
        cmd::ip_in(netns, &["tuntap", "add", "dev", name, "mode", "tap"])?;
    }
    cmd::ip_in(netns, &["link", "set", name, "master", bridge])?;
    cmd::ip_in(netns, &["link", "set", name, "up"])?;
    Ok(())
}

/// Removes `name` from `netns`; a missing TAP is not an error.
pub fn remove(netns: &str, name: &str) -> Result<(), TapError> {
    if !valid_ifname(name) {
        return Err(TapError::InvalidName(name.to_owned()));
    }
    if exists(netns, name)? {
        cmd::ip_in(netns, &["link", "del", name])?;
    }
    Ok(())
}

/// Whether interface `name` exists in `netns`.
pub fn exists(netns: &str, name: &str) -> Result<bool, TapError> {
    Ok(link_names(netns, None)?.iter().any(|n| n == name))
}

/// Names of the TAP devices in `netns` that start with `prefix`.
pub fn list(netns: &str, prefix: &str) -> Result<Vec<String>, TapError> {
    let mut names = link_names(netns, Some("tun"))?;
    names.retain(|n| n.starts_with(prefix));
    names.sort();
    Ok(names)
}

/// Removes every `prefix` TAP in `netns` that is not in `in_use`; returns
/// the names removed.
pub fn remove_orphans(
    netns: &str,
    prefix: &str,
    in_use: &HashSet<String>,
) -> Result<Vec<String>, TapError> {
    let mut removed = Vec::new();
    for name in list(netns, prefix)? {
        if !in_use.contains(&name) {
            remove(netns, &name)?;
            removed.push(name);
        }
    }
    Ok(removed)
}

fn link_names(netns: &str, kind: Option<&str>) -> Result<Vec<String>, TapError> {
    let mut args = vec!["link", "show"];
    if let Some(kind) = kind {
        args.extend(["type", kind]);
    }
    let v = cmd::ip_json_in(netns, &args)?;
    Ok(v.as_array()
        .map(|links| {
            links
                .iter()
                .filter_map(|l| l.get("ifname").and_then(|n| n.as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_and_are_clean() {
        assert_eq!(tap_name("bt-", "abc"), "bt-abc");
        let long = tap_name("bt-", "0123456789abcdefXYZ");
        assert_eq!(long, "bt-0123456789ab");
        assert!(valid_ifname(&long));
        assert_eq!(tap_name("bt-", "a/b c;d"), "bt-abcd");
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname(&"x".repeat(16)));
    }
}
