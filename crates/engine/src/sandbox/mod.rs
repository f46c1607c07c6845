//! [`VmEngine`]: the [`Engine`](crate::engine::Engine) over any VMM
//! [`Driver`], with the shared pieces (images, config drive, network,
//! agent client, state machine).
//!
//! Data layout: `<data_dir>/sandboxes/<id>/` holds the rootfs copy
//! (`rootfs.ext4`), the config drive (`config.ext4`), the VMM's socket and
//! logs and the snapshot; `<data_dir>/volumes/<name>.ext4` the volumes.
//!
//! # Threads, locks, I/O
//! - The map (`std::sync::RwLock<HashMap<SandboxId, Arc<Sandbox>>>`) is
//!   held only to look up, insert or remove an entry, never across an
//!   await.
//! - Each sandbox has a `tokio::sync::Mutex<Slot>` (its state, VM handle
//!   and snapshot). Every lifecycle change runs under it, through
//!   [`crate::state::transition`] in [`VmEngine::apply`]; driver calls made
//!   under it are local (process spawn, QMP socket, snapshot files). Agent
//!   I/O never happens under it: [`VmEngine::agent`] makes the sandbox hot,
//!   clones the agent client, and releases the lock before the caller
//!   talks to the guest.
//! - Concurrent `ensure_hot` callers queue on the sandbox lock; the first
//!   restores, the rest find the sandbox hot (`Wake` on Hot is a no-op), so
//!   one wake serves them all.
//! - `ip`/`nft`, file copies and `mkfs` run on the blocking pool.

mod create;
mod ops;
pub mod orphans;
pub mod ports;
mod recover;
mod volume;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bhatti_agent::Client;

pub use create::{CONFIG_DRIVE_FILE, ROOTFS_FILE};
pub use recover::{META_FILE, Recovery};

use crate::agent_link::SocketFactory;
use crate::driver::{Driver, Snapshot, VmConfig};
use crate::engine::{EngineError, EngineResult, SandboxId, SandboxInfo, SandboxSpec};
use crate::image::ImagePaths;
use crate::network::{Network, NetworkConfig};
use crate::state::{Action, Op, SandboxState, Transition, transition};

/// Settings of a [`VmEngine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Root of the engine's files (`sandboxes/`, `volumes/`).
    pub data_dir: PathBuf,
    pub images: ImagePaths,
    pub network: NetworkConfig,
    /// How long a new sandbox's agent may take to answer.
    pub agent_ready_timeout: Duration,
    /// DNS servers written into guests.
    pub dns: Vec<String>,
}

impl EngineConfig {
    /// Data in `data_dir`, guests in namespace `netns` with the default
    /// network (egress `none`), 60 s for a new agent to answer, no DNS.
    pub fn new(data_dir: impl Into<PathBuf>, images: ImagePaths, netns: &str) -> Self {
        Self {
            data_dir: data_dir.into(),
            images,
            network: NetworkConfig {
                netns: netns.to_owned(),
                ..NetworkConfig::default()
            },
            agent_ready_timeout: Duration::from_secs(60),
            dns: Vec::new(),
        }
    }
}

/// The engine: sandboxes of one driver, one network, one data dir.
#[derive(Debug)]
pub struct VmEngine<D: Driver> {
    driver: D,
    config: EngineConfig,
    network: Arc<Network>,
    sockets: SocketFactory,
    sandboxes: RwLock<HashMap<SandboxId, Arc<Sandbox<D>>>>,
    /// Ids being created (reserved, not in the map yet).
    creating: Mutex<HashSet<SandboxId>>,
    volumes: volume::Volumes,
}

/// One sandbox: fixed facts outside the lock, mutable state inside.
#[derive(Debug)]
struct Sandbox<D: Driver> {
    id: SandboxId,
    /// The spec it was created (or recovered) with. `peers` may have been
    /// changed since ([`VmEngine::set_sandbox_peers`]); `sandbox.json` and
    /// the bridge rules hold the current value.
    spec: SandboxSpec,
    ip: Ipv4Addr,
    tap: String,
    dir: PathBuf,
    vm_config: VmConfig,
    agent: Client,
    volumes: Vec<String>,
    /// Restores done (cold → hot), to observe wake coalescing.
    restores: AtomicU64,
    slot: tokio::sync::Mutex<Slot<D>>,
}

#[derive(Debug)]
struct Slot<D: Driver> {
    state: SandboxState,
    vm: Option<D::Vm>,
    snapshot: Option<Snapshot>,
}

