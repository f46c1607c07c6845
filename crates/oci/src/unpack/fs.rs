//! The image root as a directory fd, and every filesystem operation
//! confined to it.
//!
//! A directory is found with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` from the root fd: the kernel resolves `..` and
//! symlinks (absolute ones too) as if the root were `/`, so whatever an
//! earlier entry planted, the fd it returns is inside the root. The last
//! component of an entry is then handled with `*at()` calls on that
//! directory fd that never follow it (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`,
//! `unlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`; the mode of a device
//! node or FIFO through `/proc/self/fd/N` of an `O_PATH` fd checked to be
//! no symlink). Only this process writes in the root while it is being
//! unpacked (the caller gives a fresh directory in a 0700 staging
//! directory), which makes the name-based calls on a node just created
//! (`lsetxattr` through `/proc/self/fd/N/name`, which does not follow it
//! either) land on that node; nothing here relies on it to stay inside
//! the root.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::path::RelPath;

/// Symlinks followed while creating one missing directory, as the kernel's
/// `MAXSYMLINKS`.
const MAX_HOPS: u32 = 40;

/// Directory nesting `remove_all` descends into (each level holds an fd).
const MAX_DEPTH: u32 = 256;

/// Who hears of directories changing while a path is made.
pub(crate) trait Watch {
    /// The directory `rel` (open as `fd`) is about to change.
    fn changing(&mut self, rel: &RelPath, fd: &OwnedFd);
    /// The directory `rel` was made.
    fn made(&mut self, rel: &RelPath);
}

/// The image root.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    /// The root's canonical host path, to map `/proc/self/fd` links back.
    real: PathBuf,
}

impl Root {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let real = std::fs::canonicalize(path)?;
        let fd = rustix::fs::open(
            &real,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let root = Self { fd, real };
        // Everything rests on openat2 (Linux 5.6): fail here, clearly.
        root.open_dir(&RelPath::root()).map_err(|e| {
            io::Error::new(e.kind(), format!("openat2(RESOLVE_IN_ROOT) is needed: {e}"))
        })?;
        Ok(root)
    }

