//! One tar stream applied to the root, entry by entry.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use super::error::ApplyError;
use super::fs::{self, Root};
use super::meta::{Meta, MetaError};
use super::path::{PathError, RelPath};
use super::stream::{Gap, Guarded};
use super::{Budget, UnpackStats};

const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT: &[u8] = b".wh.";
const META_PREFIX: &[u8] = b".wh..wh.";

/// Memory a layer's bookkeeping of names may take (paths written,
/// directory times): a hostile layer of long names could take gigabytes.
const MAX_NAME_BYTES: u64 = 256 << 20;

/// What each name recorded costs besides its bytes.
const NAME_OVERHEAD: u64 = 64;

/// What a name means besides being a path.
enum Special {
    None,
    /// aufs bookkeeping (`.wh..wh.plnk`, …): ignored.
    Aufs,
    /// `DIR/.wh..wh..opq`.
    Opaque(RelPath),
    /// `DIR/.wh.NAME`.
    Whiteout(RelPath, Vec<u8>),
}

/// Applies the entries of one layer.
pub(crate) struct Applier<'r> {
    pub(super) root: &'r Root,
    /// Owners are set only when we are root.
    pub(super) chown: bool,
    /// Reset as entry data arrives (see `stream::Gap`).
    gap: Rc<Gap>,
    /// Bytes held by `written`, `dir_times` and `prior`, bounded by
    /// [`MAX_NAME_BYTES`].
    pub(super) name_bytes: u64,
    /// The copy buffer, reused for every file.
    buf: Vec<u8>,
    /// Every path this layer wrote and their ancestors: a whiteout or an
    /// opaque marker of this layer leaves them alone.
    pub(super) written: HashSet<Vec<u8>>,
    /// Directory times, set again once the layer is done (writing into a
    /// directory changes its mtime).
    dir_times: Vec<(RelPath, Timestamps)>,
    /// The times directories had before this layer changed them: put back
    /// once the layer is done, unless the layer has an entry for them.
    pub(super) prior: HashMap<Vec<u8>, Timestamps>,
    pub(crate) stats: UnpackStats,
}

/// Applies the tar stream `reader` to `root`.
pub(crate) fn apply<R: Read>(
    reader: R,
    root: &Root,
    budget: &mut Budget,
) -> Result<UnpackStats, ApplyError> {
    let gap = Rc::new(Gap::new());
    let mut archive = tar::Archive::new(Guarded {
        inner: reader,
        gap: gap.clone(),
    });
    let mut applier = Applier {
        root,
        chown: rustix::process::geteuid().is_root(),
        gap: gap.clone(),
        written: HashSet::new(),
        name_bytes: 0,
        buf: vec![0; 128 << 10],
        dir_times: Vec::new(),
        prior: HashMap::new(),
        stats: UnpackStats::default(),
    };
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        gap.reset();
        applier.entry(&mut entry, budget)?;
    }
    applier.finish()?;
    // Read to the end: a compressed stream checks its trailer (CRC, size)
    // only there, and a cut one fails only there.
    gap.lift();
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(corrupt)?;
    Ok(applier.stats)
}

pub(super) fn corrupt(source: io::Error) -> ApplyError {
    ApplyError::Corrupt { source }
}

/// An entry's name as shown in errors.
fn shown(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    if s.chars().count() > 200 {
        let cut: String = s.chars().take(200).collect();
        format!("{cut}…")
    } else {
        s.into_owned()
    }
}

/// A failed syscall: the archive's fault when the errno says the tree it
/// describes cannot exist, ours otherwise.
pub(super) fn fail<'a>(entry: &'a str, op: &'static str) -> impl Fn(Errno) -> ApplyError + 'a {
    move |errno| match errno {
        Errno::NOTDIR | Errno::LOOP | Errno::NAMETOOLONG | Errno::MLINK => ApplyError::Invalid {
            entry: entry.to_owned(),
            problem: format!("cannot {op}: {}", io::Error::from(errno)),
        },
        _ => ApplyError::Io {
            entry: entry.to_owned(),
            op,
            source: errno.into(),
        },
    }
}

pub(super) fn meta_fail(entry: &str) -> impl Fn(MetaError) -> ApplyError + '_ {
    move |e| {
        if e.archive {
            invalid(
                entry,
                format!("cannot {} it: {}", e.op, io::Error::from(e.errno)),
            )
        } else {
            fail(entry, e.op)(e.errno)
        }
    }
}

pub(super) fn invalid(entry: &str, problem: impl Into<String>) -> ApplyError {
    ApplyError::Invalid {
        entry: entry.to_owned(),
        problem: problem.into(),
    }
}

fn classify(path: &RelPath) -> Result<Special, &'static str> {
    let Some((parent, leaf)) = path.split_last() else {
        return Ok(Special::None);
    };
    if parent.components().any(|c| c.starts_with(META_PREFIX)) {
        return Ok(Special::Aufs);
    }
    if parent.components().any(|c| c.starts_with(WHITEOUT)) {
        return Err("a whiteout is used as a directory");
    }
    if leaf == OPAQUE {
        return Ok(Special::Opaque(parent));
    }
    if leaf.starts_with(META_PREFIX) {
        return Ok(Special::Aufs);
    }
    match leaf.strip_prefix(WHITEOUT) {
        None => Ok(Special::None),
        Some(b"" | b"." | b"..") => Err("a whiteout names no file"),
        Some(name) => Ok(Special::Whiteout(parent, name.to_vec())),
    }
}

