//! Launching a QEMU `-M microvm` guest: the argv, the accelerator choice,
//! the process (optionally inside a network namespace), the serial console
//! captured to a file, and boot errors that carry the console's tail.
//!
//! The guest boots the kernel directly (PVH, no firmware), with the rootfs
//! as the first virtio-blk device (`/dev/vda`), the config drive second
//! (`/dev/vdb`, read-only) and volumes after (`/dev/vdc`, ...), a TAP-backed
//! virtio-net NIC configured by the kernel `ip=` argument, and a QMP socket.
//! `-no-reboot` plus `reboot=t panic=-1` turn a guest restart or panic into
//! QEMU exiting. The machine has no ACPI (`acpi=off`: QEMU lists the
//! virtio-mmio devices on the kernel command line, and the legacy PIT gives
//! TCG guests a timer), so a guest shuts down by restarting: a plain
//! `reboot(POWER_OFF)` only halts the vCPU and QEMU keeps running.
//! The machine has the CMOS RTC (`rtc=on`): the guest boots knowing the
//! date, and the kernel's boot-time RTC read does not spin for a second on
//! a missing chip (with a real clock source that spin is a real second).
//!
//! Least privilege: QEMU runs under its seccomp filter ([`SECCOMP`]) and,
//! where the host lets the engine, in a cgroup of its own with CPU and
//! memory limits from the guest's size ([`crate::cgroup`]); the group is
//! joined before exec and removed when the process is reaped.
//!
//! Split: this file builds the argv and spawns; `accel` chooses KVM or
//! TCG; `clock` gives a TCG guest a real clock source; `process` watches
//! the running QEMU and builds boot errors.
//!
//! # Threads, locks, I/O
//! [`LaunchSpec::spawn`] forks QEMU and returns at once; waiting is done by
//! polling ([`VmProcess::wait_until`], [`VmProcess::wait_exit`]) from the
//! caller's thread, so call them from `spawn_blocking` in async code. The
//! only shared state is the cached KVM probe ([`Accel::auto`], a
//! `OnceLock`). The console file is written by QEMU and only read here.

use std::ffi::OsString;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cgroup::{self, Limits, VmmCgroup};
use crate::netns::{NetNs, NetnsError};

mod accel;
pub mod clock;
mod process;

pub use accel::{Accel, kvm_is_pvm, probe_runs_guest};
pub use process::{BootError, BootFailure, CONSOLE_TAIL_LINES, VmProcess, tail_lines};

/// The QEMU binary (found on `PATH`).
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// QEMU's seccomp filter (`-sandbox`): the default deny list plus
/// obsolete system calls, set*uid/gid, and scheduler/affinity changes.
/// Spawning stays allowed: snapshots and restores stream the VM state
/// through an `exec:` migration helper (`cat`), which QEMU forks.
pub const SECCOMP: &str = "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny";

/// TCG's translated-code buffer, MiB. QEMU's default is 1 GiB, filled
/// as the guest runs new code and counted in the VMM's memory cgroup;
/// 128 MiB keeps it inside [`crate::cgroup::OVERHEAD_MIB`] (QEMU before
/// 5.0 used 32 MiB).
pub const TCG_TB_MIB: u32 = 128;

/// Kernel arguments for a TCG guest's timers. `noapictimer`: the kernel
/// otherwise calibrates the local APIC timer against the PIT for two
/// rounds of 100 ms of jiffies with interrupts on, which under TCG takes
/// ~200-250 ms (the whole gap before `smpboot: CPU0` in the console), and
/// then often rejects it anyway ("APIC timer disabled due to verification
/// failure"). Without it the PIT is the clock event device (hrtimers run
/// on it in one-shot mode; the clock source stays the TSC, see [`clock`]),
/// which is what a TCG guest got whenever the verification failed.
/// One vCPU only: with more, every CPU would need the PIT's broadcast,
/// which runs periodic 4 ms ticks instead of high-resolution timers (the
/// calibrated APIC timers keep them), so those guests still calibrate.
/// Under KVM the guest has a TSC-deadline timer and never calibrates.
pub const TCG_BOOT_ARGS: &[&str] = &["noapictimer"];

/// Where lohar lives in every rootfs tier.
pub const DEFAULT_INIT: &str = "/usr/local/bin/lohar";

/// Errors starting QEMU.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("path {0:?} is not valid UTF-8 (QEMU options need text)")]
    NonUtf8Path(PathBuf),
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("cannot create {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {QEMU_BINARY} (install the Debian package qemu-system-x86)")]
    Spawn(#[source] std::io::Error),
}

