//! Restart recovery from the data dir alone.
//!
//! Each sandbox dir holds `sandbox.json` ([`Meta`]: what is needed to run
//! it again: size, image, disk size, address, TAP, agent token, volumes,
//! boot env), written when the sandbox became ready. On a new engine,
//! [`VmEngine::recover`] walks `sandboxes/`:
//!
//! | found in the dir                        | comes back as                              |
//! |-----------------------------------------|--------------------------------------------|
//! | its VMM still running (the daemon died) | adopted: Hot or Warm, memory and sessions kept |
//! | a snapshot that looks restorable        | Cold: wakes on demand from the snapshot    |
//! | no VMM, no usable snapshot, its disk    | Cold with a note: the next wake boots it from its disk (memory lost) |
//! | no `sandbox.json` (create interrupted)  | [`Recovery::Abandoned`]: the dir is removed |
//! | unreadable `sandbox.json`, no disk      | [`Recovery::Unknown`] with the reason; left on disk |
//!
//! Each recovered sandbox's address is re-reserved, its TAP, rules, egress
//! and volumes made again (all idempotent: an adopted VMM keeps its TAP).
//! Then every VMM process under `sandboxes/` that no recovered sandbox
//! holds is an orphan and is killed, and every engine TAP no recovered
//! sandbox uses is removed.
//!
//! # Threads, locks, I/O
//! Reads small JSON files, talks to running VMMs' control sockets and runs
//! `ip` on the blocking pool; takes the map lock only to insert each
//! recovered sandbox.

use std::collections::HashSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bhatti_agent::Client;
use serde::{Deserialize, Serialize};

use super::create::{OVERLAY_FILE, guest_port, root_disk};
use super::{Sandbox, Slot, VmEngine, blocking, orphans, remove_dir};
use crate::agent_link::NetnsConnector;
use crate::driver::{Driver, VmConfig};
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
    /// [`SandboxSpec::disk_mb`] (absent in older files and when the disk
    /// is the image's size). Its rootfs copy already has that size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
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
    /// What a boot from disk gives the guest again (absent in older
    /// files: none). The environment is not here: it may hold secrets,
    /// which stay off the disk ([`VmEngine::set_boot_env`]).
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub init: Option<String>,
    /// [`SandboxSpec::exec_user`] (absent in older files: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_user: Option<String>,
}

