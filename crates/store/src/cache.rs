//! Read-through cache of the two lookups every API request makes: the user
//! of an API key hash ([`Store::user_by_key_hash`], authentication) and a
//! user's live sandbox by id or name ([`Store::find_sandbox`]). A hit costs
//! one `PRAGMA data_version` (no table read, no statement to parse) instead
//! of two indexed queries and a JSON decode of the sandbox spec.
//!
//! # Invalidation
//! The whole cache belongs to one *generation* of the database, the pair
//! - `PRAGMA data_version` of the store's connection, which changes when
//!   any **other** connection commits: the operator CLI (`bhatti user
//!   create|delete|rotate-key`) writing the same file from another process
//!   while the daemon runs, a second [`Store`] on the file, `sqlite3` by
//!   hand;
//! - `sqlite3_total_changes()` of the store's connection, which counts
//!   every row **this** connection inserted, updated or deleted (the
//!   daemon's own writes: create, rename, destroy, the state mirror,
//!   quotas, keys — every write of this crate is an INSERT, UPDATE or
//!   DELETE; a rolled-back change still counts, which only costs a
//!   refill).
//!
//! Each lookup reads the generation first; when it differs from the
//! cache's, every entry is dropped before the lookup goes on. A miss runs
//! the query and fills the entry **under the same connection lock** as the
//! generation read, so an entry holds exactly what the query returned at
//! its generation, and an answer from the cache is what the query would
//! return now: a write by anyone since the entry was filled has emptied
//! the cache first. A rotated or deleted key therefore fails on the next
//! request, a destroyed or renamed-away sandbox is not found, new limits
//! apply at once. Entries are keyed by the key hash, and by owner plus id
//! or name, and filled from queries filtered by owner, so another user's
//! sandbox is never an answer. Misses are not cached (a wrong key costs a
//! query, as before); at [`MAX_ENTRIES`] a map is emptied.
//!
//! Writes are rare next to these reads (exec, files, GET write nothing),
//! so dropping everything on any write keeps the scheme simple at the cost
//! of one query per lookup after a write.
//!
//! # Threads, locks
//! One `std::sync::Mutex` around both maps, held for a lookup or an insert
//! only, and only ever taken while the connection lock is held (order:
//! connection, then cache; never the reverse), so it is never contended.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use crate::Result;
use crate::sandboxes::{Sandbox, Status};
use crate::users::User;

/// Most entries a map holds before it is emptied.
pub const MAX_ENTRIES: usize = 4096;

/// What the database looked like to the store's connection: equal
/// generations mean no row changed in between (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation {
    data_version: i64,
    total_changes: u64,
}

impl Generation {
    /// The generation now. `conn` must be the store's connection, locked.
    pub(crate) fn read(conn: &Connection) -> Result<Self> {
        let data_version = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        Ok(Self {
            data_version,
            total_changes: conn.total_changes(),
        })
    }
}

/// The cached lookups of one [`Store`](crate::Store).
#[derive(Default)]
pub(crate) struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: Option<Generation>,
    /// Key hash → user.
    users: HashMap<String, User>,
    /// (owner id, id or name as asked) → live sandbox.
    sandboxes: HashMap<(String, String), Sandbox>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("Cache")
            .field("generation", &g.generation)
            .field("users", &g.users.len())
            .field("sandboxes", &g.sandboxes.len())
            .finish()
    }
}

impl Cache {
    /// The maps, emptied first unless they belong to `generation`.
    fn at(&self, generation: Generation) -> MutexGuard<'_, Inner> {
        let mut g = self.lock();
        if g.generation != Some(generation) {
            g.users.clear();
            g.sandboxes.clear();
            g.generation = Some(generation);
        }
        g
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent: a panic elsewhere while
        // holding the lock loses nothing.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user of `key_hash` at `generation`, or the query's answer
    /// (cached when found). `conn` is locked by the caller for both.
    pub(crate) fn user(
        &self,
        conn: &Connection,
        key_hash: &str,
        query: impl FnOnce(&Connection) -> Result<Option<User>>,
    ) -> Result<Option<User>> {
        let generation = Generation::read(conn)?;
        if let Some(u) = self.at(generation).users.get(key_hash) {
            return Ok(Some(u.clone()));
        }
        let found = query(conn)?;
        if let Some(u) = &found {
            let mut g = self.at(generation);
            if g.users.len() >= MAX_ENTRIES {
                g.users.clear();
            }
            g.users.insert(key_hash.to_owned(), u.clone());
        }
        Ok(found)
    }

    /// The live sandbox `id_or_name` of `user_id` at `generation`, or the
    /// query's answer (cached when found). `conn` is locked by the caller.
    pub(crate) fn sandbox(
        &self,
        conn: &Connection,
        user_id: &str,
        id_or_name: &str,
        query: impl FnOnce(&Connection) -> Result<Sandbox>,
    ) -> Result<Sandbox> {
        let generation = Generation::read(conn)?;
        let key = (user_id.to_owned(), id_or_name.to_owned());
        if let Some(s) = self.at(generation).sandboxes.get(&key) {
            // The query filters by both; checked again so that no future
            // change of the keying can hand out another user's sandbox.
            if s.user_id == user_id && s.status != Status::Destroyed {
                return Ok(s.clone());
            }
        }
        let found = query(conn)?;
        if found.user_id == user_id && found.status != Status::Destroyed {
            let mut g = self.at(generation);
            if g.sandboxes.len() >= MAX_ENTRIES {
                g.sandboxes.clear();
            }
            g.sandboxes.insert(key, found.clone());
        }
        Ok(found)
    }
}
