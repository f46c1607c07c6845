//! Removing a file, symlink or directory tree without following symlinks
//! (REMOVE_REQ, protocol version 4).
//!
//! Everything happens relative to open directory descriptors
//! (`openat`/`unlinkat`, `O_NOFOLLOW`): a symlink anywhere in the tree is
//! unlinked, never followed, and a directory swapped for a symlink while
//! the removal runs makes the open fail instead of leading outside.
//!
//! The walk is iterative and holds one directory descriptor at a time, so
//! neither a deep tree nor a small stack (the blocking pool's threads have
//! 512 KiB) can exhaust anything: it descends into the first
//! subdirectory it finds, and climbs back through `..`, checking that
//! `..` is still the directory it came from (device and inode) — a tree
//! moved during the removal stops it with an error. A directory is
//! re-read after each subdirectory is removed (entries removed meanwhile
//! are gone, so each pass sees only what is left).
//!
//! Mount points are not crossed: a directory on another device than the
//! removed path's parent stops the removal with an error (what was
//! removed before stays removed, as with `rm`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat, fstat, openat, statat, unlinkat,
};
use rustix::io::Errno;

/// How a directory of the tree is opened: never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn mount_point() -> io::Error {
    io::Error::other(
        "a directory in the tree is a mount point (another file system), which is not removed",
    )
}

fn moved() -> io::Error {
    io::Error::other("the tree was moved while it was being removed")
}

fn id(st: &Stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

/// Removes `path`: unlinks a file or symlink, removes a directory with
/// everything in it. `path` must name an entry of its own (callers refuse
/// `/`, `.` and `..`).
pub fn remove(path: &Path) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let pfd = openat(
        CWD,
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        if st.st_dev != fstat(&pfd)?.st_dev {
            return Err(mount_point());
        }
        let top = openat(&pfd, name, DIR_FLAGS, Mode::empty())?;
        if id(&fstat(&top)?) != id(&st) {
            return Err(moved());
        }
        empty_tree(top, st.st_dev)?;
        unlinkat(&pfd, name, AtFlags::REMOVEDIR)?;
    } else {
        unlinkat(&pfd, name, AtFlags::empty())?;
    }
    // The removal is durable once the parent's entry is.
    match rustix::fs::fsync(&pfd) {
        Err(Errno::INVAL) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Empties the directory `top` (on device `dev`), leaving it in place.
fn empty_tree(top: OwnedFd, dev: u64) -> io::Result<()> {
    let mut cur = top;
    // For each level below `top`: the directory's name in its parent and
    // the parent's identity, to climb back through `..` safely.
    let mut up: Vec<(CString, (u64, u64))> = Vec::new();
    loop {
        if let Some(sub) = clear_files(&cur)? {
            let child = match openat(&cur, sub.as_c_str(), DIR_FLAGS, Mode::empty()) {
                // Removed or replaced meanwhile: the next pass sees it.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                other => other?,
            };
            if fstat(&child)?.st_dev != dev {
                return Err(mount_point());
            }
            up.push((sub, id(&fstat(&cur)?)));
            cur = child;
            continue;
        }
        let Some((name, parent_id)) = up.pop() else {
            return Ok(());
        };
        let parent = openat(&cur, c"..", DIR_FLAGS, Mode::empty())?;
        if id(&fstat(&parent)?) != parent_id {
            return Err(moved());
        }
        drop(cur);
        match unlinkat(&parent, name.as_c_str(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        cur = parent;
    }
}

/// Unlinks every entry of `dir` that is not a directory; returns the name
/// of one subdirectory, if there is any.
fn clear_files(dir: &OwnedFd) -> io::Result<Option<CString>> {
    let mut entries = Dir::read_from(dir)?;
    let mut sub = None;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if is_dir(dir, name, entry.file_type())? {
            if sub.is_none() {
                sub = Some(name.to_owned());
            }
            continue;
        }
        match unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            // Became a directory meanwhile: the next pass descends.
            Err(Errno::ISDIR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sub)
}

/// Whether entry `name` of `dir` is a directory (lstat when readdir did
/// not say).
fn is_dir(dir: &OwnedFd, name: &CStr, t: FileType) -> io::Result<bool> {
    if t != FileType::Unknown {
        return Ok(t == FileType::Directory);
    }
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(FileType::from_raw_mode(st.st_mode) == FileType::Directory),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn removes_a_tree_without_following_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        let outside = d.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        fs::write(outside.join("keep"), "x").expect("write");
        let t = d.path().join("t");
        fs::create_dir_all(t.join("a/b/c")).expect("mkdir");
        fs::write(t.join("a/b/c/f"), "x").expect("write");
        fs::write(t.join("a/g"), "x").expect("write");
        symlink(&outside, t.join("a/b/link")).expect("link");
        symlink(&outside, t.join("toplink")).expect("link");
        remove(&t).expect("remove");
        assert!(!t.exists());
        assert!(outside.join("keep").exists(), "symlink target untouched");
    }

    #[test]
    fn a_deep_tree_needs_no_deep_stack() {
        let d = tempfile::tempdir().expect("tempdir");
        let top = d.path().join("deep");
        fs::create_dir(&top).expect("mkdir");
        // Deeper than any fd limit or 512 KiB stack would allow if each
        // level held a descriptor or a frame; built relative to an open
        // directory because the full path exceeds PATH_MAX.
        let mut cur = openat(CWD, &top, DIR_FLAGS, Mode::empty()).expect("open");
        for _ in 0..3000 {
            rustix::fs::mkdirat(&cur, c"d", Mode::from(0o755)).expect("mkdirat");
            cur = openat(&cur, c"d", DIR_FLAGS, Mode::empty()).expect("open");
        }
        let big = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || remove(&top))
            .expect("thread");
        big.join().expect("join").expect("remove");
    }

    #[test]
    fn files_and_symlinks_are_unlinked_and_missing_is_not_found() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("f");
        fs::write(&f, "x").expect("write");
        remove(&f).expect("file");
        symlink("/", d.path().join("root")).expect("link");
        remove(&d.path().join("root")).expect("symlink to /");
        let e = remove(&d.path().join("nope")).expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = remove(&d.path().join("nope/x")).expect_err("missing parent");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
