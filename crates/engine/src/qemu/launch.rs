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
//!
//! # Threads, locks, I/O
//! [`LaunchSpec::spawn`] forks QEMU and returns at once; waiting is done by
//! polling ([`VmProcess::wait_until`], [`VmProcess::wait_exit`]) from the
//! caller's thread, so call them from `spawn_blocking` in async code. The
//! only shared state is the cached KVM probe ([`Accel::auto`], a
//! `OnceLock`). The console file is written by QEMU and only read here.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::netns::{NetNs, NetnsError};

/// The QEMU binary (found on `PATH`).
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// Where lohar lives in every rootfs tier.
pub const DEFAULT_INIT: &str = "/usr/local/bin/lohar";

/// Console lines carried by a [`BootError`].
pub const CONSOLE_TAIL_LINES: usize = 30;

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

/// A failed boot: why, plus the last lines the guest printed.
#[derive(Debug, thiserror::Error)]
#[error(
    "VM boot failed: {reason}\n--- last {CONSOLE_TAIL_LINES} console lines ---\n{console_tail}"
)]
pub struct BootError {
    pub reason: BootFailure,
    pub console_tail: String,
}

/// Why a boot failed.
#[derive(Debug)]
pub enum BootFailure {
    /// QEMU exited before the guest was ready (guest panic, bad image,
    /// QEMU error; its stderr is included).
    Exited { status: ExitStatus, stderr: String },
    /// The guest was not ready within the deadline.
    Timeout(Duration),
    /// Waiting on the process failed.
    Wait(String),
}

impl fmt::Display for BootFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootFailure::Exited { status, stderr } if stderr.is_empty() => {
                write!(f, "QEMU exited ({status})")
            }
            BootFailure::Exited { status, stderr } => {
                write!(f, "QEMU exited ({status}): {stderr}")
            }
            BootFailure::Timeout(d) => write!(f, "guest not ready after {d:?}"),
            BootFailure::Wait(e) => write!(f, "waiting for QEMU: {e}"),
        }
    }
}

/// Hardware accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when it can really run a guest here, else TCG. The probe runs a
    /// few instructions in a throwaway QEMU (well under a second) once per
    /// process; the answer is cached.
    pub fn auto() -> Accel {
        static PROBE: OnceLock<Accel> = OnceLock::new();
        *PROBE.get_or_init(|| {
            if probe_runs_guest(Accel::Kvm) {
                Accel::Kvm
            } else {
                Accel::Tcg
            }
        })
    }

    /// The `-cpu` model used with this accelerator (the probe uses the same,
    /// so a host whose KVM rejects the host CPU's MSRs falls back to TCG).
    pub fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }

    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Whether QEMU with `accel` can execute guest code: boots a 64 KiB
/// firmware whose reset vector writes to `isa-debug-exit`, which makes
/// QEMU exit with code `(0x2a << 1) | 1`, with the same `-cpu` model a
/// real guest gets. Anything else (an error, a hang
/// killed after 5 s) means no.
pub fn probe_runs_guest(accel: Accel) -> bool {
    const EXPECTED: i32 = (0x2a << 1) | 1;
    let dir = std::env::temp_dir().join(format!("bhatti-accel-probe-{}", std::process::id()));
    if fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let bios = dir.join(format!("{}.bin", accel.as_str()));
    let mut image = vec![0xf4_u8; 64 << 10]; // hlt everywhere
    // Reset vector (CS:IP = F000:FFF0): mov al,0x2a; out 0xf4,al; hlt; jmp $-1
    image[0xfff0..0xfff7].copy_from_slice(&[0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
    if fs::write(&bios, &image).is_err() {
        return false;
    }
    let child = Command::new(QEMU_BINARY)
        .args(["-M", "microvm,x-option-roms=off,isa-serial=off,rtc=off"])
        .args(["-accel", accel.as_str(), "-cpu", accel.cpu_model()])
        .args(["-nodefaults", "-no-user-config"])
        .args(["-display", "none", "-m", "16", "-bios"])
        .arg(&bios)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let ok = match child {
        Ok(mut child) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => break status.code() == Some(EXPECTED),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break false;
                    }
                }
            }
        }
        Err(_) => false,
    };
    let _ = fs::remove_dir_all(&dir);
    ok
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

    /// A locally administered MAC derived from the guest address.
    pub fn mac_for(ip: Ipv4Addr) -> String {
        let [a, b, c, d] = ip.octets();
        format!("06:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
    }
}

