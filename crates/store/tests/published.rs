//! Published ports: per-user alias namespaces, public tags, routing by
//! `<alias>-<tag>`, and the migration of rows published before aliases
//! were per user.

mod common;

use bhatti_store::Store;
use bhatti_store::published::{Published, TAG_LEN};

fn published(user: &str, alias: &str, sandbox: &str, port: u16) -> Published {
    Published {
        user_id: user.into(),
        alias: alias.into(),
        sandbox_id: sandbox.into(),
        port,
        created_at: 1,
    }
}

#[test]
fn aliases_are_per_user_and_named_by_tag() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    let b = common::user(&f.store, "bob");
    for (user, sb) in [(&a, "sa"), (&b, "sb")] {
        f.store
            .insert_sandbox(&common::sandbox(&user.id, sb, "web", 1))
            .expect("sb");
    }
    assert_eq!(f.store.publish_tag(&a.id).expect("tag"), None);
    let pa = published(&a.id, "blog", "sa", 8080);
    let ta = f.store.publish_port(&pa).expect("alice publishes");
    assert!(
        ta.len() == TAG_LEN
            && ta
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(f.store.publish_tag(&a.id).expect("tag"), Some(ta.clone()));
    // The same alias is alice's own conflict, and so is the same port.
    for dup in [
        published(&a.id, "blog", "sa", 9090),
        published(&a.id, "other", "sa", 8080),
    ] {
        common::conflict(f.store.publish_port(&dup));
    }
    // Bob's "blog" is his own: no conflict, his own tag.
    let pb = published(&b.id, "blog", "sb", 8080);
    let tb = f
        .store
        .publish_port(&pb)
        .expect("bob publishes the same alias");
    assert_ne!(ta, tb);
    assert_eq!(
        f.store.published_by_name("blog", &ta).expect("q"),
        Some(pa.clone())
    );
    assert_eq!(
        f.store.published_by_name("blog", &tb).expect("q"),
        Some(pb.clone())
    );
    assert_eq!(
        f.store.published_by_name("blog", "00000000").expect("q"),
        None
    );
    // A second publish keeps the user's tag.
    let pa2 = published(&a.id, "api", "sa", 3000);
    assert_eq!(f.store.publish_port(&pa2).expect("publish"), ta);
    assert_eq!(
        f.store.list_published("sa").expect("list"),
        vec![pa2.clone(), pa.clone()]
    );

    f.store.unpublish_port("sa", 8080).expect("unpublish");
    assert_eq!(f.store.published_by_name("blog", &ta).expect("q"), None);
    assert_eq!(f.store.published_by_name("blog", &tb).expect("q"), Some(pb));
    common::not_found(f.store.unpublish_port("sa", 8080));

    // Destroy removes the sandbox's aliases.
    f.store.mark_sandbox_destroyed("sa", 3).expect("destroy");
    assert_eq!(f.store.published_by_name("api", &ta).expect("q"), None);
}

#[test]
fn rows_published_before_per_user_aliases_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        // A database at schema version 1, with two users' aliases, one of
        // them on the agent's control port.
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(include_str!("../src/migrations/0001_init.sql"))
            .expect("v1 schema");
        c.execute_batch(
            "INSERT INTO users VALUES ('u-a', 'alice', 'ha', 5, 4, 4096, 1), \
                                      ('u-b', 'bob', 'hb', 5, 4, 4096, 1);
             INSERT INTO sandboxes (id, user_id, name, status, thermal, cpus, memory_mb, \
                 image, agent_token, spec, created_at) VALUES \
                 ('sa', 'u-a', 'web', 'running', 'hot', 1, 512, 'minimal', 't', '{}', 1), \
                 ('sb', 'u-b', 'web', 'running', 'hot', 1, 512, 'minimal', 't', '{}', 1);
             INSERT INTO published_ports VALUES ('site', 'sa', 8080, 5), \
                 ('agent', 'sa', 1024, 5), ('shop', 'sb', 3000, 6);
             PRAGMA user_version = 1;",
        )
        .expect("v1 rows");
    }
    let store = Store::open(&path).expect("migrate");
    assert_eq!(store.schema_version().expect("version"), 7);
    let ta = store
        .publish_tag("u-a")
        .expect("q")
        .expect("alice has a tag");
    let tb = store.publish_tag("u-b").expect("q").expect("bob has a tag");
    assert_ne!(ta, tb);
    assert_eq!(
        store.list_published("sa").expect("list"),
        vec![Published {
            user_id: "u-a".into(),
            alias: "site".into(),
            sandbox_id: "sa".into(),
            port: 8080,
            created_at: 5,
        }]
    );
    assert_eq!(store.published_by_name("agent", &ta).expect("q"), None);
    assert_eq!(
        store
            .published_by_name("shop", &tb)
            .expect("q")
            .map(|p| p.port),
        Some(3000)
    );
    // Bob may now take alice's alias for himself.
    store
        .publish_port(&published("u-b", "site", "sb", 8080))
        .expect("bob's site");
}
