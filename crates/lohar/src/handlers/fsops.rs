//! Protocol version 4 file management: MKDIR_REQ, MOVE_REQ, REMOVE_REQ,
//! STAT2_REQ (`docs/protocol.md`). One JSON request, one JSON reply (or
//! ERROR_CODE + ERROR); the file system work runs on the blocking pool.
//!
//! - MKDIR: creates the directory and its missing parents (mode 0755 or
//!   the request's, exactly, whatever the umask), each owned as a file
//!   write's new directories ([`crate::run_as`]: the request's `user`,
//!   else the sandbox's default owner) and its parent fsynced. An existing
//!   directory (also through a symlink) is `created: false`; anything
//!   else there is `already_exists`.
//! - MOVE: rename(2) after creating the destination's missing parents
//!   (owned as MKDIR's); both parents fsynced. A missing source is
//!   `not_found` and creates nothing.
//! - REMOVE: a file or symlink is unlinked, a directory tree removed by
//!   [`super::remove_tree`] (no symlink followed, no mount crossed).
//!   Paths that name no entry of their own — `/`, or a last component
//!   `.` or `..` — are refused (`invalid_request`).
//! - STAT2: [`super::entry`]'s lstat.
//!
//! Every path is used as given (relative paths are relative to the
//! agent's working directory); `..` is resolved by the kernel, and what a
//! request may touch is the whole guest: the agent runs as root, and
//! these operations, like FILE_WRITE, are not access checks.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bhatti_proto::ext::{MkdirRequest, MkdirResponse, MoveRequest};
use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{MessageError, PathRequest, StatusResponse, decode_json, parse_mode};
use bhatti_proto::text::short;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};
use crate::handlers::entry::{Names, lstat_entry};
use crate::handlers::file_write::sync_dir;
use crate::handlers::{ErrorCode, IoText, Reply};

/// Mode of the directories MKDIR creates when the request names none.
const DEFAULT_DIR_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("{op}: empty path")]
    EmptyPath { op: &'static str },
    #[error("{op} {path}: refused: the path names no entry of its own (the root, `.` or `..`)")]
    NoEntry { op: &'static str, path: String },
    #[error("mkdir: invalid mode {0:?} (octal permission bits, at most 0777)")]
    Mode(String),
    #[error("mkdir {path}: exists and is not a directory")]
    NotADir { path: String },
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error("{op} {path}: {msg}")]
    Io {
        op: &'static str,
        path: String,
        msg: IoText,
    },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::Request(e) => return e.code(),
            Error::EmptyPath { .. } | Error::NoEntry { .. } | Error::Mode(_) => {
                ErrorCode::InvalidRequest
            }
            Error::NotADir { .. } => ErrorCode::AlreadyExists,
            Error::User(e) => return e.code(),
            Error::Io { msg, .. } => msg.code,
            Error::Conn(e) => return e.code(),
        })
    }
}

fn io_err(op: &'static str, path: &str) -> impl Fn(std::io::Error) -> Error {
    let path = short(path);
    move |e| Error::Io {
        op,
        path: path.clone(),
        msg: IoText::new(&e),
    }
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io {
            op,
            path: String::new(),
            msg: IoText::other(e.to_string()),
        })?
}

fn non_empty(op: &'static str, path: &str) -> Result<(), Error> {
    if path.is_empty() {
        return Err(Error::EmptyPath { op });
    }
    Ok(())
}

/// Whether `path` names an entry of its own: not the root and not ending
/// in `.` or `..` (trailing slashes aside).
pub fn names_an_entry(path: &str) -> bool {
    let trimmed = path.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or("");
    !(trimmed.is_empty() || last == "." || last == "..")
}

pub async fn stat2(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: PathRequest = decode_json("PathRequest", payload)?;
    non_empty("stat", &req.path)?;
    let etc = agent.etc.clone();
    let info = blocking("stat", move || {
        lstat_entry(&req.path, &Names::load(&etc)).map_err(io_err("stat", &req.path))
    })
    .await?;
    conn.writer.json(FrameType::STAT2_RESP, &info).await?;
    Ok(())
}

pub async fn mkdir(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: MkdirRequest = decode_json("MkdirRequest", payload)?;
    non_empty("mkdir", &req.path)?;
    let mode = match req.mode.as_deref() {
        None | Some("") => DEFAULT_DIR_MODE,
        Some(m) => parse_mode(m)
            .filter(|m| m & !0o777 == 0)
            .ok_or_else(|| Error::Mode(short(m)))?,
    };
    let owner = agent.file_owner(req.user.as_deref())?.owner;
    let etc = agent.etc.clone();
    let reply = blocking("mkdir", move || {
        let created = make_dir(&req.path, mode, owner)?;
        let entry =
            lstat_entry(&req.path, &Names::load(&etc)).map_err(io_err("mkdir", &req.path))?;
        Ok(MkdirResponse { created, entry })
    })
    .await?;
    conn.writer.json(FrameType::MKDIR_RESP, &reply).await?;
    Ok(())
}

