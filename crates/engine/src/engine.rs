//! The `Engine` trait: everything the server asks of sandboxes, in plain
//! data (ids, specs, results) plus the agent client's streaming handles.
//!
//! The server calls [`Engine`] and never touches a VMM; an engine
//! implementation combines a [`crate::driver::Driver`], the network, the
//! guest images and the agent client, and applies every lifecycle change
//! through [`crate::state::transition`].
//!
//! # Threads, locks, I/O
//! Every method is async and `Send`; implementations keep one lock per
//! sandbox (the engine-wide map lock only guards the map) and hold no lock
//! across an await on the guest network: operations that talk to the
//! agent first `ensure_hot`, capture the agent handle under the sandbox
//! lock, release it, then do their I/O.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use bhatti_agent::{
    ActivityInfo, ExecOptions, ExecRequest, ExecResult, ExecStream, FileInfo, FileReader,
    ReadOptions, Session, SessionInfo, ShellOptions, Tunnel,
};

use crate::driver::DriverError;
use crate::image::{DiskLimits, ImageError, ImageRef, Tier};
use crate::network::NetworkError;
use crate::snapshot::{CloneSpec, SnapshotId, SnapshotInfo};
use crate::state::{SandboxState, StateError};

/// The body of a file write: any byte stream (an HTTP body, a file, a
/// buffer in tests).
pub type FileSource = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Longest sandbox id.
pub const MAX_ID_LEN: usize = 64;
/// Bounds of a sandbox's size.
pub const MAX_CPUS: u32 = 64;
pub const MIN_MEMORY_MB: u32 = 64;
pub const MAX_MEMORY_MB: u32 = 256 * 1024;
/// Most volumes one sandbox can mount (block devices `vdc`..`vdz`).
pub const MAX_VOLUMES: usize = 24;
/// Largest root disk ([`SandboxSpec::disk_mb`]): 1 TiB. The file is
/// sparse: only what the guest writes takes host disk space.
pub const MAX_DISK_MB: u64 = 1024 * 1024;

mod id;
mod validate;
pub use id::SandboxId;
pub use validate::{SpecError, guest_user_ok};

/// A volume to attach: an ext4 file under the data dir's `volumes/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Volume name (same rules as a sandbox id).
    pub name: String,
    /// Absolute mount path inside the guest.
    pub mount: String,
    /// Size when the volume is created by this request.
    pub size_mb: u64,
    #[serde(default)]
    pub readonly: bool,
}

/// A file lohar writes at boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    /// Absolute path inside the guest.
    pub path: String,
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// What to create: template-free, from an image tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub cpus: u32,
    pub memory_mb: u32,
    pub image: ImageRef,
    /// Size of the root disk in MiB (`None`: its image's size). The
    /// sandbox's copy of the image is grown to it (sparse) and lohar grows
    /// the root file system to fill it at boot. Never below the image's
    /// size ([`SpecError::DiskTooSmall`]), at most [`MAX_DISK_MB`] and
    /// what the image's file system grows to in a boot
    /// ([`crate::image::MAX_GROWN_GROUPS`], [`SpecError::DiskTooLarge`]).
    pub disk_mb: Option<u64>,
    pub hostname: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Shell script lohar runs once at boot.
    pub init: Option<String>,
    pub volumes: Vec<VolumeSpec>,
    pub files: Vec<FileSpec>,
    /// Egress to the outside world; `None` follows the engine's mode
    /// (on under NAT, off under `none`).
    pub egress: Option<bool>,
    /// Who owns the sandbox on the sandbox network: guests of one tenant
    /// may reach each other (see `peers`), guests of different tenants
    /// never. `None`: a tenant of its own (reaches no other guest).
    pub tenant: Option<String>,
    /// Exchange packets with the tenant's other guests that allow it too.
    pub peers: bool,
    /// Guest user that exec, TTY sessions, the `init` script and files
    /// written through the agent default to (a name from the guest's
    /// `/etc/passwd` or a numeric uid; `config.json` `exec_user`). `None`:
    /// v1's rule — commands and sessions as root, `init` and written files
    /// as the sandbox user `lohar`. A request's own `user` still wins
    /// (`ExecOptions::user`, `ShellOptions::user`, [`Engine::write_file_as`]).
    /// An unknown user fails each request that uses it, not the create.
    pub exec_user: Option<String>,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        Self {
            cpus: 1,
            memory_mb: 512,
            image: ImageRef::Tier(Tier::Minimal),
            disk_mb: None,
            hostname: None,
            env: BTreeMap::new(),
            init: None,
            volumes: Vec::new(),
            files: Vec::new(),
            egress: None,
            tenant: None,
            peers: true,
            exec_user: None,
        }
    }
}

