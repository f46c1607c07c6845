//! Users' image names: round trip, names unique per user, per-user
//! lookups, shared content ids counted once, delete.

mod common;

use bhatti_store::StoreError;
use bhatti_store::images::Image;

fn image(user_id: &str, name: &str, id: &str, used: u64, created_at: i64) -> Image {
    Image {
        user_id: user_id.into(),
        name: name.into(),
        image_id: id.into(),
        source: "docker://127.0.0.1:5000/py:3".into(),
        size_bytes: 1 << 30,
        used_bytes: used,
        config: serde_json::json!({"env": {"A": "b"}, "cmd": ["sh"]}),
        created_at,
    }
}

#[test]
fn images_round_trip_per_user_and_names_are_unique_per_user() {
    let f = common::store();
    let alice = common::user(&f.store, "alice");
    let bob = common::user(&f.store, "bob");
    let a = image(&alice.id, "py", "sha256:aa", 100, 10);
    f.store.insert_image(&a).expect("insert");
    f.store
        .insert_image(&image(&alice.id, "py2", "sha256:aa", 100, 20))
        .expect("second name, same id");
    f.store
        .insert_image(&image(&bob.id, "py", "sha256:aa", 100, 30))
        .expect("bob's py");
    assert!(matches!(
        f.store.insert_image(&a),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(f.store.find_image(&alice.id, "py").expect("find"), a);
    let names: Vec<String> = f
        .store
        .list_images(&alice.id)
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["py2", "py"]);
    assert_eq!(f.store.image_id_refs("sha256:aa").expect("refs"), 3);
    // One engine image, counted once per user.
    assert_eq!(f.store.image_bytes(&alice.id).expect("bytes"), 100);
    assert_eq!(
        f.store.image_name_of(&alice.id, "sha256:aa").expect("name"),
        Some("py".into())
    );
    f.store.delete_image(&alice.id, "py").expect("delete");
    assert!(matches!(
        f.store.find_image(&alice.id, "py"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        f.store.delete_image(&alice.id, "py"),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(f.store.image_id_refs("sha256:aa").expect("refs"), 2);
    assert!(f.store.find_image(&bob.id, "py").is_ok());
}

#[test]
fn a_user_with_images_is_not_deleted() {
    let f = common::store();
    let alice = common::user(&f.store, "alice");
    f.store
        .insert_image(&image(&alice.id, "py", "sha256:aa", 1, 1))
        .expect("insert");
    let err = f.store.delete_user("alice").expect_err("owns an image");
    assert!(
        matches!(&err, StoreError::InUse(m) if m.contains("1 image(s)")),
        "{err}"
    );
    f.store.delete_image(&alice.id, "py").expect("delete");
    f.store.delete_user("alice").expect("deleted");
}
