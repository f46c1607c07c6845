//! Volumes and their attachments to sandboxes. A volume is attached to at
//! most one live sandbox at a time; attachments of a destroyed sandbox are
//! released with it.

use rusqlite::{OptionalExtension, Row, params};

use crate::error::conflict;
use crate::{Result, Store, StoreError};

/// A stored volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub size_mb: u32,
    /// The volume's image file on the host.
    pub path: String,
    pub created_at: i64,
}

/// A volume attached to a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub volume_id: String,
    pub sandbox_id: String,
    pub mount: String,
    pub readonly: bool,
}

const COLUMNS: &str = "id, user_id, name, size_mb, path, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Volume> {
    Ok(Volume {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        size_mb: r.get(3)?,
        path: r.get(4)?,
        created_at: r.get(5)?,
    })
}

impl Store {
    /// Inserts a volume; a name the user already has is `Conflict`.
    pub fn create_volume(&self, v: &Volume) -> Result<()> {
        insert_volume(&self.conn(), v)
    }

    /// A user's volume by name.
    pub fn find_volume(&self, user_id: &str, name: &str) -> Result<Volume> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM volumes WHERE user_id = ?1 AND name = ?2"),
                params![user_id, name],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("volume {name}")))
    }

    /// A user's volumes, by name.
    pub fn list_volumes(&self, user_id: &str) -> Result<Vec<Volume>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM volumes WHERE user_id = ?1 ORDER BY name"
        ))?;
        let rows = stmt.query_map([user_id], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Attaches a volume to a sandbox. A volume already attached to a live
    /// sandbox is `InUse`.
    pub fn attach_volume(&self, a: &Attachment) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        insert_attachment(&tx, a)?;
        tx.commit()?;
        Ok(())
    }

    /// The volumes attached to a sandbox, by mount point.
    pub fn sandbox_attachments(&self, sandbox_id: &str) -> Result<Vec<Attachment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT volume_id, sandbox_id, mount, readonly FROM volume_attachments \
             WHERE sandbox_id = ?1 ORDER BY mount",
        )?;
        let rows = stmt.query_map([sandbox_id], |r| {
            Ok(Attachment {
                volume_id: r.get(0)?,
                sandbox_id: r.get(1)?,
                mount: r.get(2)?,
                readonly: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a volume's record. A volume attached to a live sandbox is
    /// `InUse`. The caller removes the image file after this succeeds.
    pub fn delete_volume(&self, user_id: &str, name: &str) -> Result<Volume> {
        let v = self.find_volume(user_id, name)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let holder = live_holder(&tx, &v.id)?;
        if let Some(holder) = holder {
            return Err(StoreError::InUse(format!(
                "volume {name} is in use by sandbox {holder}"
            )));
        }
        tx.execute(
            "DELETE FROM volume_attachments WHERE volume_id = ?1",
            [&v.id],
        )?;
        tx.execute("DELETE FROM volumes WHERE id = ?1", [&v.id])?;
        tx.commit()?;
        Ok(v)
    }
}

/// The name of the live sandbox a volume is attached to, if any.
fn live_holder(conn: &rusqlite::Connection, volume_id: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT s.name FROM volume_attachments a JOIN sandboxes s ON s.id = a.sandbox_id \
         WHERE a.volume_id = ?1 AND s.status != 'destroyed' LIMIT 1",
        [volume_id],
        |r| r.get(0),
    )
    .optional()
}

/// Inserts a volume row (a name the user already has is `Conflict`).
pub(crate) fn insert_volume(conn: &rusqlite::Connection, v: &Volume) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO volumes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![v.id, v.user_id, v.name, v.size_mb, v.path, v.created_at],
    )
    .map_err(conflict(format!("volume {}", v.name)))?;
    Ok(())
}

/// Attaches a volume inside the caller's transaction: a volume attached
/// to another live sandbox is `InUse`.
pub(crate) fn insert_attachment(conn: &rusqlite::Connection, a: &Attachment) -> Result<()> {
    if let Some(holder) = live_holder(conn, &a.volume_id)? {
        return Err(StoreError::InUse(format!(
            "volume is attached to sandbox {holder}"
        )));
    }
    conn.execute(
        "INSERT INTO volume_attachments (volume_id, sandbox_id, mount, readonly) \
         VALUES (?1, ?2, ?3, ?4)",
        params![a.volume_id, a.sandbox_id, a.mount, a.readonly],
    )?;
    Ok(())
}
