//! Guest RAM in a file mapped shared (`QemuDriver::shared_ram`, on by
//! default; see `crates/engine/docs/snapshots.md`).
//!
//! A VM's memory is `<run_dir>/ram` (mode 0600: it holds the guest's
//! secrets, like `mem.snap`), mapped shared: made empty at every boot,
//! and the restore of a full stream (from a VM that ran without shared
//! RAM, or a clone's first stop) loads it into a fresh one. A snapshot
//! migrates device state only (`x-ignore-shared`), `mem.snap` is tens of
//! KiB, and the RAM file is the memory image (the kernel writes back what
//! the guest dirtied, at its own pace). `mem.snap.shared` marks such a
//! snapshot, written before `mem.snap` is renamed into place, so a shared
//! stream is never restored without its RAM file (that would run the
//! guest on zeroed memory). A restore maps the same file: QEMU starts with
//! `-incoming defer`, gets the capability, then `migrate-incoming`.

use std::io;
use std::path::{Path, PathBuf};

use super::{QemuError, SNAPSHOT_FILE, private_file};
use crate::qemu::qmp::QmpClient;

/// The RAM file in a run dir.
pub const RAM_FILE: &str = "ram";

/// The migration capability that leaves shared RAM out of the stream.
const CAPABILITY: &str = "x-ignore-shared";

pub fn ram_file(run_dir: &Path) -> PathBuf {
    run_dir.join(RAM_FILE)
}

/// The marker of a snapshot whose memory is the RAM file.
pub fn marker(run_dir: &Path) -> PathBuf {
    run_dir.join(format!("{SNAPSHOT_FILE}.shared"))
}

/// Whether the snapshot in `run_dir` (if any) is a shared one.
pub fn is_shared(run_dir: &Path) -> bool {
    marker(run_dir).exists()
}

/// An empty RAM file for a fresh boot (an old one is discarded: a boot
/// does not need, and must not keep, memory of an earlier run).
pub fn fresh(run_dir: &Path) -> Result<PathBuf, QemuError> {
    let ram = ram_file(run_dir);
    private_file(&ram)?;
    Ok(ram)
}

/// Removes `path` if it exists.
pub fn remove(path: &Path) -> Result<(), QemuError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(QemuError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Before the migration of a VM whose RAM is shared.
pub async fn before_snapshot(qmp: &mut QmpClient) -> Result<(), QemuError> {
    Ok(qmp.set_migration_capability(CAPABILITY, true).await?)
}

/// Marks the snapshot about to be renamed into place as shared or not.
pub fn mark(run_dir: &Path, shared: bool) -> Result<(), QemuError> {
    let m = marker(run_dir);
    if shared { private_file(&m) } else { remove(&m) }
}

/// Starts loading `uri` into a QEMU started with `-incoming defer`.
pub async fn start_incoming(qmp: &mut QmpClient, uri: &str) -> Result<(), QemuError> {
    qmp.set_migration_capability(CAPABILITY, true).await?;
    Ok(qmp.migrate_incoming(uri).await?)
}

/// Whether the QEMU of `pid` was started with a shared RAM file (a
/// private mapping of a snapshot's RAM file is not one).
pub fn launched_shared(pid: Option<u32>) -> bool {
    pid.and_then(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        .is_some_and(|c| {
            c.split(|b| *b == 0)
                .any(|a| a.starts_with(b"memory-backend-file,") && a.ends_with(b",share=on"))
        })
}

/// Copies the RAM file of a paused VM (sparse: pages it never touched
/// stay holes) to `to`, mode 0600.
pub fn copy(run_dir: &Path, to: &Path) -> Result<(), QemuError> {
    let from = ram_file(run_dir);
    if from == to {
        // Captured in place (a VM that ends right after, never to run on).
        return Ok(());
    }
    crate::image::copy_rootfs(&from, to).map_err(|e| QemuError::File {
        path: to.to_owned(),
        source: io::Error::other(e),
    })?;
    private_file_mode(to)
}

fn private_file_mode(path: &Path) -> Result<(), QemuError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        QemuError::File {
            path: path.to_owned(),
            source,
        }
    })
}
