//! A bare QEMU microVM with no kernel: it boots nothing but answers QMP,
//! pauses, resumes and migrates. Shared by the QMP tests and bench.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-x86_64";

/// Why bare-QEMU tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<bhatti_testkit::Skip> {
    bhatti_testkit::skip_reason(&[bhatti_testkit::Need::Qemu])
}

/// One QEMU process with its QMP socket in a private temp dir; killed on drop.
#[derive(Debug)]
pub struct BareQemu {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub qmp: PathBuf,
}

impl BareQemu {
    /// Starts QEMU paused (`-S`); `incoming` adds `-incoming <uri>`.
    pub fn spawn(incoming: Option<&str>) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::spawn_in(dir, incoming)
    }

    pub fn spawn_in(dir: tempfile::TempDir, incoming: Option<&str>) -> std::io::Result<Self> {
        let qmp = dir.path().join("qmp.sock");
        let log = std::fs::File::create(dir.path().join("qemu.log"))?;
        let mut cmd = Command::new(QEMU);
        cmd.args([
            "-M",
            "microvm",
            "-accel",
            "tcg",
            "-nodefaults",
            "-nographic",
        ])
        .args(["-S", "-m", "64"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()));
        if let Some(uri) = incoming {
            cmd.args(["-incoming", uri]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Self { child, dir, qmp })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default()
    }

    /// Waits for the process to exit on its own, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for BareQemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
