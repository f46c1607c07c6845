//! Published ports: a public alias routed to a sandbox port by Host header.

use rusqlite::{OptionalExtension, Row, params};

use crate::error::conflict;
use crate::{Result, Store, StoreError};

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub alias: String,
    pub sandbox_id: String,
    pub port: u16,
    pub created_at: i64,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Published> {
    Ok(Published {
        alias: r.get(0)?,
        sandbox_id: r.get(1)?,
        port: r.get(2)?,
        created_at: r.get(3)?,
    })
}

const COLUMNS: &str = "alias, sandbox_id, port, created_at";

impl Store {
    /// Publishes a port; a taken alias, or a port already published for the
    /// sandbox, is `Conflict`.
    pub fn publish_port(&self, p: &Published) -> Result<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO published_ports ({COLUMNS}) VALUES (?1, ?2, ?3, ?4)"),
                params![p.alias, p.sandbox_id, p.port, p.created_at],
            )
            .map_err(conflict(format!("alias {} or port {}", p.alias, p.port)))?;
        Ok(())
    }

    /// The published port an alias routes to.
    pub fn published_by_alias(&self, alias: &str) -> Result<Option<Published>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM published_ports WHERE alias = ?1"),
                [alias],
                from_row,
            )
            .optional()?)
    }

    /// A sandbox's published ports, by port.
    pub fn list_published(&self, sandbox_id: &str) -> Result<Vec<Published>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM published_ports WHERE sandbox_id = ?1 ORDER BY port"
        ))?;
        let rows = stmt.query_map([sandbox_id], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Unpublishes a sandbox's port.
    pub fn unpublish_port(&self, sandbox_id: &str, port: u16) -> Result<()> {
        let n = self.conn().execute(
            "DELETE FROM published_ports WHERE sandbox_id = ?1 AND port = ?2",
            params![sandbox_id, port],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("published port {port}")));
        }
        Ok(())
    }
}
