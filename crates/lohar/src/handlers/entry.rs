//! [`EntryInfo`] (protocol version 4) from an lstat: type, permission
//! bits and string, owner and group names, nanosecond mtime and, for a
//! symlink, where it leads. Shared by STAT2, LS2, MKDIR and MOVE.
//!
//! Owner and group names come from the guest's `passwd` and `group` under
//! [`crate::agent::Agent::etc`], read once per request ([`Names::load`]);
//! an id without an entry is shown as the number. Names that are not
//! UTF-8 are converted lossily.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bhatti_proto::ext::{EntryInfo, EntryType, permissions_string};

use crate::users;

/// uid → user name and gid → group name of one request.
#[derive(Debug, Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    /// Reads `<etc>/passwd` and `<etc>/group`; a missing or unreadable
    /// file gives numbers only. The first entry of an id wins.
    pub fn load(etc: &Path) -> Self {
        let read = |name: &str| fs::read_to_string(etc.join(name)).unwrap_or_default();
        let mut n = Self::default();
        for p in users::parse_passwd(&read("passwd")) {
            n.users.entry(p.uid).or_insert(p.name);
        }
        for g in users::parse_group(&read("group")) {
            n.groups.entry(g.gid).or_insert(g.name);
        }
        n
    }

    pub fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    pub fn group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}

/// The protocol's type of a file type.
pub fn entry_type(t: fs::FileType) -> EntryType {
    if t.is_symlink() {
        EntryType::Symlink
    } else if t.is_dir() {
        EntryType::Dir
    } else if t.is_file() {
        EntryType::File
    } else {
        // FIFOs, sockets, devices.
        EntryType::Other
    }
}

/// The entry at `fs_path` (already lstat'ed into `meta`), reported with
/// base name `name` and path `shown`.
pub fn entry_info(
    name: &str,
    shown: &str,
    fs_path: &Path,
    meta: &Metadata,
    names: &Names,
) -> EntryInfo {
    let kind = entry_type(meta.file_type());
    let (symlink_target, resolved_path, target_type) = if kind == EntryType::Symlink {
        let target = fs::read_link(fs_path)
            .ok()
            .map(|t| t.to_string_lossy().into_owned());
        let resolved = fs::canonicalize(fs_path).ok();
        let target_type = resolved
            .as_ref()
            .and_then(|r| fs::metadata(r).ok())
            .map(|m| entry_type(m.file_type()));
        let resolved = resolved.map(|r| r.to_string_lossy().into_owned());
        (target, resolved, target_type)
    } else {
        (None, None, None)
    };
    let mtime_ns = meta
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec());
    EntryInfo {
        name: name.to_owned(),
        path: shown.to_owned(),
        kind,
        size: i64::try_from(meta.len()).unwrap_or(i64::MAX),
        mode: meta.mode() & 0o7777,
        permissions: permissions_string(meta.mode()),
        uid: meta.uid(),
        gid: meta.gid(),
        owner: names.user(meta.uid()),
        group: names.group(meta.gid()),
        mtime: meta.mtime(),
        mtime_ns,
        symlink_target,
        resolved_path,
        target_type,
    }
}

/// lstat of `path` as an [`EntryInfo`] shown with the path as given.
pub fn lstat_entry(path: &str, names: &Names) -> std::io::Result<EntryInfo> {
    let meta = fs::symlink_metadata(path)?;
    let name = super::file_stat::base_name(path);
    Ok(entry_info(&name, path, Path::new(path), &meta, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fall_back_to_numbers() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::write(
            d.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nlohar:x:1000:1000::/home/lohar:/bin/sh\n",
        )
        .expect("passwd");
        fs::write(d.path().join("group"), "root:x:0:\nstaff:x:50:lohar\n").expect("group");
        let n = Names::load(d.path());
        assert_eq!(
            (n.user(0), n.user(1000), n.user(7)),
            ("root".into(), "lohar".into(), "7".into())
        );
        assert_eq!(
            (n.group(50), n.group(1000)),
            ("staff".into(), "1000".into())
        );
        let none = Names::load(&d.path().join("missing"));
        assert_eq!(none.user(0), "0");
    }

    #[test]
    fn symlinks_say_where_they_lead() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir(d.path().join("dir")).expect("mkdir");
        std::os::unix::fs::symlink("dir", d.path().join("l")).expect("link");
        std::os::unix::fs::symlink("gone", d.path().join("dangling")).expect("link");
        let n = Names::default();
        let l = d.path().join("l");
        let e = lstat_entry(l.to_str().expect("utf8"), &n).expect("stat");
        assert_eq!(e.kind, EntryType::Symlink);
        assert_eq!(e.symlink_target.as_deref(), Some("dir"));
        assert_eq!(e.target_type, Some(EntryType::Dir));
        let real = fs::canonicalize(d.path().join("dir")).expect("canon");
        assert_eq!(e.resolved_path.as_deref(), real.to_str());
        assert!(e.permissions.starts_with('l'));
        let dl = d.path().join("dangling");
        let e = lstat_entry(dl.to_str().expect("utf8"), &n).expect("stat");
        assert_eq!(e.symlink_target.as_deref(), Some("gone"));
        assert_eq!((e.resolved_path, e.target_type), (None, None));
    }
}
