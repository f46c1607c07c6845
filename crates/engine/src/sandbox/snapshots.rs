//! Named snapshots on disk ([`crate::snapshot`]): taking one of a sandbox
//! in any state, reading, checking, listing and deleting them.
//!
//! Take: under the sandbox's lock. Hot or warm: the driver captures the
//! VM (paused) into the snapshot's temporary dir, the root disk and
//! config drive are copied (sparse) while it is paused, then it resumes
//! (and a warm one pauses again); the pause is the capture plus the
//! copies. Cold or stopped: its saved state file and disks are copied.
//! The dir is renamed to its real name last; `snapshot.json` inside it
//! is what makes it a snapshot.
//!
//! A fork's snapshot is the same thing under `<data_dir>/forks/`, deleted
//! when the fork ends; leftovers of either kind (a crash mid-way) are
//! removed when the engine starts ([`VmEngine::clear_partial_snapshots`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::create::{CONFIG_DRIVE_FILE, OVERLAY_FILE, ROOTFS_FILE};
use super::recover::{read_meta, write_private_json};
use super::{Sandbox, VmEngine, blocking};
use crate::driver::{Driver, Snapshot};
use crate::engine::{EngineError, EngineResult, SandboxId};
use crate::image;
use crate::snapshot::{SnapshotId, SnapshotInfo};
use crate::state::SandboxState;

/// The memory and device state file in a snapshot dir.
pub(super) const STATE_FILE: &str = "mem.snap";
/// What the snapshot is of, in its dir.
pub(super) const SNAPSHOT_META: &str = "snapshot.json";

