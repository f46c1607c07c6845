//! Templates, secrets, volumes with attachments (published ports: `published.rs`).

mod common;

use bhatti_store::StoreError;
use bhatti_store::templates::Template;
use bhatti_store::volumes::{Attachment, Volume};

#[test]
fn templates_crud_per_user() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    let b = common::user(&f.store, "bob");
    let t = Template {
        id: "t1".into(),
        user_id: a.id.clone(),
        name: "py".into(),
        spec: serde_json::json!({"cpus": 2, "image": "minimal"}),
        created_at: 1,
    };
    f.store.create_template(&t).expect("create");
    common::conflict(f.store.create_template(&Template {
        id: "t2".into(),
        ..t.clone()
    }));
    assert_eq!(f.store.find_template(&a.id, "py").expect("by name"), t);
    assert_eq!(f.store.find_template(&a.id, "t1").expect("by id"), t);
    common::not_found(f.store.find_template(&b.id, "t1"));
    assert_eq!(f.store.list_templates(&a.id).expect("list"), vec![t]);
    common::not_found(f.store.delete_template(&b.id, "t1"));
    f.store.delete_template(&a.id, "py").expect("delete");
    assert!(f.store.list_templates(&a.id).expect("list").is_empty());
}

#[test]
fn secrets_upsert_list_delete_never_expose_values() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    let b = common::user(&f.store, "bob");
    let new = f
        .store
        .upsert_secret(&a.id, "TOKEN", b"cipher-1", 10)
        .expect("new");
    assert_eq!(
        (new.name.as_str(), new.created_at, new.updated_at),
        ("TOKEN", 10, 10)
    );
    let replaced = f
        .store
        .upsert_secret(&a.id, "TOKEN", b"cipher-2", 20)
        .expect("update");
    assert_eq!((replaced.created_at, replaced.updated_at), (10, 20));
    assert_eq!(
        f.store.secret_ciphertext(&a.id, "TOKEN").expect("get"),
        b"cipher-2"
    );
    let list = f.store.list_secrets(&a.id).expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].created_at, list[0].updated_at), (10, 20));
    common::not_found(f.store.secret_ciphertext(&b.id, "TOKEN"));
    f.store.delete_secret(&a.id, "TOKEN").expect("delete");
    common::not_found(f.store.delete_secret(&a.id, "TOKEN"));
}

fn volume(user_id: &str, id: &str, name: &str) -> Volume {
    Volume {
        id: id.into(),
        user_id: user_id.into(),
        name: name.into(),
        size_mb: 64,
        path: format!("/d/volumes/{id}.ext4"),
        created_at: 1,
    }
}

#[test]
fn a_volume_is_attached_to_one_live_sandbox_at_a_time() {
    let f = common::store();
    let a = common::user(&f.store, "alice");
    f.store
        .create_volume(&volume(&a.id, "v1", "data"))
        .expect("create");
    common::conflict(f.store.create_volume(&volume(&a.id, "v2", "data")));
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb1", "one", 1))
        .expect("sb1");
    f.store
        .insert_sandbox(&common::sandbox(&a.id, "sb2", "two", 2))
        .expect("sb2");
    let att = |sb: &str| Attachment {
        volume_id: "v1".into(),
        sandbox_id: sb.into(),
        mount: "/data".into(),
        readonly: false,
    };
    f.store.attach_volume(&att("sb1")).expect("attach");
    assert_eq!(
        f.store.sandbox_attachments("sb1").expect("list"),
        vec![att("sb1")]
    );
    let err = f
        .store
        .attach_volume(&att("sb2"))
        .expect_err("second live sandbox");
    assert!(
        matches!(err, StoreError::InUse(ref m) if m.contains("one")),
        "{err}"
    );
    let err = f.store.delete_volume(&a.id, "data").expect_err("in use");
    assert!(matches!(err, StoreError::InUse(_)), "{err}");

    // Destroying the sandbox releases the volume; it survives and can move.
    f.store.mark_sandbox_destroyed("sb1", 3).expect("destroy");
    assert!(f.store.sandbox_attachments("sb1").expect("list").is_empty());
    f.store
        .attach_volume(&att("sb2"))
        .expect("attach to the next sandbox");
    f.store.mark_sandbox_destroyed("sb2", 4).expect("destroy");
    let v = f.store.delete_volume(&a.id, "data").expect("delete");
    assert_eq!(v.path, "/d/volumes/v1.ext4");
    assert!(f.store.list_volumes(&a.id).expect("list").is_empty());
}
