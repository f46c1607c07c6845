//! The VMM driver interface: the small set of things the engine needs from
//! a virtual machine monitor. Everything VMM-specific (QEMU's argv and QMP,
//! later Firecracker's REST API) lives behind it; guest images, the config
//! drive, TAP networking, the agent and the state machine are shared.
//!
//! ```text
//!  spawn ──► running ──pause──► paused ──snapshot──► (files on disk) ──restore──► running
//!               ▲                  │
//!               └─────resume───────┘            kill: from any live state
//! ```
//!
//! A driver only acts; it never decides. Whether an operation is legal is
//! [`crate::state`]'s call, made before the driver is asked.
//!
//! Besides acting, a driver answers the questions whose answers depend on
//! the VMM, so that nothing outside its module needs to know them:
//! - [`Driver::check_host`]: what the host lacks to run it (binary, device);
//! - [`Driver::guest_init`]: the init the guest kernel runs (lohar's path);
//! - [`Driver::saved_snapshot`]: the snapshot a stopped VM left in its run
//!   dir, if any (what recovery looks for after a restart);
//! - [`Driver::agent_transport`]: how the guest's agent is reached
//!   ([`AgentTransport`]; [`crate::agent_link`] connects accordingly).
//!
//! # How to add a driver
//! 1. Write it in its own module (`crate::<name>`, like [`crate::qemu`]):
//!    a type implementing [`Driver`], with its own error type wrapped in
//!    [`DriverError`]'s `source`.
//! 2. Add one line to the `drivers!` list in [`crate::drivers`]: that
//!    makes it a variant of [`crate::drivers::AnyDriver`] (and of its VM
//!    handle), dispatches every [`Driver`] method to it, and lets the
//!    daemon's `engine:` setting name it.
//!
//! Nothing else changes: the engine, recovery and the daemon only see
//! [`Driver`] (the daemon runs `VmEngine<AnyDriver>`).
//!
//! # Threads, locks, I/O
//! Methods are async and take the VM handle by `&mut` (or by value when the
//! VMM ends), so the engine serialises operations on one VM by keeping the
//! handle under that sandbox's lock. Drivers do local I/O only (process
//! spawn, the VMM's Unix control socket, snapshot files): never the
//! guest network.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Boxed source error of a driver failure (each driver has its own types).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a driver needs to start (or restore) one VM. Plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub vcpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    /// The sandbox's private rootfs copy (`/dev/vda`).
    pub rootfs: PathBuf,
    /// Read-only config drive (`/dev/vdb`).
    pub config_drive: Option<PathBuf>,
    /// Volume files, attached in order after the config drive.
    pub volumes: Vec<PathBuf>,
    pub net: Option<VmNet>,
    /// Guest init (lohar's path).
    pub init: String,
    /// Directory for the VMM's socket, logs and snapshot files.
    pub run_dir: PathBuf,
    /// Network namespace the VMM runs in (where its TAP lives).
    pub netns: Option<String>,
}

/// A VM's NIC: its TAP and the address the guest kernel sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmNet {
    pub tap: String,
    /// The guest NIC's MAC (the bridge admits no other).
    pub mac: [u8; 6],
    pub guest_ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

/// A VMM that an earlier engine run started and that still runs, taken
/// over by [`Driver::adopt`].
#[derive(Debug)]
pub struct Adopted<V> {
    pub vm: V,
    /// Its vCPUs are paused (the sandbox is warm), not running.
    pub paused: bool,
}

/// What a snapshot left on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The memory/device state file(s).
    pub files: Vec<PathBuf>,
    /// Their total size in bytes.
    pub size_bytes: u64,
    /// How long writing it took.
    pub took: Duration,
}

/// How the engine reaches a guest's agent, as the driver arranged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentTransport {
    /// TCP to the guest's address over its TAP, from inside the sandbox
    /// network namespace.
    Tcp(Ipv4Addr),
    /// `AF_VSOCK` to the guest's context id.
    Vsock { cid: u32 },
    /// A Unix socket on the host that the VMM bridges to the guest (e.g.
    /// Firecracker's vsock proxy).
    Unix(PathBuf),
}

/// What the host lacks to run a driver's VMs.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A program, device or file the driver needs is missing or unusable.
    #[error("{driver}: {what}; {fix}")]
    Missing {
        driver: &'static str,
        /// What is missing, e.g. "qemu-system-x86_64 is not runnable".
        what: String,
        /// How to get it, e.g. "install the Debian package qemu-system-x86".
        fix: String,
    },
}

