//! The busybox tier: busybox-static with its applet links, lohar, users
//! root, lohar (1000) and user (1001), `/workspace`. Small (64 MiB sparse) and fast to
//! boot; used by the VM tests.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use super::{
    E2B_USER_UID, chown_user, copy_skeleton, force_symlink, install_lohar, mkdir, mkfs,
    skeleton_dir,
};
use crate::cache::{Cache, Key};
use crate::{prereq, run};

const RECIPE: &str = "busybox-tier-v1";
const BUSYBOX: &str = "/bin/busybox";
const SIZE: u64 = 64 << 20;

pub fn build(cache: &Cache, lohar: &Path, force: bool) -> Result<()> {
    prereq::file(BUSYBOX, "busybox-static")?;
    prereq::command("mkfs.ext4", "e2fsprogs")?;
    let key = Key::new(RECIPE)
        .file("busybox", Path::new(BUSYBOX))?
        .file("lohar", lohar)?
        .tree(&skeleton_dir("busybox"))?
        .finish();
    if !force && cache.is_fresh("busybox", &key) {
        println!("[busybox] up to date");
        return Ok(());
    }
    prereq::root("the busybox rootfs")?;
    let started = Instant::now();
    println!("[busybox] staging");
    let staging = cache.work.join("busybox");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    mkdir(&staging, "", 0o755)?;
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("usr/local/bin", 0o755),
        ("etc", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("mnt", 0o755),
        ("var/log", 0o755),
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("root", 0o700),
    ] {
        mkdir(&staging, dir, mode)?;
    }
    chown_user(&mkdir(&staging, "home/lohar", 0o755)?)?;
    chown_user(&mkdir(&staging, "workspace", 0o755)?)?;
    let home = mkdir(&staging, "home/user", 0o755)?;
    std::os::unix::fs::chown(&home, Some(E2B_USER_UID), Some(E2B_USER_UID))?;

    fs::copy(BUSYBOX, staging.join("bin/busybox"))?;
    let list = run::output(Command::new(BUSYBOX).arg("--list-full"))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" || applet.contains("..") {
            continue;
        }
        force_symlink(&staging, applet, "/bin/busybox")?;
    }
    install_lohar(&staging, lohar)?;
    copy_skeleton("busybox", &staging)?;
    fs::set_permissions(
        staging.join("etc/shadow"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;

    println!("[busybox] mkfs.ext4 -d ({} MiB sparse)", SIZE >> 20);
    let out = cache.images.join(".busybox.ext4.tmp");
    mkfs(&staging, &out, SIZE)?;
    fs::rename(&out, cache.images.join("busybox.ext4"))?;
    cache.record("busybox", "busybox.ext4", &key, started.elapsed())?;
    fs::remove_dir_all(&staging)?;
    println!("[busybox] built in {:.1?}", started.elapsed());
    Ok(())
}
