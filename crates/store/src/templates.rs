//! Templates: named sandbox specs, per user.

use rusqlite::{OptionalExtension, Row, params};

use crate::error::conflict;
use crate::{Result, Store, StoreError};

/// A stored template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The template's spec, as JSON, owned by the server.
    pub spec: serde_json::Value,
    pub created_at: i64,
}

const COLUMNS: &str = "id, user_id, name, spec, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(Template, String)> {
    Ok((
        Template {
            id: r.get(0)?,
            user_id: r.get(1)?,
            name: r.get(2)?,
            spec: serde_json::Value::Null,
            created_at: r.get(4)?,
        },
        r.get(3)?,
    ))
}

fn decode((mut t, spec): (Template, String)) -> Result<Template> {
    t.spec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
        what: "template spec",
        detail: format!("{}: {e}", t.id),
    })?;
    Ok(t)
}

impl Store {
    /// Inserts a template; a name the user already has is `Conflict`.
    pub fn create_template(&self, t: &Template) -> Result<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO templates ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![t.id, t.user_id, t.name, t.spec.to_string(), t.created_at],
            )
            .map_err(conflict(format!("template {}", t.name)))?;
        Ok(())
    }

    /// A template of `user_id` named by id or by name.
    pub fn find_template(&self, user_id: &str, id_or_name: &str) -> Result<Template> {
        let row = self
            .conn()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM templates WHERE user_id = ?1 \
                     AND (id = ?2 OR name = ?2) ORDER BY id = ?2 DESC LIMIT 1"
                ),
                params![user_id, id_or_name],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("template {id_or_name}")))?;
        decode(row)
    }

    /// A user's templates, newest first.
    pub fn list_templates(&self, user_id: &str) -> Result<Vec<Template>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM templates WHERE user_id = ?1 ORDER BY created_at DESC, id DESC"
        ))?;
        let rows = stmt.query_map([user_id], from_row)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(decode))
            .collect()
    }

    /// Deletes a template of `user_id` by id or name.
    pub fn delete_template(&self, user_id: &str, id_or_name: &str) -> Result<()> {
        let n = self.conn().execute(
            "DELETE FROM templates WHERE user_id = ?1 AND (id = ?2 OR name = ?2)",
            params![user_id, id_or_name],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("template {id_or_name}")));
        }
        Ok(())
    }
}
