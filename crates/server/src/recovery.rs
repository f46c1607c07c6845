//! Restart recovery: the store's sandboxes reconciled with what the
//! engine finds in the data dir ([`VmEngine::recover`]).
//!
//! | store row    | engine finds             | result                                   |
//! |--------------|--------------------------|------------------------------------------|
//! | running      | snapshot (restorable)    | running, cold — wakes on demand          |
//! | stopped      | snapshot                 | stopped (engine relabelled Stopped)      |
//! | unknown      | snapshot                 | running, cold (it can be restored now)   |
//! | running      | no snapshot (VMM died)   | unknown, with the engine's reason        |
//! | stopped      | no snapshot              | unknown: the snapshot is gone            |
//! | unknown      | no snapshot              | unknown, reason kept                     |
//! | any live     | nothing on disk          | unknown: files missing                   |
//! | destroyed/no row | snapshot             | orphan: destroyed through the engine     |
//! | destroyed    | no snapshot              | orphan dir removed (by the engine)       |
//! | no row       | no snapshot              | left on disk, logged (not ours to judge) |
//!
//! Addresses of restored sandboxes are re-reserved and their TAPs made
//! again by the engine; leftover VMM processes and TAPs were cleaned when
//! the engine started. Nothing a user owns is deleted. The store's state
//! sequence numbers start again with the engine's counter, and each
//! recovered sandbox's row is written from the engine's state (see
//! [`crate::mirror`]); only `unknown` is written here outright.

use std::collections::HashMap;

use bhatti_engine::driver::Driver;
use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_engine::sandbox::{Recovery, VmEngine};
use bhatti_store::sandboxes::{Status, Thermal};
use bhatti_store::{Store, StoreError};

/// What the engine found for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A valid snapshot: back as cold.
    Restorable,
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
    /// No live owner: remove it.
    DestroyOrphan,
    /// Leave it as it is.
    Skip,
}

/// The decision table (module docs). `row` is `None` when the store has
/// no row for the sandbox at all.
pub fn decide(row: Option<Status>, found: &Found) -> Decision {
    match (row, found) {
        (Some(Status::Running | Status::Unknown), Found::Restorable) => Decision::Running,
        (Some(Status::Stopped), Found::Restorable) => Decision::Stopped,
        (Some(Status::Running), Found::Lost(r)) => Decision::Unknown(r.clone()),
        (Some(Status::Stopped), Found::Lost(r)) => {
            Decision::Unknown(format!("stopped, but it cannot be restored: {r}"))
        }
        (Some(Status::Unknown), Found::Lost(r)) => Decision::Unknown(r.clone()),
        (Some(Status::Running | Status::Stopped | Status::Unknown), Found::Absent) => {
            Decision::Unknown("its files are missing from the data directory".into())
        }
        (Some(Status::Destroyed) | None, Found::Restorable) => Decision::DestroyOrphan,
        (Some(Status::Destroyed), Found::Lost(_)) => Decision::DestroyOrphan,
        (Some(Status::Destroyed), Found::Absent) | (None, Found::Lost(_) | Found::Absent) => {
            Decision::Skip
        }
    }
}

/// Counts of what recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub running: usize,
    pub stopped: usize,
    pub unknown: usize,
    pub orphans_removed: usize,
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

/// Reconciles the store with `engine` (call once, before serving, with an
/// engine that has just started: the store's state sequence numbers are
/// reset to match its counter).
pub async fn recover<D: Driver>(
    engine: &VmEngine<D>,
    store: &Store,
) -> Result<Report, RecoveryError> {
    store.reset_state_seqs()?;
    let mut found: HashMap<String, (Found, Option<std::path::PathBuf>)> = HashMap::new();
    for r in engine.recover().await? {
        match r {
            Recovery::Cold(id) => {
                found.insert(id.to_string(), (Found::Restorable, None));
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
    let mut report = Report::default();
    for row in store.list_live_sandboxes()? {
        let (f, _) = found.remove(&row.id).unwrap_or((Found::Absent, None));
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
            (Decision::DestroyOrphan, Found::Restorable) => {
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
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        let lost = Found::Lost("no snapshot: its VMM ended without one".into());
        use Status::*;
        assert_eq!(decide(Some(Running), &Found::Restorable), Decision::Running);
        assert_eq!(decide(Some(Stopped), &Found::Restorable), Decision::Stopped);
        assert_eq!(decide(Some(Unknown), &Found::Restorable), Decision::Running);
        assert_eq!(
            decide(Some(Running), &lost),
            Decision::Unknown("no snapshot: its VMM ended without one".into())
        );
        assert!(
            matches!(decide(Some(Stopped), &lost), Decision::Unknown(r) if r.contains("cannot be restored"))
        );
        assert!(
            matches!(decide(Some(Running), &Found::Absent), Decision::Unknown(r) if r.contains("missing"))
        );
        assert_eq!(
            decide(Some(Destroyed), &Found::Restorable),
            Decision::DestroyOrphan
        );
        assert_eq!(decide(Some(Destroyed), &lost), Decision::DestroyOrphan);
        assert_eq!(decide(Some(Destroyed), &Found::Absent), Decision::Skip);
        assert_eq!(decide(None, &Found::Restorable), Decision::DestroyOrphan);
        assert_eq!(decide(None, &lost), Decision::Skip);
    }
}
