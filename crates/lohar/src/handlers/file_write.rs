//! FILE_WRITE_REQ: receive exactly `size` bytes as STDIN frames and put
//! them at `path` atomically, then FILE_WRITE_RESP.
//!
//! Steps: (1) on the blocking pool, create missing parent directories,
//! check the size against the free space of the target filesystem, and
//! create a temp file beside the target; (2) this task receives STDIN
//! frames and passes them over a bounded channel to a blocking writer
//! thread; (3) on the blocking pool, set mode and owner, fsync the file,
//! rename it over the target, fsync the directory. Readers see the old or
//! the new content, never a mix. A [`TempGuard`] removes the temp file on
//! any failure, including a lost connection. Owners ([`crate::run_as`]):
//! the request's `user`, when set, owns the file (also a replaced one) and
//! the directories the write creates; else new files and directories
//! belong to the sandbox's `exec_user`, else (PID-1 mode) the sandbox
//! user, and a replaced file keeps its owner. The agent writes as itself
//! either way: `user` is the owner, not an access check.
//!
//! Durability: FILE_WRITE_RESP is sent only after the file and every
//! directory whose entries changed (the target's, and the parent of each
//! directory the write created) were fsynced, so an acknowledged write
//! survives the VM being killed right after. A failing sync is an error.
//!
//! Modes: octal permission bits up to 0777; setuid, setgid and sticky
//! bits are refused (`invalid_request`). Error messages quote at most a
//! short prefix of the path or mode (`bhatti_proto::text::short`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{
    FileWriteRequest, MessageError, StatusResponse, decode_json, parse_mode,
};
use bhatti_proto::text::short;
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};
use crate::handlers::{ErrorCode, IoText, Reply};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("size must be >= 0")]
    NegativeSize,
    #[error("size {size} exceeds the write limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("write {path}: no space left on device (need {need} bytes, {avail} available)")]
    NoSpace { path: String, need: u64, avail: u64 },
    #[error("invalid mode {0:?} (octal permission bits, at most 0777)")]
    Mode(String),
    #[error("mode {0:04o} sets setuid, setgid or sticky bits, which writes do not allow")]
    SpecialBits(u32),
    #[error("write: empty path")]
    EmptyPath,
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error("write {path}: is a directory")]
    IsDir { path: String },
    #[error("write {path}: {msg}")]
    Io { path: String, msg: IoText },
    #[error("write {path}: received more than {size} bytes")]
    Overflow { path: String, size: u64 },
    #[error("write {path}: connection closed after {got} of {size} bytes")]
    Lost { path: String, got: u64, size: u64 },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::Request(e) => return e.code(),
            Error::NegativeSize | Error::Mode(_) | Error::SpecialBits(_) | Error::EmptyPath => {
                ErrorCode::InvalidRequest
            }
            Error::TooLarge { .. } | Error::Overflow { .. } => ErrorCode::TooLarge,
            Error::NoSpace { .. } => ErrorCode::NoSpace,
            Error::IsDir { .. } => ErrorCode::IsADirectory,
            Error::User(e) => return e.code(),
            Error::Io { msg, .. } => msg.code,
            // The client went away mid-write: nobody to tell.
            Error::Lost { .. } => return None,
            Error::Conn(e) => return e.code(),
        })
    }
}

pub async fn handle(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: FileWriteRequest = decode_json("FileWriteRequest", payload)?;
    let size = u64::try_from(req.size).map_err(|_| Error::NegativeSize)?;
    let limit = agent.limits.max_write_bytes;
    if size > limit {
        return Err(Error::TooLarge { size, limit });
    }
    let mode = file_mode(&req.mode)?;
    if req.path.is_empty() {
        return Err(Error::EmptyPath);
    }
    let owner = agent.file_owner(req.user.as_deref())?;
    let plan = Plan {
        path: PathBuf::from(&req.path),
        display: short(&req.path),
        size,
        mode,
        owner: owner.owner,
        keep_owner: owner.keep_existing,
    };
    let (plan, file, guard) = blocking(move || {
        let (file, guard) = plan.prepare()?;
        Ok((plan, file, guard))
    })
    .await?;

    let (mut frames, writer) = conn.into_frames();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
    let display = plan.display.clone();
    let sink = tokio::task::spawn_blocking(move || write_all(file, rx, &display));
    let mut got: u64 = 0;
    while got < size {
        let Some(frame) = frames.recv().await else {
            drop(tx);
            let _ = sink.await;
            return Err(Error::Lost {
                path: plan.display,
                got,
                size,
            });
        };
        if frame.kind != FrameType::STDIN {
            continue;
        }
        let n = frame.payload.len() as u64;
        if n > size - got {
            return Err(Error::Overflow {
                path: plan.display,
                size,
            });
        }
        got += n;
        agent.touch();
        if n > 0 && tx.send(frame.payload).await.is_err() {
            // The writer failed; its error is reported below.
            break;
        }
    }
    drop(tx);
    let file = sink.await.map_err(|e| Error::Io {
        path: plan.display.clone(),
        msg: IoText::other(e.to_string()),
    })??;
    blocking(move || plan.commit(file, guard)).await?;
    writer
        .json(FrameType::FILE_WRITE_RESP, &StatusResponse::ok())
        .await?;
    Ok(())
}

