//! Support for the CLI tests against a real daemon: host prerequisites
//! (skips with a printed reason), a `bhatti serve` process on a loopback
//! port with its own temp data dir and network namespace, a user made with
//! `bhatti user create --json`, and a pseudo-terminal driver for `shell`.

#![allow(dead_code)]

pub mod daemon;
pub mod pty;

use std::process::{Command, Stdio};

use bhatti_engine::image::{ImagePaths, Tier};

/// Why the daemon tests cannot run on this host, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (the daemon makes a network namespace and TAP devices)".into());
    }
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !qemu.is_ok_and(|s| s.success()) {
        return Some(
            "qemu-system-x86_64 not runnable; install the Debian package qemu-system-x86".into(),
        );
    }
    let images = ImagePaths::from_env();
    if let Err(e) = images.kernel() {
        return Some(e.to_string());
    }
    if let Err(e) = images.rootfs(Tier::Busybox) {
        return Some(e.to_string());
    }
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !ip.is_ok_and(|s| s.success()) {
        return Some("`ip` (iproute2) not runnable".into());
    }
    None
}