/// An extra block device (a volume), attached after the config drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub path: PathBuf,
    pub readonly: bool,
}

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
    /// Serial console output goes here (truncated at start).
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
    /// Restore: `-incoming <uri>` (see `qmp::incoming_uri`).
    pub incoming: Option<String>,
    /// Kill QEMU when the thread that spawned it exits (PR_SET_PDEATHSIG;
    /// tests and benches, so a killed test run leaves no VM behind). Off
    /// for the daemon, whose VMs outlive a restart.
    pub die_with_parent: bool,
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
            incoming: None,
            die_with_parent: false,
        }
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
        push(&[
            "-M",
            "microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off",
        ]);
        push(&["-accel", self.accel.as_str()]);
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
            push(&[
                "-drive",
                &format!("id={id},file={file},format=raw,if=none{ro}"),
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
        let console = escape(&text(&self.console_log)?);
        push(&["-chardev", &format!("file,id=console,path={console}")]);
        push(&["-serial", "chardev:console"]);
        if let Some(qmp) = &self.qmp_socket {
            let qmp = escape(&text(qmp)?);
            push(&["-qmp", &format!("unix:{qmp},server=on,wait=off")]);
        }
        if let Some(uri) = &self.incoming {
            push(&["-incoming", uri]);
        }
        Ok(a.into_iter().map(OsString::from).collect())
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
        create(&self.console_log)?;
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
        let child = cmd
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(LaunchError::Spawn)?;
        Ok(VmProcess {
            child: Some(child),
            console_log: self.console_log.clone(),
            stderr_log: self.stderr_log.clone(),
        })
    }
}

/// A running QEMU. Killed (and reaped) on drop unless [`VmProcess::detach`]
/// was called.
#[derive(Debug)]
pub struct VmProcess {
    child: Option<Child>,
    console_log: PathBuf,
    stderr_log: PathBuf,
}

impl VmProcess {
    /// QEMU's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The serial console log.
    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    /// The whole console output so far (lossy UTF-8).
    pub fn console(&self) -> String {
        fs::read(&self.console_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` console lines.
    pub fn console_tail(&self, lines: usize) -> String {
        tail_lines(&self.console_log, lines)
    }

    /// Exit status if QEMU has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// Polls `ready` (every `interval`) until it returns true, QEMU exits,
    /// or `timeout` passes; the error carries the console tail.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        interval: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), BootError> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            match self.try_wait() {
                Ok(Some(status)) => {
                    let stderr = fs::read_to_string(&self.stderr_log).unwrap_or_default();
                    return Err(self.boot_error(BootFailure::Exited {
                        status,
                        stderr: stderr.trim().to_owned(),
                    }));
                }
                Ok(None) => {}
                Err(e) => return Err(self.boot_error(BootFailure::Wait(e.to_string()))),
            }
            if Instant::now() >= deadline {
                return Err(self.boot_error(BootFailure::Timeout(timeout)));
            }
            std::thread::sleep(interval);
        }
    }

    /// Waits until the console contains `needle` (see [`Self::wait_until`]).
    pub fn wait_for_console(&mut self, needle: &str, timeout: Duration) -> Result<(), BootError> {
        let path = self.console_log.clone();
        let needle = needle.as_bytes().to_vec();
        self.wait_until(timeout, Duration::from_millis(10), || {
            fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        })
    }

    /// Waits up to `timeout` for QEMU to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills QEMU (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        if let Some(mut c) = self.child.take() {
            if c.try_wait()?.is_none() {
                c.kill()?;
            }
            c.wait()?;
        }
        Ok(())
    }

    /// Gives up ownership: QEMU keeps running after this handle is gone.
    pub fn detach(mut self) -> Option<Child> {
        self.child.take()
    }

    /// A [`BootError`] for `reason` with the current console tail.
    pub fn boot_error(&self, reason: BootFailure) -> BootError {
        BootError {
            reason,
            console_tail: self.console_tail(CONSOLE_TAIL_LINES),
        }
    }
}

impl Drop for VmProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The last `lines` lines of `path` (reads at most its last 64 KiB).
pub fn tail_lines(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 << 10;
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(WINDOW))).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let text = text.replace('\r', "");
    let all: Vec<&str> = text.trim_end_matches('\n').lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
