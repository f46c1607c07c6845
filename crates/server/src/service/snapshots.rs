//! Named snapshots (an extension over v1): take, list, get, delete.
//!
//! The engine keeps a snapshot's files under an id the service makes
//! (`snap-<hex>`); the store's row says whose it is and what they call it
//! (names are unique per owner). A snapshot is taken first and its row
//! written after, so a row always has files behind it unless they were
//! damaged or removed since: the engine's check of the files
//! ([`bhatti_engine::snapshot::SnapshotInfo::problem`]) is the `status`
//! (`ready` or `broken`) of every listing. Delete removes the files, then
//! the row. Another user's snapshot is not found, like their sandboxes.
//!
//! # Threads, locks, I/O
//! Store calls are short; the engine's snapshot (which pauses a hot
//! sandbox while its memory is written) and its check of every
//! snapshot's files (on each list or get) are awaited with no lock of
//! ours held.

use std::collections::{BTreeMap, HashMap};

use bhatti_engine::engine::{Engine, EngineError};
use bhatti_engine::snapshot::{SnapshotId, SnapshotInfo};
use bhatti_store::StoreError;
use bhatti_store::snapshots::Snapshot;
use bhatti_store::users::User;

use super::{ServiceError, ServiceResult, engine_id, validate};
use crate::keys;
use crate::model::snapshots::{CreateSnapshot, SnapshotView};
use crate::state::AppState;

/// What a row's files lack when the engine has none under its id.
pub(super) const MISSING: &str = "its files are missing";

impl<E: Engine> AppState<E> {
    /// Takes snapshot `req.name` of `user`'s sandbox `sandbox` (by id or
    /// name). A hot sandbox pauses for it and runs on.
    pub async fn create_snapshot(
        &self,
        user: &User,
        sandbox: &str,
        req: CreateSnapshot,
    ) -> ServiceResult<SnapshotView> {
        validate::name(&req.name)?;
        let labels = req.labels.unwrap_or_default();
        validate::labels(&labels)?;
        let sb = self.find(user, sandbox)?;
        if self.store.snapshot_name_taken(&user.id, &req.name)? {
            return Err(StoreError::Conflict(format!("snapshot {}", req.name)).into());
        }
        self.check_storage(user)?;
        let sid = snapshot_id(&keys::new_id("snap-")?)?;
        let start = std::time::Instant::now();
        let info = match self.engine.snapshot(&engine_id(&sb)?, &sid).await {
            Ok(info) => {
                self.metrics.snapshotted(start.elapsed());
                info
            }
            Err(EngineError::NotFound(_)) => {
                return Err(ServiceError::Unavailable {
                    name: sb.name.clone(),
                    reason: sb
                        .status_reason
                        .clone()
                        .unwrap_or_else(|| "state unknown".into()),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let row = Snapshot {
            id: sid.to_string(),
            user_id: user.id.clone(),
            name: req.name,
            source_id: sb.id.clone(),
            source_name: sb.name.clone(),
            labels,
            size_bytes: info.size_bytes,
            paused_ms: u64::try_from(info.paused.as_millis()).unwrap_or(u64::MAX),
            cpus: info.cpus,
            memory_mb: info.memory_mb,
            image: info.image.to_string(),
            disk_mb: info.disk_mb,
            created_at: i64::try_from(info.created_unix).unwrap_or(i64::MAX),
        };
        if let Err(e) = self.store.insert_snapshot(&row) {
            // The name was taken meanwhile: the files go again.
            self.drop_files(&sid).await;
            return Err(e.into());
        }
        tracing::info!(snapshot = %row.id, name = %row.name, sandbox = %sb.id,
            size = info.size_bytes, "snapshot taken");
        Ok(SnapshotView::new(&row, info.problem).named(&self.image_names(user)?))
    }

    /// `user`'s snapshots, newest first, with every `(key, value)` of
    /// `wanted` among their labels; each with the engine's check.
    pub async fn list_snapshots(
        &self,
        user: &User,
        wanted: &[(String, String)],
    ) -> ServiceResult<Vec<SnapshotView>> {
        let rows = self.store.list_snapshots(&user.id)?;
        let problems = self.problems().await;
        let names = self.image_names(user)?;
        Ok(rows
            .iter()
            .filter(|s| {
                wanted
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|have| have == v))
            })
            .map(|s| SnapshotView::new(s, problem_of(&problems, &s.id)).named(&names))
            .collect())
    }

    /// One of `user`'s snapshots by name, with the engine's check.
    pub async fn snapshot_view(&self, user: &User, name: &str) -> ServiceResult<SnapshotView> {
        let row = self.store.find_snapshot(&user.id, name)?;
        let problems = self.problems().await;
        Ok(SnapshotView::new(&row, problem_of(&problems, &row.id)).named(&self.image_names(user)?))
    }

    /// `user`'s names of stored images by engine image id (the oldest name
    /// of an id that has several).
    fn image_names(&self, user: &User) -> ServiceResult<HashMap<String, String>> {
        // Newest first: the oldest name of an id is written last.
        Ok(self
            .store
            .list_images(&user.id)?
            .into_iter()
            .map(|i| (i.image_id, i.name))
            .collect())
    }

    /// Deletes one of `user`'s snapshots: its files, then its row.
    /// Sandboxes made from it are not affected.
    pub async fn delete_snapshot(&self, user: &User, name: &str) -> ServiceResult<()> {
        let row = self.store.find_snapshot(&user.id, name)?;
        match self.engine.delete_snapshot(&snapshot_id(&row.id)?).await {
            Ok(()) | Err(EngineError::SnapshotNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.delete_snapshot(&row.id)?;
        tracing::info!(snapshot = %row.id, name = %row.name, "snapshot deleted");
        Ok(())
    }

    /// Every snapshot the engine has, by id: `Some(problem)` for those it
    /// cannot restore.
    async fn problems(&self) -> BTreeMap<String, Option<String>> {
        self.engine
            .list_snapshots()
            .await
            .into_iter()
            .map(|SnapshotInfo { id, problem, .. }| (id.to_string(), problem))
            .collect()
    }

    /// Refuses a new snapshot once `user`'s snapshots take their storage
    /// quota (the size of the next one is known only once it is taken).
    fn check_storage(&self, user: &User) -> ServiceResult<()> {
        const MB: u64 = 1024 * 1024;
        let used = self.store.snapshot_bytes(&user.id)?;
        let max_mb = user.limits.max_storage_mb;
        if used >= u64::from(max_mb) * MB {
            return Err(ServiceError::Storage {
                used_mb: used.div_ceil(MB),
                max_mb,
            });
        }
        Ok(())
    }

    /// Deletes files the engine wrote for a snapshot that got no row.
    pub(super) async fn drop_files(&self, sid: &SnapshotId) {
        if let Err(e) = self.engine.delete_snapshot(sid).await {
            tracing::warn!(snapshot = %sid, error = %e, "deleting an unrecorded snapshot");
        }
    }
}

/// The problem of snapshot `id` in `problems` (files the engine does not
/// have at all are one too).
fn problem_of(problems: &BTreeMap<String, Option<String>>, id: &str) -> Option<String> {
    match problems.get(id) {
        Some(p) => p.clone(),
        None => Some(MISSING.to_owned()),
    }
}

/// A stored snapshot id as the engine's (ids are made to be valid).
pub(super) fn snapshot_id(id: &str) -> ServiceResult<SnapshotId> {
    id.parse().map_err(|e| ServiceError::Corrupt {
        what: "snapshot id",
        detail: format!("{id}: {e}"),
    })
}
