//! A running QEMU ([`VmProcess`]): console access, polling waits, kill on
//! drop, and [`BootError`]s that carry the tail of the guest console.
//!
//! A `VmProcess` is either QEMU spawned by this process (a child) or one
//! spawned by an earlier run of the engine and adopted after a restart
//! ([`VmProcess::adopt`]); both are watched through a pidfd, which stays
//! bound to that one process whatever happens to its pid.

use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::cgroup::VmmCgroup;

/// Console lines carried by a [`BootError`].
pub const CONSOLE_TAIL_LINES: usize = 30;

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

/// A running QEMU. Killed (and reaped) on drop unless [`VmProcess::detach`]
/// was called.
#[derive(Debug)]
pub struct VmProcess {
    child: Option<Handle>,
    console_log: PathBuf,
    stderr_log: PathBuf,
    /// Removed once the process is reaped.
    cgroup: Option<VmmCgroup>,
}

/// The process behind a [`VmProcess`].
#[derive(Debug)]
enum Handle {
    /// Spawned by this process; `fd` is its pidfd (opened before it could
    /// be reaped, so it is this child).
    Child { child: Child, fd: Option<OwnedFd> },
    /// Spawned by an earlier engine run: not our child (init reaps it), so
    /// its exit is seen through the pidfd alone and its status is unknown.
    Adopted { pid: u32, fd: OwnedFd },
}

impl Handle {
    fn pid(&self) -> u32 {
        match self {
            Handle::Child { child, .. } => child.id(),
            Handle::Adopted { pid, .. } => *pid,
        }
    }

    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Handle::Child { fd, .. } => fd.as_ref().map(AsFd::as_fd),
            Handle::Adopted { fd, .. } => Some(fd.as_fd()),
        }
    }
}

