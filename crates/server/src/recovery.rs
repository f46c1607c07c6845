//! Restart recovery: the store's sandboxes reconciled with what the
//! engine finds in the data dir ([`VmEngine::recover`]).
//!
//! | store row        | engine finds                   | result                                      |
//! |------------------|--------------------------------|---------------------------------------------|
//! | running/unknown  | held (VMM adopted, snapshot, or disk) | running, in the engine's state (hot/warm if its VMM was adopted) |
//! | stopped          | held                           | stopped (the engine stops it: a live VMM is snapshotted) |
//! | live             | a create that never finished   | destroyed, with the reason (files removed)  |
//! | live             | dir it cannot use (reason)     | unknown, with the engine's reason           |
//! | live             | nothing on disk                | unknown: files missing                      |
//! | destroyed/no row | held                           | orphan: destroyed through the engine        |
//! | destroyed        | dir it cannot use              | orphan dir removed (by the engine)          |
//! | no row           | dir it cannot use              | left on disk, logged (not ours to judge)    |
//!
//! A VMM that outlived the daemon is never stopped by recovery: the
//! engine takes it over, so memory, processes and sessions survive a crash
//! or an upgrade. One that died without a snapshot leaves its disk, and the
//! next request boots the sandbox from it (the status reason says so).
//! Addresses of held sandboxes are re-reserved and their TAPs made again
//! by the engine, which also ends VMM processes and TAPs nobody holds.
//! The store's state sequence numbers start again with the engine's
//! counter, and each recovered sandbox's row is written from the engine's
//! state (see [`crate::mirror`]); only `unknown` and interrupted creates
//! are written here outright.
//!
//! Snapshots: one the engine has with no store row (taken, then the
//! daemon died before it recorded it) can be reached by no one and is
//! deleted; a row whose files are gone stays, shown `broken` by the API.
//!
//! Images: one the engine stored that no user's image row names (an
//! import or a save the daemon died in before it recorded the name) is
//! deleted, unless a sandbox or snapshot the engine holds was made from
//! it (the engine refuses; it is kept and logged).

use std::collections::{BTreeMap, HashMap};

use bhatti_engine::driver::Driver;
use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_engine::sandbox::{Recovery, VmEngine};
use bhatti_store::sandboxes::{Sandbox, Status, Thermal};
use bhatti_store::{Store, StoreError};

use crate::model::StoredSpec;
use crate::secrets::SecretBox;

/// What the engine found for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The engine holds it again (in whatever state it found it).
    Held,
    /// A create that never finished; the engine removed its files.
    Abandoned,
    /// Its dir exists but it cannot run again (reason).
    Lost(String),
    /// Nothing in the data dir.
    Absent,
}

/// What to do with one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Running,
    Stopped,
    Unknown(String),
    /// Its create never finished: the row is marked destroyed.
    Undone,
    /// No live owner: remove it.
    DestroyOrphan,
    /// Leave it as it is.
    Skip,
}

/// Why an interrupted create's row is marked destroyed.
const UNDONE: &str = "its create was interrupted by a daemon crash and was undone";

/// The decision table (module docs). `row` is `None` when the store has
/// no row for the sandbox at all.
pub fn decide(row: Option<Status>, found: &Found) -> Decision {
    let live = |s: Status| matches!(s, Status::Running | Status::Stopped | Status::Unknown);
    match (row, found) {
        (Some(Status::Running | Status::Unknown), Found::Held) => Decision::Running,
        (Some(Status::Stopped), Found::Held) => Decision::Stopped,
        (Some(s), Found::Abandoned) if live(s) => Decision::Undone,
        (Some(s), Found::Lost(r)) if live(s) => Decision::Unknown(r.clone()),
        (Some(s), Found::Absent) if live(s) => {
            Decision::Unknown("its files are missing from the data directory".into())
        }
        (Some(Status::Destroyed) | None, Found::Held) => Decision::DestroyOrphan,
        (Some(Status::Destroyed), Found::Lost(_)) => Decision::DestroyOrphan,
        _ => Decision::Skip,
    }
}

/// Counts of what recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub running: usize,
    pub stopped: usize,
    pub unknown: usize,
    /// Creates that never finished, undone.
    pub undone: usize,
    pub orphans_removed: usize,
    /// Snapshots the engine had that no store row owned, deleted.
    pub snapshots_removed: usize,
    /// Stored images no image row named, deleted.
    pub images_removed: usize,
}

