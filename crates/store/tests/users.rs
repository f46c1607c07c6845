//! Users: create, look up by key hash, rotate, delete rules.

mod common;

use bhatti_store::StoreError;
use bhatti_store::users::Limits;

#[test]
fn create_and_find_by_key_hash_and_name() {
    let f = common::store();
    let alice = common::user(&f.store, "alice");
    assert_eq!(
        f.store.user_by_key_hash("hash-alice").expect("q"),
        Some(alice.clone())
    );
    assert_eq!(f.store.user_by_key_hash("nope").expect("q"), None);
    assert_eq!(f.store.user_by_name("alice").expect("q"), alice);
    assert_eq!(
        alice.limits,
        Limits {
            max_sandboxes: 5,
            max_cpus: 4,
            max_memory_mb: 4096,
            max_storage_mb: 20480
        }
    );
    common::not_found(f.store.user_by_name("bob"));
}

#[test]
fn duplicate_name_is_a_conflict() {
    let f = common::store();
    let mut u = common::user(&f.store, "alice");
    u.id = "other".into();
    u.key_hash = "other".into();
    let err = f.store.create_user(&u).expect_err("dup");
    assert!(
        matches!(err, StoreError::Conflict(ref w) if w == "user alice"),
        "{err}"
    );
}

#[test]
fn rotating_a_key_retires_the_old_one() {
    let f = common::store();
    common::user(&f.store, "alice");
    f.store
        .rotate_user_key("alice", "new-hash")
        .expect("rotate");
    assert!(f.store.user_by_key_hash("hash-alice").expect("q").is_none());
    assert_eq!(
        f.store
            .user_by_key_hash("new-hash")
            .expect("q")
            .expect("found")
            .name,
        "alice"
    );
    common::not_found(f.store.rotate_user_key("bob", "x"));
}

#[test]
fn a_user_with_live_sandboxes_or_volumes_cannot_be_deleted() {
    let f = common::store();
    let u = common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, &u.id, "sb1", "one", 1);
    let err = f.store.delete_user("alice").expect_err("in use");
    assert!(matches!(err, StoreError::InUse(_)), "{err}");
    f.store.mark_sandbox_destroyed("sb1", 2).expect("destroy");
    f.store
        .delete_user("alice")
        .expect("delete once nothing is live");
    assert!(f.store.list_users().expect("list").is_empty());
    common::not_found(f.store.delete_user("alice"));
}