/// The guest's NIC: a TAP device (which must exist in the namespace QEMU
/// runs in) and the static address the kernel configures (`ip=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNet {
    pub tap: String,
    pub mac: String,
    pub guest_ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

impl GuestNet {
    /// The kernel `ip=` value: `<guest>::<gw>:<mask>::eth0:off`.
    pub fn kernel_ip_arg(&self) -> String {
        let mask = match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        };
        format!(
            "{}::{}:{}::eth0:off",
            self.guest_ip,
            self.gateway,
            Ipv4Addr::from(mask)
        )
    }
}

/// An extra block device (a volume), attached after the config drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub path: PathBuf,
    pub readonly: bool,
}

/// The id of a RAM file's memory backend: the name QEMU gives a microvm's
/// anonymous RAM, which the migration stream names its RAM block after,
/// so that a stream of anonymous memory loads into a RAM file and back.
pub const RAM_ID: &str = "microvm.ram";

/// A console log this large is started afresh at the VM's next launch.
pub const CONSOLE_LOG_MAX: u64 = 16 << 20;

/// Everything needed to start one microVM.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub qemu: PathBuf,
    pub accel: Accel,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    /// Read-only config drive (`/dev/vdb`); `None` boots without one.
    pub config_drive: Option<PathBuf>,
    /// Volumes: `/dev/vdc`, `/dev/vdd`, ... in this order.
    pub volumes: Vec<Drive>,
    pub net: Option<GuestNet>,
    /// Guest init (`init=`); lohar by default.
    pub init: String,
    /// Extra kernel arguments, appended last.
    pub extra_cmdline: Vec<String>,
    /// Serial console output goes here, appended: the log runs on across
    /// the VM's boots and restores, and starts afresh at a launch that
    /// finds it over [`CONSOLE_LOG_MAX`].
    pub console_log: PathBuf,
    /// QEMU's own stderr goes here.
    pub stderr_log: PathBuf,
    /// QMP socket (`server=on,wait=off`), if any.
    pub qmp_socket: Option<PathBuf>,
    /// vhost-vsock guest CID, if any (needs `/dev/vhost-vsock`).
    pub vsock_cid: Option<u32>,
    /// Named network namespace QEMU runs in (where its TAP lives).
    pub netns: Option<String>,
    /// Pass `quiet` to the kernel.
    pub quiet: bool,
    /// Under TCG: the guest TSC's frequency to give the kernel (the
    /// host's, [`clock::host_tsc_khz`]), so the guest keeps a TSC clock
    /// instead of 4 ms jiffies. `None`: the kernel calibrates on its own.
    pub guest_tsc_khz: Option<u64>,
    /// Under TCG with one vCPU: pass `noapictimer` ([`TCG_BOOT_ARGS`]), which skips
    /// the kernel's ~200 ms local-APIC timer calibration. On by default;
    /// off only to measure the old boot (benches).
    pub tcg_fast_timer: bool,
    /// Restore: `-incoming <uri>` (see `qmp::incoming_uri`).
    pub incoming: Option<String>,
    /// Kill QEMU when the thread that spawned it exits (PR_SET_PDEATHSIG;
    /// tests and benches, so a killed test run leaves no VM behind). Off
    /// for the daemon, whose VMs outlive a restart.
    pub die_with_parent: bool,
    /// The cgroup QEMU runs in ([`crate::cgroup`]; limits from `vcpus` and
    /// `memory_mib`), named after the run dir; `None`: QEMU stays in the
    /// caller's cgroup.
    pub cgroup: Option<String>,
    /// QEMU's seccomp filter ([`SECCOMP`]).
    pub seccomp: bool,
    /// Guest RAM in this file, mapped shared (`memory-backend-file`,
    /// `share=on`) instead of anonymous memory: a migration with the
    /// `x-ignore-shared` capability then writes only device state, and a
    /// restore maps the same file. `None`: anonymous RAM.
    pub memory_file: Option<PathBuf>,
    /// Map `memory_file` privately (`share=off`): the guest starts from
    /// the file's content, its writes stay in its own memory, and the
    /// file is never written (many VMs can map one snapshot's RAM file;
    /// pages none of them wrote are one copy in the host's page cache).
    pub private_memory: bool,
    /// The console's input as well as its output: the console chardev is
    /// a Unix socket at this path (`server=on,wait=off`) that still logs
    /// everything the guest prints to `console_log`. What the host writes
    /// to the socket reaches the guest's `/dev/ttyS0` (how a guest
    /// restored from another sandbox's snapshot is re-identified,
    /// `bhatti_proto::identify`). `None`: output only, to the file.
    pub console_socket: Option<PathBuf>,
}

