//! Restart recovery from the data dir alone.
//!
//! Each sandbox dir holds `sandbox.json` ([`Meta`]: what is needed to run
//! it again: size, image, address, TAP, agent token, volumes), written when
//! the sandbox became ready. On a new engine, [`VmEngine::recover`] walks
//! `sandboxes/`: a sandbox whose snapshot file exists comes back Cold (its
//! address re-reserved, TAP re-created, volumes re-attached) and wakes on
//! demand; one without a snapshot (its VMM died while hot) is reported as
//! unrecoverable with the reason and left on disk untouched.
//!
//! # Threads, locks, I/O
//! Reads small JSON files and runs `ip` on the blocking pool; takes the
//! map lock only to insert each recovered sandbox.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bhatti_agent::Client;
use serde::{Deserialize, Serialize};

use super::create::guest_port;
use super::{Sandbox, Slot, VmEngine, blocking};
use crate::agent_link::NetnsConnector;
use crate::driver::Driver;
use crate::engine::{EngineError, EngineResult, SandboxId, SandboxSpec, VolumeSpec};
use crate::state::SandboxState;

/// File name of a sandbox's metadata in its dir.
pub const META_FILE: &str = "sandbox.json";

/// What a sandbox needs to be run again after an engine restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Meta {
    pub id: SandboxId,
    pub cpus: u32,
    pub memory_mb: u32,
    pub image: String,
    pub ip: Ipv4Addr,
    pub tap: String,
    pub token: String,
    pub volumes: Vec<VolumeSpec>,
    /// Egress was on (re-applied on recovery).
    #[serde(default)]
    pub egress: bool,
    /// Network tenant (absent in older files: a tenant of its own).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Peers allowed (absent in older files: the default, yes).
    #[serde(default = "yes")]
    pub peers: bool,
}

fn yes() -> bool {
    true
}

/// Outcome of recovering one sandbox dir.
#[derive(Debug)]
pub enum Recovery {
    /// Back as Cold; wakes on demand.
    Cold(SandboxId),
    /// Not recoverable; the dir is left as it is.
    Unknown { dir: PathBuf, reason: Lost },
}

/// Why a sandbox dir cannot be run again. Its text is what the user sees
/// as the sandbox's status reason.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("no readable {META_FILE}: {0}")]
    NoMeta(#[source] std::io::Error),
    #[error("invalid {META_FILE}: {0}")]
    BadMeta(#[source] serde_json::Error),
    #[error("{META_FILE} names another sandbox ({0})")]
    OtherSandbox(SandboxId),
    #[error("no snapshot: its VMM ended without one")]
    NoSnapshot,
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("its network: {0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("its volumes: {0}")]
    Volume(#[source] EngineError),
    #[error("restoring it: {0}")]
    Engine(#[from] EngineError),
}

pub(super) fn write_meta(dir: &Path, meta: &Meta) -> EngineResult<()> {
    let path = dir.join(META_FILE);
    let io = |source| EngineError::Io {
        path: path.clone(),
        source,
    };
    let json = serde_json::to_vec_pretty(meta).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    // It holds the agent token: the daemon's alone.
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&json))
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

pub(super) fn read_meta(dir: &Path) -> Result<Meta, Lost> {
    let bytes = std::fs::read(dir.join(META_FILE)).map_err(Lost::NoMeta)?;
    serde_json::from_slice(&bytes).map_err(Lost::BadMeta)
}

impl<D: Driver> VmEngine<D> {
    /// The network port, egress and volumes of a sandbox being recovered
    /// (its address is already reserved); on failure the volumes attached
    /// so far are released.
    async fn reconnect(&self, meta: &Meta, spec: &SandboxSpec) -> Result<Vec<PathBuf>, Lost> {
        let (net, port) = (
            self.network.clone(),
            guest_port(&meta.id, spec, meta.ip, &meta.tap),
        );
        blocking(move || net.attach(&port)).await??;
        if meta.egress {
            let (net, ip) = (self.network.clone(), meta.ip);
            blocking(move || net.set_guest_egress(ip, true)).await??;
        }
        let mut paths = Vec::new();
        for (i, v) in meta.volumes.iter().enumerate() {
            match self.volumes.attach(&v.name, v.size_mb, &meta.id).await {
                Ok(p) => paths.push(p),
                Err(e) => {
                    for done in &meta.volumes[..i] {
                        self.volumes.release(&done.name);
                    }
                    return Err(Lost::Volume(e));
                }
            }
        }
        Ok(paths)
    }

    /// Brings back every sandbox of the data dir that has a snapshot.
    pub async fn recover(&self) -> EngineResult<Vec<Recovery>> {
        let root = self.config.data_dir.join("sandboxes");
        let entries = std::fs::read_dir(&root).map_err(|source| EngineError::Io {
            path: root.clone(),
            source,
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        let mut out = Vec::new();
        for dir in dirs {
            match self.recover_one(&dir).await {
                Ok(Some(id)) => out.push(Recovery::Cold(id)),
                Ok(None) => {}
                Err(reason) => out.push(Recovery::Unknown { dir, reason }),
            }
        }
        Ok(out)
    }

    /// `Ok(None)`: already known to this engine.
    async fn recover_one(&self, dir: &Path) -> Result<Option<SandboxId>, Lost> {
        let meta = read_meta(dir)?;
        if self.get(&meta.id).is_ok() {
            return Ok(None);
        }
        if dir.file_name().and_then(|n| n.to_str()) != Some(meta.id.as_str()) {
            return Err(Lost::OtherSandbox(meta.id));
        }
        let snapshot = self.driver.saved_snapshot(dir).ok_or(Lost::NoSnapshot)?;
        let image = meta.image.parse()?;
        let kernel = self.config.images.kernel()?;
        self.network.mark_ip_in_use(meta.ip)?;
        let spec = SandboxSpec {
            cpus: meta.cpus,
            memory_mb: meta.memory_mb,
            image,
            volumes: meta.volumes.clone(),
            egress: Some(meta.egress),
            tenant: meta.tenant.clone(),
            peers: meta.peers,
            ..SandboxSpec::default()
        };
        let volume_paths = match self.reconnect(&meta, &spec).await {
            Ok(paths) => paths,
            Err(e) => {
                let _ = self.network.release_ip(meta.ip);
                return Err(e);
            }
        };
        let vm_config = self.vm_config(dir, &spec, kernel, meta.ip, &meta.tap, volume_paths);
        let link = self.driver.agent_transport(&vm_config);
        let agent = Client::new(NetnsConnector::for_transport(link, self.sockets.clone()))
            .with_token(&meta.token);
        let sb = Arc::new(Sandbox {
            id: meta.id.clone(),
            ip: meta.ip,
            tap: meta.tap.clone(),
            dir: dir.to_owned(),
            vm_config,
            agent,
            volumes: meta.volumes.iter().map(|v| v.name.clone()).collect(),
            spec,
            restores: AtomicU64::new(0),
            observed: Sandbox::<D>::observed(SandboxState::Cold),
            slot: tokio::sync::Mutex::new(Slot {
                state: SandboxState::Cold,
                vm: None,
                snapshot: Some(snapshot),
            }),
        });
        self.insert(sb).await;
        Ok(Some(meta.id))
    }
}