/// A sandbox as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    pub id: SandboxId,
    pub state: SandboxState,
    pub ip: Option<Ipv4Addr>,
    pub cpus: u32,
    pub memory_mb: u32,
    pub image: ImageRef,
    /// The VMM's process id while it has one.
    pub pid: Option<u32>,
    /// The engine's sequence number of this state ([`StateEvent::seq`]).
    pub seq: u64,
    /// Something the user should know about this state ([`StateEvent::note`]).
    pub note: Option<String>,
}

impl SandboxInfo {
    /// The event that publishes this state.
    pub fn event(&self) -> StateEvent {
        StateEvent {
            id: self.id.clone(),
            state: self.state,
            seq: self.seq,
            note: self.note.clone(),
        }
    }
}

/// A sandbox's state changed (or it was created, recovered or destroyed).
///
/// `seq` comes from one counter of the engine, taken under the sandbox's
/// lock, so it grows with every change of one sandbox: a mirror of the
/// state (the server's store) keeps the event with the highest `seq` and
/// never goes back to an older state, whatever order it sees them in.
/// The counter starts again at 1 when the engine starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEvent {
    pub id: SandboxId,
    pub state: SandboxState,
    pub seq: u64,
    /// Something the user should know about this state, e.g. that the
    /// sandbox's VMM died and its memory is lost, so the next request
    /// boots it from its disk. `None` when all is as expected.
    pub note: Option<String>,
}

