//! The database files are the owner's alone, whatever the umask: a new
//! `state.db` and the `-wal`/`-shm` files SQLite makes beside it are 0600,
//! and an older database left 0644 is tightened on open.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bhatti_store::Store;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777
}

#[test]
fn database_files_are_0600() {
    let f = common::store();
    common::user(&f.store, "alice");
    let db = f.dir.path().join("state.db");
    for suffix in ["", "-wal", "-shm"] {
        let p = f.dir.path().join(format!("state.db{suffix}"));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    drop(f.store);

    // An older database made under umask 022.
    for suffix in ["", "-wal", "-shm"] {
        let p = f.dir.path().join(format!("state.db{suffix}"));
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
    }
    let again = Store::open(&db).expect("reopen");
    assert_eq!(again.schema_version().expect("version"), 7);
    assert_eq!(mode(&db), 0o600);
    for suffix in ["-wal", "-shm"] {
        let p = f.dir.path().join(format!("state.db{suffix}"));
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}