/// Why recovery could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Engine(#[from] bhatti_engine::engine::EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes the engine's state of a recovered sandbox into its row.
async fn mirror<D: Driver>(
    engine: &VmEngine<D>,
    store: &Store,
    id: &str,
) -> Result<(), RecoveryError> {
    let Ok(id) = id.parse::<SandboxId>() else {
        return Ok(());
    };
    crate::mirror::apply(store, &engine.status(&id).await?.event())?;
    Ok(())
}

/// The environment `row`'s sandbox was created with: its stored env and
/// the current values of its secrets (a secret deleted since is left out,
/// with a warning).
fn boot_env(store: &Store, secrets: &SecretBox, row: &Sandbox) -> BTreeMap<String, String> {
    let spec: StoredSpec = serde_json::from_value(row.spec.clone()).unwrap_or_default();
    let mut env = spec.env;
    for name in spec.secrets {
        let value = store
            .secret_ciphertext(&row.user_id, &name)
            .map_err(|e| e.to_string())
            .and_then(|ct| secrets.decrypt(&ct).map_err(|e| e.to_string()))
            .and_then(|v| String::from_utf8(v).map_err(|e| e.to_string()));
        match value {
            Ok(v) => {
                env.insert(name, v);
            }
            Err(e) => {
                tracing::warn!(sandbox = %row.id, secret = %name, error = %e, "recovery: secret unavailable for a boot from disk");
            }
        }
    }
    env
}

/// What the engine's recovery found, by sandbox id (with the dir of a
/// sandbox it cannot use).
async fn found_by<D: Driver>(
    engine: &VmEngine<D>,
) -> Result<HashMap<String, (Found, Option<std::path::PathBuf>)>, RecoveryError> {
    let mut found: HashMap<String, (Found, Option<std::path::PathBuf>)> = HashMap::new();
    for r in engine.recover().await? {
        match r {
            Recovery::Held(id) => {
                found.insert(id.to_string(), (Found::Held, None));
            }
            Recovery::Abandoned(id) => {
                found.insert(id.to_string(), (Found::Abandoned, None));
            }
            Recovery::Unknown { dir, reason } => {
                if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
                    found.insert(
                        name.to_owned(),
                        (Found::Lost(reason.to_string()), Some(dir.clone())),
                    );
                }
            }
        }
    }
    Ok(found)
}

/// Reconciles the store with `engine` (call once, before serving, with an
/// engine that has just started: the store's state sequence numbers are
/// reset to match its counter).
pub async fn recover<D: Driver>(
    engine: &VmEngine<D>,
    store: &Store,
    secrets: &SecretBox,
) -> Result<Report, RecoveryError> {
    store.reset_state_seqs()?;
    let mut found = found_by(engine).await?;
    let mut report = Report::default();
    for row in store.list_live_sandboxes()? {
        let (f, _) = found.remove(&row.id).unwrap_or((Found::Absent, None));
        let held = matches!(f, Found::Held);
        if held && let Ok(id) = row.id.parse::<SandboxId>() {
            // A boot from its disk needs the env it was created with.
            let _ = engine.set_boot_env(&id, boot_env(store, secrets, &row));
        }
        match decide(Some(row.status), &f) {
            Decision::Running => {
                mirror(engine, store, &row.id).await?;
                report.running += 1;
            }
            Decision::Stopped => {
                if let Ok(id) = row.id.parse::<SandboxId>()
                    && let Err(e) = engine.stop(&id).await
                {
                    tracing::warn!(sandbox = %row.id, error = %e, "recovery: relabel stopped");
                }
                mirror(engine, store, &row.id).await?;
                report.stopped += 1;
            }
            Decision::Unknown(reason) => {
                tracing::warn!(sandbox = %row.id, %reason, "recovery: sandbox unavailable");
                store.set_sandbox_state(&row.id, Status::Unknown, Thermal::Cold, Some(&reason))?;
                report.unknown += 1;
            }
            Decision::Undone => {
                tracing::warn!(sandbox = %row.id, "recovery: {UNDONE}");
                store.set_sandbox_state(&row.id, Status::Unknown, Thermal::Cold, Some(UNDONE))?;
                store.mark_sandbox_destroyed(&row.id, crate::state::now_unix())?;
                report.undone += 1;
            }
            Decision::DestroyOrphan | Decision::Skip => {}
        }
    }
    for (id, (f, dir)) in found {
        let row = match store.sandbox_by_id(&id) {
            Ok(r) => Some(r.status),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        match (decide(row, &f), f) {
            (Decision::DestroyOrphan, Found::Held) => {
                if let Ok(sid) = id.parse::<SandboxId>()
                    && let Err(e) = engine.destroy(&sid).await
                {
                    tracing::warn!(sandbox = %id, error = %e, "recovery: removing orphan");
                    continue;
                }
                report.orphans_removed += 1;
            }
            (Decision::DestroyOrphan, _) => {
                let Some(dir) = dir else { continue };
                match engine.remove_lost(&dir).await {
                    Ok(()) => report.orphans_removed += 1,
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "recovery: orphan dir")
                    }
                }
            }
            (_, f) => {
                tracing::warn!(sandbox = %id, ?f, "recovery: sandbox dir with no owner left in place")
            }
        }
    }
    report.snapshots_removed = drop_unowned_snapshots(engine, store).await?;
    report.images_removed = drop_unnamed_images(engine, store).await?;
    Ok(report)
}

