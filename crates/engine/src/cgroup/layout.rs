//! Where VMM groups go: the daemon's own group in each cgroup v1
//! hierarchy (`cpu`, `memory`) or beside it under cgroup v2, found once
//! per process from `/proc/self/cgroup` and `/proc/self/mountinfo`; and
//! the sweep of leftover empty groups (see the parent module's docs).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{CgroupError, LEFTOVER_AGE, PREFIX, io_err};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which kind of directory a parent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V1Cpu,
    V1Memory,
    V2,
}

/// The parent dirs VMM groups are made in.
#[derive(Debug)]
pub(super) struct Layout {
    pub(super) parents: Vec<(Version, PathBuf)>,
}

/// The layout, found once per process.
pub(super) fn layout() -> Result<&'static Layout, CgroupError> {
    static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();
    if std::env::var("BHATTI_VMM_CGROUPS").is_ok_and(|v| v == "0") {
        return Err(CgroupError::Disabled);
    }
    // The error is kept as text: `io::Error` is not `Clone`, and the
    // caller only logs it.
    match LAYOUT.get_or_init(|| find_layout().map_err(|e| error_chain(&e))) {
        Ok(l) => Ok(l),
        Err(text) => Err(CgroupError::Io {
            op: "set up",
            path: PathBuf::from(CGROUP_ROOT),
            source: io::Error::other(text.clone()),
        }),
    }
}

fn error_chain(e: &CgroupError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn find_layout() -> Result<Layout, CgroupError> {
    let own = fs::read_to_string("/proc/self/cgroup")
        .map_err(io_err("read", Path::new("/proc/self/cgroup")))?;
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        let path = own_path(&own, "").ok_or(CgroupError::NotMounted)?;
        let base = Path::new(path).parent().unwrap_or(Path::new("/"));
        let base = root.join(base.strip_prefix("/").unwrap_or(base));
        enable_controllers(&base)?;
        sweep(&base);
        return Ok(Layout {
            parents: vec![(Version::V2, base)],
        });
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
    let mut parents = Vec::new();
    for (version, controller) in [(Version::V1Cpu, "cpu"), (Version::V1Memory, "memory")] {
        let (mount, mount_root) =
            v1_mount(&mountinfo, controller).ok_or(CgroupError::NoController(controller))?;
        let path = own_path(&own, controller).ok_or(CgroupError::NoController(controller))?;
        let rel = Path::new(path)
            .strip_prefix(&mount_root)
            .unwrap_or(Path::new(""));
        let parent = mount.join(rel);
        sweep(&parent);
        parents.push((version, parent));
    }
    Ok(Layout { parents })
}

/// Removes the empty VMM groups in `parent` older than [`LEFTOVER_AGE`]
/// (`rmdir` fails on a group that has a process).
pub(super) fn sweep(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= LEFTOVER_AGE));
        if old
            && e.file_name().to_string_lossy().starts_with(PREFIX)
            && fs::remove_dir(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, parent = %parent.display(), "removed leftover VMM cgroups");
    }
}

/// Enables `cpu` and `memory` for the children of the v2 group `dir`.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let have = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    for c in ["cpu", "memory"] {
        if !have.split_whitespace().any(|h| h == c) {
            return Err(CgroupError::NoController(c));
        }
    }
    let path = dir.join("cgroup.subtree_control");
    fs::write(&path, "+cpu +memory").map_err(io_err("write", &path))
}

/// This process's group path in the hierarchy holding `controller` (`""`:
/// the v2 line `0::/path`).
pub(super) fn own_path<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            list.is_empty()
        } else {
            list.split(',').any(|c| c == controller)
        };
        hit.then_some(path)
    })
}

/// The mount point and mount root of the v1 hierarchy holding `controller`.
pub(super) fn v1_mount(mountinfo: &str, controller: &str) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let mut post = post.split_whitespace();
        let (fstype, _source, opts) = (post.next()?, post.next()?, post.next()?);
        if fstype != "cgroup" || !opts.split(',').any(|o| o == controller) {
            return None;
        }
        let mut pre = pre.split_whitespace();
        let root = pre.nth(3)?;
        let mount = pre.next()?;
        Some((PathBuf::from(mount), PathBuf::from(root)))
    })
}
