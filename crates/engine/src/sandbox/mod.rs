//! [`VmEngine`]: the [`Engine`](crate::engine::Engine) over any VMM
//! [`Driver`], with the shared pieces (images, config drive, network,
//! agent client, state machine).
//!
//! Data layout: `<data_dir>/sandboxes/<id>/` holds the rootfs copy
//! (`rootfs.qcow2`, an overlay over its image in `<data_dir>/images/`;
//! `rootfs.ext4`, a whole copy, in sandboxes made before the image
//! store), the config drive (`config.ext4`), the VMM's socket and
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
//!   I/O never happens under it but for the bounded sync before a pause
//!   or save ([`durable`]): [`VmEngine::agent`] makes the sandbox hot,
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

mod boot;
mod clone;
mod create;
mod durable;
pub mod fault;
pub mod golden;
mod images;
mod ops;
pub mod orphans;
pub mod ports;
mod recover;
mod snapshots;
mod tasks;
mod vmm;
mod volume;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bhatti_agent::Client;

pub use create::{CONFIG_DRIVE_FILE, OVERLAY_FILE, ROOTFS_FILE, root_disk};
pub use recover::{Lost, META_FILE, Recovery};
use tasks::{blocking, remove_dir};

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
    /// Creates restore a golden snapshot of their kind when there is one
    /// (`golden`); off: they always boot.
    pub restore_creates: bool,
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
            restore_creates: true,
            dns: Vec::new(),
        }
    }
}

/// The engine: sandboxes of one driver, one network, one data dir.
#[derive(Debug)]
pub struct VmEngine<D: Driver> {
    /// Shared with the tasks watching each VMM's exit ([`vmm`]).
    driver: Arc<D>,
    config: EngineConfig,
    network: Arc<Network>,
    sockets: SocketFactory,
    sandboxes: RwLock<HashMap<SandboxId, Arc<Sandbox<D>>>>,
    /// Ids being created (reserved, not in the map yet).
    creating: Mutex<HashSet<SandboxId>>,
    /// Golden snapshots made, wanted and counted ([`golden`]).
    goldens: Mutex<golden::Goldens>,
    /// Wakes [`VmEngine::run_goldens`].
    golden_wanted: tokio::sync::Notify,
    volumes: volume::Volumes,
    publisher: Arc<Publisher>,
    /// Agent operations dialled again after a refused connection ([`ops`]).
    redials: AtomicU64,
}

/// Where state changes go: each sandbox's `watch` channel and the one
/// broadcast channel, numbered by one counter.
#[derive(Debug)]
struct Publisher {
    /// Every published state change ([`crate::engine::Engine::subscribe`]).
    events: tokio::sync::broadcast::Sender<StateEvent>,
    /// The last `seq` handed out.
    seq: AtomicU64,
}

impl Publisher {
    /// Publishes the sandbox's state as `slot` holds it now. Called with
    /// the sandbox lock held (the `&Slot` proves it), so the `seq` of one
    /// sandbox's events grows in the order its changes happened.
    fn publish<D: Driver>(&self, driver: &D, sb: &Sandbox<D>, slot: &Slot<D>) {
        let (state, pid) = (slot.state, slot.vm.as_ref().and_then(|vm| driver.pid(vm)));
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let note = slot.note();
        sb.observed.send_replace(Observed {
            state,
            pid,
            seq,
            note: note.clone(),
        });
        // No subscriber is not an error: nobody mirrors the state.
        let _ = self.events.send(StateEvent {
            id: sb.id.clone(),
            state,
            seq,
            note,
        });
    }
}

/// How many state events a slow subscriber may fall behind before it is
/// told it lagged.
const EVENT_BACKLOG: usize = 1024;

/// What readers see of a sandbox without taking its lock: the last
/// published state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    state: SandboxState,
    pid: Option<u32>,
    seq: u64,
    note: Option<String>,
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
    /// The environment a boot from disk gives the guest: the spec's for a
    /// sandbox created by this engine; for a recovered one what its owner
    /// sets ([`VmEngine::set_boot_env`]). Kept in memory only: it may hold
    /// secrets.
    boot_env: Mutex<std::collections::BTreeMap<String, String>>,
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
            note: None,
        })
    }
}

