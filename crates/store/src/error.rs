//! The store's error type.

use std::path::PathBuf;

/// Why a store operation failed. `Conflict`, `NotFound` and `InUse` are the
/// expected outcomes callers map to 409/404/409; the rest are faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot restrict the mode of {path}: {source}")]
    Mode {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("migration {version} failed: {source}")]
    Migration {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database schema version {found} is newer than this build knows ({known})")]
    TooNew { found: usize, known: usize },
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    InUse(String),
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("database: {0}")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// True when `e` is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Maps a unique violation to `Conflict(what)`, anything else to `Sqlite`.
pub(crate) fn conflict(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let what = what.into();
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what)
        } else {
            StoreError::Sqlite(e)
        }
    }
}
