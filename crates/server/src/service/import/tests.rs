//! Unit tests of import requests and jobs.

use super::*;
use crate::model::images::ImportImage;

fn json(source: &str) -> ImportImage {
    ImportImage {
        source: source.into(),
        name: None,
        insecure: None,
        username: None,
        password: None,
        token: None,
    }
}

#[test]
fn json_imports_take_registries_only_and_name_them_by_repository() {
    for file in [
        "oci:/etc",
        "oci-archive:/x.tar",
        "docker-archive:/x",
        "rootfs:/x.tar",
    ] {
        assert!(Request::registry(json(file)).is_err(), "{file}");
    }
    let r = Request::registry(json("docker://127.0.0.1:5000/lib/py:3")).expect("registry");
    assert_eq!(r.default_name().expect("name"), "py");
    let mut half = json("py:3");
    half.username = Some("u".into());
    assert!(Request::registry(half).is_err());
    assert!(Request::upload("zip", None, PathBuf::from("/nonexistent")).is_err());
}

#[test]
fn stale_uploads_are_removed_when_the_daemon_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stale = dir.path().join(UPLOADS).join("up-1.tar");
    std::fs::create_dir_all(stale.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stale, b"x").expect("write");
    let jobs = Jobs::new(dir.path());
    assert!(!stale.exists());
    assert!(jobs.get("u-1", "imp-1").is_none());
}

#[test]
fn a_blob_cache_goes_with_its_users_last_running_import() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = Jobs::new(dir.path());
    let cache = dir.path().join(BLOBS).join("u-1");
    std::fs::create_dir_all(&cache).expect("mkdir");
    jobs.enter("u-1");
    jobs.enter("u-1");
    jobs.leave("u-1");
    assert!(cache.exists(), "another import of the user still runs");
    jobs.leave("u-1");
    assert!(!cache.exists());
    // A daemon start removes what a stopped one left.
    std::fs::create_dir_all(&cache).expect("mkdir");
    drop(Jobs::new(dir.path()));
    assert!(!dir.path().join(BLOBS).exists());
}
