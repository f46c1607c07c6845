//! Rootfs tiers as ext4 images made without mounting: a staging directory
//! is filled, then packed with `mkfs.ext4 -d` into a sparse file.
//! One module per tier; the shared steps live here.

pub mod busybox;
pub mod debian;
pub mod dev;
pub mod interpreter;
pub mod minimal;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::cache::workspace_root;
use crate::run;

/// The sandbox user.
pub const USER_UID: u32 = 1000;
/// uid of `user`, the account E2B's SDK names by default (home
/// `/home/user`, as in E2B's base template).
pub const E2B_USER_UID: u32 = 1001;

/// Where lohar lives in every tier.
pub const LOHAR_PATH: &str = "usr/local/bin/lohar";

/// `images/rootfs/<tier>` in the repo: files copied into that tier.
pub fn skeleton_dir(tier: &str) -> PathBuf {
    workspace_root().join("images/rootfs").join(tier)
}

/// Creates `dir` (and parents) inside `root` with `mode`.
pub fn mkdir(root: &Path, dir: &str, mode: u32) -> Result<PathBuf> {
    let p = root.join(dir);
    fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    Ok(p)
}

/// `chown -R uid:uid path`.
pub fn chown_user(path: &Path) -> Result<()> {
    std::os::unix::fs::chown(path, Some(USER_UID), Some(USER_UID))
        .with_context(|| format!("cannot chown {}", path.display()))
}

/// Creates symlink `root/link` → `target`, replacing what is there.
pub fn force_symlink(root: &Path, link: &str, target: &str) -> Result<()> {
    let p = root.join(link);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent)?;
    }
    if p.symlink_metadata().is_ok() {
        fs::remove_file(&p)?;
    }
    symlink(target, &p).with_context(|| format!("cannot create symlink {}", p.display()))
}

/// Installs lohar (0755) and points `/sbin/init` at it.
pub fn install_lohar(root: &Path, lohar: &Path) -> Result<()> {
    let dest = root.join(LOHAR_PATH);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(lohar, &dest).with_context(|| format!("cannot copy lohar to {}", dest.display()))?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))?;
    force_symlink(root, "sbin/init", &format!("/{LOHAR_PATH}"))
}

/// Copies the repo skeleton for `tier` over `root` (`cp -a` keeps modes;
/// everything ends up owned by root).
pub fn copy_skeleton(tier: &str, root: &Path) -> Result<()> {
    let skel = skeleton_dir(tier);
    if !skel.is_dir() {
        return Ok(());
    }
    run::status(
        Command::new("cp")
            .args(["-a", "--no-preserve=ownership"])
            .arg(format!("{}/.", skel.display()))
            .arg(root),
    )
}

/// Packs `staging` into a fresh sparse ext4 image of `size` bytes at `out`.
pub fn mkfs(staging: &Path, out: &Path, size: u64) -> Result<()> {
    let _ = fs::remove_file(out);
    let f = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    f.set_len(size)?;
    drop(f);
    run::output(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "rootfs", "-m", "0", "-d"])
            .arg(staging)
            .arg(out),
    )?;
    Ok(())
}

/// Apparent size of everything under `dir` (`du -sb`).
pub fn du_bytes(dir: &Path) -> Result<u64> {
    let out = run::output(Command::new("du").args(["-sb", "-x"]).arg(dir))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("cannot parse du output")
}

/// Rounds `bytes` up to a multiple of `unit`.
pub fn round_up(bytes: u64, unit: u64) -> u64 {
    bytes.div_ceil(unit) * unit
}
