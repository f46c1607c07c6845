//! The Debian tiers (`minimal`, `dev`): debootstrap of bookworm minbase
//! from the apt mirror with a tier's package list, optionally more packages
//! installed with apt afterwards (Recommends off; docs, man pages and
//! translations left out by a dpkg `path-exclude`), user lohar (1000) with
//! passwordless sudo, `/workspace`, lohar as init.
//!
//! The bootstrapped tree is cached in `work/<tier>-base-<key>` (keyed on
//! the recipe and the package lists), so a new lohar or skeleton only
//! repacks the image.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use super::{
    E2B_USER_UID, USER_UID, chown_user, copy_skeleton, du_bytes, force_symlink, install_lohar,
    mkdir, mkfs, round_up, skeleton_dir,
};
use crate::cache::{Cache, Key};
use crate::{prereq, run};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Longest a debootstrap or an apt install may run (`timeout` syntax).
const STEP_LIMIT: &str = "20m";

/// dpkg configuration for the packages installed after debootstrap: no
/// docs (but the copyright files), man pages, info or translations.
const NODOC: &str = "\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
";

/// One Debian tier's recipe.
#[derive(Debug)]
pub struct Spec {
    /// Tier name: `<name>.ext4`, `[name]` in the log, the cache dir prefix.
    pub name: &'static str,
    /// Recipe version (part of the cache keys).
    pub recipe: &'static str,
    /// debootstrap `--include` (comma-separated).
    pub include: &'static str,
    /// Installed with apt after debootstrap (empty: none).
    pub extra: &'static [&'static str],
    /// lohar's login shell.
    pub shell: &'static str,
    /// Symlinks `(link, target)` made in the base.
    pub links: &'static [(&'static str, &'static str)],
    /// Files `(path, content)` written into lohar's home, owned by lohar.
    pub home_files: &'static [(&'static str, &'static str)],
    /// `images/rootfs/<skeleton>` is copied over the base.
    pub skeleton: &'static str,
    /// Smallest image: room for users' work (the file is sparse).
    pub min_size: u64,
    /// Files `(path, content, mode)` written into the image (over the
    /// skeleton; part of the image's key, not the base's).
    pub files: &'static [(&'static str, &'static str, u32)],
}

impl Spec {
    /// The key of the bootstrapped base (a tier without extra packages
    /// keeps the key it had before they existed).
    fn base_key(&self) -> String {
        let mut k = Key::new(self.recipe);
        k.bytes("suite", SUITE.as_bytes())
            .bytes("packages", self.include.as_bytes());
        if !self.extra.is_empty() {
            k.bytes("extra", self.extra.join(",").as_bytes())
                .bytes("shell", self.shell.as_bytes())
                .bytes("nodoc", NODOC.as_bytes());
            for (link, target) in self.links {
                k.bytes(link, target.as_bytes());
            }
            for (path, content) in self.home_files {
                k.bytes(path, content.as_bytes());
            }
        }
        k.finish()
    }
}

/// Builds `images/<name>.ext4` unless its cache key is unchanged.
pub fn build(cache: &Cache, lohar: &Path, force: bool, spec: &Spec) -> Result<()> {
    let name = spec.name;
    prereq::command("debootstrap", "debootstrap")?;
    prereq::command("mkfs.ext4", "e2fsprogs")?;
    let base_key = spec.base_key();
    let mut key = Key::new(spec.recipe);
    key.bytes("base", base_key.as_bytes())
        .file("lohar", lohar)?
        .tree(&skeleton_dir(spec.skeleton))?
        .bytes("e2b-user", E2B_USER_UID.to_string().as_bytes());
    for (path, content, mode) in spec.files {
        key.bytes(path, format!("{mode:o}:{content}").as_bytes());
    }
    let key = key.finish();
    if !force && cache.is_fresh(name, &key) {
        println!("[{name}] up to date");
        return Ok(());
    }
    prereq::root(&format!("the {name} rootfs"))?;
    let started = Instant::now();
    let base = cache.work.join(format!("{name}-base-{}", &base_key[..16]));
    if force || !base.is_dir() {
        bootstrap(&base, spec)?;
    } else {
        println!("[{name}] reusing debootstrap base {}", base.display());
    }
    install_lohar(&base, lohar)?;
    copy_skeleton(spec.skeleton, &base)?;
    add_e2b_user(&base, spec)?;
    for (path, content, mode) in spec.files {
        let p = base.join(path);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&p, content).with_context(|| format!("cannot write {}", p.display()))?;
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(*mode))?;
    }
    fs::set_permissions(
        base.join("etc/sudoers.d/lohar"),
        std::os::unix::fs::PermissionsExt::from_mode(0o440),
    )?;

    let used = du_bytes(&base)?;
    let size = round_up((used * 3 / 2).max(spec.min_size), 256 << 20);
    println!(
        "[{name}] mkfs.ext4 -d ({} MiB of files, {} MiB sparse image)",
        used >> 20,
        size >> 20
    );
    let file = format!("{name}.ext4");
    let out = cache.images.join(format!(".{file}.tmp"));
    mkfs(&base, &out, size)?;
    fs::rename(&out, cache.images.join(&file))?;
    cache.record(name, &file, &key, started.elapsed())?;
    println!("[{name}] built in {:.1?}", started.elapsed());
    Ok(())
}

