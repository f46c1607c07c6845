//! Opening, pragmas and migrations against a real database file.

mod common;

use bhatti_store::{Store, StoreError};

#[test]
fn fresh_database_is_migrated_and_in_wal_mode() {
    let f = common::store();
    assert_eq!(f.store.schema_version().expect("version"), 7);
    // A second, independent connection sees the journal mode on disk.
    let other = rusqlite::Connection::open(f.dir.path().join("state.db")).expect("open");
    let mode: String = other
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let version: i64 = other
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, 7);
}

#[test]
fn reopening_keeps_data_and_does_not_reapply_migrations() {
    let f = common::store();
    common::user(&f.store, "alice");
    let path = f.dir.path().join("state.db");
    drop(f.store);
    let again = Store::open(&path).expect("reopen");
    assert_eq!(again.schema_version().expect("version"), 7);
    assert_eq!(again.list_users().expect("users").len(), 1);
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let f = common::store();
    let path = f.dir.path().join("state.db");
    drop(f.store);
    let other = rusqlite::Connection::open(&path).expect("open");
    other.pragma_update(None, "user_version", 99).expect("bump");
    drop(other);
    let err = Store::open(&path).expect_err("too new");
    assert!(
        matches!(
            err,
            StoreError::TooNew {
                found: 99,
                known: 7
            }
        ),
        "{err}"
    );
}

#[test]
fn opening_a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![b'x'; 4096]).expect("write");
    let err = Store::open(&path).expect_err("not a db");
    assert!(err.to_string().contains("not a database"), "{err}");
}

#[test]
fn two_handles_on_one_file_see_each_others_writes() {
    let f = common::store();
    let second = Store::open(&f.dir.path().join("state.db")).expect("second handle");
    common::user(&f.store, "alice");
    assert_eq!(second.user_by_name("alice").expect("visible").id, "u-alice");
}
