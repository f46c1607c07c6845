//! The cached lookups (`user_by_key_hash`, `find_sandbox`) never answer
//! with a stale row: writes through the same store, through a second
//! connection (what the operator CLI does from another process) and by
//! raw SQL are all seen by the very next lookup.

mod common;

use bhatti_store::Store;
use bhatti_store::sandboxes::{Status, Thermal};
use bhatti_store::users::Limits;

/// A second connection to the fixture's database, as `bhatti user ...`
/// opens while the daemon runs.
fn operator(f: &common::Fixture) -> Store {
    Store::open(&f.dir.path().join("state.db")).expect("second connection")
}

#[test]
fn rotated_key_fails_at_once_and_the_new_one_works() {
    let f = common::store();
    let alice = common::user(&f.store, "alice");
    // Warm the cache twice (the second lookup is a hit).
    for _ in 0..2 {
        assert_eq!(
            f.store.user_by_key_hash("hash-alice").expect("q"),
            Some(alice.clone())
        );
    }
    operator(&f)
        .rotate_user_key("alice", "hash-alice-2")
        .expect("rotate");
    assert_eq!(f.store.user_by_key_hash("hash-alice").expect("q"), None);
    let now = f.store.user_by_key_hash("hash-alice-2").expect("q");
    assert_eq!(now.map(|u| u.id), Some(alice.id.clone()));

    // The daemon's own connection rotating is seen too.
    f.store
        .rotate_user_key("alice", "hash-alice-3")
        .expect("rotate");
    assert_eq!(f.store.user_by_key_hash("hash-alice-2").expect("q"), None);
    assert!(
        f.store
            .user_by_key_hash("hash-alice-3")
            .expect("q")
            .is_some()
    );
}

#[test]
fn deleted_user_key_fails_at_once() {
    let f = common::store();
    common::user(&f.store, "bob");
    assert!(f.store.user_by_key_hash("hash-bob").expect("q").is_some());
    assert!(f.store.user_by_key_hash("hash-bob").expect("q").is_some());
    operator(&f).delete_user("bob").expect("delete");
    assert_eq!(f.store.user_by_key_hash("hash-bob").expect("q"), None);

    // Recreated under the same key hash by another process: found again,
    // with the new row's id and limits.
    let other = operator(&f);
    let mut bob = common::user(&other, "bob");
    assert_eq!(
        f.store.user_by_key_hash("hash-bob").expect("q"),
        Some(bob.clone())
    );
    other.delete_user("bob").expect("delete");
    bob.id = "u-bob-2".into();
    bob.limits.max_sandboxes = 1;
    other.create_user(&bob).expect("recreate");
    assert_eq!(f.store.user_by_key_hash("hash-bob").expect("q"), Some(bob));
}

#[test]
fn limits_changed_by_raw_sql_apply_at_once() {
    let f = common::store();
    common::user(&f.store, "carol");
    let before = f.store.user_by_key_hash("hash-carol").expect("q");
    assert_eq!(before.map(|u| u.limits), Some(Limits::default()));
    let raw = rusqlite::Connection::open(f.dir.path().join("state.db")).expect("raw");
    raw.execute(
        "UPDATE users SET max_sandboxes = 9, max_cpus = 7 WHERE name = 'carol'",
        [],
    )
    .expect("update");
    let after = f.store.user_by_key_hash("hash-carol").expect("q");
    assert_eq!(
        after.map(|u| (u.limits.max_sandboxes, u.limits.max_cpus)),
        Some((9, 7))
    );
}

#[test]
fn destroyed_sandbox_is_gone_at_once_by_id_and_name() {
    let f = common::store();
    common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, "u-alice", "sb-1", "web", 1);
    for q in ["sb-1", "web", "sb-1", "web"] {
        assert_eq!(f.store.find_sandbox("u-alice", q).expect("find").id, "sb-1");
    }
    f.store.mark_sandbox_destroyed("sb-1", 5).expect("destroy");
    common::not_found(f.store.find_sandbox("u-alice", "sb-1"));
    common::not_found(f.store.find_sandbox("u-alice", "web"));

    // The name is free again: a new sandbox under it is the answer.
    common::insert_sandbox(&f.store, "u-alice", "sb-2", "web", 6);
    assert_eq!(
        f.store.find_sandbox("u-alice", "web").expect("find").id,
        "sb-2"
    );
    // Destroyed by another connection (recovery tooling, a second daemon
    // refused at its lock would not, but nothing assumes it).
    assert_eq!(
        f.store.find_sandbox("u-alice", "sb-2").expect("find").id,
        "sb-2"
    );
    operator(&f)
        .mark_sandbox_destroyed("sb-2", 7)
        .expect("destroy");
    common::not_found(f.store.find_sandbox("u-alice", "sb-2"));
    common::not_found(f.store.find_sandbox("u-alice", "web"));
}

