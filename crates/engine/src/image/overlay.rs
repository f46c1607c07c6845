//! A sandbox's root disk as a copy-on-write layer over its image: a qcow2
//! file whose backing file is the image (raw ext4, never written), so a
//! create costs a few KiB and ten sandboxes of a 1 GiB image share the
//! image's blocks.
//!
//! - [`create`] makes the overlay with `qemu-img create -f qcow2 -F raw -b
//!   IMAGE` (the backing format is recorded, so QEMU never probes it), at
//!   the image's size or larger (the guest grows its file system into the
//!   rest at boot).
//! - [`format_of`]: a disk's format comes from its file name (`.qcow2`),
//!   never from its bytes: a guest controls what a raw disk contains, and
//!   a probed qcow2 header could name any host file as its backing file.
//! - [`flatten`] writes an overlay and its image as one raw sparse file
//!   (saving a sandbox as an image).
//!
//! A Firecracker driver, which takes raw block devices only, would map
//! the same pair (image, private changes) to a device-mapper snapshot of
//! the image; the engine's data layout names the image, not the format.
//!
//! # Threads, locks, I/O
//! Blocking: runs `qemu-img`. Call from `spawn_blocking`.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// File name of a root disk that is an overlay over its image.
pub const OVERLAY_FILE: &str = "rootfs.qcow2";

/// Errors making or reading overlays.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("cannot run qemu-img (install the Debian package qemu-utils): {0}")]
    Spawn(std::io::Error),
    #[error("qemu-img {what} failed: {detail}")]
    Failed { what: &'static str, detail: String },
    #[error("{0} is not valid UTF-8")]
    NonUtf8(std::path::PathBuf),
}

/// QEMU's format name for a disk file: `qcow2` for `*.qcow2`, else `raw`.
pub fn format_of(path: &Path) -> &'static str {
    if path.extension().is_some_and(|e| e == "qcow2") {
        "qcow2"
    } else {
        "raw"
    }
}

fn text(p: &Path) -> Result<&str, OverlayError> {
    p.to_str()
        .ok_or_else(|| OverlayError::NonUtf8(p.to_owned()))
}

fn qemu_img(what: &'static str, args: &[&str]) -> Result<(), OverlayError> {
    let out = Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(OverlayError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(OverlayError::Failed {
            what,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Makes `overlay` over the raw image `base`, `size` bytes (`None`: the
/// image's size). `base` must stay where it is and never change.
pub fn create(base: &Path, overlay: &Path, size: Option<u64>) -> Result<(), OverlayError> {
    let size = size.map(|s| s.to_string());
    let mut args = vec!["create", "-q", "-f", "qcow2", "-F", "raw", "-b"];
    args.extend([text(base)?, text(overlay)?]);
    args.extend(size.as_deref());
    qemu_img("create", &args)
}

/// Writes the disk `disk` (an overlay with its image, or a raw file) as
/// one raw sparse file `out`.
pub fn flatten(disk: &Path, out: &Path) -> Result<(), OverlayError> {
    qemu_img(
        "convert",
        &[
            "convert",
            "-q",
            // Shared: a paused VMM still holds its disk's lock; pausing
            // flushed what it cached.
            "-U",
            "-f",
            format_of(disk),
            "-O",
            "raw",
            "-S",
            "4k",
            text(disk)?,
            text(out)?,
        ],
    )
}

/// The backing file an overlay names (from its qcow2 header; only files
/// this engine made are read this way), or `None`.
pub fn backing_of(overlay: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let f = std::fs::File::open(overlay).ok()?;
    let mut h = [0u8; 20];
    f.read_exact_at(&mut h, 0).ok()?;
    if &h[..4] != b"QFI\xfb" {
        return None;
    }
    let offset = u64::from_be_bytes(h[8..16].try_into().ok()?);
    let len = u32::from_be_bytes(h[16..20].try_into().ok()?);
    if offset == 0 || len == 0 || len > 4096 {
        return None;
    }
    let mut name = vec![0u8; len as usize];
    f.read_exact_at(&mut name, offset).ok()?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(name)))
}
