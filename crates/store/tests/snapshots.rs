//! Named snapshots: round trip, names unique per owner, per-user lookups,
//! delete, and that a user who owns snapshots cannot be deleted.

mod common;

use std::collections::BTreeMap;

use bhatti_store::StoreError;
use bhatti_store::snapshots::Snapshot;

fn snap(user_id: &str, id: &str, name: &str, created_at: i64) -> Snapshot {
    Snapshot {
        id: id.into(),
        user_id: user_id.into(),
        name: name.into(),
        source_id: "sb-1".into(),
        source_name: "web".into(),
        labels: BTreeMap::from([("team".into(), "ml".into())]),
        size_bytes: 123_456_789,
        paused_ms: 42,
        cpus: 2,
        memory_mb: 1024,
        image: "minimal".into(),
        disk_mb: Some(4096),
        created_at,
    }
}

#[test]
fn snapshots_round_trip_newest_first_and_per_owner() {
    let f = common::store();
    let alice = common::user(&f.store, "alice");
    let bob = common::user(&f.store, "bob");
    let a1 = snap(&alice.id, "snap-a1", "base", 10);
    let mut a2 = snap(&alice.id, "snap-a2", "later", 20);
    a2.disk_mb = None;
    a2.labels.clear();
    f.store.insert_snapshot(&a1).expect("a1");
    f.store.insert_snapshot(&a2).expect("a2");
    // The same name for another user is fine.
    let b1 = snap(&bob.id, "snap-b1", "base", 15);
    f.store.insert_snapshot(&b1).expect("b1");

    assert_eq!(f.store.find_snapshot(&alice.id, "base").expect("find"), a1);
    assert_eq!(f.store.find_snapshot(&bob.id, "base").expect("find"), b1);
    let names: Vec<String> = f
        .store
        .list_snapshots(&alice.id)
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(names, ["snap-a2", "snap-a1"]);
    assert_eq!(f.store.list_all_snapshots().expect("all").len(), 3);
    assert!(f.store.snapshot_name_taken(&alice.id, "later").expect("q"));
    assert!(!f.store.snapshot_name_taken(&bob.id, "later").expect("q"));
    // Bob cannot find Alice's.
    common::not_found(f.store.find_snapshot(&bob.id, "later"));
}

#[test]
fn a_duplicate_name_conflicts_and_delete_frees_it() {
    let f = common::store();
    let u = common::user(&f.store, "alice");
    f.store
        .insert_snapshot(&snap(&u.id, "snap-1", "base", 10))
        .expect("first");
    common::conflict(f.store.insert_snapshot(&snap(&u.id, "snap-2", "base", 11)));

    f.store.delete_snapshot("snap-1").expect("delete");
    common::not_found(f.store.find_snapshot(&u.id, "base"));
    common::not_found(f.store.delete_snapshot("snap-1"));
    f.store
        .insert_snapshot(&snap(&u.id, "snap-2", "base", 11))
        .expect("name free again");
}

#[test]
fn a_user_with_snapshots_cannot_be_deleted() {
    let f = common::store();
    let u = common::user(&f.store, "alice");
    f.store
        .insert_snapshot(&snap(&u.id, "snap-1", "base", 10))
        .expect("insert");
    let r = f.store.delete_user("alice");
    assert!(matches!(r, Err(StoreError::InUse(_))), "{r:?}");
    f.store.delete_snapshot("snap-1").expect("delete");
    f.store.delete_user("alice").expect("now deletable");
}

#[test]
fn snapshot_bytes_sum_one_owner_and_start_at_zero() {
    let f = common::store();
    let alice = common::user(&f.store, "alice");
    let bob = common::user(&f.store, "bob");
    assert_eq!(f.store.snapshot_bytes(&alice.id).expect("none"), 0);
    f.store
        .insert_snapshot(&snap(&alice.id, "snap-q1", "one", 1))
        .expect("one");
    f.store
        .insert_snapshot(&snap(&alice.id, "snap-q2", "two", 2))
        .expect("two");
    f.store
        .insert_snapshot(&snap(&bob.id, "snap-q3", "bobs", 3))
        .expect("bob's");
    assert_eq!(
        f.store.snapshot_bytes(&alice.id).expect("alice"),
        2 * 123_456_789
    );
    f.store.delete_snapshot("snap-q1").expect("delete");
    assert_eq!(
        f.store.snapshot_bytes(&alice.id).expect("after"),
        123_456_789
    );
    assert_eq!(
        f.store
            .user_by_name("alice")
            .expect("alice")
            .limits
            .max_storage_mb,
        20 * 1024
    );
}