/// Errors from a driver, named for the operation.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{driver}: starting the VMM failed")]
    Spawn {
        driver: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{driver}: pausing the VM failed")]
    Pause {
        driver: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{driver}: resuming the VM failed")]
    Resume {
        driver: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{driver}: snapshot failed")]
    Snapshot {
        driver: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{driver}: restore failed")]
    Restore {
        driver: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{driver}: taking over the running VMM failed")]
    Adopt {
        driver: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{driver}: killing the VMM failed")]
    Kill {
        driver: &'static str,
        #[source]
        source: BoxError,
    },
    /// A VM handle was given to a driver of another kind (only possible
    /// through [`crate::drivers::AnyDriver`]).
    #[error("{driver}: the VM handle belongs to the {vm} driver")]
    ForeignVm {
        driver: &'static str,
        vm: &'static str,
    },
}

/// One VMM family (QEMU, Firecracker).
pub trait Driver: Send + Sync + std::fmt::Debug + 'static {
    /// A live VMM process and its control channel.
    type Vm: Send + Sync + std::fmt::Debug + 'static;

    /// Short name for errors and logs (`"qemu"`).
    fn name(&self) -> &'static str;

    /// Checks that this host can run the driver's VMs (its VMM binary runs,
    /// devices it needs exist); the error says what is missing and how to
    /// get it. Blocking (may run the VMM binary once).
    fn check_host(&self) -> Result<(), HostError>;

    /// The path of the init the guest kernel runs (the agent, lohar).
    fn guest_init(&self) -> &str;

    /// The snapshot a [`Driver::snapshot`] left in `run_dir`, if one is
    /// there (`took` is zero: it is not known any more). Recovery uses it
    /// to find the sandboxes that can come back after a restart.
    fn saved_snapshot(&self, run_dir: &Path) -> Option<Snapshot>;

    /// Why `snapshot` cannot be restored (a file missing, empty, or not
    /// a snapshot), from a cheap check of its files; `None` when it looks
    /// restorable. Lets the engine refuse a broken snapshot at once
    /// instead of waiting for a restore to fail.
    fn snapshot_problem(&self, snapshot: &Snapshot) -> Option<String>;

    /// Removes every snapshot file in `run_dir`, complete or interrupted
    /// (the guest has moved on from it, or it was never finished), except
    /// the files of `keep`.
    fn discard_snapshot(&self, run_dir: &Path, keep: Option<&Snapshot>);

    /// Takes over the VMM an earlier engine run started for `config`, if it
    /// still runs: reconnects its control channel, ends an outgoing
    /// snapshot it was in the middle of, and discards snapshot files (the
    /// live VM is newer). `Ok(None)` when none runs, or it was in a state
    /// it cannot continue from (then it has been ended).
    fn adopt(
        &self,
        config: &VmConfig,
    ) -> impl Future<Output = Result<Option<Adopted<Self::Vm>>, DriverError>> + Send;

    /// A descriptor that becomes readable when the VMM process ends (a
    /// pidfd), so the engine notices a VMM's death when it happens.
    fn exit_fd(&self, vm: &Self::Vm) -> Option<std::os::fd::OwnedFd>;

    /// How the engine reaches the agent of a VM started from `config`;
    /// `None` when that VM has no channel to its agent (no NIC, say).
    fn agent_transport(&self, config: &VmConfig) -> Option<AgentTransport>;

    /// Starts a VM booting; returns once the VMM answers on its control
    /// channel (not when the guest is ready: the agent says that).
    fn spawn(
        &self,
        config: &VmConfig,
    ) -> impl Future<Output = Result<Self::Vm, DriverError>> + Send;

    /// Pauses the vCPUs; RAM stays resident.
    fn pause(&self, vm: &mut Self::Vm) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Resumes paused vCPUs.
    fn resume(&self, vm: &mut Self::Vm) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Pauses (if needed), writes the VM's state under `config.run_dir` and
    /// ends the VMM, freeing the guest's RAM. Disk images stay where they
    /// are and are part of the snapshot.
    fn snapshot(
        &self,
        vm: Self::Vm,
        config: &VmConfig,
    ) -> impl Future<Output = Result<Snapshot, DriverError>> + Send;

    /// Starts a VMM from `snapshot` and resumes it: the guest continues
    /// where it was paused, with the same address and TAP. The snapshot is
    /// consumed (its files deleted once loaded): after the guest runs again
    /// its disks no longer match it.
    fn restore(
        &self,
        config: &VmConfig,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<Self::Vm, DriverError>> + Send;

    /// Pauses the VM (if it runs) and writes its memory and device state
    /// to `dest`, keeping the VMM: the VM stays paused, and its disks
    /// match the state until it runs again (the caller copies them now),
    /// then [`Driver::resume`] continues it. A named snapshot or a fork.
    fn capture(
        &self,
        vm: &mut Self::Vm,
        dest: &Path,
    ) -> impl Future<Output = Result<Snapshot, DriverError>> + Send;

    /// Starts a VMM for `config` from a [`Driver::capture`]d `snapshot`
    /// (only read: it stays for other clones) and resumes it. The guest
    /// still has the identity of the VM it was captured from, until
    /// [`Driver::send_identity`] gives it its own; until then its frames
    /// are dropped by its own bridge port.
    fn restore_clone(
        &self,
        config: &VmConfig,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<Self::Vm, DriverError>> + Send;

    /// Sends `line` (`bhatti_proto::identify`) to the guest agent of a VM
    /// made by [`Driver::restore_clone`] over a channel that is not its
    /// network (QEMU: the serial console's input), and waits for the
    /// agent's answer: an error when it could not take the identity.
    fn send_identity(
        &self,
        vm: &mut Self::Vm,
        line: &[u8],
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Lets go of the VMM without ending it: its control channel is
    /// closed and the process keeps running after this engine is gone,
    /// for the next one to [`Driver::adopt`].
    fn release(&self, vm: Self::Vm);

    /// Ends the VMM at once (no guest shutdown).
    fn kill(&self, vm: Self::Vm) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// `Some(description)` once the VMM process has ended (e.g. the guest
    /// panicked during boot), so waiters can stop early.
    fn exited(&self, vm: &mut Self::Vm) -> Option<String>;

    /// The VMM's process id, for host memory accounting and recovery.
    fn pid(&self, vm: &Self::Vm) -> Option<u32>;

    /// The last `lines` lines of the guest's serial console, from its log
    /// in `config.run_dir` (kept across the VM's boots and restores), with
    /// identity secrets redacted; empty without a log. Reads only the end
    /// of a big log. Blocking file I/O.
    fn console_tail(&self, config: &VmConfig, lines: usize) -> String;
}