/// Deletes the engine's stored images that no image row names; returns
/// how many went. One still in use by a sandbox or snapshot stays.
async fn drop_unnamed_images<D: Driver>(
    engine: &VmEngine<D>,
    store: &Store,
) -> Result<usize, RecoveryError> {
    let mut removed = 0;
    for image in engine.list_images() {
        if store.image_id_refs(&image.id)? > 0 {
            continue;
        }
        match engine.delete_image(&image.id).await {
            Ok(()) => {
                tracing::info!(image = %image.id, source = %image.source,
                    "recovery: unnamed image deleted");
                removed += 1;
            }
            Err(e) => tracing::warn!(image = %image.id, error = %e,
                "recovery: unnamed image kept"),
        }
    }
    Ok(removed)
}

/// Deletes the engine's snapshots that no store row owns; returns how
/// many went.
async fn drop_unowned_snapshots<D: Driver>(
    engine: &VmEngine<D>,
    store: &Store,
) -> Result<usize, RecoveryError> {
    let owned: std::collections::HashSet<String> = store
        .list_all_snapshots()?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut removed = 0;
    for info in engine.list_snapshots().await {
        if owned.contains(info.id.as_str()) {
            continue;
        }
        match engine.delete_snapshot(&info.id).await {
            Ok(()) => {
                tracing::info!(snapshot = %info.id, "recovery: unrecorded snapshot deleted");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(snapshot = %info.id, error = %e, "recovery: unrecorded snapshot")
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        let lost = Found::Lost("its disk (rootfs.qcow2) is missing".into());
        use Status::*;
        assert_eq!(decide(Some(Running), &Found::Held), Decision::Running);
        assert_eq!(decide(Some(Stopped), &Found::Held), Decision::Stopped);
        assert_eq!(decide(Some(Unknown), &Found::Held), Decision::Running);
        assert_eq!(decide(Some(Running), &Found::Abandoned), Decision::Undone);
        assert_eq!(
            decide(Some(Running), &lost),
            Decision::Unknown("its disk (rootfs.qcow2) is missing".into())
        );
        assert!(matches!(decide(Some(Stopped), &lost), Decision::Unknown(_)));
        assert!(
            matches!(decide(Some(Running), &Found::Absent), Decision::Unknown(r) if r.contains("missing"))
        );
        assert_eq!(
            decide(Some(Destroyed), &Found::Held),
            Decision::DestroyOrphan
        );
        assert_eq!(decide(Some(Destroyed), &lost), Decision::DestroyOrphan);
        assert_eq!(decide(Some(Destroyed), &Found::Absent), Decision::Skip);
        assert_eq!(decide(Some(Destroyed), &Found::Abandoned), Decision::Skip);
        assert_eq!(decide(None, &Found::Held), Decision::DestroyOrphan);
        assert_eq!(decide(None, &lost), Decision::Skip);
        assert_eq!(decide(None, &Found::Abandoned), Decision::Skip);
    }
}
