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
//! - The engine owns each sandbox's state. Every change is published under
//!   the sandbox lock ([`VmEngine::publish`]): into the sandbox's `watch`
//!   channel, which `status`/`list` read without waiting for the lock (a
//!   snapshot in progress never stalls a reader), and as a
//!   [`StateEvent`] on one broadcast channel, numbered by one counter so
//!   that a mirror can always tell the newer of two states.
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
pub use recover::{Lost, META_FILE, Recovery};

use crate::agent_link::SocketFactory;
use crate::driver::{Driver, Snapshot, VmConfig};
use crate::engine::{EngineError, EngineResult, SandboxId, SandboxInfo, SandboxSpec, StateEvent};
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
    /// Every published state change ([`crate::engine::Engine::subscribe`]).
    events: tokio::sync::broadcast::Sender<StateEvent>,
    /// The last `seq` handed out.
    seq: AtomicU64,
}

/// How many state events a slow subscriber may fall behind before it is
/// told it lagged.
const EVENT_BACKLOG: usize = 1024;

/// What readers see of a sandbox without taking its lock: the last
/// published state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Observed {
    state: SandboxState,
    pid: Option<u32>,
    seq: u64,
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
    /// The last published state (written only by [`VmEngine::publish`]).
    observed: tokio::sync::watch::Sender<Observed>,
    slot: tokio::sync::Mutex<Slot<D>>,
}

impl<D: Driver> Sandbox<D> {
    /// The `observed` channel of a sandbox about to be inserted in
    /// `state`; [`VmEngine::insert`] publishes its first real value.
    fn observed(state: SandboxState) -> tokio::sync::watch::Sender<Observed> {
        tokio::sync::watch::Sender::new(Observed {
            state,
            pid: None,
            seq: 0,
        })
    }
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
            events: tokio::sync::broadcast::Sender::new(EVENT_BACKLOG),
            seq: AtomicU64::new(0),
        })
    }

    /// A receiver of every state change from now on.
    pub(super) fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<StateEvent> {
        self.events.subscribe()
    }

    /// Publishes the sandbox's state as `slot` holds it now. Called with
    /// the sandbox lock held (the `&Slot` proves it), so the `seq` of one
    /// sandbox's events grows in the order its changes happened.
    fn publish(&self, sb: &Sandbox<D>, slot: &Slot<D>) {
        let (state, pid) = (
            slot.state,
            slot.vm.as_ref().and_then(|vm| self.driver.pid(vm)),
        );
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        sb.observed.send_replace(Observed { state, pid, seq });
        // No subscriber is not an error: nobody mirrors the state.
        let _ = self.events.send(StateEvent {
            id: sb.id.clone(),
            state,
            seq,
        });
    }

    /// Puts a new (created or recovered) sandbox in the map and publishes
    /// its first state.
    async fn insert(&self, sb: Arc<Sandbox<D>>) {
        let slot = sb.slot.lock().await;
        self.sandboxes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sb.id.clone(), sb.clone());
        self.publish(&sb, &slot);
    }

    /// The network in use.
    pub fn network(&self) -> &Network {
        &self.network
    }

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
        let d = dir.to_owned();
        blocking(move || std::fs::remove_dir_all(&d))
            .await?
            .map_err(|source| EngineError::Io {
                path: dir.to_owned(),
                source,
            })
    }

    /// How many restores a sandbox has gone through.
    pub fn restore_count(&self, id: &SandboxId) -> EngineResult<u64> {
        Ok(self.get(id)?.restores.load(Ordering::Relaxed))
    }

    /// The VMM process id of a sandbox, if it has one now.
    pub async fn vmm_pid(&self, id: &SandboxId) -> EngineResult<Option<u32>> {
        Ok(self.get(id)?.observed.borrow().pid)
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
        let before = (slot.state, slot.vm.is_some());
        let res = self.act(sb, &mut slot, op).await;
        if (slot.state, slot.vm.is_some()) != before {
            self.publish(sb, &slot);
        }
        res
    }

    /// Carries out `op` on a locked slot; the state it leaves in `slot`
    /// (also on failure) is what [`VmEngine::apply`] publishes.
    async fn act(&self, sb: &Sandbox<D>, slot: &mut Slot<D>, op: Op) -> EngineResult<Transition> {
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

    /// The sandbox as last published; never waits for its lock.
    fn info(&self, sb: &Sandbox<D>) -> SandboxInfo {
        let o = *sb.observed.borrow();
        SandboxInfo {
            id: sb.id.clone(),
            state: o.state,
            ip: Some(sb.ip),
            cpus: sb.spec.cpus,
            memory_mb: sb.spec.memory_mb,
            image: sb.spec.image,
            pid: o.pid,
            seq: o.seq,
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
