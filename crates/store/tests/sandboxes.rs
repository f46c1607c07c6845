//! Sandboxes: insert, lookup by id or name, live-name uniqueness, state
//! updates, destroy, listing order and isolation between users.

mod common;

use bhatti_store::StoreError;
use bhatti_store::sandboxes::{Status, Thermal};

#[test]
fn insert_and_find_by_id_or_name_round_trips_every_field() {
    let f = common::store();
    let u = common::user(&f.store, "alice");
    let mut sb = common::sandbox(&u.id, "sb1", "web", 10);
    sb.template_id = Some("t1".into());
    sb.keep_hot = true;
    f.store.insert_sandbox(&sb).expect("insert");
    assert_eq!(f.store.find_sandbox(&u.id, "sb1").expect("by id"), sb);
    assert_eq!(f.store.find_sandbox(&u.id, "web").expect("by name"), sb);
    assert_eq!(f.store.sandbox_by_id("sb1").expect("by id"), sb);
}

#[test]
fn another_users_sandbox_is_not_found() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    let b = common::user(&f.store, "bob");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb1", "web", 1))
        .expect("insert");
    assert!(matches!(
        f.store.find_sandbox(&b.id, "sb1"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        f.store.find_sandbox(&b.id, "web"),
        Err(StoreError::NotFound(_))
    ));
    assert!(f.store.list_sandboxes(&b.id).expect("list").is_empty());
}

#[test]
fn live_names_are_unique_per_user_and_freed_by_destroy() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    let b = common::user(&f.store, "bob");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb1", "web", 1))
        .expect("insert");
    let err = f
        .store
        .insert_sandbox(&common::sandbox(&a.id, "sb2", "web", 2))
        .expect_err("dup");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // Another user may use the same name.
    f.store
        .insert_sandbox(&common::sandbox(&b.id, "sb3", "web", 3))
        .expect("other user");
    // Destroying frees the name; the old row stays for audit.
    f.store.mark_sandbox_destroyed("sb1", 4).expect("destroy");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb4", "web", 5))
        .expect("reuse name");
    let old = f.store.sandbox_by_id("sb1").expect("kept");
    assert_eq!(old.status, Status::Destroyed);
    assert_eq!(old.destroyed_at, Some(4));
    assert_eq!(old.ip, None, "a destroyed sandbox releases its IP");
    assert!(matches!(
        f.store.find_sandbox(&a.id, "sb1"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        f.store.mark_sandbox_destroyed("sb1", 6),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn rename_checks_live_uniqueness() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb1", "one", 1))
        .expect("insert");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb2", "two", 2))
        .expect("insert");
    assert!(matches!(
        f.store.rename_sandbox("sb2", "one"),
        Err(StoreError::Conflict(_))
    ));
    f.store.rename_sandbox("sb2", "three").expect("rename");
    assert_eq!(
        f.store.find_sandbox(&a.id, "three").expect("found").id,
        "sb2"
    );
}

#[test]
fn listing_is_newest_first_and_counts_only_live() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        f.store
            .insert_sandbox(&common::sandbox(&a.id, id, &format!("n{i}"), i as i64))
            .expect("insert");
    }
    f.store.mark_sandbox_destroyed("b", 9).expect("destroy");
    let ids: Vec<_> = f
        .store
        .list_sandboxes(&a.id)
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["c", "a"]);
    assert_eq!(f.store.count_live_sandboxes(&a.id).expect("count"), 2);
    let live: Vec<_> = f
        .store
        .list_live_sandboxes()
        .expect("all")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, ["a", "c"]);
}

#[test]
fn state_snapshot_and_stop_time_updates_persist() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb1", "web", 1))
        .expect("insert");
    f.store
        .set_sandbox_state("sb1", Status::Stopped, Thermal::Cold, None)
        .expect("state");
    f.store
        .set_sandbox_snapshot("sb1", Some("/d/sandboxes/sb1/snap"))
        .expect("snap");
    f.store
        .set_sandbox_stopped_at("sb1", Some(50))
        .expect("stopped_at");
    f.store.set_sandbox_keep_hot("sb1", true).expect("keep_hot");
    f.store.set_sandbox_ip("sb1", Some("10.0.0.9")).expect("ip");
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!((s.status, s.thermal), (Status::Stopped, Thermal::Cold));
    assert_eq!(s.snapshot_path.as_deref(), Some("/d/sandboxes/sb1/snap"));
    assert_eq!(s.stopped_at, Some(50));
    assert!(s.keep_hot);
    assert_eq!(s.ip.as_deref(), Some("10.0.0.9"));

    f.store
        .set_sandbox_state(
            "sb1",
            Status::Unknown,
            Thermal::Cold,
            Some("VMM died, no snapshot"),
        )
        .expect("unknown");
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!(s.status_reason.as_deref(), Some("VMM died, no snapshot"));
    assert!(matches!(
        f.store
            .set_sandbox_state("missing", Status::Running, Thermal::Hot, None),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn thermal_updates_never_revive_a_stopped_sandbox() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb1", "web", 1))
        .expect("insert");
    f.store
        .set_sandbox_state("sb1", Status::Running, Thermal::Hot, None)
        .expect("running");
    assert!(
        f.store
            .set_running_thermal("sb1", Thermal::Warm)
            .expect("warm")
    );
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!((s.status, s.thermal), (Status::Running, Thermal::Warm));
    // A stop lands between the thermal manager's read and its write.
    f.store
        .set_sandbox_state("sb1", Status::Stopped, Thermal::Cold, None)
        .expect("stopped");
    assert!(
        !f.store
            .set_running_thermal("sb1", Thermal::Hot)
            .expect("late")
    );
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!((s.status, s.thermal), (Status::Stopped, Thermal::Cold));
    assert!(
        !f.store
            .set_running_thermal("missing", Thermal::Hot)
            .expect("missing")
    );
}

#[test]
fn a_corrupt_row_is_reported_not_panicked_on() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb1", "web", 1))
        .expect("insert");
    let raw = rusqlite::Connection::open(f.dir.path().join("state.db")).expect("open");
    raw.execute(
        "UPDATE sandboxes SET thermal = 'lukewarm' WHERE id = 'sb1'",
        [],
    )
    .expect("corrupt");
    let err = f.store.sandbox_by_id("sb1").expect_err("corrupt");
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                what: "thermal state",
                ..
            }
        ),
        "{err}"
    );
    raw.execute(
        "UPDATE sandboxes SET thermal = 'hot', spec = '{oops' WHERE id = 'sb1'",
        [],
    )
    .expect("corrupt");
    let err = f.store.list_sandboxes(&a.id).expect_err("corrupt spec");
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                what: "sandbox spec",
                ..
            }
        ),
        "{err}"
    );
}
