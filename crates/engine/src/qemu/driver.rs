//! The QEMU implementation of [`Driver`]: `qemu-system-x86_64 -M microvm`
//! started by [`super::launch`], controlled over QMP ([`super::qmp`]).
//!
//! - pause / resume: QMP `stop` / `cont`;
//! - snapshot: `stop`, migrate to `<run_dir>/mem.snap.tmp` (through
//!   `exec:cat`), rename to `mem.snap`, `quit`; the rootfs and volume files
//!   are flushed by the migration and stay in place;
//! - restore: the same argv plus `-incoming "exec:cat mem.snap"`, wait for
//!   the state to load, delete `mem.snap` (the disks are about to move past
//!   it), `cont`. A file that does not start like a QEMU migration stream
//!   is refused before QEMU starts;
//! - capture (named snapshot, fork): `stop`, a full migration to the
//!   given file, the VMM stays (paused, `postmigrate`) until `cont`;
//! - clone: the captured file restored into a new VMM whose console is a
//!   Unix socket (`<run_dir>/console.sock`, still logged to `console.log`)
//!   through which the guest gets its new identity ([`clone`]);
//! - with [`QemuDriver::shared_ram`] (on by default) guest RAM is the run
//!   dir's `ram` file, a snapshot migrates device state only and a restore
//!   maps the file again ([`shared_ram`]);
//! - adopt (after an engine restart): the QEMU whose argv names the run
//!   dir's QMP socket, pinned by a pidfd; a snapshot it was writing is
//!   cancelled and snapshot files are discarded; `running` comes back hot,
//!   `paused`/`postmigrate` warm, anything else is ended.
//!
//! # Threads, locks, I/O
//! A [`QemuVm`] owns its process and QMP session; the engine keeps it under
//! the sandbox lock. Process spawning is a quick fork/exec done inline;
//! waiting for QEMU to exit runs on the blocking pool. No shared state.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};

use super::launch::{
    Accel, DEFAULT_INIT, Drive, GuestNet, LaunchError, LaunchSpec, VmProcess, clock,
};
use super::qmp::{QmpClient, QmpError};
use crate::driver::{
    Adopted, AgentTransport, BoxError, Driver, DriverError, HostError, Snapshot, VmConfig,
};
use crate::network::mac_string;

mod adopt;
mod clone;
pub mod shared_ram;
mod snapshot;

use adopt::stream_problem;

const NAME: &str = "qemu";

/// The snapshot file a stopped sandbox keeps in its run dir.
pub const SNAPSHOT_FILE: &str = "mem.snap";

/// Errors specific to driving QEMU (wrapped in [`DriverError`]).
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("QEMU exited before its QMP socket answered ({status}): {stderr}")]
    ExitedEarly { status: String, stderr: String },
    #[error("QEMU did not exit within {0:?} after quit")]
    NoExit(Duration),
    #[error("snapshot file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("waiting for QEMU: {0}")]
    Wait(#[source] io::Error),
    #[error("the guest did not take its new identity: {0}")]
    Identify(String),
}

/// Settings of the QEMU driver.
#[derive(Debug, Clone)]
pub struct QemuDriver {
    pub qemu: PathBuf,
    pub accel: Accel,
    /// Guest TSC frequency for TCG guests (see [`clock`]).
    pub guest_tsc_khz: Option<u64>,
    /// TCG guests boot with [`super::launch::TCG_BOOT_ARGS`] (on by
    /// default; off only to measure the old boot).
    pub tcg_fast_timer: bool,
    /// Limit for QEMU to answer QMP after spawning.
    pub start_timeout: Duration,
    /// Limit for a migration (snapshot) or an incoming restore.
    pub snapshot_timeout: Duration,
    /// Guest RAM is a file mapped shared, so that snapshots write only
    /// device state and clones can share a snapshot's pages
    /// ([`shared_ram`]). On by default; `BHATTI_SHARED_RAM=0` in the
    /// environment turns it off (every snapshot is then a full stream).
    pub shared_ram: bool,
}

