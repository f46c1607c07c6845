//! Hard links and device nodes: the entries that make no data of their own.

use std::io::Read;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;
use tar::EntryType;

use super::apply::{Applier, fail, invalid, meta_fail};
use super::error::ApplyError;
use super::fs;
use super::meta::Meta;
use super::path::{PathError, RelPath};

impl Applier<'_> {
    /// A hard link to another path of the root. The target is checked like
    /// an entry name, resolved inside the root without following its last
    /// component, and must exist and not be a directory. The link shares
    /// the target's inode, so the entry's own metadata is not applied.
    pub(super) fn hardlink(
        &mut self,
        dir: &OwnedFd,
        leaf: &[u8],
        path: &RelPath,
        target: Option<Vec<u8>>,
        name: &str,
    ) -> Result<(), ApplyError> {
        let raw = target.unwrap_or_default();
        let bad = |problem: &'static str| ApplyError::LinkTarget {
            entry: name.to_owned(),
            target: String::from_utf8_lossy(&raw).into_owned(),
            problem,
        };
        let target = RelPath::parse(&raw).map_err(|e| match e {
            PathError::Absolute => bad("is an absolute path"),
            PathError::LeavesRoot => bad("leaves the image root"),
            PathError::Nul => bad("holds a NUL byte"),
        })?;
        if &target == path {
            return Ok(());
        }
        let Some((tparent, tleaf)) = target.split_last() else {
            return Err(bad("is the image root"));
        };
        let tdir = match self.root.open_dir(&tparent) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(bad("does not exist")),
            Err(Errno::LOOP) => return Err(bad("is behind a symlink loop")),
            Err(e) => return Err(fail(name, "find the link target")(e)),
        };
        match fs::type_of(&tdir, tleaf).map_err(fail(name, "look at the link target"))? {
            None => return Err(bad("does not exist")),
            Some(FileType::Directory) => return Err(bad("is a directory")),
            Some(_) => {}
        }
        fs::remove_any(dir, leaf).map_err(fail(name, "replace what was there"))?;
        match rustix::fs::linkat(&tdir, tleaf, dir, leaf, AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Err(bad("does not exist")),
            Err(e) => return Err(fail(name, "create the hard link")(e)),
        }
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// A character or block device or a FIFO. Without the privilege to
    /// make device nodes (not root, or no `CAP_MKNOD`), a device is skipped
    /// and counted.
    pub(super) fn node<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        kind: EntryType,
        dir: &OwnedFd,
        leaf: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), ApplyError> {
        let header = entry.header();
        let number = |n: std::io::Result<Option<u32>>| {
            n.map(Option::unwrap_or_default)
                .map_err(|e| invalid(name, format!("bad device number: {e}")))
        };
        let (file_type, dev) = match kind {
            EntryType::Char => (FileType::CharacterDevice, true),
            EntryType::Block => (FileType::BlockDevice, true),
            _ => (FileType::Fifo, false),
        };
        let rdev = if dev {
            let major = number(header.device_major())?;
            let minor = number(header.device_minor())?;
            rustix::fs::makedev(major, minor)
        } else {
            0
        };
        fs::remove_any(dir, leaf).map_err(fail(name, "replace what was there"))?;
        match rustix::fs::mknodat(dir, leaf, file_type, Mode::from_raw_mode(0o600), rdev) {
            Ok(()) => {}
            Err(Errno::PERM) if dev => {
                tracing::warn!(entry = name, "no privilege to make device nodes: skipped");
                self.stats.skipped += 1;
                return Ok(());
            }
            Err(e) => return Err(fail(name, "create the node")(e)),
        }
        meta.apply_at(dir, leaf, false, self.chown, &mut self.stats.skipped)
            .map_err(meta_fail(name))?;
        self.stats.devices += 1;
        Ok(())
    }
}
