//! `config.json` on a sandbox's config drive: everything lohar needs at boot.
//! The host writes it once at create; nothing is configured by exec later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Path of the config file inside the config drive.
pub const CONFIG_FILE: &str = "config.json";

/// The whole guest configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestConfig {
    pub sandbox_id: String,
    pub hostname: String,
    /// Agent token (hex); empty means no auth.
    pub token: String,
    /// Sandbox environment (secrets already merged in), applied to every
    /// command between the defaults and the request's own env.
    pub env: BTreeMap<String, String>,
    /// Files to write at boot.
    pub files: Vec<GuestFile>,
    /// Block devices to mount.
    pub volumes: Vec<GuestVolume>,
    /// Shell script run as the TTY session `init`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Nameservers for `/etc/resolv.conf`.
    pub dns: Vec<String>,
    /// The sandbox user: owner of the files written at boot, of volumes
    /// and of files written through the API; runs the `init` script.
    /// uid 0 here makes all of that root.
    pub user: GuestUser,
    /// Extension (`docs/protocol.md`, "user"): when set, exec, TTY
    /// sessions, the `init` script and the owner of files written through
    /// the API all default to this guest user (a name from the guest's
    /// `/etc/passwd` or a numeric uid) instead of v1's rule (commands as
    /// root, files and `init` as [`GuestConfig::user`]). A request's own
    /// `user` still wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_user: Option<String>,
}

/// A file written at boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestFile {
    pub path: String,
    /// Content, base64 (standard alphabet, padded).
    pub content_b64: String,
    /// Octal permission string; `"0644"` when empty.
    pub mode: String,
    /// Owned by root instead of the sandbox user.
    pub root_owned: bool,
}

/// A block device mounted at boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestVolume {
    /// Guest device, e.g. `/dev/vdc`.
    pub device: String,
    /// Absolute mount point.
    pub mount: String,
    pub readonly: bool,
}

/// The sandbox user (v1: `lohar`, uid 1000, home `/home/lohar`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

impl Default for GuestUser {
    fn default() -> Self {
        Self {
            name: "lohar".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/lohar".into(),
        }
    }
}