/// Errors from engine operations.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("sandbox {0} not found")]
    NotFound(SandboxId),
    #[error("sandbox {0} already exists")]
    AlreadyExists(SandboxId),
    #[error("volume {0:?} is attached to a running sandbox")]
    VolumeBusy(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("guest agent: {0}")]
    Agent(#[from] bhatti_agent::Error),
    #[error(transparent)]
    ConfigDrive(#[from] crate::image::config_drive::ConfigDriveError),
    #[error("sandbox {0} has no snapshot to restore")]
    NoSnapshot(SandboxId),
    #[error("snapshot {0} not found")]
    SnapshotNotFound(SnapshotId),
    #[error("snapshot {0} already exists")]
    SnapshotExists(SnapshotId),
    #[error("snapshot {id} cannot be restored: {problem}")]
    SnapshotBroken { id: SnapshotId, problem: String },
    #[error("image {image} is in use by {}", users.join(", "))]
    ImageInUse { image: String, users: Vec<String> },
    /// A request this engine cannot carry out for this sandbox (yet).
    #[error("{0}")]
    Unsupported(String),
    /// The sandbox's VM was stopped, frozen, destroyed or lost while an
    /// agent request ran on it; whether the guest acted on it is unknown.
    #[error("sandbox {0} was stopped while the request ran")]
    Interrupted(SandboxId),
    #[error("internal inconsistency: {0}")]
    Inconsistent(String),
    #[error("the guest agent did not become ready: {0}")]
    NotReady(String),
    #[error("sandbox files under {path}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result of engine operations.
pub type EngineResult<T> = Result<T, EngineError>;

/// Everything the server can do with sandboxes.
pub trait Engine: Send + Sync + 'static {
    /// Creates and boots a sandbox; returns once its agent answers. On any
    /// failure everything made so far is removed.
    fn create(
        &self,
        id: SandboxId,
        spec: SandboxSpec,
    ) -> impl Future<Output = EngineResult<SandboxInfo>> + Send;
    /// Kills the VM and deletes the sandbox's files, TAP and address.
    fn destroy(&self, id: &SandboxId) -> impl Future<Output = EngineResult<()>> + Send;
    /// The sandbox's state now. Never waits for a lifecycle operation in
    /// progress: it answers with the last state the engine published.
    fn status(&self, id: &SandboxId) -> impl Future<Output = EngineResult<SandboxInfo>> + Send;
    fn list(&self) -> impl Future<Output = Vec<SandboxInfo>> + Send;
    /// Every state change of every sandbox from now on (create as Hot, each
    /// transition, Destroyed), in `seq` order per sandbox. A receiver that
    /// falls behind gets `RecvError::Lagged` and should re-read
    /// [`Engine::list`].
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StateEvent>;

    /// Warm → hot (resume) or cold → hot (restore); concurrent callers
    /// share one wake. Every agent operation calls this first.
    fn ensure_hot(&self, id: &SandboxId) -> impl Future<Output = EngineResult<()>> + Send;
    /// Hot → warm.
    fn pause(&self, id: &SandboxId) -> impl Future<Output = EngineResult<()>> + Send;
    /// Warm → hot.
    fn resume(&self, id: &SandboxId) -> impl Future<Output = EngineResult<()>> + Send;
    /// Warm → cold (thermal): snapshot, VMM gone.
    fn freeze(&self, id: &SandboxId) -> impl Future<Output = EngineResult<()>> + Send;
    /// User stop: snapshot to disk, VMM gone, RAM freed.
    fn stop(&self, id: &SandboxId) -> impl Future<Output = EngineResult<()>> + Send;
    /// User start: restore from the snapshot.
    fn start(&self, id: &SandboxId) -> impl Future<Output = EngineResult<()>> + Send;

    fn exec(
        &self,
        id: &SandboxId,
        opts: ExecOptions,
    ) -> impl Future<Output = EngineResult<ExecResult>> + Send;
    fn exec_stream(
        &self,
        id: &SandboxId,
        req: ExecRequest,
    ) -> impl Future<Output = EngineResult<ExecStream>> + Send;
    fn shell(
        &self,
        id: &SandboxId,
        opts: ShellOptions,
    ) -> impl Future<Output = EngineResult<Session>> + Send;
    fn attach(
        &self,
        id: &SandboxId,
        session_id: &str,
    ) -> impl Future<Output = EngineResult<Session>> + Send;
    fn list_sessions(
        &self,
        id: &SandboxId,
    ) -> impl Future<Output = EngineResult<Vec<SessionInfo>>> + Send;
    fn kill_session(
        &self,
        id: &SandboxId,
        session_id: &str,
    ) -> impl Future<Output = EngineResult<()>> + Send;
    fn read_file(
        &self,
        id: &SandboxId,
        path: &str,
        opts: ReadOptions,
    ) -> impl Future<Output = EngineResult<FileReader>> + Send;
    /// Writes exactly `size` bytes read from `data` to `path` (atomically
    /// on the guest's side), streaming: the file is never held in memory
    /// whole. A source shorter than `size` aborts the write.
    fn write_file(
        &self,
        id: &SandboxId,
        path: &str,
        mode: u32,
        size: u64,
        data: FileSource,
    ) -> impl Future<Output = EngineResult<()>> + Send;
    /// [`Engine::write_file`] with the file (also a replaced one) and the
    /// directories the write creates owned by guest `user` (a name or a
    /// numeric uid); `None` is exactly [`Engine::write_file`] (new files
    /// owned by [`SandboxSpec::exec_user`], else the sandbox user; a
    /// replaced file keeps its owner). An unknown user is an agent error
    /// with code `invalid_request`; nothing is written.
    fn write_file_as(
        &self,
        id: &SandboxId,
        path: &str,
        mode: u32,
        size: u64,
        data: FileSource,
        user: Option<&str>,
    ) -> impl Future<Output = EngineResult<()>> + Send;
    fn stat(
        &self,
        id: &SandboxId,
        path: &str,
    ) -> impl Future<Output = EngineResult<FileInfo>> + Send;
    fn ls(
        &self,
        id: &SandboxId,
        path: &str,
    ) -> impl Future<Output = EngineResult<Vec<FileInfo>>> + Send;
    fn activity(&self, id: &SandboxId) -> impl Future<Output = EngineResult<ActivityInfo>> + Send;
    /// Runs `op` with the sandbox's agent client, as every agent
    /// operation above does (woken first, ended with
    /// [`EngineError::Interrupted`] when its VMM goes away, retried once
    /// when the connection was never made): for the agent's requests the
    /// trait has no method of its own (protocol extensions a caller checks
    /// with [`bhatti_agent::Client::caps`]).
    fn agent_call<T, F, Fut>(
        &self,
        id: &SandboxId,
        op: F,
    ) -> impl Future<Output = EngineResult<T>> + Send
    where
        T: Send,
        F: Fn(bhatti_agent::Client) -> Fut + Send + Sync,
        Fut: Future<Output = bhatti_agent::Result<T>> + Send;
    /// [`Engine::exec`] only on a sandbox hot now with no lifecycle
    /// operation in progress (`None` otherwise): it never wakes one.
    fn exec_if_hot(
        &self,
        id: &SandboxId,
        opts: ExecOptions,
    ) -> impl Future<Output = EngineResult<Option<ExecResult>>> + Send;
    /// How many agent operations, since the engine started, found the
    /// agent's connection refused (the sandbox stopped or froze between
    /// the wake and the connect), woke it again and dialled it anew.
    fn agent_redials(&self) -> u64;
    /// The last `lines` lines the guest printed on its serial console,
    /// read from the host's log of it ([`crate::driver::Driver::console_tail`]):
    /// never wakes the sandbox, whatever its state; empty when the log is
    /// missing or empty.
    fn console(
        &self,
        id: &SandboxId,
        lines: usize,
    ) -> impl Future<Output = EngineResult<String>> + Send;
    /// TCP ports the guest listens on (the agent's own left out).
    fn listening_ports(
        &self,
        id: &SandboxId,
    ) -> impl Future<Output = EngineResult<Vec<u16>>> + Send;
    /// A raw byte tunnel to `port` inside the guest.
    fn tunnel(
        &self,
        id: &SandboxId,
        port: u16,
    ) -> impl Future<Output = EngineResult<Tunnel>> + Send;
    /// The file a volume lives in (made when a sandbox first mounts it).
    fn volume_path(&self, name: &str) -> std::path::PathBuf;
    /// Deletes a volume's file (nothing if it was never made);
    /// [`EngineError::VolumeBusy`] while a sandbox has it attached.
    fn delete_volume(&self, name: &str) -> impl Future<Output = EngineResult<()>> + Send;

    /// Makes later creates of specs like `spec` restore a pre-booted
    /// snapshot instead of booting (`crate::sandbox` golden snapshots);
    /// `true` when it made one. Boots a guest: run it in the background.
    fn prepare(&self, spec: &SandboxSpec) -> impl Future<Output = EngineResult<bool>> + Send;
    /// Makes, in the background, what creates asked to be prepared (a
    /// golden snapshot once creates of a kind had to boot), until the
    /// future is dropped.
    fn run_preparations(&self) -> impl Future<Output = ()> + Send;
    /// Writes snapshot `snap` of sandbox `id` ([`crate::snapshot`]): a hot
    /// sandbox is paused for it and runs on, a warm one stays warm, a
    /// stopped or cold one's saved state is copied.
    fn snapshot(
        &self,
        id: &SandboxId,
        snap: &SnapshotId,
    ) -> impl Future<Output = EngineResult<SnapshotInfo>> + Send;
    /// Every snapshot, by id; each with its files checked.
    fn list_snapshots(&self) -> impl Future<Output = Vec<SnapshotInfo>> + Send;
    fn delete_snapshot(&self, snap: &SnapshotId) -> impl Future<Output = EngineResult<()>> + Send;
    /// Creates sandbox `id` from snapshot `snap`: restored, not booted,
    /// then given its own identity; returns once its agent answers there.
    fn create_from_snapshot(
        &self,
        id: SandboxId,
        snap: &SnapshotId,
        spec: CloneSpec,
    ) -> impl Future<Output = EngineResult<SandboxInfo>> + Send;
    /// Makes one child of sandbox `id` per entry (its own id and spec),
    /// from one snapshot taken now. All or nothing.
    fn fork(
        &self,
        id: &SandboxId,
        children: Vec<(SandboxId, CloneSpec)>,
    ) -> impl Future<Output = EngineResult<Vec<SandboxInfo>>> + Send;

    /// A private staging directory (0700) to unpack an image into: its
    /// `root()` becomes the image ([`Engine::store_image`]). Removed when
    /// dropped.
    fn image_staging(&self) -> EngineResult<crate::image::store::Staging>;
    /// Packs `staging`'s root into stored image `id` (`sha256:<hex>`, the
    /// image's content id): lohar and the sandbox basics added
    /// ([`crate::image::build`]). An image already stored under `id` is
    /// returned as it is.
    fn store_image(
        &self,
        staging: crate::image::store::Staging,
        id: &str,
        source: &str,
    ) -> impl Future<Output = EngineResult<crate::image::StoredImage>> + Send;
    /// Sandbox `id`'s root disk as it is now, as a new stored image (a
    /// running sandbox is paused for the copy and runs on).
    fn save_image(
        &self,
        id: &SandboxId,
    ) -> impl Future<Output = EngineResult<crate::image::StoredImage>> + Send;
    /// Every stored image.
    fn list_images(&self) -> Vec<crate::image::StoredImage>;
    /// Stored image `id` ([`ImageError::NotStored`] if absent).
    fn image_info(&self, id: &str) -> EngineResult<crate::image::StoredImage>;
    /// Deletes stored image `id`; [`EngineError::ImageInUse`] while a
    /// sandbox or snapshot is made from it.
    fn delete_image(&self, id: &str) -> impl Future<Output = EngineResult<()>> + Send;

    /// Lets the guest exchange packets with its tenant's other guests
    /// (that allow it too), or not: [`SandboxSpec::peers`] changed in
    /// place, in any state, kept across restarts.
    fn set_peers(
        &self,
        id: &SandboxId,
        peers: bool,
    ) -> impl Future<Output = EngineResult<()>> + Send;
}

#[cfg(test)]
mod tests;
