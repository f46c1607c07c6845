//! The guest kernel: Debian's linux-source tarball, `make allnoconfig`
//! plus `images/kernel/microvm.fragment` (merge_config.sh), `make
//! olddefconfig`, `make vmlinux` → `images/vmlinux` (uncompressed, PVH).
//!
//! Cache key: sha256 of the fragment, the tarball's package version and
//! size, and this recipe's version. The extracted source and the build dir
//! stay in `kernel/`, so a changed fragment rebuilds incrementally.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cache::{Cache, Key, workspace_root};
use crate::{prereq, run};

const RECIPE: &str = "kernel-v1";
const PACKAGE: &str = "linux-source-6.1";
const TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
const SOURCE_DIR: &str = "linux-source-6.1";
const FRAGMENT: &str = "images/kernel/microvm.fragment";

/// Builds `images/vmlinux` unless the cached one matches the inputs.
pub fn build(cache: &Cache, force: bool) -> Result<PathBuf> {
    check_prereqs()?;
    let fragment = workspace_root().join(FRAGMENT);
    let source_id = source_id()?;
    let key = Key::new(RECIPE)
        .bytes("source", source_id.as_bytes())
        .file("fragment", &fragment)?
        .finish();
    let out = cache.images.join("vmlinux");
    if !force && cache.is_fresh("kernel", &key) {
        println!("[kernel] up to date ({})", out.display());
        return Ok(out);
    }
    let started = Instant::now();
    println!("[kernel] building {PACKAGE} with {FRAGMENT} (several minutes)");
    let src = extract(cache, &source_id)?;
    let build = cache.kernel.join("build");
    fs::create_dir_all(&build)?;

    println!("[kernel] configuring: allnoconfig + fragment, olddefconfig");
    let merged = run::output(
        Command::new(src.join("scripts/kconfig/merge_config.sh"))
            .current_dir(&src)
            .env("ARCH", "x86_64")
            .args(["-n", "-O"])
            .arg(&build)
            .arg(&fragment),
    )?;
    let log = String::from_utf8_lossy(&merged.stdout);
    let mismatches: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("Value requested for"))
        .collect();
    if !mismatches.is_empty() {
        bail!(
            "{FRAGMENT} asks for values the kernel config does not take \
             (missing dependency or unknown symbol):\n  {}",
            mismatches.join("\n  ")
        );
    }
    make(&src, &build, &["olddefconfig"])?;

    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("[kernel] make -j{jobs} vmlinux");
    make(&src, &build, &[&format!("-j{jobs}"), "vmlinux"])?;
    let built = build.join("vmlinux");
    cache.install("kernel", &built, "vmlinux", &key, started.elapsed())?;
    println!(
        "[kernel] built {} in {:.0?}",
        out.display(),
        started.elapsed()
    );
    Ok(out)
}

fn check_prereqs() -> Result<()> {
    prereq::file(TARBALL, PACKAGE)?;
    prereq::command("make", "make")?;
    prereq::command("gcc", "build-essential")?;
    prereq::command("flex", "flex")?;
    prereq::command("bison", "bison")?;
    prereq::command("bc", "bc")?;
    prereq::command("xz", "xz-utils")?;
    prereq::file("/usr/include/libelf.h", "libelf-dev")?;
    prereq::file("/usr/include/openssl/opensslv.h", "libssl-dev")
}

/// Identity of the source tarball: package version and file size.
fn source_id() -> Result<String> {
    let out = run::output(Command::new("dpkg-query").args(["-W", "-f", "${Version}", PACKAGE]))?;
    let size = fs::metadata(TARBALL)?.len();
    Ok(format!(
        "{PACKAGE} {} {size}",
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

/// The extracted source tree, extracting it when the tarball changed.
fn extract(cache: &Cache, source_id: &str) -> Result<PathBuf> {
    let src = cache.kernel.join(SOURCE_DIR);
    let marker = cache.kernel.join("source-id");
    if src.is_dir() && fs::read_to_string(&marker).is_ok_and(|m| m == source_id) {
        return Ok(src);
    }
    println!("[kernel] extracting {TARBALL}");
    if src.exists() {
        fs::remove_dir_all(&src).with_context(|| format!("cannot remove {}", src.display()))?;
    }
    // A changed source invalidates the old build tree.
    let _ = fs::remove_dir_all(cache.kernel.join("build"));
    run::status(
        Command::new("tar")
            .arg("-xf")
            .arg(TARBALL)
            .arg("-C")
            .arg(&cache.kernel),
    )?;
    fs::write(&marker, source_id)?;
    Ok(src)
}

fn make(src: &Path, build: &Path, args: &[&str]) -> Result<()> {
    run::status(
        Command::new("make")
            .current_dir(src)
            .env("ARCH", "x86_64")
            .arg(format!("O={}", build.display()))
            .args(args),
    )
}