#[test]
fn renamed_sandbox_is_found_by_its_new_name_only() {
    let f = common::store();
    common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, "u-alice", "sb-1", "old", 1);
    assert_eq!(
        f.store.find_sandbox("u-alice", "old").expect("find").id,
        "sb-1"
    );
    assert_eq!(
        f.store.find_sandbox("u-alice", "sb-1").expect("find").name,
        "old"
    );
    f.store.rename_sandbox("sb-1", "new").expect("rename");
    common::not_found(f.store.find_sandbox("u-alice", "old"));
    assert_eq!(
        f.store.find_sandbox("u-alice", "new").expect("find").id,
        "sb-1"
    );
    assert_eq!(
        f.store.find_sandbox("u-alice", "sb-1").expect("find").name,
        "new"
    );

    // The old name taken by another sandbox: that one is the answer.
    common::insert_sandbox(&f.store, "u-alice", "sb-2", "old", 2);
    assert_eq!(
        f.store.find_sandbox("u-alice", "old").expect("find").id,
        "sb-2"
    );
}

#[test]
fn mirrored_state_is_seen_by_the_next_lookup() {
    let f = common::store();
    common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, "u-alice", "sb-1", "web", 1);
    let hot = f.store.find_sandbox("u-alice", "web").expect("find");
    assert_eq!((hot.status, hot.thermal), (Status::Running, Thermal::Hot));
    assert!(
        f.store
            .mirror_sandbox_state("sb-1", Status::Stopped, Thermal::Cold, 1, None, 9)
            .expect("mirror")
    );
    let now = f.store.find_sandbox("u-alice", "web").expect("find");
    assert_eq!((now.status, now.thermal), (Status::Stopped, Thermal::Cold));
    assert_eq!(now.stopped_at, Some(9));
    f.store
        .set_sandbox_keep_hot("sb-1", true)
        .expect("keep hot");
    assert!(
        f.store
            .find_sandbox("u-alice", "sb-1")
            .expect("find")
            .keep_hot
    );
}

#[test]
fn another_users_sandbox_is_never_the_answer() {
    let f = common::store();
    common::user(&f.store, "alice");
    common::user(&f.store, "bob");
    common::insert_sandbox(&f.store, "u-alice", "sb-a", "web", 1);
    common::insert_sandbox(&f.store, "u-bob", "sb-b", "web", 2);
    // Each owner's lookups cached, by id and by the shared name.
    for _ in 0..2 {
        assert_eq!(
            f.store.find_sandbox("u-alice", "web").expect("a").id,
            "sb-a"
        );
        assert_eq!(f.store.find_sandbox("u-bob", "web").expect("b").id, "sb-b");
        assert_eq!(
            f.store.find_sandbox("u-alice", "sb-a").expect("a").id,
            "sb-a"
        );
        assert_eq!(f.store.find_sandbox("u-bob", "sb-b").expect("b").id, "sb-b");
        common::not_found(f.store.find_sandbox("u-alice", "sb-b"));
        common::not_found(f.store.find_sandbox("u-bob", "sb-a"));
    }
}

#[test]
fn an_id_wins_over_an_equal_name_from_the_cache_too() {
    let f = common::store();
    common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, "u-alice", "sb-1", "x", 1);
    common::insert_sandbox(&f.store, "u-alice", "sb-2", "sb-1", 2);
    for _ in 0..2 {
        assert_eq!(
            f.store.find_sandbox("u-alice", "sb-1").expect("find").id,
            "sb-1"
        );
    }
    f.store.mark_sandbox_destroyed("sb-1", 3).expect("destroy");
    assert_eq!(
        f.store.find_sandbox("u-alice", "sb-1").expect("find").id,
        "sb-2"
    );
}

#[test]
fn concurrent_lookups_and_writes_never_see_an_older_row() {
    // Writers rename through both connections; after each write returns,
    // every later lookup must show it.
    let f = common::store();
    common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, "u-alice", "sb-1", "n0", 1);
    let other = operator(&f);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..200 {
                    let _ = f.store.find_sandbox("u-alice", "sb-1");
                    let _ = f.store.user_by_key_hash("hash-alice");
                }
            });
        }
        for i in 1..60 {
            let name = format!("n{i}");
            let writer = if i % 2 == 0 { &f.store } else { &other };
            writer.rename_sandbox("sb-1", &name).expect("rename");
            assert_eq!(
                f.store.find_sandbox("u-alice", "sb-1").expect("find").name,
                name
            );
            common::not_found(f.store.find_sandbox("u-alice", &format!("n{}", i - 1)));
        }
    });
}