/// KVM when it can really boot a guest here (probed once per process,
/// under a second), else TCG with the host's TSC frequency for the guest
/// clock (measured once per process, 50 ms).
impl Default for QemuDriver {
    fn default() -> Self {
        let accel = Accel::auto();
        Self {
            qemu: PathBuf::from(super::launch::QEMU_BINARY),
            accel,
            guest_tsc_khz: (accel == Accel::Tcg).then(clock::host_tsc_khz).flatten(),
            tcg_fast_timer: true,
            start_timeout: Duration::from_secs(10),
            snapshot_timeout: Duration::from_secs(120),
            shared_ram: std::env::var("BHATTI_SHARED_RAM").map_or(true, |v| v != "0"),
        }
    }
}

/// A running QEMU and its QMP session.
#[derive(Debug)]
pub struct QemuVm {
    process: VmProcess,
    qmp: QmpClient,
    /// Its RAM is the run dir's shared RAM file ([`shared_ram`]).
    shared_ram: bool,
}

impl QemuVm {
    /// The QMP session (for operations the trait does not cover).
    pub fn qmp(&mut self) -> &mut QmpClient {
        &mut self.qmp
    }

    /// The guest's serial console so far.
    pub fn console(&self) -> String {
        self.process.console()
    }
}

impl QemuDriver {
    fn launch_spec(&self, config: &VmConfig) -> LaunchSpec {
        let mut spec = LaunchSpec::new(&config.kernel, &config.rootfs, &config.run_dir);
        spec.qemu = self.qemu.clone();
        spec.accel = self.accel;
        spec.guest_tsc_khz = self.guest_tsc_khz;
        spec.tcg_fast_timer = self.tcg_fast_timer;
        spec.vcpus = config.vcpus;
        spec.memory_mib = config.memory_mib;
        spec.config_drive = config.config_drive.clone();
        spec.volumes = config
            .volumes
            .iter()
            .map(|p| Drive {
                path: p.clone(),
                readonly: false,
            })
            .collect();
        spec.net = config.net.as_ref().map(|n| GuestNet {
            tap: n.tap.clone(),
            mac: mac_string(n.mac),
            guest_ip: n.guest_ip,
            gateway: n.gateway,
            prefix_len: n.prefix_len,
        });
        spec.init = config.init.clone();
        spec.netns = config.netns.clone();
        spec
    }