impl LaunchSpec {
    /// A spec with defaults (TCG, 1 vCPU, 256 MiB, lohar as init, console
    /// and stderr logs and the QMP socket in `run_dir`).
    pub fn new(kernel: impl Into<PathBuf>, rootfs: impl Into<PathBuf>, run_dir: &Path) -> Self {
        Self {
            qemu: PathBuf::from(QEMU_BINARY),
            accel: Accel::Tcg,
            vcpus: 1,
            memory_mib: 256,
            kernel: kernel.into(),
            rootfs: rootfs.into(),
            config_drive: None,
            volumes: Vec::new(),
            net: None,
            init: DEFAULT_INIT.to_owned(),
            extra_cmdline: Vec::new(),
            console_log: run_dir.join("console.log"),
            stderr_log: run_dir.join("qemu.stderr"),
            qmp_socket: Some(run_dir.join("qmp.sock")),
            vsock_cid: None,
            netns: None,
            quiet: true,
            guest_tsc_khz: None,
            tcg_fast_timer: true,
            incoming: None,
            die_with_parent: false,
            cgroup: Some(cgroup::name_for(run_dir)),
            seccomp: true,
            memory_file: None,
            private_memory: false,
            console_socket: None,
        }
    }

    /// The `-chardev` of the serial console: a file, or a socket that
    /// logs to the file ([`LaunchSpec::console_socket`]).
    fn console_chardev(&self) -> Result<String, LaunchError> {
        let console = escape(&text(&self.console_log)?);
        Ok(match &self.console_socket {
            Some(sock) => {
                let sock = escape(&text(sock)?);
                format!(
                    "socket,id=console,path={sock},server=on,wait=off,logfile={console},logappend=on"
                )
            }
            None => format!("file,id=console,path={console},append=on"),
        })
    }

    /// The kernel command line.
    pub fn kernel_cmdline(&self) -> String {
        let mut args = vec![
            "console=ttyS0".to_owned(),
            "reboot=t".to_owned(),
            "panic=-1".to_owned(),
            "root=/dev/vda".to_owned(),
            "rw".to_owned(),
            format!("init={}", self.init),
        ];
        if let Some(net) = &self.net {
            args.push(format!("ip={}", net.kernel_ip_arg()));
        }
        if self.config_drive.is_some() {
            args.push("bhatti.config=/dev/vdb".to_owned());
        }
        if let Some(khz) = self.guest_tsc_khz.filter(|_| self.accel == Accel::Tcg) {
            args.push(format!("tsc_early_khz={khz}"));
            args.push("tsc=reliable".to_owned());
        }
        if self.tcg_fast_timer && self.accel == Accel::Tcg && self.vcpus <= 1 {
            args.extend(TCG_BOOT_ARGS.iter().map(|a| (*a).to_owned()));
        }
        if self.quiet {
            args.push("quiet".to_owned());
        }
        args.extend(self.extra_cmdline.iter().cloned());
        args.join(" ")
    }

