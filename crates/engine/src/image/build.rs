//! Packing an unpacked image root into a bootable raw ext4 image: lohar
//! injected, the directories the guest mounts and the sandbox user made
//! when the image lacks them, then `mkfs.ext4 -d` (which keeps ownership,
//! modes, xattrs, hard links and device nodes) into a sparse file.
//!
//! What is added to an image, and only when missing:
//! - `/usr/local/bin/lohar` (always replaced: it is the guest's init, and
//!   the kernel runs `init=/usr/local/bin/lohar`);
//! - `/proc`, `/sys`, `/dev`, `/run`, `/tmp` (1777), `/etc`;
//! - `/workspace`, owned by the sandbox user (uid 1000);
//! - user and group `lohar` (1000) in `/etc/passwd` and `/etc/group`,
//!   appended (v1's rule: files written through the API are the sandbox
//!   user's unless the sandbox or the image names another user).
//!
//! # Threads, locks, I/O
//! Blocking: filesystem writes and `mkfs.ext4`. Call from
//! `spawn_blocking`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::ImageError;

/// Where lohar goes in every image.
pub const LOHAR_IN_IMAGE: &str = "usr/local/bin/lohar";

/// The sandbox user's uid and gid.
const USER_ID: u32 = 1000;

/// Smallest file system an image gets (sparse: costs nothing unused).
const MIN_SIZE: u64 = 1 << 30;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Adds what every sandbox image needs to the image root `root`.
pub fn prepare_root(root: &Path, lohar: &Path) -> Result<(), ImageError> {
    for (dir, mode) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("etc", 0o755),
        ("usr/local/bin", 0o755),
    ] {
        let p = root.join(dir);
        // `symlink_metadata`: an image's `/run -> /var/run` is kept.
        if p.symlink_metadata().is_err() {
            fs::create_dir_all(&p).map_err(io(&p))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io(&p))?;
        }
    }
    let ws = root.join("workspace");
    if ws.symlink_metadata().is_err() {
        fs::create_dir(&ws).map_err(io(&ws))?;
        std::os::unix::fs::chown(&ws, Some(USER_ID), Some(USER_ID)).map_err(io(&ws))?;
    }
    let dest = root.join(LOHAR_IN_IMAGE);
    if dest.symlink_metadata().is_ok() {
        fs::remove_file(&dest).map_err(io(&dest))?;
    }
    fs::copy(lohar, &dest).map_err(io(lohar))?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).map_err(io(&dest))?;
    add_line(
        &root.join("etc/passwd"),
        "lohar:",
        "lohar:x:1000:1000:bhatti sandbox user:/workspace:/bin/sh",
        "root:x:0:0:root:/root:/bin/sh",
    )?;
    add_line(
        &root.join("etc/group"),
        "lohar:",
        "lohar:x:1000:",
        "root:x:0:",
    )
}

/// Appends `line` to `file` unless a line starts with `prefix`; a missing
/// file is made with `first` then `line`. A symlinked file is left alone.
fn add_line(file: &Path, prefix: &str, line: &str, first: &str) -> Result<(), ImageError> {
    match file.symlink_metadata() {
        Ok(m) if !m.is_file() => Ok(()),
        Ok(_) => {
            let text = fs::read_to_string(file).unwrap_or_default();
            if text.lines().any(|l| l.starts_with(prefix)) {
                return Ok(());
            }
            let sep = if text.is_empty() || text.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(file)
                .map_err(io(file))?;
            writeln!(f, "{sep}{line}").map_err(io(file))
        }
        Err(_) => fs::write(file, format!("{first}\n{line}\n")).map_err(io(file)),
    }
}

/// Apparent bytes and entries under `root` (not following symlinks).
fn tally(root: &Path) -> (u64, u64) {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            entries += 1;
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                todo.push(e.path());
            } else {
                bytes += m.len();
            }
        }
    }
    (bytes, entries)
}

/// Packs `root` into a new sparse ext4 image `out`: half as large again
/// as its files, at least [`MIN_SIZE`], with an inode per entry and room
/// for as many again.
pub fn pack(root: &Path, out: &Path) -> Result<u64, ImageError> {
    let (bytes, entries) = tally(root);
    let size = (bytes + bytes / 2 + (64 << 20))
        .max(MIN_SIZE)
        .div_ceil(64 << 20)
        * (64 << 20);
    let inodes = (entries * 2 + 16_384).max(size / 16_384);
    let f = fs::File::create(out).map_err(io(out))?;
    f.set_len(size).map_err(io(out))?;
    drop(f);
    let res = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rootfs", "-m", "0", "-N"])
        .arg(inodes.to_string())
        .arg("-d")
        .arg(root)
        .arg(out)
        .stdin(Stdio::null())
        .output();
    let detail = match res {
        Ok(o) if o.status.success() => return Ok(size),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => format!("cannot run mkfs.ext4 (install e2fsprogs): {e}"),
    };
    let _ = fs::remove_file(out);
    Err(ImageError::Pack {
        path: out.to_owned(),
        detail,
    })
}