/// Creates `path` and its missing parents; `false` when it was a
/// directory already.
fn make_dir(path: &str, mode: u32, owner: Option<(u32, u32)>) -> Result<bool, Error> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(_) => return Err(Error::NotADir { path: short(path) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("mkdir", path)(e)),
    }
    let created = create_dirs(Path::new(path), mode, owner).map_err(io_err("mkdir", path))?;
    if created {
        return Ok(true);
    }
    // Another process made it meanwhile (or it is a non-directory now).
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(false),
        _ => Err(Error::NotADir { path: short(path) }),
    }
}

/// Creates `dir` and its missing ancestors with `mode` and `owner`,
/// fsyncing each one's parent. Returns whether `dir` itself was created
/// here (false: it appeared meanwhile).
pub fn create_dirs(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> std::io::Result<bool> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || fs::symlink_metadata(p).is_ok() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    let mut made_last = false;
    for d in missing.iter().rev() {
        made_last = match fs::create_dir(d) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        if !made_last {
            continue;
        }
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::chown(d, Some(uid), Some(gid));
        }
        // Exactly `mode`, whatever the umask.
        fs::set_permissions(d, fs::Permissions::from_mode(mode))?;
        sync_dir(&parent_of(d))?;
    }
    Ok(made_last)
}

/// The directory that holds `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub async fn mv(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: MoveRequest = decode_json("MoveRequest", payload)?;
    non_empty("move", &req.source)?;
    non_empty("move", &req.destination)?;
    for p in [&req.source, &req.destination] {
        if !names_an_entry(p) {
            return Err(Error::NoEntry {
                op: "move",
                path: short(p),
            });
        }
    }
    let owner = agent.file_owner(req.user.as_deref())?.owner;
    let etc = agent.etc.clone();
    let entry = blocking("move", move || {
        let (src, dst) = (&req.source, &req.destination);
        fs::symlink_metadata(src).map_err(io_err("move", src))?;
        let dst_parent = parent_of(Path::new(dst));
        create_dirs(&dst_parent, DEFAULT_DIR_MODE, owner).map_err(io_err("move", dst))?;
        fs::rename(src, dst).map_err(io_err("move", src))?;
        sync_dir(&dst_parent).map_err(io_err("move", dst))?;
        let src_parent = parent_of(Path::new(src));
        if src_parent != dst_parent {
            sync_dir(&src_parent).map_err(io_err("move", src))?;
        }
        lstat_entry(dst, &Names::load(&etc)).map_err(io_err("move", dst))
    })
    .await?;
    conn.writer.json(FrameType::MOVE_RESP, &entry).await?;
    Ok(())
}

pub async fn remove(_agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: PathRequest = decode_json("PathRequest", payload)?;
    non_empty("remove", &req.path)?;
    if !names_an_entry(&req.path) {
        return Err(Error::NoEntry {
            op: "remove",
            path: short(&req.path),
        });
    }
    blocking("remove", move || {
        super::remove_tree::remove(Path::new(&req.path)).map_err(io_err("remove", &req.path))
    })
    .await?;
    conn.writer
        .json(FrameType::REMOVE_RESP, &StatusResponse::ok())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_name_no_entry() {
        for p in [
            "/", "//", "/.", "/..", "a/.", "a/..", ".", "..", "/tmp/../", "./",
        ] {
            assert!(!names_an_entry(p), "{p}");
        }
        for p in ["/tmp", "/tmp/", "a", "a/b/", "/a/.b", "/a/..b", "..."] {
            assert!(names_an_entry(p), "{p}");
        }
    }

    #[test]
    fn create_dirs_makes_parents_with_the_exact_mode() {
        let d = tempfile::tempdir().expect("tempdir");
        let deep = d.path().join("a/b/c");
        assert!(create_dirs(&deep, 0o700, None).expect("create"));
        for p in ["a", "a/b", "a/b/c"] {
            let m = fs::metadata(d.path().join(p)).expect("meta");
            assert!(m.is_dir());
            assert_eq!(m.permissions().mode() & 0o777, 0o700, "{p}");
        }
        assert!(!create_dirs(&deep, 0o700, None).expect("again"));
    }
}
