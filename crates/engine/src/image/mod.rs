//! Guest images: where the kernel and the rootfs tiers are, per-sandbox
//! rootfs copies (grown to a sandbox's disk size, [`grow_rootfs`]), and the
//! per-sandbox config drive ([`config_drive`]).
//!
//! The images themselves are built by `cargo xtask images` into
//! `$BHATTI_CACHE_DIR/images/` (default `/var/cache/bhatti/images/`):
//! `vmlinux`, `busybox.ext4`, `minimal.ext4`, `dev.ext4` (built only on
//! request: `--tier dev`) and `manifest.json`.
//!
//! # Threads, locks, I/O
//! Blocking filesystem I/O and child processes (`cp`, `mkfs.ext4`); no
//! shared state. Call from `spawn_blocking` in async code.

pub mod build;
pub mod config_drive;
pub mod overlay;
mod reference;
pub mod store;

pub use reference::ImageRef;
pub use store::{ImageStore, StoredImage};

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// Environment variable naming the cache root (images live in `images/`).
pub const CACHE_DIR_ENV: &str = "BHATTI_CACHE_DIR";

/// Cache root used when [`CACHE_DIR_ENV`] is unset.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/bhatti";

/// File name of the kernel inside the images directory.
pub const KERNEL_FILE: &str = "vmlinux";

/// The command that builds missing images (named in errors).
pub const BUILD_COMMAND: &str = "cargo xtask images";

/// Errors locating or copying images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("guest kernel not found at {}: build it with `{BUILD_COMMAND} --kernel-only`", .0.display())]
    KernelMissing(PathBuf),
    #[error("rootfs tier `{tier}` not found at {}: build it with `{BUILD_COMMAND} --tier {tier}`", .path.display())]
    RootfsMissing { tier: Tier, path: PathBuf },
    #[error("unknown rootfs tier {0:?} (expected `busybox`, `minimal` or `dev`)")]
    UnknownTier(String),
    #[error("could not copy {} to {}: {detail}", .from.display(), .to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        detail: String,
    },
    #[error("{}: not an ext4 image ({detail})", .path.display())]
    NotExt4 { path: PathBuf, detail: String },
    #[error("{0:?} is not an image id (expected sha256: and 64 lowercase hex digits)")]
    BadId(String),
    #[error("image {0} is not in the image store")]
    NotStored(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {detail}", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("could not pack the image into {}: {detail}", .path.display())]
    Pack { path: PathBuf, detail: String },
    #[error("lohar to put into images not found at {}: build it with `{BUILD_COMMAND}`", .0.display())]
    LoharMissing(PathBuf),
    #[error(transparent)]
    Overlay(#[from] overlay::OverlayError),
    #[error("could not grow {} to {size} bytes: {source}", .path.display())]
    Grow {
        path: PathBuf,
        size: u64,
        #[source]
        source: std::io::Error,
    },
}

/// A rootfs tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// busybox + lohar: small and fast, used by tests.
    Busybox,
    /// Debian bookworm minbase + bash, coreutils, curl, git, python3, sudo,
    /// iproute2, procps, ca-certificates: the default for users.
    Minimal,
    /// `minimal` + zsh, tmux, Node.js, npm, ripgrep, fd, pip, venv,
    /// build-essential and other tools (bhatti v1's default image).
    Dev,
    /// `minimal` + a Jupyter kernel (Debian's python3-ipykernel) and
    /// bhatti's code-interpreter server (E2B's `code-interpreter-v1`).
    Interpreter,
}

impl Tier {
    /// Every tier, smallest first.
    pub const ALL: [Tier; 4] = [Tier::Busybox, Tier::Minimal, Tier::Interpreter, Tier::Dev];

    /// The tier's name (`busybox`, `minimal`, `interpreter`, `dev`).
    pub fn name(self) -> &'static str {
        match self {
            Tier::Busybox => "busybox",
            Tier::Minimal => "minimal",
            Tier::Interpreter => "interpreter",
            Tier::Dev => "dev",
        }
    }

    /// File name of the tier's image (`<name>.ext4`).
    pub fn file_name(self) -> String {
        format!("{}.ext4", self.name())
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tier {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| ImageError::UnknownTier(s.to_owned()))
    }
}