#[derive(Debug)]
struct Slot<D: Driver> {
    state: SandboxState,
    vm: Option<D::Vm>,
    /// Cold or Stopped with no snapshot: the next wake or start boots the
    /// guest from its disk ([`VmEngine::boot_from_disk`]).
    snapshot: Option<Snapshot>,
    /// Why the guest's memory was lost (its VMM died, its snapshot was
    /// unusable, ...), if it was since the last snapshot; the published
    /// note ([`StateEvent::note`]) says it with what happens next
    /// ([`Slot::note`]). Cleared by the next snapshot.
    lost: Option<String>,
}

impl<D: Driver> Slot<D> {
    fn new(state: SandboxState, vm: Option<D::Vm>, snapshot: Option<Snapshot>) -> Self {
        Self {
            state,
            vm,
            snapshot,
            lost: None,
        }
    }

    /// The note published with this state: why the memory was lost, and
    /// what the guest does about it.
    fn note(&self) -> Option<String> {
        let cause = self.lost.as_deref()?;
        Some(if self.vm.is_some() {
            format!("{cause}; its memory was lost, and it was booted from its disk")
        } else if self.state == SandboxState::Stopped {
            format!("{cause}; its memory is lost, and start boots it from its disk")
        } else {
            format!("{cause}; its memory is lost, and the next request boots it from its disk")
        })
    }
}

impl<D: Driver> VmEngine<D> {
    /// Sets up the network (idempotent) and prepares the data dir. VMM
    /// processes, TAPs and sandbox directories left by an earlier run are
    /// left alone: [`VmEngine::recover`] takes over the live ones and ends
    /// the rest.
    pub async fn start(driver: D, config: EngineConfig) -> EngineResult<Self> {
        let net_cfg = config.network.clone();
        let network = blocking(move || Network::setup(net_cfg)).await??;
        let network = Arc::new(network);
        for sub in ["sandboxes", "volumes", "snapshots"] {
            let dir = config.data_dir.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(|source| EngineError::Io { path: dir, source })?;
        }
        let sockets = SocketFactory::start(network.netns())
            .map_err(|e| EngineError::NotReady(format!("agent sockets: {e}")))?;
        Ok(Self {
            driver: Arc::new(driver),
            volumes: volume::Volumes::new(config.data_dir.join("volumes")),
            config,
            network,
            sockets,
            sandboxes: RwLock::new(HashMap::new()),
            creating: Mutex::new(HashSet::new()),
            goldens: Mutex::new(golden::Goldens::default()),
            golden_wanted: tokio::sync::Notify::new(),
            publisher: Arc::new(Publisher {
                events: tokio::sync::broadcast::Sender::new(EVENT_BACKLOG),
                seq: AtomicU64::new(0),
            }),
            redials: AtomicU64::new(0),
        })
    }

    /// A receiver of every state change from now on.
    pub(super) fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<StateEvent> {
        self.publisher.events.subscribe()
    }

    /// See [`Publisher::publish`].
    fn publish(&self, sb: &Sandbox<D>, slot: &Slot<D>) {
        self.publisher.publish(&*self.driver, sb, slot);
    }

