//! Sandbox TTLs and labels: round trip, expiry query, clearing, and that
//! destroyed sandboxes never expire again.

mod common;

use std::collections::BTreeMap;

use bhatti_store::sandboxes::OnExpire;

#[test]
fn labels_and_expiry_round_trip_and_expired_lists_only_the_due() {
    let f = common::store();
    let u = common::user(&f.store, "alice");
    let mut a = common::sandbox(&u.id, "a", "a", 10);
    a.labels = BTreeMap::from([("team".into(), "ml".into()), ("env".into(), "dev".into())]);
    a.expires_at = Some(1_000);
    a.on_expire = OnExpire::Stop;
    f.store.insert_sandbox(&a).expect("insert a");
    let b = common::sandbox(&u.id, "b", "b", 11);
    f.store.insert_sandbox(&b).expect("insert b");
    assert_eq!(f.store.find_sandbox(&u.id, "a").expect("a"), a);

    assert!(f.store.expired_sandboxes(999).expect("query").is_empty());
    let due = f.store.expired_sandboxes(1_000).expect("query");
    assert_eq!(due.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a"]);

    // Extended: no longer due; b gets a TTL that is.
    f.store
        .set_sandbox_expiry("a", Some(5_000), OnExpire::Stop)
        .expect("extend");
    f.store
        .set_sandbox_expiry("b", Some(900), OnExpire::Destroy)
        .expect("set b");
    let due = f.store.expired_sandboxes(1_000).expect("query");
    assert_eq!(due.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(due[0].on_expire, OnExpire::Destroy);

    // Cleared, and a destroyed sandbox is never due.
    f.store
        .set_sandbox_expiry("b", None, OnExpire::Destroy)
        .expect("clear");
    f.store.mark_sandbox_destroyed("a", 2_000).expect("destroy");
    assert!(f.store.expired_sandboxes(10_000).expect("query").is_empty());

    let labels = BTreeMap::from([("k".into(), "v".into())]);
    f.store.set_sandbox_labels("b", &labels).expect("labels");
    assert_eq!(f.store.find_sandbox(&u.id, "b").expect("b").labels, labels);
    assert!(
        f.store.set_sandbox_labels("a", &labels).is_err(),
        "destroyed"
    );
}
