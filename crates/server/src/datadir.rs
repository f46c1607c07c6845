//! The data dir is the daemon's alone: [`secure`] runs once at start,
//! before anything opens a file there.
//!
//! - The process umask becomes `0o077`, so every file and directory made
//!   later — by the daemon, SQLite, `cp`, `mkfs.ext4`, and QEMU with its
//!   children (console and stderr logs, the QMP socket, `mem.snap` written
//!   through `exec:cat`) — is 0600 / 0700. The umask is process-wide and
//!   inherited by every child; nothing of the daemon's is meant for other
//!   host users.
//! - A data dir left by an older version (0755 dirs, 0644 files) is walked
//!   once and loses every group and other permission bit. Symlinks are not
//!   followed. `age.key` is left as it is: [`crate::secrets`] refuses a key
//!   others could read, and a key that was exposed must not be silently
//!   "fixed".
//!
//! What is in there and why it is secret: `docs/threat-model.md`.
//!
//! # Threads, locks, I/O
//! Blocking directory walk and `chmod` calls on the caller's thread, once,
//! before the engine starts; no shared state.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::daemon::DaemonError;

/// The umask of the daemon process.
pub const UMASK: u32 = 0o077;

/// Sets the process umask to [`UMASK`] and [`tighten`]s `dir`.
pub fn secure(dir: &Path) -> Result<(), DaemonError> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(UMASK));
    tighten(dir)
}

/// Removes the group and other permission bits of `dir` and of everything
/// below it, except a top-level `age.key`; symlinks are left alone and not
/// followed.
pub fn tighten(dir: &Path) -> Result<(), DaemonError> {
    chmod_private(dir)?;
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let entries = fs::read_dir(&d).map_err(|source| DaemonError::DataDir {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| DaemonError::DataDir {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            if d == dir && entry.file_name() == "age.key" {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                continue;
            }
            chmod_private(&path)?;
            if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// Clears the group and other bits of `path` (following no symlink), if
/// any are set. An entry that vanished meanwhile is fine.
fn chmod_private(path: &Path) -> Result<(), DaemonError> {
    let err = |source| DaemonError::DataDir {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() || mode & 0o077 == 0 {
        return Ok(());
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7700)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
        _ => Ok(()),
    }
}

/// The lock file a running daemon holds in its data dir.
pub const LOCK_FILE: &str = "daemon.lock";

/// Takes the data dir's lock (an exclusive `flock` on [`LOCK_FILE`], held
/// while the returned file is open): a second daemon on the same data dir
/// would take the first one's VMMs for orphans and kill them. The lock
/// goes with the process, however it ends; VMMs do not inherit it (the
/// file is close-on-exec).
pub fn lock(dir: &Path) -> Result<std::fs::File, DaemonError> {
    let path = dir.join(LOCK_FILE);
    let err = |source| DaemonError::DataDir {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(DaemonError::Locked(path)),
        Err(e) => Err(err(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).expect("meta").permissions().mode() & 0o7777
    }

    fn set(p: &Path, m: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
    }

    #[test]
    fn an_old_data_dir_loses_group_and_other_bits() {
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().join("shared.txt");
        fs::write(&target, "x").expect("write");
        set(&target, 0o644);

        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path();
        set(dir, 0o755);
        let sb = dir.join("sandboxes/sb-1");
        fs::create_dir_all(&sb).expect("mkdir");
        set(&dir.join("sandboxes"), 0o755);
        set(&sb, 0o755);
        for (name, m) in [
            ("config.ext4", 0o644),
            ("mem.snap", 0o640),
            ("run.sh", 0o755),
        ] {
            fs::write(sb.join(name), "secret").expect("write");
            set(&sb.join(name), m);
        }
        let sock = std::os::unix::net::UnixListener::bind(sb.join("qmp.sock")).expect("bind");
        set(&sb.join("qmp.sock"), 0o777);
        for name in ["state.db", "age.key"] {
            fs::write(dir.join(name), "x").expect("write");
            set(&dir.join(name), 0o644);
        }
        symlink(&target, dir.join("link")).expect("symlink");

        tighten(dir).expect("tighten");
        assert_eq!(mode(dir), 0o700);
        assert_eq!(mode(&dir.join("sandboxes")), 0o700);
        assert_eq!(mode(&sb), 0o700);
        assert_eq!(mode(&sb.join("config.ext4")), 0o600);
        assert_eq!(mode(&sb.join("mem.snap")), 0o600);
        assert_eq!(mode(&sb.join("run.sh")), 0o700);
        assert_eq!(mode(&sb.join("qmp.sock")) & 0o077, 0);
        assert_eq!(mode(&dir.join("state.db")), 0o600);
        // Left for the secret box to refuse; the symlink's target is not
        // the data dir's to change.
        assert_eq!(mode(&dir.join("age.key")), 0o644);
        assert_eq!(mode(&target), 0o644);
        drop(sock);

        // Idempotent.
        tighten(dir).expect("again");
        assert_eq!(mode(dir), 0o700);
    }
}
