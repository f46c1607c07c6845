//! WATCH_REQ (protocol version 4): inotify on a directory (and, when
//! `recursive`, every directory below it), streamed as WATCH_EVENT frames
//! until the host closes the connection.
//!
//! Setup runs on the blocking pool: one inotify instance per watch
//! (rustix's inotify wrappers, no extra crate), a watch on the directory
//! (reached through a symlink if it is one) and, recursively, on every
//! real directory below it (symlinks are not followed), at most
//! [`MAX_DIRS`]. WATCH_RESP is sent once every watch is set. Then this
//! handler's loop waits for the inotify descriptor (tokio `AsyncFd`, on a duplicate of it) or
//! for the host's side to close, whichever comes first.
//!
//! Events (fsnotify's mapping, which E2B's envd uses): IN_CREATE and
//! IN_MOVED_TO → `create`, IN_MODIFY → `write`, IN_DELETE → `remove`,
//! IN_MOVED_FROM → `rename`, IN_ATTRIB → `chmod`, IN_Q_OVERFLOW →
//! `overflow` (events were lost). Names are relative to the watched
//! directory; a `chmod` of the watched directory itself has the empty
//! name. In a recursive watch a directory created or moved in gets
//! watches for its whole subtree (what was created in it before that is
//! not reported), and one moved out loses its watches. When the watched
//! directory itself is removed or moved away, the agent sends EXIT 0 and
//! closes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bhatti_proto::ext::{WatchEvent, WatchEventType, WatchRequest, WatchStarted};
use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{MessageError, decode_json};
use bhatti_proto::text::short;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};
use crate::handlers::{ErrorCode, IoText, Reply};

/// Most directories one watch covers.
pub const MAX_DIRS: usize = 16_384;

/// Bytes of events read at once (one event needs at most 16 + 256).
const EVENT_BUF: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("watch: empty path")]
    EmptyPath,
    #[error(
        "watch {path}: too many directories (more than {MAX_DIRS}, or the guest's inotify limit)"
    )]
    TooMany { path: String },
    #[error("watch {path}: {msg}")]
    Io { path: String, msg: IoText },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::EmptyPath => Some(ErrorCode::InvalidRequest),
            Error::TooMany { .. } => Some(ErrorCode::LimitReached),
            Error::Io { msg, .. } => Some(msg.code),
            Error::Conn(e) => e.code(),
        }
    }
}

/// What a watch on a directory reports.
const MASK: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::EXCL_UNLINK)
    .union(WatchFlags::ONLYDIR);

/// One watch's inotify instance and what each watch descriptor covers.
struct Watcher {
    fd: OwnedFd,
    root: PathBuf,
    /// Watch descriptor → directory relative to the root.
    dirs: HashMap<i32, PathBuf>,
    root_wd: i32,
    recursive: bool,
}

/// An event read from the kernel, owned.
struct Raw {
    wd: i32,
    mask: ReadFlags,
    name: Option<OsString>,
}

/// What the loop does after an event.
enum Step {
    Send(WatchEvent),
    AddTree(PathBuf),
    End,
}

fn limit_or(path: &str, e: &io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EMFILE) => Error::TooMany { path: short(path) },
        _ => Error::Io {
            path: short(path),
            msg: IoText::new(e),
        },
    }
}

pub async fn handle(_agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: WatchRequest = decode_json("WatchRequest", payload)?;
    if req.path.is_empty() {
        return Err(Error::EmptyPath);
    }
    let shown = req.path.clone();
    let w = tokio::task::spawn_blocking(move || Watcher::start(&req.path, req.recursive))
        .await
        .map_err(|e| Error::Io {
            path: short(&shown),
            msg: IoText::other(e.to_string()),
        })??;
    let started = WatchStarted {
        path: shown.clone(),
    };
    let (mut frames, writer) = conn.into_frames();
    writer.json(FrameType::WATCH_RESP, &started).await?;
    // The reactor gets a duplicate: the watcher keeps its descriptor to
    // add and remove watches (both name the same inotify instance).
    let afd = rustix::io::fcntl_dupfd_cloexec(&w.fd, 0)
        .map_err(io::Error::from)
        .and_then(crate::conn::register_fd)
        .map_err(|e| limit_or(&shown, &e))?;
    let mut w = Some(w);
    let mut buf = vec![MaybeUninit::<u8>::uninit(); EVENT_BUF];
    loop {
        let raw = tokio::select! {
            f = frames.recv() => match f {
                // The host closed: the watch ends.
                None => return Ok(()),
                Some(_) => continue,
            },
            ready = afd.readable() => {
                let mut guard = ready.map_err(|e| limit_or(&shown, &e))?;
                let mut raw = Vec::new();
                if let Ok(Err(e)) = guard.try_io(|fd| read_events(fd.get_ref(), &mut buf, &mut raw)) {
                    return Err(limit_or(&shown, &e));
                }
                raw
            }
        };
        let Some(mut watcher) = w.take() else {
            return Ok(());
        };
        let steps: Vec<Step> = raw.iter().flat_map(|r| watcher.translate(r)).collect();
        for step in steps {
            match step {
                Step::Send(ev) => writer.json(FrameType::WATCH_EVENT, &ev).await?,
                Step::End => {
                    writer.exit(0).await?;
                    return Ok(());
                }
                Step::AddTree(rel) => watcher = add_tree_blocking(watcher, rel).await,
            }
        }
        w = Some(watcher);
    }
}

