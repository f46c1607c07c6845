//! Published ports: a public alias routed to a sandbox port by Host header.
//!
//! Aliases are per user: each user has their own alias namespace, so one
//! user's alias is never a conflict for another and cannot be discovered
//! by publishing it. Publicly an alias is named `<alias>-<tag>`, where
//! `tag` is the owner's public tag: [`TAG_LEN`] random lower-case hex
//! digits, made on the user's first publish and unique among users
//! (migration `0002_published_per_user.sql`).

use rusqlite::{OptionalExtension, Row, params};

use crate::error::conflict;
use crate::{Result, Store, StoreError};

/// Length of a user's public tag (lower-case hex digits).
pub const TAG_LEN: usize = 8;

/// Attempts at drawing a tag no other user has (32 random bits each).
const TAG_ATTEMPTS: usize = 8;

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The owner; the alias is unique among this user's aliases only.
    pub user_id: String,
    pub alias: String,
    pub sandbox_id: String,
    pub port: u16,
    pub created_at: i64,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Published> {
    Ok(Published {
        user_id: r.get(0)?,
        alias: r.get(1)?,
        sandbox_id: r.get(2)?,
        port: r.get(3)?,
        created_at: r.get(4)?,
    })
}

const COLUMNS: &str = "user_id, alias, sandbox_id, port, created_at";

impl Store {
    /// Publishes a port and returns its owner's public tag (made now on the
    /// user's first publish). An alias this user already has, or a port
    /// already published for the sandbox, is `Conflict`.
    pub fn publish_port(&self, p: &Published) -> Result<String> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let tag = tag_of(&tx, &p.user_id)?;
        tx.execute(
            &format!("INSERT INTO published_ports ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![p.user_id, p.alias, p.sandbox_id, p.port, p.created_at],
        )
        .map_err(conflict(format!("alias {} or port {}", p.alias, p.port)))?;
        tx.commit()?;
        Ok(tag)
    }

    /// A user's public tag, if they have published anything yet.
    pub fn publish_tag(&self, user_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT tag FROM publish_tags WHERE user_id = ?1",
                [user_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The published port the public name `<alias>-<tag>` routes to.
    pub fn published_by_name(&self, alias: &str, tag: &str) -> Result<Option<Published>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT p.user_id, p.alias, p.sandbox_id, p.port, p.created_at \
                 FROM published_ports p JOIN publish_tags t ON t.user_id = p.user_id \
                 WHERE p.alias = ?1 AND t.tag = ?2",
                [alias, tag],
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

/// The user's tag, drawing a new one (unique among users) if there is none.
fn tag_of(tx: &rusqlite::Transaction<'_>, user_id: &str) -> Result<String> {
    let get = || {
        tx.query_row(
            "SELECT tag FROM publish_tags WHERE user_id = ?1",
            [user_id],
            |r| r.get::<_, String>(0),
        )
        .optional()
    };
    for _ in 0..TAG_ATTEMPTS {
        if let Some(tag) = get()? {
            return Ok(tag);
        }
        // OR IGNORE: a tag another user holds leaves no row; draw again.
        tx.execute(
            &format!(
                "INSERT OR IGNORE INTO publish_tags (user_id, tag) \
                 VALUES (?1, lower(hex(randomblob({}))))",
                TAG_LEN / 2
            ),
            [user_id],
        )?;
    }
    get()?.ok_or_else(|| StoreError::Conflict(format!("a public tag for user {user_id}")))
}
