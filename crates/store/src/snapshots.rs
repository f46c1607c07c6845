//! Named snapshots: who owns each of the engine's snapshots and what the
//! owner calls it. The engine keeps the files (under [`Snapshot::id`]);
//! a row is written once the engine has them and deleted after the engine
//! deleted them. Names are unique per owner.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, params};

use crate::error::conflict;
use crate::sandboxes::labels_json;
use crate::{Result, Store, StoreError};

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The engine's id (`snap-<hex>`).
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The sandbox it was taken of, and its name then.
    pub source_id: String,
    pub source_name: String,
    pub labels: BTreeMap<String, String>,
    /// Bytes its files take on disk, when taken.
    pub size_bytes: u64,
    /// How long the source was paused for it.
    pub paused_ms: u64,
    pub cpus: u32,
    pub memory_mb: u32,
    pub image: String,
    /// The root disk's size when set on the source; `None`: the image's.
    pub disk_mb: Option<u64>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, user_id, name, source_id, source_name, labels, size_bytes, \
     paused_ms, cpus, memory_mb, image, disk_mb, created_at";

/// A row, its labels still JSON.
fn raw(r: &Row<'_>) -> rusqlite::Result<(Snapshot, String)> {
    Ok((
        Snapshot {
            id: r.get(0)?,
            user_id: r.get(1)?,
            name: r.get(2)?,
            source_id: r.get(3)?,
            source_name: r.get(4)?,
            labels: BTreeMap::new(),
            size_bytes: r.get(6)?,
            paused_ms: r.get(7)?,
            cpus: r.get(8)?,
            memory_mb: r.get(9)?,
            image: r.get(10)?,
            disk_mb: r.get(11)?,
            created_at: r.get(12)?,
        },
        r.get(5)?,
    ))
}

fn decode((mut s, labels): (Snapshot, String)) -> Result<Snapshot> {
    s.labels = serde_json::from_str(&labels).map_err(|e| StoreError::Corrupt {
        what: "snapshot labels",
        detail: format!("{}: {e}", s.id),
    })?;
    Ok(s)
}

impl Store {
    /// Inserts a snapshot; a name its owner already has is `Conflict`.
    pub fn insert_snapshot(&self, s: &Snapshot) -> Result<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO snapshots ({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    s.id,
                    s.user_id,
                    s.name,
                    s.source_id,
                    s.source_name,
                    labels_json(&s.labels),
                    s.size_bytes,
                    s.paused_ms,
                    s.cpus,
                    s.memory_mb,
                    s.image,
                    s.disk_mb,
                    s.created_at
                ],
            )
            .map_err(conflict(format!("snapshot {}", s.name)))?;
        Ok(())
    }

    /// Whether `user_id` has a snapshot called `name`.
    pub fn snapshot_name_taken(&self, user_id: &str, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM snapshots WHERE user_id = ?1 AND name = ?2",
                params![user_id, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Bytes `user_id`'s snapshots take on disk, as recorded when each
    /// was taken (what their storage quota counts).
    pub fn snapshot_bytes(&self, user_id: &str) -> Result<u64> {
        let sum: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(size_bytes), 0) FROM snapshots WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(sum).unwrap_or(0))
    }

    /// A user's snapshot by name (another user's is not found).
    pub fn find_snapshot(&self, user_id: &str, name: &str) -> Result<Snapshot> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM snapshots WHERE user_id = ?1 AND name = ?2"),
                params![user_id, name],
                raw,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("snapshot {name}")))
            .and_then(decode)
    }

    /// A user's snapshots, newest first.
    pub fn list_snapshots(&self, user_id: &str) -> Result<Vec<Snapshot>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM snapshots WHERE user_id = ?1 \
             ORDER BY created_at DESC, id DESC"
        ))?;
        let rows = stmt.query_map([user_id], raw)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(decode))
            .collect()
    }

    /// Every snapshot of every user, oldest first (to match the engine's).
    pub fn list_all_snapshots(&self) -> Result<Vec<Snapshot>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM snapshots ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], raw)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(decode))
            .collect()
    }

    /// Deletes a snapshot's row by id (the engine's files are deleted
    /// first, by the caller).
    pub fn delete_snapshot(&self, id: &str) -> Result<()> {
        let n = self
            .conn()
            .execute("DELETE FROM snapshots WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("snapshot {id}")));
        }
        Ok(())
    }
}
