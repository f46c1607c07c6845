//! Secrets: age ciphertext per (user, name). Plaintext never reaches the
//! store; encryption and decryption are the server's.

use rusqlite::{OptionalExtension, params};

use crate::{Result, Store, StoreError};

/// What a secret listing shows: never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// Inserts or replaces a secret's ciphertext (a replaced one keeps its
    /// `created_at`). Returns its name and dates as stored.
    pub fn upsert_secret(
        &self,
        user_id: &str,
        name: &str,
        ciphertext: &[u8],
        at: i64,
    ) -> Result<SecretMeta> {
        let conn = self.conn();
        Ok(conn.query_row(
            "INSERT INTO secrets (user_id, name, ciphertext, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) \
             ON CONFLICT (user_id, name) DO UPDATE SET ciphertext = ?3, updated_at = ?4 \
             RETURNING name, created_at, updated_at",
            params![user_id, name, ciphertext, at],
            |r| {
                Ok(SecretMeta {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    updated_at: r.get(2)?,
                })
            },
        )?)
    }

    /// A secret's ciphertext.
    pub fn secret_ciphertext(&self, user_id: &str, name: &str) -> Result<Vec<u8>> {
        self.conn()
            .query_row(
                "SELECT ciphertext FROM secrets WHERE user_id = ?1 AND name = ?2",
                params![user_id, name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("secret {name}")))
    }

    /// Names and dates of a user's secrets, by name.
    pub fn list_secrets(&self, user_id: &str) -> Result<Vec<SecretMeta>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, created_at, updated_at FROM secrets WHERE user_id = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map([user_id], |r| {
            Ok(SecretMeta {
                name: r.get(0)?,
                created_at: r.get(1)?,
                updated_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a secret.
    pub fn delete_secret(&self, user_id: &str, name: &str) -> Result<()> {
        let n = self.conn().execute(
            "DELETE FROM secrets WHERE user_id = ?1 AND name = ?2",
            params![user_id, name],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("secret {name}")));
        }
        Ok(())
    }
}
