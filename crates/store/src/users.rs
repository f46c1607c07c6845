//! Users: API key hashes and per-user limits.

use rusqlite::{OptionalExtension, Row, params};

use crate::error::conflict;
use crate::{Result, Store, StoreError};

/// Per-user quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_sandboxes: u32,
    pub max_cpus: u32,
    pub max_memory_mb: u32,
    /// Most disk space the user's snapshots may take, MB.
    pub max_storage_mb: u32,
}

impl Default for Limits {
    /// The defaults of API.md: 5 sandboxes, 4 CPUs and 4096 MB each; 20
    /// GiB of snapshots.
    fn default() -> Self {
        Self {
            max_sandboxes: 5,
            max_cpus: 4,
            max_memory_mb: 4096,
            max_storage_mb: 20 * 1024,
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the API key; the key itself is never stored.
    pub key_hash: String,
    pub limits: Limits,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, name, key_hash, max_sandboxes, max_cpus, max_memory_mb, created_at, max_storage_mb";

fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        key_hash: r.get(2)?,
        limits: Limits {
            max_sandboxes: r.get(3)?,
            max_cpus: r.get(4)?,
            max_memory_mb: r.get(5)?,
            max_storage_mb: r.get(7)?,
        },
        created_at: r.get(6)?,
    })
}

impl Store {
    /// Inserts a user; a taken name is `Conflict`.
    pub fn create_user(&self, user: &User) -> Result<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO users ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    user.id,
                    user.name,
                    user.key_hash,
                    user.limits.max_sandboxes,
                    user.limits.max_cpus,
                    user.limits.max_memory_mb,
                    user.created_at,
                    user.limits.max_storage_mb
                ],
            )
            .map_err(conflict(format!("user {}", user.name)))?;
        Ok(())
    }

    /// The user whose key hashes to `key_hash`, if any (authentication);
    /// answered from the [`crate::cache`] while no row has changed.
    pub fn user_by_key_hash(&self, key_hash: &str) -> Result<Option<User>> {
        let conn = self.conn();
        self.cache.user(&conn, key_hash, |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE key_hash = ?1"))?
                .query_row([key_hash], from_row)
                .optional()?)
        })
    }

    /// The user with id `id`.
    pub fn user_by_id(&self, id: &str) -> Result<User> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    /// The user called `name`.
    pub fn user_by_name(&self, name: &str) -> Result<User> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("user {name}")))
    }

    /// All users, oldest first.
    pub fn list_users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM users ORDER BY created_at, name"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces a user's key hash (key rotation); the old key stops working.
    pub fn rotate_user_key(&self, name: &str, new_key_hash: &str) -> Result<()> {
        let n = self
            .conn()
            .execute(
                "UPDATE users SET key_hash = ?2 WHERE name = ?1",
                params![name, new_key_hash],
            )
            .map_err(conflict("key"))?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {name}")));
        }
        Ok(())
    }

    /// Deletes a user. Refused while the user still owns live sandboxes,
    /// any volume or any snapshot, so that nothing a user created is removed behind them.
    pub fn delete_user(&self, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id: String = tx
            .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?;
        let live: i64 = tx.query_row(
            "SELECT count(*) FROM sandboxes WHERE user_id = ?1 AND status != 'destroyed'",
            [&id],
            |r| r.get(0),
        )?;
        let volumes: i64 = tx.query_row(
            "SELECT count(*) FROM volumes WHERE user_id = ?1",
            [&id],
            |r| r.get(0),
        )?;
        let snapshots: i64 = tx.query_row(
            "SELECT count(*) FROM snapshots WHERE user_id = ?1",
            [&id],
            |r| r.get(0),
        )?;
        let images: i64 = tx.query_row(
            "SELECT count(*) FROM images WHERE user_id = ?1",
            [&id],
            |r| r.get(0),
        )?;
        if live > 0 || volumes > 0 || snapshots > 0 || images > 0 {
            return Err(StoreError::InUse(format!(
                "user {name} still owns {live} sandbox(es), {volumes} volume(s), \
                 {snapshots} snapshot(s) and {images} image(s); delete them first"
            )));
        }
        tx.execute("DELETE FROM users WHERE id = ?1", [&id])?;
        tx.commit()?;
        Ok(())
    }
}
