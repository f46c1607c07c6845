//! Blocking work of the engine (commands, copies, deletes) run off the
//! async threads.

use crate::engine::{EngineError, EngineResult};

/// Removes `dir` and everything in it, on the blocking pool.
pub(super) async fn remove_dir(dir: &std::path::Path) -> EngineResult<()> {
    let d = dir.to_owned();
    blocking(move || std::fs::remove_dir_all(&d))
        .await?
        .map_err(|source| EngineError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Runs blocking work (commands, copies) off the async threads.
pub(super) async fn blocking<T, F>(f: F) -> EngineResult<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Inconsistent(format!("blocking task failed: {e}")))
}