impl Applier<'_> {
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        budget: &mut Budget,
    ) -> Result<(), ApplyError> {
        let raw = entry.path_bytes().into_owned();
        let name = shown(&raw);
        budget.count_entry(&name)?;
        if self.name_bytes > MAX_NAME_BYTES {
            return Err(ApplyError::Bounds {
                entry: name,
                what: format!("the layer's names take more than {MAX_NAME_BYTES} bytes"),
            });
        }
        let mut kind = entry.header().entry_type();
        // A pre-POSIX regular file ('\0') named `…/` is a directory, as
        // Go's archive/tar reads it.
        if entry.header().as_old().linkflag[0] == 0 && raw.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let path = RelPath::parse(&raw).map_err(|e| match e {
            PathError::Absolute => ApplyError::Absolute {
                entry: name.clone(),
            },
            PathError::LeavesRoot => ApplyError::LeavesRoot {
                entry: name.clone(),
            },
            PathError::Nul => invalid(&name, "the name holds a NUL byte"),
        })?;
        match classify(&path).map_err(|p| invalid(&name, p))? {
            Special::None => {}
            Special::Aufs => return Ok(()),
            Special::Opaque(dir) => return self.opaque(&dir, &name),
            Special::Whiteout(dir, leaf) => return self.whiteout(&dir, &leaf, &name),
        }
        let meta = Meta::read(entry).map_err(|p| invalid(&name, p))?;
        self.mark(&path);
        let Some((parent, leaf)) = path.split_last() else {
            return self.root_entry(kind, &meta, &name);
        };
        let dir = self.ensure_dir(&parent, &name)?;
        self.name_bytes += remember(&mut self.prior, &parent, &dir);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, &dir, leaf, &meta, budget, &name)
            }
            EntryType::Directory => self.dir(&dir, leaf, &path, &meta, &name),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.symlink(&dir, leaf, target, &meta, &name)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.hardlink(&dir, leaf, &path, target, &name)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.node(entry, kind, &dir, leaf, &meta, &name)
            }
            other => Err(invalid(&name, format!("unsupported entry type {other:?}"))),
        }
    }

    /// Record `path` and its ancestors as written by this layer.
    pub(super) fn mark(&mut self, path: &RelPath) {
        self.name_bytes += mark(&mut self.written, path);
    }

    pub(super) fn ensure_dir(&mut self, rel: &RelPath, name: &str) -> Result<OwnedFd, ApplyError> {
        let mut watch = Recorder {
            written: &mut self.written,
            prior: &mut self.prior,
            bytes: &mut self.name_bytes,
        };
        self.root
            .ensure_dir(rel, &mut watch)
            .map_err(fail(name, "make its parent directory"))
    }

    fn root_entry(&mut self, kind: EntryType, meta: &Meta, name: &str) -> Result<(), ApplyError> {
        if kind != EntryType::Directory {
            return Err(invalid(name, "the image root must be a directory"));
        }
        let fd = self
            .root
            .open_in(&RelPath::root(), OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(fail(name, "open the image root"))?;
        meta.apply_fd(&fd, self.chown, &mut self.stats.skipped)
            .map_err(meta_fail(name))?;
        self.dir_times.push((RelPath::root(), meta.times.clone()));
        self.stats.dirs += 1;
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &OwnedFd,
        leaf: &[u8],
        meta: &Meta,
        budget: &mut Budget,
        name: &str,
    ) -> Result<(), ApplyError> {
        let size = entry.size();
        budget.check(size, name)?;
        fs::remove_any(dir, leaf).map_err(fail(name, "replace what was there"))?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir, leaf, flags, Mode::from_raw_mode(0o600))
            .map_err(fail(name, "create it"))?;
        let mut file = std::fs::File::from(fd);
        let copied = copy(entry, &mut file, budget, &self.gap, &mut self.buf, name)?;
        if copied < size {
            let source =
                io::Error::new(io::ErrorKind::UnexpectedEof, format!("`{name}` ends early"));
            return Err(ApplyError::Corrupt { source });
        }
        let fd = OwnedFd::from(file);
        meta.apply_fd(&fd, self.chown, &mut self.stats.skipped)
            .map_err(meta_fail(name))?;
        self.stats.files += 1;
        self.stats.bytes += copied;
        Ok(())
    }

    fn dir(
        &mut self,
        dir: &OwnedFd,
        leaf: &[u8],
        path: &RelPath,
        meta: &Meta,
        name: &str,
    ) -> Result<(), ApplyError> {
        match fs::type_of(dir, leaf).map_err(fail(name, "look at it"))? {
            Some(FileType::Directory) => {}
            Some(_) => {
                rustix::fs::unlinkat(dir, leaf, AtFlags::empty())
                    .map_err(fail(name, "replace what was there"))?;
                mkdir(dir, leaf, name)?;
            }
            None => mkdir(dir, leaf, name)?,
        }
        let fd = fs::open_child(dir, leaf, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(fail(name, "open it"))?;
        meta.apply_fd(&fd, self.chown, &mut self.stats.skipped)
            .map_err(meta_fail(name))?;
        self.name_bytes += path.as_bytes().len() as u64 + NAME_OVERHEAD;
        self.dir_times.push((path.clone(), meta.times.clone()));
        self.stats.dirs += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: &OwnedFd,
        leaf: &[u8],
        target: Option<Vec<u8>>,
        meta: &Meta,
        name: &str,
    ) -> Result<(), ApplyError> {
        let target = target.unwrap_or_default();
        if target.is_empty() || target.contains(&0) {
            return Err(invalid(
                name,
                "a symlink with an empty or NUL-holding target",
            ));
        }
        fs::remove_any(dir, leaf).map_err(fail(name, "replace what was there"))?;
        rustix::fs::symlinkat(&target[..], dir, leaf).map_err(fail(name, "create the symlink"))?;
        meta.apply_at(dir, leaf, true, self.chown, &mut self.stats.skipped)
            .map_err(meta_fail(name))?;
        self.stats.symlinks += 1;
        Ok(())
    }

    /// Set the directory times, now that nothing more is written into them:
    /// those of the layer's directory entries, and for a directory the
    /// layer changed without an entry, the times it had before. A
    /// directory removed or replaced later in the layer is passed over.
    fn finish(&mut self) -> Result<(), ApplyError> {
        let explicit = std::mem::take(&mut self.dir_times);
        let named: HashSet<&[u8]> = explicit.iter().map(|(p, _)| p.as_bytes()).collect();
        let prior: Vec<_> = std::mem::take(&mut self.prior)
            .into_iter()
            .filter(|(p, _)| !named.contains(&p[..]))
            .filter_map(|(p, t)| RelPath::parse(&p).ok().map(|p| (p, t)))
            .collect();
        drop(named);
        for (path, times) in prior.into_iter().chain(explicit) {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
            let fd = match self.root.open_in(&path, flags) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(fail(&path.to_string(), "open it")(e)),
            };
            rustix::fs::futimens(&fd, &times).map_err(fail(&path.to_string(), "set its times"))?;
        }
        Ok(())
    }
}