impl Meta {
    /// The `sandbox.json` of a sandbox made from `spec` (booted or
    /// restored) at `ip` on `tap` with agent token `token`.
    pub(super) fn of(
        id: &SandboxId,
        spec: &SandboxSpec,
        ip: Ipv4Addr,
        tap: &str,
        token: String,
    ) -> Self {
        Self {
            id: id.clone(),
            cpus: spec.cpus,
            memory_mb: spec.memory_mb,
            image: spec.image.to_string(),
            disk_mb: spec.disk_mb,
            ip,
            tap: tap.to_owned(),
            token,
            volumes: spec.volumes.clone(),
            egress: spec.egress.unwrap_or(false),
            tenant: spec.tenant.clone(),
            peers: spec.peers,
            hostname: spec.hostname.clone(),
            init: spec.init.clone(),
            exec_user: spec.exec_user.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Outcome of recovering one sandbox dir.
#[derive(Debug)]
pub enum Recovery {
    /// Held by the engine again (see [`VmEngine::status`] for its state:
    /// Hot or Warm when its VMM was adopted, Cold otherwise).
    Held(SandboxId),
    /// A create that never finished (no `sandbox.json`): its dir was
    /// removed; its VMM and TAP, if any, are ended with the orphans.
    Abandoned(SandboxId),
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
    #[error("its disk ({}) is missing", OVERLAY_FILE)]
    NoDisk,
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("its network: {0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("its volumes: {0}")]
    Volume(#[source] EngineError),
    #[error("restoring it: {0}")]
    Engine(#[from] EngineError),
}

/// The note of a sandbox whose VMM ended while no engine ran, without a
/// snapshot.
const ENDED_WHILE_DOWN: &str = "its VMM ended while the daemon was down, without a snapshot";

pub(super) fn write_meta(dir: &Path, meta: &Meta) -> EngineResult<()> {
    write_private_json(&dir.join(META_FILE), meta)
}

/// Writes `value` as JSON to `path` (through a temporary file and a
/// rename, mode 0600: such files hold agent tokens).
pub(super) fn write_private_json(path: &Path, value: &impl Serialize) -> EngineResult<()> {
    let io = |source| EngineError::Io {
        path: path.to_owned(),
        source,
    };
    let json = serde_json::to_vec_pretty(value).map_err(|e| io(std::io::Error::other(e)))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&json))
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

pub(super) fn read_meta(dir: &Path) -> Result<Meta, Lost> {
    let bytes = std::fs::read(dir.join(META_FILE)).map_err(Lost::NoMeta)?;
    serde_json::from_slice(&bytes).map_err(Lost::BadMeta)
}

impl<D: Driver> VmEngine<D> {
    /// Deletes the directory of a sandbox that recovery reported lost
    /// ([`Recovery::Unknown`]) once its owner decided it is not wanted.
    /// Refuses anything but a directory right under `sandboxes/` of the
    /// data dir, and the directory of a sandbox this engine holds.
    pub async fn remove_lost(&self, dir: &std::path::Path) -> EngineResult<()> {
        let root = self.config.data_dir.join("sandboxes");
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let held = name
            .parse::<SandboxId>()
            .is_ok_and(|id| self.get(&id).is_ok());
        if dir.parent() != Some(root.as_path()) || name.is_empty() || held {
            return Err(EngineError::Inconsistent(format!(
                "{} is not a lost sandbox directory",
                dir.display()
            )));
        }
        // Its address was kept while its files existed.
        let ip = read_meta(dir).ok().map(|m| m.ip);
        remove_dir(dir).await?;
        if let Some(ip) = ip
            && self.network.ip_in_use(ip)
        {
            let _ = self.network.release_ip(ip);
        }
        Ok(())
    }

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

    /// Brings back every sandbox of the data dir (module docs), then ends
    /// the VMMs and TAPs no sandbox holds. Call it when the engine starts,
    /// before any create: a create in progress has no `sandbox.json` yet
    /// and would be taken for one that never finished.
    pub async fn recover(&self) -> EngineResult<Vec<Recovery>> {
        self.clear_partial_snapshots();
        self.clear_partial_goldens();
        self.tidy_images();
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
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(reason) => {
                    // Its address stays taken while its files exist.
                    if let Ok(meta) = read_meta(&dir) {
                        let _ = self.network.mark_ip_in_use(meta.ip);
                    }
                    out.push(Recovery::Unknown { dir, reason });
                }
            }
        }
        self.end_orphans(&root).await?;
        Ok(out)
    }

    /// Kills VMM processes under `root` that no sandbox holds and removes
    /// the TAPs no sandbox uses.
    async fn end_orphans(&self, root: &Path) -> EngineResult<()> {
        let (mut held, mut taps) = (HashSet::new(), HashSet::new());
        for sb in self.all() {
            taps.insert(sb.tap.clone());
            if let Some(pid) = sb.observed.borrow().pid {
                held.insert(i32::try_from(pid).unwrap_or(-1));
            }
        }
        let root = root.to_owned();
        let killed = blocking(move || orphans::kill_all_except(&root, &held)).await?;
        if !killed.is_empty() {
            tracing::warn!(?killed, "killed orphan VMM processes");
        }
        let n = self.network.clone();
        let removed = blocking(move || n.remove_orphan_taps(&taps)).await??;
        if !removed.is_empty() {
            tracing::info!(?removed, "removed orphan TAP devices");
        }
        Ok(())
    }

    /// `Ok(None)`: already known to this engine, or not a sandbox dir.
    async fn recover_one(&self, dir: &Path) -> Result<Option<Recovery>, Lost> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let meta = match read_meta(dir) {
            Ok(meta) => meta,
            Err(Lost::NoMeta(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let Ok(id) = name.parse::<SandboxId>() else {
                    return Ok(None);
                };
                tracing::warn!(sandbox = %id, "removing the files of a create that never finished");
                remove_dir(dir).await?;
                return Ok(Some(Recovery::Abandoned(id)));
            }
            Err(e) => return Err(e),
        };
        if self.get(&meta.id).is_ok() {
            return Ok(None);
        }
        if name != meta.id.as_str() {
            return Err(Lost::OtherSandbox(meta.id));
        }
        if !root_disk(dir).is_file() {
            return Err(Lost::NoDisk);
        }
        let image = meta.image.parse()?;
        let kernel = self.config.images.kernel()?;
        self.network.mark_ip_in_use(meta.ip)?;
        let spec = SandboxSpec {
            cpus: meta.cpus,
            memory_mb: meta.memory_mb,
            image,
            disk_mb: meta.disk_mb,
            hostname: meta.hostname.clone(),
            init: meta.init.clone(),
            exec_user: meta.exec_user.clone(),
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
        let slot = self.found_vm(&meta.id, dir, &vm_config).await;
        let link = self.driver.agent_transport(&vm_config);
        let agent = Client::new(NetnsConnector::for_transport(link, self.sockets.clone()))
            .with_token(&meta.token)
            .with_peer(meta.id.as_str())
            .with_reuse()
            .with_deferred_sync();
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
            boot_env: std::sync::Mutex::default(),
            observed: Sandbox::<D>::observed(slot.state),
            slot: tokio::sync::Mutex::new(slot),
        });
        self.insert(sb).await;
        Ok(Some(Recovery::Held(meta.id)))
    }

    /// The state a recovered sandbox starts in: its adopted VMM, else its
    /// snapshot, else its disk (module docs).
    async fn found_vm(&self, id: &SandboxId, dir: &Path, vm_config: &VmConfig) -> Slot<D> {
        match self.driver.adopt(vm_config).await {
            Ok(Some(a)) => {
                let state = if a.paused {
                    SandboxState::Warm
                } else {
                    SandboxState::Hot
                };
                tracing::info!(sandbox = %id, %state, "adopted its running VMM");
                return Slot::new(state, Some(a.vm), None);
            }
            Ok(None) => {}
            // Whatever runs is ended with the orphans.
            Err(e) => tracing::warn!(sandbox = %id, error = %e, "cannot take over its VMM"),
        }
        let mut slot = Slot::new(SandboxState::Cold, None, None);
        match self.driver.saved_snapshot(dir) {
            Some(snap) => match self.driver.snapshot_problem(&snap) {
                None => {
                    // An interrupted later snapshot (`.tmp`) goes.
                    self.driver.discard_snapshot(dir, Some(&snap));
                    slot.snapshot = Some(snap);
                }
                Some(problem) => {
                    self.driver.discard_snapshot(dir, None);
                    slot.lost = Some(format!("its snapshot is unusable ({problem})"));
                }
            },
            None => {
                // An interrupted snapshot (`.tmp`) is not one.
                self.driver.discard_snapshot(dir, None);
                slot.lost = Some(ENDED_WHILE_DOWN.into());
            }
        }
        slot
    }
}
