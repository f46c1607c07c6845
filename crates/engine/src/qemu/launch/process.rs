//! A running QEMU ([`VmProcess`]): console access, polling waits, kill on
//! drop, and [`BootError`]s that carry the tail of the guest console.

use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

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
    child: Option<Child>,
    console_log: PathBuf,
    stderr_log: PathBuf,
    /// Removed once the process is reaped.
    cgroup: Option<VmmCgroup>,
}

impl VmProcess {
    pub(super) fn new(
        child: Child,
        console_log: PathBuf,
        stderr_log: PathBuf,
        cgroup: Option<VmmCgroup>,
    ) -> Self {
        Self {
            child: Some(child),
            console_log,
            stderr_log,
            cgroup,
        }
    }

    /// QEMU's cgroup, if it runs in one.
    pub fn cgroup(&self) -> Option<&VmmCgroup> {
        self.cgroup.as_ref()
    }

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

    /// Kills QEMU (SIGKILL), reaps it and removes its cgroup.
    pub fn kill(&mut self) -> std::io::Result<()> {
        if let Some(mut c) = self.child.take() {
            if c.try_wait()?.is_none() {
                c.kill()?;
            }
            c.wait()?;
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
