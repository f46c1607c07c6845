//! The daemon's persistent state in SQLite: users, sandboxes, templates,
//! secrets (ciphertext only), volumes with their attachments, published
//! ports, the owners and names of snapshots, and users' names for images.
//!
//! Everything SQLite-specific lives in [`db`]: pragmas (WAL, busy timeout,
//! foreign keys), and migrations, one SQL file per migration under
//! `src/migrations/`, applied in order and recorded in `PRAGMA user_version`.
//! The other modules are typed queries, one per table family, all methods
//! on [`Store`].
//!
//! Concurrency: one connection behind a `std::sync::Mutex`. Every query is
//! short (indexed lookups, single-row writes), so callers in async code may
//! call it directly; nothing here does I/O other than SQLite's own.
//!
//! The two lookups of every API request, a user by key hash and a sandbox
//! by id or name, are answered from memory while no row has changed, in
//! this process or any other ([`cache`] explains how that is known).

pub mod cache;
mod db;
mod error;
pub mod images;
pub mod lifetime;
pub mod published;
pub mod sandboxes;
pub mod secrets;
pub mod snapshots;
pub mod templates;
pub mod users;
pub mod volumes;

pub use db::Store;
pub use error::StoreError;

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