/// Where the built images are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePaths {
    dir: PathBuf,
}

impl ImagePaths {
    /// Images in `dir` (e.g. `<data_dir>/images`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$BHATTI_CACHE_DIR/images`, or `/var/cache/bhatti/images`.
    pub fn from_env() -> Self {
        let root = std::env::var_os(CACHE_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from);
        Self::new(root.join("images"))
    }

    /// The images directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kernel, if built.
    pub fn kernel(&self) -> Result<PathBuf, ImageError> {
        let p = self.dir.join(KERNEL_FILE);
        if p.is_file() {
            Ok(p)
        } else {
            Err(ImageError::KernelMissing(p))
        }
    }

    /// The lohar binary that imported images get (`images/lohar`).
    pub fn lohar(&self) -> Result<PathBuf, ImageError> {
        let p = self.dir.join("lohar");
        if p.is_file() {
            Ok(p)
        } else {
            Err(ImageError::LoharMissing(p))
        }
    }

    /// The rootfs image of `tier`, if built.
    pub fn rootfs(&self, tier: Tier) -> Result<PathBuf, ImageError> {
        let p = self.dir.join(tier.file_name());
        if p.is_file() {
            Ok(p)
        } else {
            Err(ImageError::RootfsMissing { tier, path: p })
        }
    }
}

/// Copies a rootfs image for one sandbox: a reflink where the filesystem
/// supports it, otherwise a sparse copy (holes stay holes).
pub fn copy_rootfs(from: &Path, to: &Path) -> Result<(), ImageError> {
    let err = |detail: String| ImageError::Copy {
        from: from.to_owned(),
        to: to.to_owned(),
        detail,
    };
    let out = Command::new("cp")
        .args([
            "--reflink=auto",
            "--sparse=always",
            "--no-target-directory",
            "--",
        ])
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| err(format!("cannot run cp: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// Most block groups a sandbox's root file system is grown to. The guest
/// grows it at boot, before its agent answers, and the time that takes
/// grows with the groups added (faster than linearly): about 4 s for 8192
/// groups here, 40 s for 32768. 8192 groups are 64 GiB with 1 KiB blocks
/// (the busybox tier) and 1 TiB with 4 KiB blocks (minimal).
pub const MAX_GROWN_GROUPS: u64 = 8192;

/// The sizes a sandbox's root disk may have with a rootfs image, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLimits {
    /// The image's own size: a disk never shrinks.
    pub min: u64,
    /// [`MAX_GROWN_GROUPS`] block groups of the image's file system.
    pub max: u64,
}

/// The [`DiskLimits`] of a rootfs image, from its size and its ext4
/// superblock.
pub fn disk_limits(rootfs: &Path) -> Result<DiskLimits, ImageError> {
    use std::os::unix::fs::FileExt;
    let bad = |detail: String| ImageError::NotExt4 {
        path: rootfs.to_owned(),
        detail,
    };
    let f = std::fs::File::open(rootfs).map_err(|e| bad(e.to_string()))?;
    let min = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut sb = [0u8; 0x3a];
    f.read_exact_at(&mut sb, 1024)
        .map_err(|e| bad(e.to_string()))?;
    let u32_at = |off: usize| u32::from_le_bytes([sb[off], sb[off + 1], sb[off + 2], sb[off + 3]]);
    let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
    let log_block = u32_at(0x18);
    if magic != 0xEF53 || log_block > 6 {
        return Err(bad(format!(
            "magic {magic:#06x}, block size log {log_block}"
        )));
    }
    let group = u64::from(u32_at(0x20)) << (10 + log_block);
    Ok(DiskLimits {
        min,
        max: MAX_GROWN_GROUPS * group,
    })
}

/// Grows a sandbox's rootfs copy to `size` bytes: sparse (the new space
/// takes no host disk until the guest writes it), never shrinking (a file
/// already as large is left alone). The guest's lohar grows the file
/// system into it at boot.
pub fn grow_rootfs(path: &Path, size: u64) -> Result<(), ImageError> {
    let err = |source| ImageError::Grow {
        path: path.to_owned(),
        size,
        source,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(err)?;
    if f.metadata().map_err(err)?.len() < size {
        f.set_len(size).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
