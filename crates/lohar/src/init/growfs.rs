//! Growing the root file system to fill its disk.
//!
//! A sandbox may have a root disk larger than its image (`disk_size_mb`):
//! the host grows the image's copy (a sparse file) and the file system in
//! it still has the image's size. At every boot PID 1 compares the two and,
//! when the device is larger, grows the mounted ext4 root online with the
//! kernel's `EXT4_IOC_RESIZE_FS` (no `resize2fs` in the guest: the busybox
//! tier has none). The kernel adds block groups using the reserved GDT
//! blocks `mkfs.ext4` leaves (`resize_inode`), converting to `meta_bg` when
//! those run out.
//!
//! Idempotent and cheap when there is nothing to do: a `stat`, one small
//! sysfs read and one 1 KiB superblock read. The kernel may leave a last
//! sliver of the device unused (one too small for a block group's
//! metadata); a later boot then asks again and the kernel answers at once
//! that there is nothing to add.
//!
//! # Threads, locks, I/O
//! Blocking syscalls on the boot thread, before anything else runs.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// ext4's superblock magic.
const EXT4_MAGIC: u16 = 0xEF53;
/// Where the superblock starts on the device, and its length.
const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;
/// `s_feature_incompat` bit: block counts have a high half.
const INCOMPAT_64BIT: u32 = 0x80;
/// `EXT4_IOC_RESIZE_FS`: `_IOW('f', 16, __u64)` (the new block count).
const EXT4_IOC_RESIZE_FS: libc::Ioctl = 0x4008_6610;

/// Why the root file system could not be grown.
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no DEVNAME in its uevent")]
    NoDevName(PathBuf),
    #[error("the root file system is not ext4 (magic {0:#06x})")]
    NotExt4(u16),
    #[error("the root superblock has an invalid block size (log {0})")]
    BlockSize(u32),
    #[error("EXT4_IOC_RESIZE_FS to {blocks} blocks: {source}")]
    Resize {
        blocks: u64,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GrowError + '_ {
    move |source| GrowError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The size of an ext4 file system, from its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Size {
    /// Bytes per block.
    pub block_size: u64,
    /// Blocks in the file system.
    pub blocks: u64,
}

impl Ext4Size {
    /// Parses the superblock (the 1 KiB at byte 1024 of the device).
    pub fn parse(sb: &[u8; SUPERBLOCK_LEN]) -> Result<Self, GrowError> {
        let u32_at =
            |off: usize| u32::from_le_bytes([sb[off], sb[off + 1], sb[off + 2], sb[off + 3]]);
        let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
        if magic != EXT4_MAGIC {
            return Err(GrowError::NotExt4(magic));
        }
        // ext4 block sizes are 1 KiB to 64 KiB.
        let log = u32_at(0x18);
        if log > 6 {
            return Err(GrowError::BlockSize(log));
        }
        let hi = if u32_at(0x60) & INCOMPAT_64BIT != 0 {
            u64::from(u32_at(0x150))
        } else {
            0
        };
        Ok(Self {
            block_size: 1024 << log,
            blocks: (hi << 32) | u64::from(u32_at(0x4)),
        })
    }

    /// Bytes in the file system.
    pub fn bytes(self) -> u64 {
        self.blocks * self.block_size
    }

    /// The block count that fills a device of `device_bytes` (whole blocks
    /// only), when that is more than the file system has now.
    pub fn grow_target(self, device_bytes: u64) -> Option<u64> {
        let fill = device_bytes / self.block_size;
        (fill > self.blocks).then_some(fill)
    }
}

/// A grown root: its size before and after, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    pub from: u64,
    pub to: u64,
}

/// Grows the root file system to fill its device (module docs);
/// `Ok(None)` when it already does or the root is not on a block device.
pub fn grow_root() -> Result<Option<Grown>, GrowError> {
    let Some(dev) = root_device()? else {
        return Ok(None);
    };
    let mut disk = File::open(&dev).map_err(io(&dev))?;
    let before = read_superblock(&disk, &dev)?;
    // A block device's end is its size.
    let device_bytes = disk.seek(SeekFrom::End(0)).map_err(io(&dev))?;
    let Some(blocks) = before.grow_target(device_bytes) else {
        return Ok(None);
    };
    let root = Path::new("/");
    let dir = File::open(root).map_err(io(root))?;
    // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 (the new block count) from
    // the pointer, which points at `blocks`, alive for the call; `dir` is
    // an open descriptor on the ext4 root.
    let r = unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            EXT4_IOC_RESIZE_FS,
            std::ptr::from_ref(&blocks),
        )
    };
    if r < 0 {
        return Err(GrowError::Resize {
            blocks,
            source: std::io::Error::last_os_error(),
        });
    }
    // The superblock as the kernel left it (the device's page cache is
    // the file system's).
    let after = read_superblock(&disk, &dev)?;
    Ok(Some(Grown {
        from: before.bytes(),
        to: after.bytes(),
    }))
}

fn read_superblock(disk: &File, dev: &Path) -> Result<Ext4Size, GrowError> {
    let mut sb = [0u8; SUPERBLOCK_LEN];
    disk.read_exact_at(&mut sb, SUPERBLOCK_OFFSET)
        .map_err(io(dev))?;
    Ext4Size::parse(&sb)
}

/// The device node of the root file system (`/dev/vda`), from the root's
/// device number and sysfs; `None` for a root on no block device (major 0:
/// tmpfs, virtiofs and the like).
fn root_device() -> Result<Option<PathBuf>, GrowError> {
    let root = Path::new("/");
    let st = rustix::fs::stat(root).map_err(|e| io(root)(e.into()))?;
    let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    if major == 0 {
        return Ok(None);
    }
    let uevent = PathBuf::from(format!("/sys/dev/block/{major}:{minor}/uevent"));
    let text = std::fs::read_to_string(&uevent).map_err(io(&uevent))?;
    let name = devname(&text).ok_or(GrowError::NoDevName(uevent))?;
    Ok(Some(Path::new("/dev").join(name)))
}

/// `DEVNAME` of a sysfs `uevent` file (`vda`).
fn devname(uevent: &str) -> Option<&str> {
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.contains(".."))
}

#[cfg(test)]
mod tests;