/// debootstrap into `base` (via a temporary dir, renamed when complete),
/// then the extra packages, the user and the cleanup.
fn bootstrap(base: &Path, spec: &Spec) -> Result<()> {
    let name = spec.name;
    let tmp = base.with_extension("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    println!("[{name}] debootstrap {SUITE} from {MIRROR} (several minutes)");
    // Bounded: a mirror that stops answering must not eat a CI run's
    // budget (a normal run takes about a minute).
    run::status(
        Command::new("timeout")
            .args(["--kill-after=30", STEP_LIMIT, "debootstrap"])
            .args(["--variant=minbase", &format!("--include={}", spec.include)])
            .arg(SUITE)
            .arg(&tmp)
            .arg(MIRROR),
    )?;
    if !spec.extra.is_empty() {
        install_extra(&tmp, spec)?;
    }
    add_user(&tmp, spec)?;
    for (link, target) in spec.links {
        force_symlink(&tmp, link, target)?;
    }
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

/// `apt-get install` of `spec.extra` inside `root`, with docs excluded
/// (the exclusion stays for what users install later) and no service
/// started (`policy-rc.d`); then the docs debootstrap itself unpacked go.
fn install_extra(root: &Path, spec: &Spec) -> Result<()> {
    println!("[{}] apt-get install {}", spec.name, spec.extra.join(" "));
    let cfg = mkdir(root, "etc/dpkg/dpkg.cfg.d", 0o755)?;
    fs::write(cfg.join("bhatti-nodoc"), NODOC)?;
    let policy = root.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n")?;
    fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let apt = |args: &[&str]| {
        run::status(
            Command::new("timeout")
                .args(["--kill-after=30", STEP_LIMIT, "chroot"])
                .arg(root)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("LC_ALL", "C")
                .args(["apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0"])
                .args(args),
        )
    };
    apt(&["update"])?;
    let mut install = vec!["install", "--no-install-recommends"];
    install.extend_from_slice(spec.extra);
    apt(&install)?;
    fs::remove_file(&policy)?;
    drop_docs(root)
}

/// Removes what [`NODOC`] excludes from files already unpacked (the
/// directories stay: some maintainer scripts expect `/usr/share/man/man1`).
fn drop_docs(root: &Path) -> Result<()> {
    for (dir, keep) in [
        ("usr/share/doc", "copyright"),
        ("usr/share/man", ""),
        ("usr/share/info", ""),
        ("usr/share/lintian", ""),
        ("usr/share/locale", "locale.alias"),
    ] {
        let p = root.join(dir);
        if p.is_dir() {
            run::output(
                Command::new("find")
                    .arg(&p)
                    .args(["!", "-type", "d", "!", "-name", keep, "-delete"]),
            )?;
        }
    }
    Ok(())
}

/// Adds lohar (uid 1000, `spec.shell`), its home files and `/workspace`.
fn add_user(root: &Path, spec: &Spec) -> Result<()> {
    println!("[{}] adding user lohar ({USER_UID})", spec.name);
    run::output(Command::new("chroot").arg(root).args([
        "useradd",
        "--create-home",
        "--uid",
        &USER_UID.to_string(),
        "--user-group",
        "--shell",
        spec.shell,
        "lohar",
    ]))?;
    for (path, content) in spec.home_files {
        let p = root.join("home/lohar").join(path);
        fs::write(&p, content).with_context(|| format!("cannot write {}", p.display()))?;
        chown_user(&p)?;
    }
    chown_user(&mkdir(root, "workspace", 0o755)?)
}

/// Adds `user` (uid 1001, home `/home/user`), the account E2B's SDK names
/// by default, unless the tree has it: done on the cached base at each
/// image build (outside the base's key, so no new debootstrap).
fn add_e2b_user(root: &Path, spec: &Spec) -> Result<()> {
    let passwd = fs::read_to_string(root.join("etc/passwd"))?;
    if passwd.lines().any(|l| l.starts_with("user:")) {
        return Ok(());
    }
    println!("[{}] adding user user ({E2B_USER_UID})", spec.name);
    run::output(Command::new("chroot").arg(root).args([
        "useradd",
        "--create-home",
        "--uid",
        &E2B_USER_UID.to_string(),
        "--user-group",
        "--shell",
        spec.shell,
        "user",
    ]))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::{dev, minimal};

    #[test]
    fn minimal_base_key_is_the_one_before_dev_existed() {
        // The key `minimal.rs` used before the Debian steps moved here: a
        // cached base (and image) stays valid across the move.
        assert!(minimal::SPEC.base_key().starts_with("afe65e1cb52ddbf9"));
    }

    #[test]
    fn dev_base_key_differs_from_minimal() {
        assert_ne!(dev::SPEC.base_key(), minimal::SPEC.base_key());
    }
}