/// The permission bits of a write: `""` is 0644; setuid, setgid and sticky
/// bits are refused (a tenant's upload must not become a set-id program).
fn file_mode(m: &str) -> Result<u32, Error> {
    let mode = match m {
        "" => 0o644,
        m => parse_mode(m).ok_or_else(|| Error::Mode(short(m)))?,
    };
    if mode & SPECIAL_BITS != 0 {
        return Err(Error::SpecialBits(mode));
    }
    Ok(mode)
}

/// setuid, setgid and sticky.
const SPECIAL_BITS: u32 = 0o7000;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io {
            path: String::new(),
            msg: IoText::other(e.to_string()),
        })?
}

fn write_all(
    mut file: File,
    mut rx: mpsc::Receiver<Vec<u8>>,
    display: &str,
) -> Result<File, Error> {
    while let Some(buf) = rx.blocking_recv() {
        file.write_all(&buf).map_err(|e| Error::Io {
            path: display.to_owned(),
            msg: IoText::new(&e),
        })?;
    }
    Ok(file)
}

/// What to write where.
#[derive(Debug)]
struct Plan {
    path: PathBuf,
    display: String,
    size: u64,
    mode: u32,
    /// Owner of the file and of new directories, `None` to keep the
    /// agent's own.
    owner: Option<(u32, u32)>,
    /// A replaced file keeps its owner instead of taking `owner`.
    keep_owner: bool,
}

/// Removes the temp file unless disarmed by a successful rename.
#[derive(Debug)]
pub struct TempGuard {
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl Plan {
    fn err(&self, e: &std::io::Error) -> Error {
        Error::Io {
            path: self.display.clone(),
            msg: IoText::new(e),
        }
    }

    fn prepare(&self) -> Result<(File, TempGuard), Error> {
        let parent = parent_of(&self.path);
        let Some(name) = self.path.file_name() else {
            return Err(Error::IsDir {
                path: self.display.clone(),
            });
        };
        self.create_parents(&parent)?;
        if fs::metadata(&self.path).is_ok_and(|m| m.is_dir()) {
            return Err(Error::IsDir {
                path: self.display.clone(),
            });
        }
        let vfs = rustix::fs::statvfs(&parent).map_err(|e| self.err(&e.into()))?;
        let avail = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        if self.size > avail {
            return Err(Error::NoSpace {
                path: self.display.clone(),
                need: self.size,
                avail,
            });
        }
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = parent.join(format!(
            ".{}.lohar-{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.err(&e))?;
        Ok((file, TempGuard { path: Some(tmp) }))
    }

    fn create_parents(&self, parent: &Path) -> Result<(), Error> {
        // Find the missing ancestors first so only those get chowned.
        let mut missing = Vec::new();
        let mut cur = Some(parent);
        while let Some(p) = cur {
            if p.as_os_str().is_empty() || p.exists() {
                break;
            }
            missing.push(p.to_path_buf());
            cur = p.parent();
        }
        if missing.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(parent).map_err(|e| self.err(&e))?;
        for dir in missing.iter().rev() {
            if let Some((uid, gid)) = self.owner {
                let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
            }
            // The new directory's entry must survive a crash as much as
            // the file that will be renamed into it.
            sync_dir(&parent_of(dir)).map_err(|e| self.err(&e))?;
        }
        Ok(())
    }

    fn commit(&self, file: File, mut guard: TempGuard) -> Result<(), Error> {
        let Some(tmp) = guard.path.clone() else {
            return Ok(());
        };
        let written = file.metadata().map_err(|e| self.err(&e))?.len();
        if written != self.size {
            return Err(Error::Io {
                path: self.display.clone(),
                msg: IoText::other(format!("wrote {written} of {} bytes", self.size)),
            });
        }
        file.set_permissions(fs::Permissions::from_mode(self.mode))
            .map_err(|e| self.err(&e))?;
        let owner = match fs::metadata(&self.path) {
            Ok(old) if self.keep_owner => Some((old.uid(), old.gid())),
            _ => self.owner,
        };
        if let Some((uid, gid)) = owner
            && std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).is_ok()
        {
            // chown clears set-id bits; put the requested mode back.
            let _ = file.set_permissions(fs::Permissions::from_mode(self.mode));
        }
        // Content, mode and owner are on disk before the name points at
        // them; the directory sync makes the rename itself durable, so an
        // acknowledged write survives a crash of the VM right after.
        file.sync_all().map_err(|e| self.err(&e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| self.err(&e))?;
        guard.path = None;
        sync_dir(&parent_of(&self.path)).map_err(|e| self.err(&e))?;
        Ok(())
    }
}

/// The directory that holds `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory, making the entries created or renamed in it
/// durable. A file system that cannot sync directories (EINVAL) has
/// nothing more to offer and is not an error.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match File::open(dir)?.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}
