//! Daemon configuration: `<data_dir>/config.yaml` when present, defaults
//! otherwise; command-line flags override both (the binary applies them).
//!
//! Every field is optional in the file. Unknown keys are rejected so that a
//! typo does not silently fall back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/bhatti";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Which VM driver to use (`bhatti_engine::drivers::AnyDriver::select`
/// takes [`EngineKind::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The first built-in driver whose host check passes (QEMU in this
    /// build; Firecracker would come first once it is built in).
    #[default]
    Auto,
    Qemu,
    /// Not built in yet: starting the daemon with it fails and says so.
    Firecracker,
}

impl EngineKind {
    /// The name the config file uses (and the driver list knows).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Qemu => "qemu",
            Self::Firecracker => "firecracker",
        }
    }
}

/// How sandboxes reach the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// No traffic leaves the sandbox network.
    None,
    /// NAT'd egress with a deny list (host, private ranges, link-local).
    #[default]
    Nat,
}

/// What a graceful stop (SIGTERM, SIGINT) of the daemon does to running
/// sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnShutdown {
    /// Leave their VMs running: the next daemon adopts them with their
    /// memory, processes and sessions (a restart or an upgrade).
    #[default]
    Keep,
    /// Snapshot each to disk first (the host is going down: the snapshot
    /// survives a reboot, a running VM does not).
    Snapshot,
}

/// The daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub engine: EngineKind,
    pub egress: Egress,
    /// The network namespace the daemon owns for sandbox networking.
    pub netns: String,
    /// Seconds idle (no attached session) before a hot sandbox is paused.
    pub warm_after_secs: u64,
    /// Seconds warm before the sandbox is snapshotted to disk.
    pub cold_after_secs: u64,
    /// Thermal manager tick, seconds.
    pub tick_secs: u64,
    /// Default image tier for new sandboxes.
    pub image: String,
    /// Domain under which published aliases are served (`<alias>-<tag>.<domain>`).
    pub public_domain: Option<String>,
    /// Seconds a connection may take to deliver a complete request head,
    /// counted from the moment it is ready for one (accepted, or its
    /// previous response sent): it bounds slow headers and keep-alive
    /// idle time alike. A request whose head is in is never cut by it
    /// (streams, WebSocket shells, proxied streams). See [`crate::listen`].
    pub header_timeout_secs: u64,
    /// Most connections open at once that have not yet delivered their
    /// first request head; a new one beyond it closes the oldest of them.
    pub max_pending_connections: usize,
    /// What a graceful stop does to running sandboxes ([`OnShutdown`]).
    pub on_shutdown: OnShutdown,
    /// The host address that per-sandbox `host_port` forwards of listening
    /// guest ports bind (v1's `GET /ports`); `null` turns them off.
    /// Loopback by default: only this host reaches them. Each forward is
    /// an ephemeral port on this address, relayed through the guest agent
    /// (see [`crate::hostports`]).
    pub host_port_bind: Option<std::net::IpAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("valid default listen address"),
            engine: EngineKind::Auto,
            egress: Egress::Nat,
            netns: "bhatti".into(),
            warm_after_secs: 30,
            cold_after_secs: 30 * 60,
            tick_secs: 10,
            image: "minimal".into(),
            public_domain: None,
            header_timeout_secs: 10,
            max_pending_connections: 256,
            on_shutdown: OnShutdown::Keep,
            host_port_bind: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Path of the config file inside a data dir.
    pub fn file_in(data_dir: &Path) -> PathBuf {
        data_dir.join("config.yaml")
    }

    /// Loads `<data_dir>/config.yaml` if it exists (defaults otherwise). The
    /// result's `data_dir` is always `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = Self::file_in(data_dir);
        let mut cfg = match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Self::default(),
            Ok(text) => serde_yaml_ng::from_str(&text)
                .map_err(|source| ConfigError::Parse { path, source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        cfg.data_dir = data_dir.to_owned();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.netns.is_empty()
            || self.netns.len() > 32
            || !self
                .netns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid(format!(
                "netns {:?}: 1-32 characters of [A-Za-z0-9_-]",
                self.netns
            )));
        }
        if self.tick_secs == 0 {
            return Err(ConfigError::Invalid("tick_secs must be at least 1".into()));
        }
        if self.header_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "header_timeout_secs must be at least 1".into(),
            ));
        }
        if self.max_pending_connections == 0 {
            return Err(ConfigError::Invalid(
                "max_pending_connections must be at least 1".into(),
            ));
        }
        if self.cold_after_secs < self.warm_after_secs {
            return Err(ConfigError::Invalid(format!(
                "cold_after_secs ({}) must not be shorter than warm_after_secs ({})",
                self.cold_after_secs, self.warm_after_secs
            )));
        }
        Ok(())
    }

    /// The state database.
    pub fn state_db(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }

    /// The age identity that encrypts secrets.
    pub fn age_key(&self) -> PathBuf {
        self.data_dir.join("age.key")
    }
}
