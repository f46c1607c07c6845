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
    common::insert_sandbox(&f.store, &a.id, "sb1", "web", 1);
    common::not_found(f.store.find_sandbox(&b.id, "sb1"));
    common::not_found(f.store.find_sandbox(&b.id, "web"));
    assert!(f.store.list_sandboxes(&b.id).expect("list").is_empty());
}

#[test]
fn live_names_are_unique_per_user_and_freed_by_destroy() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    let b = common::user(&f.store, "bob");
    common::insert_sandbox(&f.store, &a.id, "sb1", "web", 1);
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
    common::not_found(f.store.find_sandbox(&a.id, "sb1"));
    common::not_found(f.store.mark_sandbox_destroyed("sb1", 6));
}

#[test]
fn rename_checks_live_uniqueness() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, &a.id, "sb1", "one", 1);
    common::insert_sandbox(&f.store, &a.id, "sb2", "two", 2);
    common::conflict(f.store.rename_sandbox("sb2", "one"));
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
    // Every user's live ones count for the daemon's health.
    let b = common::user(&f.store, "bob");
    common::insert_sandbox(&f.store, &b.id, "d", "d", 5);
    assert_eq!(f.store.count_all_live_sandboxes().expect("count all"), 3);
}

#[test]
fn state_and_settings_updates_persist() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, &a.id, "sb1", "web", 1);
    f.store
        .set_sandbox_state("sb1", Status::Stopped, Thermal::Cold, None)
        .expect("state");
    f.store.set_sandbox_keep_hot("sb1", true).expect("keep_hot");
    f.store.set_sandbox_ip("sb1", Some("10.0.0.9")).expect("ip");
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!((s.status, s.thermal), (Status::Stopped, Thermal::Cold));
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
    common::not_found(
        f.store
            .set_sandbox_state("missing", Status::Running, Thermal::Hot, None),
    );
}

#[test]
fn mirrored_state_never_goes_back_to_an_older_one() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, &a.id, "sb1", "web", 1);
    let mirror = |status, thermal, seq| {
        f.store
            .mirror_sandbox_state(
                "sb1",
                status,
                thermal,
                seq,
                None,
                100 + i64::try_from(seq).unwrap_or(0),
            )
            .expect("mirror")
    };
    assert!(mirror(Status::Running, Thermal::Warm, 2));
    // A stop (seq 4) lands before the thermal step it raced (seq 3).
    assert!(mirror(Status::Stopped, Thermal::Cold, 4));
    assert!(
        !mirror(Status::Running, Thermal::Hot, 3),
        "older state written"
    );
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!((s.status, s.thermal), (Status::Stopped, Thermal::Cold));
    assert_eq!(s.stopped_at, Some(104));
    // Still stopped: the stop time stays the first one.
    assert!(mirror(Status::Stopped, Thermal::Cold, 5));
    assert_eq!(
        f.store.sandbox_by_id("sb1").expect("get").stopped_at,
        Some(104)
    );
    // A restarted daemon's engine counts from 1 again.
    f.store.reset_state_seqs().expect("reset");
    assert!(mirror(Status::Running, Thermal::Cold, 1));
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!(
        (s.status, s.thermal, s.status_reason),
        (Status::Running, Thermal::Cold, None)
    );
    // The engine's note becomes the status reason, and goes with it.
    let noted = f
        .store
        .mirror_sandbox_state(
            "sb1",
            Status::Running,
            Thermal::Cold,
            2,
            Some("memory lost"),
            0,
        )
        .expect("mirror");
    assert!(noted);
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!(s.status_reason.as_deref(), Some("memory lost"));
    assert!(mirror(Status::Running, Thermal::Hot, 3));
    let s = f.store.sandbox_by_id("sb1").expect("get");
    assert_eq!(s.status_reason, None);
    // Destroyed is terminal; a missing row is nothing written.
    f.store.mark_sandbox_destroyed("sb1", 200).expect("destroy");
    assert!(!mirror(Status::Running, Thermal::Hot, 9));
    assert!(
        !f.store
            .mirror_sandbox_state("missing", Status::Running, Thermal::Hot, 1, None, 0)
            .expect("missing")
    );
}

#[test]
fn create_is_one_transaction() {
    use bhatti_store::volumes::{Attachment, Volume};
    let f = common::store();
    let a = common::user(&f.store, "alice");
    let vol = |id: &str, name: &str| Volume {
        id: id.into(),
        user_id: a.id.clone(),
        name: name.into(),
        size_mb: 8,
        path: format!("/d/volumes/{id}.ext4"),
        created_at: 1,
    };
    let att = |v: &str, sb: &str| Attachment {
        volume_id: v.into(),
        sandbox_id: sb.into(),
        mount: "/data".into(),
        readonly: false,
    };
    f.store
        .create_sandbox(
            &common::sandbox(&a.id, "sb1", "web", 1),
            &[vol("v1", "data")],
            &[att("v1", "sb1")],
        )
        .expect("create");
    assert_eq!(f.store.sandbox_attachments("sb1").expect("att").len(), 1);
    // The second create's attachment fails (v1 is in use): neither its new
    // volume nor its row may remain.
    let err = f
        .store
        .create_sandbox(
            &common::sandbox(&a.id, "sb2", "api", 2),
            &[vol("v2", "cache")],
            &[att("v2", "sb2"), att("v1", "sb2")],
        )
        .expect_err("in use");
    assert!(matches!(err, StoreError::InUse(_)), "{err}");
    common::not_found(f.store.sandbox_by_id("sb2"));
    common::not_found(f.store.find_volume(&a.id, "cache"));
    // A name clash is a conflict, with nothing written either.
    let err = f
        .store
        .create_sandbox(
            &common::sandbox(&a.id, "sb3", "web", 3),
            &[vol("v3", "other")],
            &[],
        )
        .expect_err("name");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    common::not_found(f.store.find_volume(&a.id, "other"));
}

#[test]
fn a_corrupt_row_is_reported_not_panicked_on() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    common::insert_sandbox(&f.store, &a.id, "sb1", "web", 1);
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
