//! Users' names for stored images (issue 12). The engine keeps an image's
//! disk under its content id (`sha256:<hex>`), once whoever imported it; a
//! row is one user's name for one id (names are unique per user, and two
//! users, or two names of one user, may share an id). A row is written
//! once the engine has the image; the engine's image is deleted only when
//! no row names its id any more ([`Store::image_id_refs`]).

use rusqlite::{OptionalExtension, Row, params};

use crate::error::conflict;
use crate::{Result, Store, StoreError};

/// One user's name for a stored image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub user_id: String,
    pub name: String,
    /// The engine's id (`sha256:<hex>`).
    pub image_id: String,
    /// Where it came from (an import source, `upload:<format>`, or
    /// `sandbox:<name>`).
    pub source: String,
    /// The disk's size (what a guest sees).
    pub size_bytes: u64,
    /// Bytes of host disk it takes (what the storage quota counts).
    pub used_bytes: u64,
    /// The image config's defaults, as the server writes them (JSON).
    pub config: serde_json::Value,
    pub created_at: i64,
}

const COLUMNS: &str = "user_id, name, image_id, source, size_bytes, used_bytes, config, created_at";

/// A row, its config still JSON text.
fn raw(r: &Row<'_>) -> rusqlite::Result<(Image, String)> {
    Ok((
        Image {
            user_id: r.get(0)?,
            name: r.get(1)?,
            image_id: r.get(2)?,
            source: r.get(3)?,
            size_bytes: r.get(4)?,
            used_bytes: r.get(5)?,
            config: serde_json::Value::Null,
            created_at: r.get(7)?,
        },
        r.get(6)?,
    ))
}

fn decode((mut i, config): (Image, String)) -> Result<Image> {
    i.config = serde_json::from_str(&config).map_err(|e| StoreError::Corrupt {
        what: "image config",
        detail: format!("{}: {e}", i.name),
    })?;
    Ok(i)
}

impl Store {
    /// Inserts a user's image name; a name the user already has is
    /// `Conflict`.
    pub fn insert_image(&self, i: &Image) -> Result<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    i.user_id,
                    i.name,
                    i.image_id,
                    i.source,
                    i.size_bytes,
                    i.used_bytes,
                    i.config.to_string(),
                    i.created_at
                ],
            )
            .map_err(conflict(format!("image {}", i.name)))?;
        Ok(())
    }

    /// A user's image by name (another user's is not found).
    pub fn find_image(&self, user_id: &str, name: &str) -> Result<Image> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM images WHERE user_id = ?1 AND name = ?2"),
                params![user_id, name],
                raw,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("image {name}")))
            .and_then(decode)
    }

    /// A user's name for engine image `image_id`, if they have one (the
    /// oldest, when several).
    pub fn image_name_of(&self, user_id: &str, image_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name FROM images WHERE user_id = ?1 AND image_id = ?2 \
                 ORDER BY created_at, name LIMIT 1",
                params![user_id, image_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A user's images, newest first.
    pub fn list_images(&self, user_id: &str) -> Result<Vec<Image>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM images WHERE user_id = ?1 ORDER BY created_at DESC, name"
        ))?;
        let rows = stmt.query_map([user_id], raw)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(decode))
            .collect()
    }

    /// How many rows (of any user) name engine image `image_id`.
    pub fn image_id_refs(&self, image_id: &str) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM images WHERE image_id = ?1",
            [image_id],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Bytes of host disk `user_id`'s images take, each distinct engine
    /// image counted once (what their storage quota counts).
    pub fn image_bytes(&self, user_id: &str) -> Result<u64> {
        let sum: i64 = self.conn().query_row(
            "SELECT COALESCE(SUM(used), 0) FROM \
             (SELECT MAX(used_bytes) AS used FROM images WHERE user_id = ?1 GROUP BY image_id)",
            [user_id],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(sum).unwrap_or(0))
    }

    /// Deletes a user's image name (the engine's image is the caller's
    /// business).
    pub fn delete_image(&self, user_id: &str, name: &str) -> Result<()> {
        let n = self.conn().execute(
            "DELETE FROM images WHERE user_id = ?1 AND name = ?2",
            params![user_id, name],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("image {name}")));
        }
        Ok(())
    }
}