/// `snapshot.json`: what a restore needs besides the files. 0600: it
/// holds the guest's agent token and boot environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SnapshotMeta {
    pub id: SnapshotId,
    pub source: SandboxId,
    pub cpus: u32,
    pub memory_mb: u32,
    pub image: String,
    #[serde(default)]
    pub disk_mb: Option<u64>,
    /// The guest's agent token when it was taken (what the new identity
    /// is authenticated with).
    pub token: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub init: Option<String>,
    #[serde(default)]
    pub exec_user: Option<String>,
    pub created_unix: u64,
    pub paused_ms: u64,
    /// Each file's size when it was written (a shorter file was cut).
    pub files: BTreeMap<String, u64>,
    /// A golden snapshot's kernel and image fingerprint ([`super::golden`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl<D: Driver> VmEngine<D> {
    /// Where named snapshots live.
    pub(super) fn snapshots_root(&self) -> PathBuf {
        self.config.data_dir.join("snapshots")
    }

    /// Where forks keep their snapshot while they make children.
    pub(super) fn forks_root(&self) -> PathBuf {
        self.config.data_dir.join("forks")
    }

    /// Removes temporary snapshot dirs and fork snapshots an earlier run
    /// left (they were never complete, or their fork is over).
    pub(super) fn clear_partial_snapshots(&self) {
        let _ = std::fs::remove_dir_all(self.forks_root());
        let Ok(entries) = std::fs::read_dir(self.snapshots_root()) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Takes a snapshot of `id` into `dir` (which must not exist yet).
    pub(super) async fn take_snapshot(
        &self,
        id: &SandboxId,
        snap: &SnapshotId,
        dir: &Path,
    ) -> EngineResult<SnapshotInfo> {
        let sb = self.get(id)?;
        if !sb.volumes.is_empty() {
            return Err(EngineError::Unsupported(format!(
                "sandbox {id} has volumes attached; a snapshot of it would share them (detach them first)"
            )));
        }
        if dir.exists() {
            return Err(EngineError::SnapshotExists(snap.clone()));
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
        let _ = std::fs::remove_dir_all(&tmp);
        make_private_dir(&tmp)?;
        let res = self.fill_snapshot(&sb, snap, &tmp).await.and_then(|meta| {
            std::fs::rename(&tmp, dir).map_err(|source| EngineError::Io {
                path: dir.to_owned(),
                source,
            })?;
            Ok(meta)
        });
        match res {
            Ok(meta) => Ok(self.snapshot_info(&meta, dir)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Writes the state, disks and `snapshot.json` into `tmp`.
    async fn fill_snapshot(
        &self,
        sb: &Sandbox<D>,
        snap: &SnapshotId,
        tmp: &Path,
    ) -> EngineResult<SnapshotMeta> {
        let mut slot = sb.slot.lock().await;
        let state = slot.state;
        let paused = match (state, slot.vm.as_mut()) {
            (SandboxState::Hot | SandboxState::Warm, Some(vm)) => {
                super::durable::sync_guest(&sb.agent, &sb.id, state).await;
                let captured = self.driver.capture(vm, &tmp.join(STATE_FILE)).await;
                let copied = match &captured {
                    Ok(_) => copy_disks(&sb.dir, tmp).await,
                    Err(_) => Ok(()),
                };
                // Whatever happened, the VM runs again as it did.
                let resumed = self.driver.resume(vm).await;
                if state == SandboxState::Warm && resumed.is_ok() {
                    self.driver.pause(vm).await?;
                }
                let captured = captured?;
                copied?;
                resumed?;
                captured.took
            }
            (SandboxState::Cold | SandboxState::Stopped, None) => {
                let kept = slot
                    .snapshot
                    .clone()
                    .ok_or_else(|| EngineError::NoSnapshot(sb.id.clone()))?;
                // The driver lists every file of it (a RAM file too).
                let saved = self.driver.saved_snapshot(&sb.dir).unwrap_or(kept);
                copy_saved(&sb.dir, &saved, tmp).await?;
                Duration::ZERO
            }
            _ => {
                return Err(EngineError::Inconsistent(format!(
                    "sandbox {} is {state:?} without a matching VMM",
                    sb.id
                )));
            }
        };
        let env = sb.boot_env.lock().map(|e| e.clone()).unwrap_or_default();
        drop(slot);
        let token = read_meta(&sb.dir)
            .map_err(|e| EngineError::Inconsistent(format!("sandbox {}: {e}", sb.id)))?
            .token;
        let meta = SnapshotMeta {
            id: snap.clone(),
            source: sb.id.clone(),
            cpus: sb.spec.cpus,
            memory_mb: sb.spec.memory_mb,
            image: sb.spec.image.to_string(),
            disk_mb: sb.spec.disk_mb,
            token,
            env,
            init: sb.spec.init.clone(),
            exec_user: sb.spec.exec_user.clone(),
            created_unix: now_unix(),
            paused_ms: u64::try_from(paused.as_millis()).unwrap_or(u64::MAX),
            files: file_sizes(tmp),
            fingerprint: None,
        };
        write_private_json(&tmp.join(SNAPSHOT_META), &meta)?;
        Ok(meta)
    }

    /// The snapshot in `dir`, with its files checked.
    pub(super) fn read_snapshot(
        &self,
        snap: &SnapshotId,
        dir: &Path,
    ) -> EngineResult<(SnapshotMeta, SnapshotInfo)> {
        let bytes = std::fs::read(dir.join(SNAPSHOT_META))
            .map_err(|_| EngineError::SnapshotNotFound(snap.clone()))?;
        let meta: SnapshotMeta =
            serde_json::from_slice(&bytes).map_err(|e| EngineError::SnapshotBroken {
                id: snap.clone(),
                problem: format!("{SNAPSHOT_META}: {e}"),
            })?;
        let info = self.snapshot_info(&meta, dir);
        Ok((meta, info))
    }

    /// The engine's view of a snapshot: sizes, and what is wrong with it.
    fn snapshot_info(&self, meta: &SnapshotMeta, dir: &Path) -> SnapshotInfo {
        let problem = self.snapshot_files_problem(meta, dir);
        SnapshotInfo {
            id: meta.id.clone(),
            source: meta.source.clone(),
            cpus: meta.cpus,
            memory_mb: meta.memory_mb,
            image: meta
                .image
                .parse()
                .unwrap_or(image::ImageRef::Tier(image::Tier::Minimal)),
            disk_mb: meta.disk_mb,
            size_bytes: disk_usage(dir),
            paused: Duration::from_millis(meta.paused_ms),
            created_unix: meta.created_unix,
            problem,
        }
    }

    fn snapshot_files_problem(&self, meta: &SnapshotMeta, dir: &Path) -> Option<String> {
        match meta.image.parse::<image::ImageRef>() {
            Err(e) => return Some(e.to_string()),
            Ok(image::ImageRef::Stored(id)) => {
                if let Err(e) = self.image_store().get(&id) {
                    return Some(e.to_string());
                }
            }
            Ok(image::ImageRef::Tier(_)) => {}
        }
        for (name, size) in &meta.files {
            match std::fs::metadata(dir.join(name)) {
                Err(_) => return Some(format!("{name} is missing")),
                Ok(m) if m.len() != *size => {
                    return Some(format!("{name} is {} bytes, was {size}", m.len()));
                }
                Ok(_) => {}
            }
        }
        self.driver.snapshot_problem(&state_snapshot(dir))
    }

    /// Every named snapshot.
    pub(super) fn all_snapshots(&self) -> Vec<SnapshotInfo> {
        let Ok(entries) = std::fs::read_dir(self.snapshots_root()) else {
            return Vec::new();
        };
        let mut out: Vec<SnapshotInfo> = entries
            .flatten()
            .filter_map(|e| {
                let id: SnapshotId = e.file_name().to_str()?.parse().ok()?;
                self.read_snapshot(&id, &e.path()).ok().map(|(_, i)| i)
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub(super) async fn remove_snapshot(&self, snap: &SnapshotId) -> EngineResult<()> {
        let dir = self.snapshots_root().join(snap.as_str());
        if !dir.join(SNAPSHOT_META).exists() {
            return Err(EngineError::SnapshotNotFound(snap.clone()));
        }
        super::remove_dir(&dir).await
    }
}

/// Seconds since the Unix epoch.
pub(super) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The driver's [`Snapshot`] of a snapshot dir: its state file first,
/// then the driver's other files (a RAM file), not the disks.
pub(super) fn state_snapshot(dir: &Path) -> Snapshot {
    let file = dir.join(STATE_FILE);
    let size_bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
    let mut files = vec![file];
    let mut others: Vec<_> = file_sizes(dir)
        .into_keys()
        .filter(|n| {
            ![STATE_FILE, OVERLAY_FILE, ROOTFS_FILE, CONFIG_DRIVE_FILE].contains(&n.as_str())
        })
        .map(|n| dir.join(n))
        .collect();
    others.sort();
    files.extend(others);
    Snapshot {
        files,
        size_bytes,
        took: Duration::ZERO,
    }
}

pub(super) fn make_private_dir(dir: &Path) -> EngineResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| EngineError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Sparse copies of the root disk and config drive from `from` to `to`.
pub(super) async fn copy_disks(from: &Path, to: &Path) -> EngineResult<()> {
    let (from, to) = (from.to_owned(), to.to_owned());
    blocking(move || -> EngineResult<()> {
        for f in [OVERLAY_FILE, ROOTFS_FILE, CONFIG_DRIVE_FILE] {
            if from.join(f).exists() {
                image::copy_rootfs(&from.join(f), &to.join(f))?;
            }
        }
        Ok(())
    })
    .await?
}

/// A stopped or cold sandbox's saved state (every file of it: the state
/// and, for a shared-RAM VM, its RAM file) and disks, copied.
async fn copy_saved(dir: &Path, saved: &Snapshot, to: &Path) -> EngineResult<()> {
    let mut files = saved.files.clone();
    if files.is_empty() {
        files.push(dir.join(STATE_FILE));
    }
    let to_dir = to.to_owned();
    blocking(move || -> EngineResult<()> {
        for (i, f) in files.iter().enumerate() {
            // The state file keeps its name; the others (a RAM file) theirs.
            let name = match i {
                0 => std::ffi::OsString::from(STATE_FILE),
                _ => f.file_name().map(ToOwned::to_owned).unwrap_or_default(),
            };
            image::copy_rootfs(f, &to_dir.join(name))?;
        }
        Ok(())
    })
    .await??;
    copy_disks(dir, to).await
}

/// Every file of a snapshot dir but its `snapshot.json`, with its size.
pub(super) fn file_sizes(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir).map_or_else(
        |_| BTreeMap::new(),
        |entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let m = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
                    (name != SNAPSHOT_META).then_some((name, m.len()))
                })
                .collect()
        },
    )
}

/// Bytes the files in `dir` take on disk (allocated blocks).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.blocks() * 512)
            .sum()
    })
}
