//! Mounts of PID 1: the API file systems, the config drive, volumes.
//! Each failure is logged and boot goes on (a missing /dev/pts is better
//! than a dead VM); `EBUSY` (already mounted by the kernel) is fine.

use std::path::Path;

use bhatti_proto::config::{GuestConfig, GuestVolume};
use rustix::mount::{MountFlags, UnmountFlags};

/// Where the config drive is mounted while it is read.
pub const CONFIG_MOUNT: &str = "/run/bhatti/config";

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {what} on {target}: {source}")]
    Mount {
        what: String,
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config drive: {0}")]
    Config(String),
}

fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), MountError> {
    let _ = std::fs::create_dir_all(target);
    let data = std::ffi::CString::new(data).unwrap_or_default();
    match rustix::mount::mount(source, target, fstype, flags, Some(data.as_c_str())) {
        Ok(()) | Err(rustix::io::Errno::BUSY) => Ok(()),
        Err(e) => Err(MountError::Mount {
            what: format!("{fstype} {source}"),
            target: target.to_owned(),
            source: e.into(),
        }),
    }
}

/// Mounts /proc, /sys, /dev, /dev/pts (own instance, /dev/ptmx pointing
/// into it), /dev/shm, /tmp, /run and the cgroup2 hierarchy.
pub fn mount_api_filesystems() {
    let nodev = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let steps: [(&str, &str, &str, MountFlags, &str); 8] = [
        ("proc", "/proc", "proc", nodev, ""),
        ("sysfs", "/sys", "sysfs", nodev, ""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            "mode=0755",
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        ),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", nodev, ""),
    ];
    for (src, target, fstype, flags, data) in steps {
        if let Err(e) = mount(src, target, fstype, flags, data) {
            crate::log!("{e}");
        }
    }
    // /dev/ptmx must open the new devpts instance.
    let _ = std::fs::remove_file("/dev/ptmx");
    if let Err(e) = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx") {
        crate::log!("/dev/ptmx: {e}");
    }
}

/// Mounts the config drive read-only at `at` (normally [`CONFIG_MOUNT`]),
/// reads `config.json`, unmounts it (the token stays out of reach of user
/// commands). `Ok(None)` when the device does not exist.
pub fn read_config_drive(device: &str, at: &str) -> Result<Option<ConfigDrive>, MountError> {
    if !Path::new(device).exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(at).map_err(|source| MountError::Io {
        path: at.to_owned(),
        source,
    })?;
    let _ = std::fs::set_permissions(at, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    mount(
        device,
        at,
        "ext4",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "",
    )?;
    let path = Path::new(at).join(bhatti_proto::config::CONFIG_FILE);
    let written_at = std::fs::metadata(&path).ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.mtime()
    });
    let parsed = std::fs::read(&path)
        .map_err(|e| MountError::Config(format!("{}: {e}", path.display())))
        .and_then(|text| {
            serde_json::from_slice::<GuestConfig>(&text)
                .map_err(|e| MountError::Config(format!("{}: {e}", path.display())))
        });
    let _ = rustix::mount::unmount(at, UnmountFlags::DETACH);
    parsed.map(|config| Some(ConfigDrive { config, written_at }))
}

/// What the config drive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDrive {
    pub config: GuestConfig,
    /// Modification time of `config.json` (unix seconds): when the host
    /// wrote it, which is a usable clock for a guest without an RTC.
    pub written_at: Option<i64>,
}

/// Mounts one volume (ext4) at its mount point; a writable volume's root
/// belongs to `owner`.
pub fn mount_volume(v: &GuestVolume, owner: (u32, u32)) -> Result<(), MountError> {
    let target = super::apply::under(Path::new("/"), &v.mount).map_err(|e| MountError::Io {
        path: v.mount.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let target = target.to_string_lossy().into_owned();
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    if v.readonly {
        flags |= MountFlags::RDONLY;
    }
    mount(&v.device, &target, "ext4", flags, "")?;
    if !v.readonly {
        std::os::unix::fs::chown(&target, Some(owner.0), Some(owner.1)).map_err(|source| {
            MountError::Io {
                path: target.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
