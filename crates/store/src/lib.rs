//! SQLite store: schema, migrations, typed queries
//!
//! Filled in by later work; see `../shared/DESIGN.md` (layers).