    /// The full QEMU argv (without the program name).
    pub fn argv(&self) -> Result<Vec<OsString>, LaunchError> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
        let mut machine = "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off".to_owned();
        if let Some(f) = &self.memory_file {
            let size = self.memory_mib.max(64);
            let path = escape(&text(f)?);
            let share = if self.private_memory { "off" } else { "on" };
            push(&[
                "-object",
                &format!(
                    "memory-backend-file,id={RAM_ID},size={size}M,mem-path={path},share={share}"
                ),
            ]);
            machine.push_str(&format!(",memory-backend={RAM_ID}"));
        }
        push(&["-M", &machine]);
        let accel = match self.accel {
            Accel::Tcg => format!("tcg,tb-size={TCG_TB_MIB}"),
            Accel::Kvm => self.accel.as_str().to_owned(),
        };
        push(&["-accel", &accel]);
        push(&["-cpu", self.accel.cpu_model()]);
        push(&["-smp", &self.vcpus.max(1).to_string()]);
        push(&["-m", &self.memory_mib.max(64).to_string()]);
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ]);
        push(&["-kernel", &text(&self.kernel)?]);
        push(&["-append", &self.kernel_cmdline()]);

        let mut drives = vec![(&self.rootfs, false)];
        if let Some(cfg) = &self.config_drive {
            drives.push((cfg, true));
        }
        drives.extend(self.volumes.iter().map(|v| (&v.path, v.readonly)));
        for (i, (path, ro)) in drives.into_iter().enumerate() {
            let id = format!("vd{i}");
            let ro = if ro { ",readonly=on" } else { "" };
            let file = escape(&text(path)?);
            // The format comes from the file's name, never from probing
            // its bytes: a guest writes a raw disk's first sector.
            let format = crate::image::overlay::format_of(path);
            push(&[
                "-drive",
                &format!("id={id},file={file},format={format},if=none{ro}"),
            ]);
            push(&["-device", &format!("virtio-blk-device,drive={id}")]);
        }

        if let Some(net) = &self.net {
            let tap = escape(&net.tap);
            push(&[
                "-netdev",
                &format!("tap,id=net0,ifname={tap},script=no,downscript=no"),
            ]);
            let mac = escape(&net.mac);
            push(&[
                "-device",
                &format!("virtio-net-device,netdev=net0,mac={mac}"),
            ]);
        }
        if let Some(cid) = self.vsock_cid {
            push(&["-device", &format!("vhost-vsock-device,guest-cid={cid}")]);
        }
        push(&["-chardev", &self.console_chardev()?]);
        push(&["-serial", "chardev:console"]);
        if let Some(qmp) = &self.qmp_socket {
            let qmp = escape(&text(qmp)?);
            push(&["-qmp", &format!("unix:{qmp},server=on,wait=off")]);
        }
        if let Some(uri) = &self.incoming {
            push(&["-incoming", uri]);
        }
        if self.seccomp {
            push(&["-sandbox", SECCOMP]);
        }
        Ok(a.into_iter().map(OsString::from).collect())
    }

    /// The VMM's cgroup with the guest's limits (made, or reused when an
    /// earlier run left it), if it runs in one.
    pub fn make_cgroup(&self) -> Option<VmmCgroup> {
        self.cgroup.as_deref().and_then(|name| {
            let limits = Limits {
                cpus: self.vcpus.max(1),
                memory_mib: self.memory_mib.max(64),
            };
            VmmCgroup::make(name, limits)
        })
    }

    /// Starts QEMU and returns at once (the guest boots in the background).
    pub fn spawn(&self) -> Result<VmProcess, LaunchError> {
        for p in [&self.kernel, &self.rootfs]
            .into_iter()
            .chain(self.config_drive.as_ref())
            .chain(self.volumes.iter().map(|v| &v.path))
        {
            if !p.exists() {
                return Err(LaunchError::Missing(p.clone()));
            }
        }
        let argv = self.argv()?;
        let create = |path: &Path| {
            fs::File::create(path).map_err(|source| LaunchError::Io {
                path: path.to_owned(),
                source,
            })
        };
        console_log(&self.console_log)?;
        let stderr = create(&self.stderr_log)?;
        if let Some(qmp) = &self.qmp_socket {
            let _ = fs::remove_file(qmp);
        }
        let mut cmd = match &self.netns {
            Some(name) => NetNs::open(name)?.command(&self.qemu)?,
            None => Command::new(&self.qemu),
        };
        if self.die_with_parent {
            // SAFETY: runs in the forked child before exec and only makes
            // the prctl(2) syscall, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    rustix::process::set_parent_process_death_signal(Some(
                        rustix::process::Signal::KILL,
                    ))
                    .map_err(std::io::Error::from)
                });
            }
        }
        let cgroup = self.make_cgroup();
        if let Some(cg) = &cgroup {
            cg.join_on_spawn(&mut cmd);
        }
        let child = match cmd
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    cg.remove();
                }
                return Err(LaunchError::Spawn(e));
            }
        };
        if let Some(cg) = &cgroup {
            cg.check_joined(child.id());
        }
        Ok(VmProcess::new(
            child,
            self.console_log.clone(),
            self.stderr_log.clone(),
            cgroup,
        ))
    }
}

/// Makes the console log exist for QEMU to append to, emptied first if it
/// reached [`CONSOLE_LOG_MAX`].
fn console_log(path: &Path) -> Result<(), LaunchError> {
    let big = fs::metadata(path).is_ok_and(|m| m.len() >= CONSOLE_LOG_MAX);
    fs::OpenOptions::new()
        .create(true)
        .append(!big)
        .write(true)
        .truncate(big)
        .open(path)
        .map(drop)
        .map_err(|source| LaunchError::Io {
            path: path.to_owned(),
            source,
        })
}

fn text(p: &Path) -> Result<String, LaunchError> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| LaunchError::NonUtf8Path(p.to_owned()))
}

/// QEMU option values escape `,` by doubling it.
fn escape(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests;