impl<D: Driver> VmEngine<D> {
    /// Sets up the network (idempotent), ends VMM processes and removes
    /// TAPs left by an earlier run (no sandbox is known yet at start) and
    /// prepares the data dir. Sandbox directories are kept for recovery.
    pub async fn start(driver: D, config: EngineConfig) -> EngineResult<Self> {
        let sandboxes_dir = config.data_dir.join("sandboxes");
        let killed = blocking(move || orphans::kill_all(&sandboxes_dir)).await?;
        if !killed.is_empty() {
            tracing::warn!(?killed, "killed orphan VMM processes");
        }
        let net_cfg = config.network.clone();
        let network = blocking(move || Network::setup(net_cfg)).await??;
        let network = Arc::new(network);
        let n = network.clone();
        let removed = blocking(move || n.remove_orphan_taps(&Default::default())).await??;
        if !removed.is_empty() {
            tracing::info!(?removed, "removed orphan TAP devices");
        }
        for sub in ["sandboxes", "volumes"] {
            let dir = config.data_dir.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(|source| EngineError::Io { path: dir, source })?;
        }
        let sockets = SocketFactory::start(network.netns())
            .map_err(|e| EngineError::NotReady(format!("agent sockets: {e}")))?;
        Ok(Self {
            driver,
            volumes: volume::Volumes::new(config.data_dir.join("volumes")),
            config,
            network,
            sockets,
            sandboxes: RwLock::new(HashMap::new()),
            creating: Mutex::new(HashSet::new()),
        })
    }

    /// The network in use.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// How many restores a sandbox has gone through.
    pub fn restore_count(&self, id: &SandboxId) -> EngineResult<u64> {
        Ok(self.get(id)?.restores.load(Ordering::Relaxed))
    }

    /// The VMM process id of a sandbox, if it has one now.
    pub async fn vmm_pid(&self, id: &SandboxId) -> EngineResult<Option<u32>> {
        let sb = self.get(id)?;
        let slot = sb.slot.lock().await;
        Ok(slot.vm.as_ref().and_then(|vm| self.driver.pid(vm)))
    }

    fn get(&self, id: &SandboxId) -> EngineResult<Arc<Sandbox<D>>> {
        self.sandboxes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(id.clone()))
    }

    /// Applies `op` to a sandbox: the only place lifecycle changes happen.
    async fn apply(&self, sb: &Sandbox<D>, op: Op) -> EngineResult<Transition> {
        let mut slot = sb.slot.lock().await;
        let t = transition(slot.state, op)?;
        let missing = || EngineError::Inconsistent(format!("sandbox {} has no VMM", sb.id));
        match t.action {
            Action::None => {}
            Action::Pause => {
                let vm = slot.vm.as_mut().ok_or_else(missing)?;
                self.driver.pause(vm).await?;
            }
            Action::Resume => {
                let vm = slot.vm.as_mut().ok_or_else(missing)?;
                self.driver.resume(vm).await?;
            }
            Action::Snapshot => {
                let vm = slot.vm.take().ok_or_else(missing)?;
                match self.driver.snapshot(vm, &sb.vm_config).await {
                    Ok(snap) => slot.snapshot = Some(snap),
                    Err(e) => {
                        // The VMM is gone and no snapshot exists: the
                        // sandbox can only be destroyed now.
                        slot.snapshot = None;
                        slot.state = SandboxState::Stopped;
                        return Err(e.into());
                    }
                }
            }
            Action::Restore => {
                let snap = slot
                    .snapshot
                    .clone()
                    .ok_or_else(|| EngineError::NoSnapshot(sb.id.clone()))?;
                let vm = self.driver.restore(&sb.vm_config, &snap).await?;
                slot.vm = Some(vm);
                slot.snapshot = None;
                sb.restores.fetch_add(1, Ordering::Relaxed);
            }
            Action::Destroy => {
                if let Some(vm) = slot.vm.take() {
                    self.driver.kill(vm).await?;
                }
            }
        }
        slot.state = t.to;
        Ok(t)
    }

    /// Makes the sandbox hot and returns its agent client; the sandbox
    /// lock is released before the caller uses the client.
    async fn agent(&self, id: &SandboxId) -> EngineResult<Client> {
        let sb = self.get(id)?;
        self.apply(&sb, Op::Wake).await?;
        Ok(sb.agent.clone())
    }

    async fn info(&self, sb: &Sandbox<D>) -> SandboxInfo {
        let slot = sb.slot.lock().await;
        SandboxInfo {
            id: sb.id.clone(),
            state: slot.state,
            ip: Some(sb.ip),
            cpus: sb.spec.cpus,
            memory_mb: sb.spec.memory_mb,
            image: sb.spec.image,
            pid: slot.vm.as_ref().and_then(|vm| self.driver.pid(vm)),
        }
    }
}

/// Runs blocking work (commands, copies) off the async threads.
async fn blocking<T, F>(f: F) -> EngineResult<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Inconsistent(format!("blocking task failed: {e}")))
}
