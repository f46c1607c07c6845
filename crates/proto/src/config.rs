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
    /// The unprivileged user that runs commands.
    pub user: GuestUser,
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

/// The user that runs user commands.
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