/// Adds watches below `rel` on the blocking pool; a failure (a limit, a
/// directory gone meanwhile) is logged, and the watch goes on.
async fn add_tree_blocking(mut w: Watcher, rel: PathBuf) -> Watcher {
    let joined = tokio::task::spawn_blocking(move || {
        if let Err(e) = w.add_tree(&rel) {
            crate::debug!("watch: {}: {e}", rel.display());
        }
        w
    })
    .await;
    match joined {
        Ok(w) => w,
        // Cannot happen short of a panic in the walk; the watch ends.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Reads every queued event into `out`; ends with `WouldBlock` when the
/// queue is empty (which clears the descriptor's readiness).
fn read_events(fd: &OwnedFd, buf: &mut [MaybeUninit<u8>], out: &mut Vec<Raw>) -> io::Result<()> {
    let mut r = inotify::Reader::new(fd.as_fd(), buf);
    loop {
        let ev = r.next()?;
        out.push(Raw {
            wd: ev.wd(),
            mask: ev.events(),
            name: ev
                .file_name()
                .map(|n| OsString::from_vec(n.to_bytes().to_vec())),
        });
    }
}

impl Watcher {
    /// The inotify instance with its watches in place.
    fn start(path: &str, recursive: bool) -> Result<Self, Error> {
        let meta = fs::metadata(path).map_err(|e| limit_or(path, &e))?;
        if !meta.is_dir() {
            return Err(limit_or(path, &io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| limit_or(path, &e.into()))?;
        let root_wd = inotify::add_watch(&fd, path, MASK).map_err(|e| limit_or(path, &e.into()))?;
        let mut w = Self {
            fd,
            root: PathBuf::from(path),
            dirs: HashMap::from([(root_wd, PathBuf::new())]),
            root_wd,
            recursive,
        };
        if recursive {
            w.add_tree(Path::new("")).map_err(|e| limit_or(path, &e))?;
        }
        Ok(w)
    }

    /// Watches every real directory below the root's `rel` (and `rel`
    /// itself unless it is the root).
    fn add_tree(&mut self, rel: &Path) -> io::Result<()> {
        let mut todo = vec![rel.to_path_buf()];
        while let Some(rel) = todo.pop() {
            let dir = self.root.join(&rel);
            if !rel.as_os_str().is_empty() {
                if self.dirs.len() >= MAX_DIRS {
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                match inotify::add_watch(&self.fd, &dir, MASK | WatchFlags::DONT_FOLLOW) {
                    Ok(wd) => {
                        self.dirs.insert(wd, rel.clone());
                    }
                    // Gone or replaced meanwhile.
                    Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(rel.join(e.file_name()));
                }
            }
        }
        Ok(())
    }

    /// Stops watching `rel` and everything below it (moved out).
    fn remove_tree(&mut self, rel: &Path) {
        let gone: Vec<i32> = self
            .dirs
            .iter()
            .filter(|(wd, p)| **wd != self.root_wd && p.starts_with(rel))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            let _ = inotify::remove_watch(&self.fd, wd);
            self.dirs.remove(&wd);
        }
    }

    /// The steps one kernel event leads to.
    fn translate(&mut self, r: &Raw) -> Vec<Step> {
        let send = |kind, name: &Path, is_dir| {
            Step::Send(WatchEvent {
                kind,
                name: name.to_string_lossy().into_owned(),
                is_dir,
            })
        };
        if r.mask.contains(ReadFlags::QUEUE_OVERFLOW) {
            return vec![send(WatchEventType::Overflow, Path::new(""), false)];
        }
        let Some(base) = self.dirs.get(&r.wd).cloned() else {
            // A watch removed meanwhile.
            return Vec::new();
        };
        let is_root = r.wd == self.root_wd;
        if r.mask
            .intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF)
        {
            if r.mask.contains(ReadFlags::IGNORED) {
                self.dirs.remove(&r.wd);
            }
            // A subdirectory's own end was reported by its parent's watch.
            return if is_root { vec![Step::End] } else { Vec::new() };
        }
        let Some(name) = &r.name else {
            // Only the root's own attribute changes are reported unnamed
            // (a subdirectory's are reported by its parent, named).
            return if is_root && r.mask.contains(ReadFlags::ATTRIB) {
                vec![send(WatchEventType::Chmod, Path::new(""), true)]
            } else {
                Vec::new()
            };
        };
        let rel = base.join(name);
        let is_dir = r.mask.contains(ReadFlags::ISDIR);
        let grows = self.recursive && is_dir;
        let m = r.mask;
        if m.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
            let mut steps = vec![send(WatchEventType::Create, &rel, is_dir)];
            if grows {
                steps.push(Step::AddTree(rel));
            }
            steps
        } else if m.contains(ReadFlags::MOVED_FROM) {
            if grows {
                self.remove_tree(&rel);
            }
            vec![send(WatchEventType::Rename, &rel, is_dir)]
        } else if m.contains(ReadFlags::DELETE) {
            vec![send(WatchEventType::Remove, &rel, is_dir)]
        } else if m.contains(ReadFlags::MODIFY) {
            vec![send(WatchEventType::Write, &rel, is_dir)]
        } else if m.contains(ReadFlags::ATTRIB) {
            vec![send(WatchEventType::Chmod, &rel, is_dir)]
        } else {
            Vec::new()
        }
    }
}
