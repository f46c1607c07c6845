//! An entry's metadata (owner, mode, times, xattrs) read from its tar
//! header and PAX records, and put on the node made for it.
//!
//! Order matters: owner first (a `chown` clears setuid, setgid and
//! `security.capability`), then the mode, then the xattrs, then the times.
//! xattrs come from PAX `SCHILY.xattr.NAME` records (what Docker, BuildKit
//! and GNU tar write); `trusted.overlay.*` is left out (overlayfs's own
//! bookkeeping, meaningless in an image and harmful if the image is later
//! an overlay layer), and so is `security.selinux` (a label of the host
//! that built the image, which an SELinux host here may refuse; Docker
//! does not put it in layers). An xattr the filesystem does not support
//! (`EOPNOTSUPP`) or refuses (`EPERM`, e.g. `user.*` on a symlink) is
//! skipped and counted, as containerd does; one the kernel finds malformed
//! (`EINVAL`, `ERANGE`, `E2BIG`, such as a bad capability blob) is the
//! archive's error.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use rustix::thread::{Nsecs, Secs, Timespec};

use super::fs;

/// What is put on a node after it is made.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) times: Timestamps,
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How a piece of metadata failed.
#[derive(Debug)]
pub(crate) struct MetaError {
    pub(crate) op: &'static str,
    pub(crate) errno: Errno,
    /// The archive's fault (a malformed value), not ours.
    pub(crate) archive: bool,
}

impl Meta {
    /// The metadata of `entry` (PAX `mtime`, `atime`, `uid`, `gid`
    /// override the header, the tar crate applies the last two).
    pub(crate) fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Self, String> {
        let header = entry.header();
        let uid = header.uid().map_err(|e| format!("bad uid: {e}"))?;
        let gid = header.gid().map_err(|e| format!("bad gid: {e}"))?;
        let uid = u32::try_from(uid).map_err(|_| format!("uid {uid} out of range"))?;
        let gid = u32::try_from(gid).map_err(|_| format!("gid {gid} out of range"))?;
        let mode = header.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777;
        let mtime = header.mtime().map_err(|e| format!("bad mtime: {e}"))?;
        let mut mtime = Timespec {
            tv_sec: Secs::try_from(mtime).unwrap_or(Secs::MAX),
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| format!("bad PAX header: {e}"))?
        {
            for ext in pax {
                let ext = ext.map_err(|e| format!("bad PAX record: {e}"))?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if name.contains(&0) || name.is_empty() {
                        return Err("an xattr name is empty or holds a NUL byte".into());
                    }
                    if !name.starts_with(b"trusted.overlay.") && name != b"security.selinux" {
                        xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                    }
                } else if key.starts_with(b"GNU.sparse.") {
                    // GNU tar's PAX sparse formats: the data holds a map the
                    // tar crate does not read; refuse rather than write it.
                    return Err("a PAX sparse file (GNU tar --sparse) is not supported".into());
                } else if key == b"mtime" {
                    mtime = pax_time(ext.value_bytes()).ok_or("bad PAX mtime")?;
                } else if key == b"atime" {
                    atime = Some(pax_time(ext.value_bytes()).ok_or("bad PAX atime")?);
                }
            }
        }
        let times = Timestamps {
            last_access: atime.unwrap_or(mtime),
            last_modification: mtime,
        };
        Ok(Self {
            uid,
            gid,
            mode,
            times,
            xattrs,
        })
    }

    /// Owner, mode, xattrs and times on an open file or directory.
    /// `skipped` counts what could not be set and was let go.
    pub(crate) fn apply_fd(
        &self,
        fd: &OwnedFd,
        chown: bool,
        skipped: &mut u64,
    ) -> Result<(), MetaError> {
        if chown {
            rustix::fs::fchown(fd, Some(uid(self.uid)), Some(gid(self.gid)))
                .map_err(host("chown"))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode)).map_err(host("chmod"))?;
        for (name, value) in &self.xattrs {
            let res = rustix::fs::fsetxattr(fd, &name[..], value, XattrFlags::empty());
            xattr_result(res, skipped)?;
        }
        rustix::fs::futimens(fd, &self.times).map_err(host("set the times of"))
    }

    /// The same on `name` in `dir` without following it (a symlink, a
    /// device node or a FIFO: nothing that may be opened). A symlink's mode
    /// means nothing on Linux and is left alone.
    pub(crate) fn apply_at(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        symlink: bool,
        chown: bool,
        skipped: &mut u64,
    ) -> Result<(), MetaError> {
        let nofollow = AtFlags::SYMLINK_NOFOLLOW;
        if chown {
            rustix::fs::chownat(
                dir,
                name,
                Some(uid(self.uid)),
                Some(gid(self.gid)),
                nofollow,
            )
            .map_err(host("chown"))?;
        }
        if !symlink {
            // No chmod that would not follow a symlink is everywhere
            // (fchmodat2 is Linux 6.6), and a device node must not be
            // opened: chmod the O_PATH fd's inode through /proc, after
            // checking it is no symlink.
            let fd = fs::open_child(dir, name, OFlags::PATH).map_err(host("open"))?;
            let st = rustix::fs::fstat(&fd).map_err(host("stat"))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                return Err(MetaError {
                    op: "chmod",
                    errno: Errno::LOOP,
                    archive: false,
                });
            }
            rustix::fs::chmod(fs::proc_fd(fd.as_fd()), Mode::from_raw_mode(self.mode))
                .map_err(host("chmod"))?;
        }
        if !self.xattrs.is_empty() {
            let path = fs::proc_child(dir, name);
            for (xname, value) in &self.xattrs {
                let res = rustix::fs::lsetxattr(&path, &xname[..], value, XattrFlags::empty());
                xattr_result(res, skipped)?;
            }
        }
        rustix::fs::utimensat(dir, name, &self.times, nofollow).map_err(host("set the times of"))
    }
}

fn uid(raw: u32) -> Uid {
    Uid::from_raw(raw)
}

fn gid(raw: u32) -> Gid {
    Gid::from_raw(raw)
}

fn host(op: &'static str) -> impl Fn(Errno) -> MetaError {
    move |errno| MetaError {
        op,
        errno,
        archive: false,
    }
}

fn xattr_result(res: Result<(), Errno>, skipped: &mut u64) -> Result<(), MetaError> {
    match res {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP | Errno::PERM) => {
            *skipped += 1;
            Ok(())
        }
        Err(errno @ (Errno::INVAL | Errno::RANGE | Errno::TOOBIG)) => Err(MetaError {
            op: "set an xattr on",
            errno,
            archive: true,
        }),
        Err(errno) => Err(MetaError {
            op: "set an xattr on",
            errno,
            archive: false,
        }),
    }
}

/// A PAX time: decimal seconds, optionally negative, with an optional
/// fraction.
fn pax_time(raw: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(raw).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    let (secs, nanos) = match (neg, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    };
    Some(Timespec {
        tv_sec: secs,
        tv_nsec: Nsecs::try_from(nanos).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::pax_time;

    #[test]
    fn pax_times_parse() {
        let t = |s: &str| pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("12x"), None);
    }
}