fn mkdir(dir: &OwnedFd, leaf: &[u8], name: &str) -> Result<(), ApplyError> {
    rustix::fs::mkdirat(dir, leaf, Mode::from_raw_mode(0o700)).map_err(fail(name, "create it"))
}

/// Copy an entry's data into `out`, charging `budget`. Read errors are the
/// archive's (see `unpack` for telling a failing disk apart), write errors
/// ours.
fn copy<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    out: &mut std::fs::File,
    budget: &mut Budget,
    gap: &Gap,
    buf: &mut [u8],
    name: &str,
) -> Result<u64, ApplyError> {
    let mut total = 0u64;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(e)),
        };
        gap.reset();
        budget.take(n as u64, name)?;
        out.write_all(&buf[..n]).map_err(|source| ApplyError::Io {
            entry: name.to_owned(),
            op: "write it",
            source,
        })?;
        total += n as u64;
    }
}

/// Record `path` and its ancestors in `written`; the bytes that took.
fn mark(written: &mut HashSet<Vec<u8>>, path: &RelPath) -> u64 {
    if !written.insert(path.as_bytes().to_vec()) {
        return 0;
    }
    let mut bytes = path.as_bytes().len() as u64 + NAME_OVERHEAD;
    for ancestor in path.ancestors() {
        if !written.insert(ancestor.to_vec()) {
            break;
        }
        bytes += ancestor.len() as u64 + NAME_OVERHEAD;
    }
    bytes
}

/// Remember the times of the directory `rel` before this layer's first
/// change to it; the bytes that took.
pub(super) fn remember(
    prior: &mut HashMap<Vec<u8>, Timestamps>,
    rel: &RelPath,
    fd: &OwnedFd,
) -> u64 {
    if !prior.contains_key(rel.as_bytes())
        && let Ok(times) = fs::times_of(fd)
    {
        prior.insert(rel.as_bytes().to_vec(), times);
        return rel.as_bytes().len() as u64 + NAME_OVERHEAD;
    }
    0
}

/// The applier's ears while `Root::ensure_dir` makes a path.
struct Recorder<'a> {
    written: &'a mut HashSet<Vec<u8>>,
    prior: &'a mut HashMap<Vec<u8>, Timestamps>,
    bytes: &'a mut u64,
}

impl fs::Watch for Recorder<'_> {
    fn changing(&mut self, rel: &RelPath, fd: &OwnedFd) {
        *self.bytes += remember(self.prior, rel, fd);
    }

    fn made(&mut self, rel: &RelPath) {
        *self.bytes += mark(self.written, rel);
    }
}