    /// Spawns QEMU and connects to QMP, retrying the connect every 2 ms
    /// while QEMU has not opened its socket yet and still runs, until
    /// `start_timeout`; an early exit is reported with QEMU's stderr.
    async fn start(&self, spec: &LaunchSpec) -> Result<QemuVm, QemuError> {
        let mut process = spec.spawn()?;
        let Some(sock) = spec.qmp_socket.clone() else {
            return Err(QemuError::Qmp(QmpError::Closed));
        };
        let attempts = (|| QmpClient::connect(&sock))
            .retry(
                ConstantBuilder::new()
                    .with_delay(Duration::from_millis(2))
                    .without_max_times(),
            )
            .sleep(tokio::time::sleep)
            // Not while QEMU is gone: it will never open the socket.
            .when(|e| e.not_listening_yet() && matches!(process.try_wait(), Ok(None)));
        let connected = tokio::time::timeout(self.start_timeout, attempts).await;
        if let Some(status) = process.try_wait().map_err(QemuError::Wait)? {
            let stderr = std::fs::read_to_string(&spec.stderr_log).unwrap_or_default();
            return Err(QemuError::ExitedEarly {
                status: status.to_string(),
                stderr: stderr.trim().to_owned(),
            });
        }
        match connected {
            Ok(Ok(qmp)) => Ok(QemuVm {
                process,
                qmp,
                shared_ram: spec.memory_file.is_some() && !spec.private_memory,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(QemuError::Qmp(QmpError::Timeout {
                what: "the QMP socket",
                after: self.start_timeout,
            })),
        }
    }
}

fn boxed(e: impl Into<QemuError>) -> BoxError {
    Box::new(e.into())
}

impl Driver for QemuDriver {
    type Vm = QemuVm;

    fn name(&self) -> &'static str {
        NAME
    }

    /// `<qemu> --version` must run and succeed (TCG needs nothing else;
    /// KVM is used when it works, see [`Accel::auto`]).
    fn check_host(&self) -> Result<(), HostError> {
        let status = std::process::Command::new(&self.qemu)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let what = match status {
            Ok(s) if s.success() => return Ok(()),
            Ok(s) => format!("`{} --version` failed ({s})", self.qemu.display()),
            Err(e) => format!("{} is not runnable ({e})", self.qemu.display()),
        };
        Err(HostError::Missing {
            driver: NAME,
            what,
            fix: "install QEMU (Debian package qemu-system-x86)".into(),
        })
    }

    fn guest_init(&self) -> &str {
        DEFAULT_INIT
    }

    /// `<run_dir>/mem.snap` (a `.tmp` left by an interrupted snapshot does
    /// not count).
    fn saved_snapshot(&self, run_dir: &Path) -> Option<Snapshot> {
        let path = run_dir.join(SNAPSHOT_FILE);
        let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
        let mut files = vec![path];
        if shared_ram::is_shared(run_dir) {
            files.push(shared_ram::ram_file(run_dir));
        }
        Some(Snapshot {
            files,
            size_bytes: meta.len(),
            took: Duration::ZERO,
        })
    }

    fn snapshot_problem(&self, snapshot: &Snapshot) -> Option<String> {
        let Some(path) = snapshot.files.first() else {
            return Some("the snapshot has no file".into());
        };
        if let Some(missing) = snapshot.files[1..].iter().find(|f| !f.is_file()) {
            return Some(format!("its memory file {} is missing", missing.display()));
        }
        let shared_without_ram = path
            .parent()
            .is_some_and(|d| shared_ram::is_shared(d) && !shared_ram::ram_file(d).is_file());
        if shared_without_ram {
            return Some("its memory file is missing".into());
        }
        stream_problem(path)
    }

    fn discard_snapshot(&self, run_dir: &Path, keep: Option<&Snapshot>) {
        // A kept shared snapshot keeps its marker (its RAM file is never
        // discarded here: it is the VM's memory).
        let keeping = keep.is_some_and(|k| k.files.contains(&run_dir.join(SNAPSHOT_FILE)));
        for name in [
            SNAPSHOT_FILE,
            &format!("{SNAPSHOT_FILE}.tmp"),
            &format!("{SNAPSHOT_FILE}.shared"),
        ] {
            let path = run_dir.join(name);
            let marker = path == shared_ram::marker(run_dir);
            if keep.is_some_and(|k| k.files.contains(&path)) || (marker && keeping) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "discarded a snapshot file"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding a snapshot file")
                }
            }
        }
    }

    async fn adopt(&self, config: &VmConfig) -> Result<Option<Adopted<QemuVm>>, DriverError> {
        self.do_adopt(config).await.map_err(|e| DriverError::Adopt {
            driver: NAME,
            source: boxed(e),
        })
    }

    fn exit_fd(&self, vm: &QemuVm) -> Option<std::os::fd::OwnedFd> {
        vm.process.exit_fd()
    }

    /// TCP to the guest's address over its TAP (lohar listens on the
    /// guest NIC); none for a VM without a NIC.
    fn agent_transport(&self, config: &VmConfig) -> Option<AgentTransport> {
        config.net.as_ref().map(|n| AgentTransport::Tcp(n.guest_ip))
    }

    async fn spawn(&self, config: &VmConfig) -> Result<QemuVm, DriverError> {
        // A boot starts from an empty RAM file (an old one is garbage), or
        // anonymous memory without shared RAM.
        let mut spec = self.launch_spec(config);
        let ram = if self.shared_ram {
            shared_ram::fresh(&config.run_dir).map(Some)
        } else {
            shared_ram::remove(&shared_ram::ram_file(&config.run_dir)).map(|()| None)
        };
        let started = match ram {
            Ok(ram) => {
                spec.memory_file = ram;
                self.start(&spec).await
            }
            Err(e) => Err(e),
        };
        started.map_err(|e| DriverError::Spawn {
            driver: NAME,
            source: boxed(e),
        })
    }

    async fn pause(&self, vm: &mut QemuVm) -> Result<(), DriverError> {
        vm.qmp.stop().await.map_err(|e| DriverError::Pause {
            driver: NAME,
            source: boxed(e),
        })
    }

    async fn resume(&self, vm: &mut QemuVm) -> Result<(), DriverError> {
        vm.qmp.cont().await.map_err(|e| DriverError::Resume {
            driver: NAME,
            source: boxed(e),
        })
    }

    async fn snapshot(&self, vm: QemuVm, config: &VmConfig) -> Result<Snapshot, DriverError> {
        self.do_snapshot(vm, &config.run_dir)
            .await
            .map_err(|e| DriverError::Snapshot {
                driver: NAME,
                source: boxed(e),
            })
    }

    async fn capture(&self, vm: &mut QemuVm, dest: &Path) -> Result<Snapshot, DriverError> {
        self.do_capture(vm, dest)
            .await
            .map_err(|e| DriverError::Snapshot {
                driver: NAME,
                source: boxed(e),
            })
    }

    async fn restore_clone(
        &self,
        config: &VmConfig,
        snapshot: &Snapshot,
    ) -> Result<QemuVm, DriverError> {
        self.do_restore_clone(config, snapshot)
            .await
            .map_err(|e| DriverError::Restore {
                driver: NAME,
                source: boxed(e),
            })
    }

    async fn send_identity(&self, vm: &mut QemuVm, line: &[u8]) -> Result<(), DriverError> {
        self.do_send_identity(vm, line)
            .await
            .map_err(|e| DriverError::Restore {
                driver: NAME,
                source: boxed(e),
            })
    }

    async fn restore(&self, config: &VmConfig, snapshot: &Snapshot) -> Result<QemuVm, DriverError> {
        self.do_restore(config, snapshot)
            .await
            .map_err(|e| DriverError::Restore {
                driver: NAME,
                source: boxed(e),
            })
    }

    fn release(&self, vm: QemuVm) {
        let QemuVm { process, qmp, .. } = vm;
        drop(qmp);
        // QEMU runs on; a child left unreaped is reaped by init once this
        // process is gone.
        drop(process.detach());
    }

    async fn kill(&self, vm: QemuVm) -> Result<(), DriverError> {
        let QemuVm {
            mut process, qmp, ..
        } = vm;
        drop(qmp);
        tokio::task::spawn_blocking(move || process.kill())
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|e| DriverError::Kill {
                driver: NAME,
                source: boxed(QemuError::Wait(e)),
            })
    }

    fn exited(&self, vm: &mut QemuVm) -> Option<String> {
        match vm.process.try_wait() {
            Ok(Some(_)) if vm.process.is_adopted() => Some("QEMU exited".into()),
            Ok(Some(status)) => Some(format!("QEMU exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("QEMU cannot be waited for: {e}")),
        }
    }

    fn pid(&self, vm: &QemuVm) -> Option<u32> {
        vm.process.pid()
    }

    fn console_tail(&self, config: &VmConfig, lines: usize) -> String {
        let tail = super::launch::tail_lines(&self.launch_spec(config).console_log, lines);
        bhatti_proto::identify::redact(&tail)
    }
}

/// Creates (or empties) `path` readable by its owner alone: the snapshot
/// holds guest memory, secrets included, and the writer QEMU forks keeps
/// an existing file's mode whatever the umask.
pub(super) fn private_file(path: &Path) -> Result<(), QemuError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| QemuError::File {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)
}