/// Whether the process behind `fd` has exited, waiting up to `timeout`.
fn pidfd_exited(fd: BorrowedFd<'_>, timeout: Duration) -> std::io::Result<bool> {
    let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    });
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    match poll(&mut fds, Some(&ts)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// SIGKILLs the (not child) process behind `fd` and waits until it is
/// gone.
fn kill_adopted(fd: &OwnedFd) -> std::io::Result<()> {
    if pidfd_exited(fd.as_fd(), Duration::ZERO)? {
        return Ok(());
    }
    match pidfd_send_signal(fd, Signal::KILL) {
        // Already gone (ESRCH): nothing to wait for.
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => return Err(e.into()),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pidfd_exited(fd.as_fd(), Duration::from_millis(100))? {
        if Instant::now() >= deadline {
            return Err(std::io::Error::other("killed QEMU did not exit"));
        }
    }
    Ok(())
}

impl VmProcess {
    pub(super) fn new(
        child: Child,
        console_log: PathBuf,
        stderr_log: PathBuf,
        cgroup: Option<VmmCgroup>,
    ) -> Self {
        // The child is not reaped before this handle waits for it, so the
        // pid still names it here.
        let fd = Pid::from_raw(child.id().cast_signed())
            .and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
        Self {
            child: Some(Handle::Child { child, fd }),
            console_log,
            stderr_log,
            cgroup,
        }
    }

    /// Takes over QEMU process `pid`, started by an earlier engine run
    /// with `run_dir` in its argv. `None` when no such process lives (it
    /// exited, or the pid now names another program).
    pub fn adopt(pid: u32, run_dir: &Path, cgroup: Option<VmmCgroup>) -> Option<Self> {
        let fd = pidfd_open(Pid::from_raw(pid.cast_signed())?, PidfdFlags::empty()).ok()?;
        // Checked after the pidfd pins the process: the pid cannot be
        // reused by another one between the check and the handle.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let marker = run_dir.to_string_lossy();
        if !cmdline
            .windows(marker.len())
            .any(|w| w == marker.as_bytes())
        {
            return None;
        }
        Some(Self {
            child: Some(Handle::Adopted { pid, fd }),
            console_log: run_dir.join("console.log"),
            stderr_log: run_dir.join("qemu.stderr"),
            cgroup,
        })
    }

    /// A pidfd of QEMU (readable once it has exited), for an async waiter.
    pub fn exit_fd(&self) -> Option<OwnedFd> {
        self.child
            .as_ref()
            .and_then(Handle::pidfd)
            .and_then(|fd| fd.try_clone_to_owned().ok())
    }

    /// Whether QEMU was adopted from an earlier engine run.
    pub fn is_adopted(&self) -> bool {
        matches!(self.child, Some(Handle::Adopted { .. }))
    }

    /// QEMU's cgroup, if it runs in one.
    pub fn cgroup(&self) -> Option<&VmmCgroup> {
        self.cgroup.as_ref()
    }

    /// QEMU's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Handle::pid)
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

    /// Exit status if QEMU has exited (an adopted QEMU's status is not
    /// ours to read: it shows as a plain 0).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(Handle::Child { child, .. }) => child.try_wait(),
            Some(Handle::Adopted { fd, .. }) => {
                Ok(pidfd_exited(fd.as_fd(), Duration::ZERO)?.then(|| ExitStatus::from_raw(0)))
            }
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

    /// Kills QEMU (SIGKILL), reaps it (or, adopted, waits for it to be
    /// gone) and removes its cgroup.
    pub fn kill(&mut self) -> std::io::Result<()> {
        match self.child.take() {
            Some(Handle::Child { mut child, .. }) => {
                if child.try_wait()?.is_none() {
                    child.kill()?;
                }
                child.wait()?;
            }
            Some(Handle::Adopted { fd, .. }) => kill_adopted(&fd)?,
            None => {}
        }
        if let Some(cg) = self.cgroup.take() {
            cg.remove();
        }
        Ok(())
    }

    /// Gives up ownership: QEMU keeps running (in its cgroup, which stays)
    /// after this handle is gone.
    pub fn detach(mut self) -> Option<Child> {
        self.cgroup = None;
        match self.child.take() {
            Some(Handle::Child { child, .. }) => Some(child),
            Some(Handle::Adopted { .. }) | None => None,
        }
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

/// Most bytes [`tail_lines`] reads back from the end of a file.
pub const TAIL_MAX_BYTES: u64 = 4 << 20;

/// The last `lines` lines of `path`, without `\r`s. The file is read
/// backwards from its end, 64 KiB at a time, until `lines` whole lines are
/// in or [`TAIL_MAX_BYTES`] were read: a huge log costs its tail alone.
/// Only a regular file is read (a symlink in its place is not followed, a
/// FIFO not waited on); anything else, or no file, reads as empty.
pub fn tail_lines(path: &Path, lines: usize) -> String {
    if lines == 0 {
        return String::new();
    }
    let Ok(buf) = read_tail(path, lines) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&buf).replace('\r', "");
    let all: Vec<&str> = text.trim_end_matches('\n').lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The end of `path`: enough bytes for `lines` whole lines (more than
/// `lines` newlines, or the whole file), at most [`TAIL_MAX_BYTES`],
/// starting at a line's start.
fn read_tail(path: &Path, lines: usize) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags};
    const BLOCK: u64 = 64 << 10;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut f = fs::File::from(rustix::fs::open(path, flags, Mode::empty())?);
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Ok(Vec::new());
    }
    let len = meta.len();
    let floor = len.saturating_sub(TAIL_MAX_BYTES);
    let (mut start, mut newlines) = (len, 0usize);
    let mut blocks = Vec::new();
    while start > floor && newlines <= lines {
        let from = start.saturating_sub(BLOCK).max(floor);
        let mut block = vec![0; usize::try_from(start - from).unwrap_or(0)];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut block)?;
        newlines += block.iter().filter(|&&b| b == b'\n').count();
        blocks.push(block);
        start = from;
    }
    let mut buf: Vec<u8> = blocks.into_iter().rev().flatten().collect();
    if start > 0 {
        // Cut mid-line: the first line is not whole.
        let first = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        buf.drain(..first);
    }
    Ok(buf)
}