    /// Make the root itself `0755`, owned by root when we are root.
    pub(crate) fn reset_metadata(&self) -> io::Result<()> {
        let fd = self.open_in(&RelPath::root(), OFlags::RDONLY | OFlags::DIRECTORY)?;
        if rustix::process::geteuid().is_root() {
            rustix::fs::fchown(&fd, Some(Uid::ROOT), Some(Gid::ROOT))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
        Ok(())
    }

    /// The directory `rel`, resolved inside the root (an `O_PATH` fd).
    pub(crate) fn open_dir(&self, rel: &RelPath) -> Result<OwnedFd, Errno> {
        self.open_in(rel, OFlags::PATH | OFlags::DIRECTORY)
    }

    /// `rel` opened with `flags`, resolved inside the root; a final symlink
    /// is followed (inside the root) unless `flags` has `NOFOLLOW`.
    pub(crate) fn open_in(&self, rel: &RelPath, flags: OFlags) -> Result<OwnedFd, Errno> {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let open = || {
            rustix::fs::openat2(
                &self.fd,
                rel.as_arg(),
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            )
        };
        // EAGAIN: a rename raced a `..` in the lookup; it is safe to retry.
        let mut res = open();
        for _ in 0..64 {
            if !matches!(res, Err(Errno::AGAIN)) {
                break;
            }
            res = open();
        }
        res
    }

    /// The directory `rel`, created (0755, like `mkdir -p`) where missing.
    /// A missing component reached through a dangling symlink is created
    /// where the symlink points, inside the root. `watch` hears of every
    /// directory about to get a new child and of every directory made.
    pub(crate) fn ensure_dir(
        &self,
        rel: &RelPath,
        watch: &mut dyn Watch,
    ) -> Result<OwnedFd, Errno> {
        let mut hops = 0;
        self.ensure_dir_hops(rel, &mut hops, watch)
    }

    fn ensure_dir_hops(
        &self,
        rel: &RelPath,
        hops: &mut u32,
        watch: &mut dyn Watch,
    ) -> Result<OwnedFd, Errno> {
        match self.open_dir(rel) {
            Err(Errno::NOENT) => {}
            other => return other,
        }
        let Some((parent, name)) = rel.split_last() else {
            return Err(Errno::NOENT);
        };
        let pfd = self.ensure_dir_hops(&parent, hops, watch)?;
        watch.changing(&parent, &pfd);
        match rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => {
                watch.made(rel);
                return open_child(&pfd, name, OFlags::PATH | OFlags::DIRECTORY);
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
        // Something is there yet did not resolve: a dangling symlink.
        let st = rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => return open_child(&pfd, name, OFlags::PATH | OFlags::DIRECTORY),
            FileType::Symlink => {}
            _ => return Err(Errno::NOTDIR),
        }
        *hops += 1;
        if *hops > MAX_HOPS {
            return Err(Errno::LOOP);
        }
        let target = rustix::fs::readlinkat(&pfd, name, Vec::new())?;
        let base = self.rel_of(pfd.as_fd())?;
        let next = base.join_clamped(target.as_bytes());
        self.ensure_dir_hops(&next, hops, watch)
    }

    /// Where an fd inside the root is, relative to the root.
    fn rel_of(&self, fd: BorrowedFd<'_>) -> Result<RelPath, Errno> {
        let link = std::fs::read_link(proc_fd(fd)).map_err(|_| Errno::IO)?;
        let rel = link.strip_prefix(&self.real).map_err(|_| Errno::XDEV)?;
        RelPath::parse(rel.as_os_str().as_bytes()).map_err(|_| Errno::XDEV)
    }
}

/// `name` in `dir`, never following a final symlink.
pub(crate) fn open_child(dir: &OwnedFd, name: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The type of `name` in `dir` (not following it), `None` when absent.
pub(crate) fn type_of(dir: &OwnedFd, name: &[u8]) -> Result<Option<FileType>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Clear the way for a new node at `name`: remove what is there (a
/// directory with everything in it). Returns whether something was there.
pub(crate) fn remove_any(dir: &OwnedFd, name: &[u8]) -> Result<bool, Errno> {
    match type_of(dir, name)? {
        None => Ok(false),
        Some(FileType::Directory) => remove_tree(dir, name, 0).map(|()| true),
        Some(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()).map(|()| true),
    }
}

/// Remove the directory `name` in `dir` and everything under it.
fn remove_tree(dir: &OwnedFd, name: &[u8], depth: u32) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    let sub = open_child(dir, name, OFlags::RDONLY | OFlags::DIRECTORY)?;
    for child in list(&sub)? {
        match type_of(&sub, &child)? {
            Some(FileType::Directory) => remove_tree(&sub, &child, depth + 1)?,
            Some(_) => rustix::fs::unlinkat(&sub, &child[..], AtFlags::empty())?,
            None => {}
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// Empty the directory `dir` (at `rel`) of everything `keep` says no to;
/// a kept directory is emptied the same way, so what stays is exactly
/// what `keep` names and their ancestors. `changing` hears of each
/// directory before it is emptied.
pub(crate) fn clear_dir(
    dir: &OwnedFd,
    rel: &RelPath,
    keep: &dyn Fn(&RelPath) -> bool,
    changing: &mut dyn FnMut(&RelPath, &OwnedFd),
    depth: u32,
) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    changing(rel, dir);
    let readable = open_child(dir, b".", OFlags::RDONLY | OFlags::DIRECTORY)?;
    for child in list(&readable)? {
        let child_rel = rel.join(&child);
        let kind = type_of(&readable, &child)?;
        if !keep(&child_rel) {
            remove_any(&readable, &child)?;
        } else if kind == Some(FileType::Directory) {
            let sub = open_child(&readable, &child, OFlags::PATH | OFlags::DIRECTORY)?;
            clear_dir(&sub, &child_rel, keep, changing, depth + 1)?;
        }
    }
    Ok(())
}

/// The names in a directory, `.` and `..` left out.
fn list(dir: &OwnedFd) -> Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    let mut it = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = it.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// The access and modification times of `fd`.
pub(crate) fn times_of(fd: &OwnedFd) -> Result<Timestamps, Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok(Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    })
}

/// `/proc/self/fd/N` for `fd`: with an `O_PATH` directory fd and a name
/// after it, a path for the calls that have no `*at()` form (`lsetxattr`).
pub(crate) fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `/proc/self/fd/N/name`.
pub(crate) fn proc_child(dir: &OwnedFd, name: &[u8]) -> PathBuf {
    proc_fd(dir.as_fd()).join(OsStr::from_bytes(name))
}
