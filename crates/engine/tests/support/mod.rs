//! Shared support for the host-level engine tests (network namespaces, real
//! VMs): prerequisite checks that turn into "ignored" trials with a printed
//! reason, and [`TestVm`], one QEMU microVM in its own temp dir and its own
//! network namespace.

#![allow(dead_code)]

pub mod vm;

use std::process::{Command, Stdio};

use bhatti_engine::image::{ImagePaths, Tier};
use libtest_mimic::{Completion, Failed, Trial};

/// Something a trial needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root (network namespaces, TAP devices, mkfs ownership).
    Root,
    /// `qemu-system-x86_64` runs.
    Qemu,
    /// The kernel and the busybox rootfs built by `cargo xtask images`.
    Images,
    /// The `minimal` tier (`cargo xtask images --tier minimal`).
    MinimalImage,
}

/// Why a trial needing `needs` cannot run on this host, if it cannot.
pub fn skip_reason(needs: &[Need]) -> Option<String> {
    needs.iter().find_map(|n| match n {
        Need::Root => (!rustix::process::geteuid().is_root())
            .then(|| "needs root (network namespaces, TAP devices)".to_owned()),
        Need::Qemu => qemu_missing(),
        Need::Images => images_missing(),
        Need::MinimalImage => ImagePaths::from_env()
            .rootfs(Tier::Minimal)
            .err()
            .map(|e| e.to_string()),
    })
}

fn qemu_missing() -> Option<String> {
    match Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`qemu-system-x86_64 --version` failed: {s}")),
        Err(e) => Some(format!(
            "qemu-system-x86_64 not runnable ({e}); install the Debian package qemu-system-x86"
        )),
    }
}

fn images_missing() -> Option<String> {
    let paths = ImagePaths::from_env();
    if let Err(e) = paths.kernel() {
        return Some(e.to_string());
    }
    paths.rootfs(Tier::Busybox).err().map(|e| e.to_string())
}

/// A trial that is reported as ignored (with `SKIPPED: <reason>` printed)
/// when the host lacks one of `needs`.
pub fn trial<F>(name: &str, needs: &[Need], f: F) -> Trial
where
    F: FnOnce() -> Result<(), Failed> + Send + 'static,
{
    let reason = skip_reason(needs);
    // stderr: in `--list` mode stdout is the test runner's protocol.
    if let Some(r) = &reason {
        eprintln!("SKIPPED: {name}: {r}");
    }
    let ignored = reason.is_some();
    let needs = needs.to_vec();
    Trial::ignorable_test(name, move || {
        // Run with --include-ignored: still refuse to pretend.
        if let Some(r) = skip_reason(&needs) {
            println!("SKIPPED: {r}");
            return Ok(Completion::ignored_with(r));
        }
        f().map(|()| Completion::Completed)
    })
    .with_ignored_flag(ignored)
}

/// Fails the trial with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(msg().into()) }
}
