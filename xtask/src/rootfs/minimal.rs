//! The `minimal` tier (default for users): Debian bookworm minbase from
//! the apt mirror plus bash, coreutils, curl, git, python3, sudo, iproute2,
//! procps, ca-certificates; user lohar (1000) with passwordless sudo;
//! `/workspace`; lohar.
//!
//! The debootstrap result is cached in `work/minimal-base-<key>` (keyed on
//! the package list and recipe), so a new lohar only repacks the image.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use super::{
    USER_UID, chown_user, copy_skeleton, du_bytes, install_lohar, mkdir, mkfs, round_up,
    skeleton_dir,
};
use crate::cache::{Cache, Key};
use crate::{prereq, run};

const RECIPE: &str = "minimal-tier-v1";
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
const PACKAGES: &str = "bash,coreutils,curl,git,python3,sudo,iproute2,procps,ca-certificates";
/// Longest a debootstrap may run (`timeout` syntax).
const DEBOOTSTRAP_LIMIT: &str = "20m";
/// Smallest image: room for users' work (the file is sparse).
const MIN_SIZE: u64 = 2 << 30;

pub fn build(cache: &Cache, lohar: &Path, force: bool) -> Result<()> {
    prereq::command("debootstrap", "debootstrap")?;
    prereq::command("mkfs.ext4", "e2fsprogs")?;
    let base_key = Key::new(RECIPE)
        .bytes("suite", SUITE.as_bytes())
        .bytes("packages", PACKAGES.as_bytes())
        .finish();
    let key = Key::new(RECIPE)
        .bytes("base", base_key.as_bytes())
        .file("lohar", lohar)?
        .tree(&skeleton_dir("minimal"))?
        .finish();
    if !force && cache.is_fresh("minimal", &key) {
        println!("[minimal] up to date");
        return Ok(());
    }
    prereq::root("the minimal rootfs")?;
    let started = Instant::now();
    let base = cache.work.join(format!("minimal-base-{}", &base_key[..16]));
    if force || !base.is_dir() {
        bootstrap(&base)?;
    } else {
        println!("[minimal] reusing debootstrap base {}", base.display());
    }
    install_lohar(&base, lohar)?;
    copy_skeleton("minimal", &base)?;
    fs::set_permissions(
        base.join("etc/sudoers.d/lohar"),
        std::os::unix::fs::PermissionsExt::from_mode(0o440),
    )?;

    let used = du_bytes(&base)?;
    let size = round_up((used * 3 / 2).max(MIN_SIZE), 256 << 20);
    println!(
        "[minimal] mkfs.ext4 -d ({} MiB of files, {} MiB sparse image)",
        used >> 20,
        size >> 20
    );
    let out = cache.images.join(".minimal.ext4.tmp");
    mkfs(&base, &out, size)?;
    fs::rename(&out, cache.images.join("minimal.ext4"))?;
    cache.record("minimal", "minimal.ext4", &key, started.elapsed())?;
    println!("[minimal] built in {:.1?}", started.elapsed());
    Ok(())
}

/// debootstrap into `base` (via a temporary dir, renamed when complete),
/// then add the user and trim caches.
fn bootstrap(base: &Path) -> Result<()> {
    let tmp = base.with_extension("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    println!("[minimal] debootstrap {SUITE} from {MIRROR} (several minutes)");
    // Bounded: a mirror that stops answering must not eat a CI run's
    // budget (a normal run takes about a minute).
    run::status(
        Command::new("timeout")
            .args(["--kill-after=30", DEBOOTSTRAP_LIMIT, "debootstrap"])
            .args(["--variant=minbase", &format!("--include={PACKAGES}"), SUITE])
            .arg(&tmp)
            .arg(MIRROR),
    )?;
    println!("[minimal] adding user lohar ({USER_UID})");
    run::output(Command::new("chroot").arg(&tmp).args([
        "useradd",
        "--create-home",
        "--uid",
        &USER_UID.to_string(),
        "--user-group",
        "--shell",
        "/bin/bash",
        "lohar",
    ]))?;
    chown_user(&mkdir(&tmp, "workspace", 0o755)?)?;
    run::output(Command::new("chroot").arg(&tmp).args(["apt-get", "clean"]))?;
    let lists = tmp.join("var/lib/apt/lists");
    if lists.is_dir() {
        fs::remove_dir_all(&lists)?;
        mkdir(&tmp, "var/lib/apt/lists/partial", 0o755)?;
    }
    if base.exists() {
        fs::remove_dir_all(base)?;
    }
    fs::rename(&tmp, base)?;
    Ok(())
}
