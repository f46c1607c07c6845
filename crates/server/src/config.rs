//! Daemon configuration: up to two files, defaults for what they leave
//! unset; command-line flags override everything (the binary applies
//! them).
//!
//! The files, per key highest first ([`ServerConfig::load_search`]):
//! 1. v1's config file: the first that exists of `$BHATTI_CONFIG` (or
//!    `bhatti serve --config`; a warning when it does not), `./config.yaml`
//!    and `~/.bhatti/config.yaml`;
//! 2. `<data_dir>/config.yaml`, where the data dir is `--data-dir` /
//!    `$BHATTI_DATA_DIR`, else the v1 file's `data_dir:`, else
//!    [`DEFAULT_DATA_DIR`] (this file's own `data_dir:` is ignored).
//!
//! Every field is optional in a file. Both files may hold bhatti v1's
//! keys ([`v1`]): those with a meaning here are applied, CLI keys
//! (`url`, `token`, `api_url`, `auth_token`) are ignored, the others are
//! accepted with a warning saying what they do here. Any other unknown
//! key is rejected so that a typo does not silently fall back to a
//! default. `listen:` takes Go's `:8080` (all interfaces) besides
//! `host:port` ([`parse_listen`]).

#[cfg(test)]
mod tests;
mod v1;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

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
    /// Not built in yet: `--engine firecracker` fails and says so; in a
    /// config file it is v1's default and becomes `auto` with a warning
    /// while this build has no Firecracker driver.
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

/// Who may read `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAuth {
    /// Any valid API key (`Authorization: Bearer`).
    #[default]
    Key,
    /// Anyone who reaches the listen address (for a scraper on a trusted
    /// network; the metrics name sandboxes by id and name).
    None,
}

/// The daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    #[serde(deserialize_with = "de_listen")]
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
    /// Creates restore a pre-booted snapshot of their image, vCPUs and
    /// memory instead of booting, once creates of that kind booted twice
    /// (`bhatti_engine::sandbox::golden`); off: they always boot.
    pub restore_creates: bool,
    /// Who may read `GET /metrics` ([`MetricsAuth`]): `key` (default) or
    /// `none`.
    pub metrics_auth: MetricsAuth,
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
            restore_creates: true,
            metrics_auth: MetricsAuth::Key,
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

/// A listen address: `host:port` with an IP address or `localhost`, or
/// Go's `:port` for all interfaces (`0.0.0.0:port`).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "listen {s:?}: expected HOST:PORT with an IP address or localhost, \
             or :PORT for all interfaces"
        )
    };
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    match s.rsplit_once(':') {
        Some(("localhost", port)) => Ok(SocketAddr::from((
            [127, 0, 0, 1],
            port.parse::<u16>().map_err(|_| bad())?,
        ))),
        _ => Err(bad()),
    }
}

fn de_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map_err(serde::de::Error::custom)
}

/// Where [`ServerConfig::load_search`] looks (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// `$BHATTI_CONFIG` / `--config`: read first; when it does not exist
    /// (a warning), the candidates are tried, as v1 did.
    pub explicit: Option<PathBuf>,
    /// Then the first of these that exists is v1's file.
    pub candidates: Vec<PathBuf>,
    /// `--data-dir` / `$BHATTI_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
}

impl Search {
    /// v1's candidates: `./config.yaml` (made absolute, so messages name
    /// it plainly), then `~/.bhatti/config.yaml`.
    pub fn v1_candidates() -> Vec<PathBuf> {
        let here = std::env::current_dir().unwrap_or_default();
        let mut c = vec![here.join("config.yaml")];
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            c.push(PathBuf::from(h).join(".bhatti").join("config.yaml"));
        }
        c
    }
}

/// A loaded configuration and what to tell the operator about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: ServerConfig,
    /// The files read, highest precedence first.
    pub files: Vec<PathBuf>,
    /// `<file>: <key>: …` for each v1 key ignored or changed.
    pub warnings: Vec<String>,
}

/// One file's keys after [`v1::translate`], checked against our keys.
fn read_file(path: &Path, warnings: &mut Vec<String>) -> Result<Mapping, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse = |source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    };
    if text.trim().is_empty() {
        return Ok(Mapping::new());
    }
    let mut map = match serde_yaml_ng::from_str::<Value>(&text).map_err(parse)? {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        _ => {
            return Err(ConfigError::Invalid(format!(
                "{}: expected a mapping of keys",
                path.display()
            )));
        }
    };
    let mut mine = Vec::new();
    v1::translate(&mut map, &mut mine)
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
    // Unknown keys and bad values, reported against this file.
    serde_yaml_ng::from_value::<ServerConfig>(Value::Mapping(map.clone())).map_err(parse)?;
    warnings.extend(mine.into_iter().map(|w| format!("{}: {w}", path.display())));
    Ok(map)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl ServerConfig {
    /// Path of the config file inside a data dir.
    pub fn file_in(data_dir: &Path) -> PathBuf {
        data_dir.join("config.yaml")
    }

    /// Loads `<data_dir>/config.yaml` if it exists (defaults otherwise),
    /// no v1 file; v1 keys' warnings are logged. The result's `data_dir`
    /// is always `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let loaded = Self::load_search(&Search {
            data_dir: Some(data_dir.to_owned()),
            ..Search::default()
        })?;
        for w in &loaded.warnings {
            tracing::warn!("config {w}");
        }
        Ok(loaded.config)
    }

    /// Loads the files `search` finds (see the module doc), merges them
    /// key by key and validates the result.
    pub fn load_search(search: &Search) -> Result<Loaded, ConfigError> {
        let mut warnings = Vec::new();
        let mut files = Vec::new();
        if let Some(p) = &search.explicit
            && !p.exists()
        {
            warnings.push(format!(
                "{}: no such file (BHATTI_CONFIG / --config); looking further",
                p.display()
            ));
        }
        let v1_path = search
            .explicit
            .iter()
            .chain(&search.candidates)
            .find(|p| p.exists())
            .cloned();
        let mut merged = match &v1_path {
            Some(p) => {
                files.push(p.clone());
                read_file(p, &mut warnings)?
            }
            None => Mapping::new(),
        };
        let data_dir = match (&search.data_dir, merged.get("data_dir")) {
            (Some(d), _) => d.clone(),
            (None, Some(Value::String(d))) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(DEFAULT_DATA_DIR),
        };
        let own = Self::file_in(&data_dir);
        let own_exists = own.try_exists().map_err(|source| ConfigError::Read {
            path: own.clone(),
            source,
        })?;
        if own_exists && !v1_path.as_deref().is_some_and(|p| same_file(p, &own)) {
            files.push(own.clone());
            for (k, v) in read_file(&own, &mut warnings)? {
                if !merged.contains_key(&k) {
                    merged.insert(k, v);
                }
            }
        }
        let mut config: Self =
            serde_yaml_ng::from_value(Value::Mapping(merged)).map_err(|source| {
                ConfigError::Parse {
                    path: files.first().cloned().unwrap_or_default(),
                    source,
                }
            })?;
        config.data_dir = data_dir;
        config.validate()?;
        Ok(Loaded {
            config,
            files,
            warnings,
        })
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