    /// Puts a new (created or recovered) sandbox in the map, publishes its
    /// first state and watches its VMM, if it has one.
    async fn insert(&self, sb: Arc<Sandbox<D>>) {
        let slot = sb.slot.lock().await;
        self.sandboxes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sb.id.clone(), sb.clone());
        self.publish(&sb, &slot);
        if let Some(vm) = &slot.vm {
            self.watch_exit(&sb, vm);
        }
    }

    /// The network in use.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Lets go of every VMM without ending it (a daemon shutting down for
    /// a restart or upgrade): each keeps running, with its guest's memory,
    /// processes and sessions, for the next engine's
    /// [`VmEngine::recover`] to adopt. Nothing is published: the states
    /// stay what they were. Use the engine for nothing else afterwards.
    pub async fn release_all(&self) {
        for sb in self.all() {
            if let Some(vm) = sb.slot.lock().await.vm.take() {
                self.driver.release(vm);
            }
        }
    }

    /// Sets the environment a boot from disk gives the guest of a
    /// recovered sandbox (`sandbox.json` does not keep it: it may hold
    /// secrets).
    pub fn set_boot_env(
        &self,
        id: &SandboxId,
        env: std::collections::BTreeMap<String, String>,
    ) -> EngineResult<()> {
        *self
            .get(id)?
            .boot_env
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = env;
        Ok(())
    }

    /// How many restores a sandbox has gone through.
    pub fn restore_count(&self, id: &SandboxId) -> EngineResult<u64> {
        Ok(self.get(id)?.restores.load(Ordering::Relaxed))
    }

    /// The VMM process id of a sandbox, if it has one now.
    pub async fn vmm_pid(&self, id: &SandboxId) -> EngineResult<Option<u32>> {
        Ok(self.get(id)?.observed.borrow().pid)
    }

    /// Every sandbox held now.
    fn all(&self) -> Vec<Arc<Sandbox<D>>> {
        self.sandboxes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
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
    async fn apply(&self, sb: &Arc<Sandbox<D>>, op: Op) -> EngineResult<Transition> {
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
    async fn act(
        &self,
        sb: &Arc<Sandbox<D>>,
        slot: &mut Slot<D>,
        op: Op,
    ) -> EngineResult<Transition> {
        let t = transition(slot.state, op)?;
        let missing = || EngineError::Inconsistent(format!("sandbox {} has no VMM", sb.id));
        match t.action {
            Action::None => {}
            Action::Pause => {
                durable::sync_guest(&sb.agent, &sb.id, slot.state).await;
                let vm = slot.vm.as_mut().ok_or_else(missing)?;
                self.driver.pause(vm).await?;
            }
            Action::Resume => {
                let vm = slot.vm.as_mut().ok_or_else(missing)?;
                self.driver.resume(vm).await?;
            }
            Action::Snapshot => {
                durable::sync_guest(&sb.agent, &sb.id, slot.state).await;
                // Reused agent connections end with the VMM.
                sb.agent.forget_connections();
                let vm = slot.vm.take().ok_or_else(missing)?;
                fault::point("snapshot");
                match self.driver.snapshot(vm, &sb.vm_config).await {
                    Ok(snap) => {
                        tracing::info!(
                            sandbox = %sb.id,
                            bytes = snap.size_bytes,
                            ms = snap.took.as_millis(),
                            "snapshot written"
                        );
                        slot.snapshot = Some(snap);
                        // The guest's memory is kept again.
                        slot.lost = None;
                    }
                    Err(e) => {
                        // The VMM is gone and no snapshot exists: the next
                        // start boots the guest from its disk.
                        self.driver.discard_snapshot(&sb.dir, None);
                        slot.snapshot = None;
                        slot.state = SandboxState::Stopped;
                        slot.lost = Some(format!("stopping it failed ({e})"));
                        return Err(e.into());
                    }
                }
            }
            Action::Restore => {
                sb.agent.forget_connections();
                let vm = self.restore_or_boot(sb, slot).await?;
                self.watch_exit(sb, &vm);
                slot.vm = Some(vm);
                slot.snapshot = None;
                sb.restores.fetch_add(1, Ordering::Relaxed);
            }
            Action::Destroy => {
                sb.agent.forget_connections();
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
        let o = sb.observed.borrow().clone();
        SandboxInfo {
            id: sb.id.clone(),
            state: o.state,
            ip: Some(sb.ip),
            cpus: sb.spec.cpus,
            memory_mb: sb.spec.memory_mb,
            image: sb.spec.image.clone(),
            pid: o.pid,
            seq: o.seq,
            note: o.note,
        }
    }
}
