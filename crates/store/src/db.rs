//! Connection, pragmas, migrations and the database's file mode.

use std::fs::{self, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Migrations in order; migration `i` (0-based) moves `user_version` from
/// `i` to `i + 1`. Add a file, append it here; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_published_per_user.sql"),
    include_str!("migrations/0003_engine_owns_state.sql"),
    include_str!("migrations/0004_lifetime_labels.sql"),
    include_str!("migrations/0005_snapshots.sql"),
    include_str!("migrations/0006_storage_quota.sql"),
    include_str!("migrations/0007_images.sql"),
];

/// How long a writer waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Handle to the state database. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    /// Cached key and sandbox lookups; see [`crate::cache`].
    pub(crate) cache: crate::cache::Cache,
}

impl Store {
    /// Opens (creating if needed, mode 0600) the database at `path`, sets
    /// the pragmas and applies pending migrations. See [`restrict`].
    pub fn open(path: &Path) -> Result<Self> {
        restrict(path)?;
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            cache: crate::cache::Cache::default(),
        })
    }

    /// The schema version (number of applied migrations).
    pub fn schema_version(&self) -> Result<usize> {
        Ok(user_version(&self.conn())?)
    }

    /// Locks the connection. A poisoned lock (a panic while holding it) is
    /// recovered: SQLite's own transactions keep the data consistent.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Makes the database files the owner's alone (they hold API key hashes,
/// sandbox specs and secret ciphertexts): `path` is created 0600 before
/// SQLite opens it, and an existing database or `-wal`/`-shm` file loses
/// its group and other permissions. SQLite gives the `-wal` and `-shm`
/// files it creates the database file's mode.
fn restrict(path: &Path) -> Result<()> {
    let err = |p: &Path| {
        let path = p.to_owned();
        move |source| StoreError::Mode { path, source }
    };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(err(path))?;
    for p in [
        path.to_owned(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o077 != 0 => {
                let mode = m.permissions().mode() & 0o700;
                fs::set_permissions(&p, Permissions::from_mode(mode)).map_err(err(&p))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&p)(e)),
        }
    }
    Ok(())
}

/// `<path><suffix>`: SQLite's name for a database's `-wal` or `-shm` file.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn user_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map(|v| usize::try_from(v).unwrap_or(0))
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current = user_version(conn)?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version as i64))
            .map_err(|source| StoreError::Migration { version, source })?;
        tx.commit()
            .map_err(|source| StoreError::Migration { version, source })?;
    }
    Ok(())
}
