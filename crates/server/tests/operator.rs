//! Operator-side pieces against a real data directory: config file
//! loading, user management through the store, secret encryption at rest.

use std::os::unix::fs::PermissionsExt;

use bhatti_server::config::{ConfigError, Egress, EngineKind, ServerConfig};
use bhatti_server::keys;
use bhatti_server::secrets::{SecretBox, SecretError};
use bhatti_server::users::{self, UserError};
use bhatti_store::Store;
use bhatti_store::users::Limits;

#[test]
fn config_defaults_file_overrides_and_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ServerConfig::load(dir.path()).expect("defaults without a file");
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
    assert_eq!((cfg.engine, cfg.egress), (EngineKind::Auto, Egress::Nat));
    assert_eq!(cfg.data_dir, dir.path());
    assert_eq!((cfg.warm_after_secs, cfg.cold_after_secs), (30, 1800));

    std::fs::write(
        ServerConfig::file_in(dir.path()),
        "listen: 127.0.0.1:9999\nengine: qemu\negress: none\nwarm_after_secs: 5\n",
    )
    .expect("write");
    let cfg = ServerConfig::load(dir.path()).expect("file");
    assert_eq!(cfg.listen.port(), 9999);
    assert_eq!(
        (cfg.engine, cfg.egress, cfg.warm_after_secs),
        (EngineKind::Qemu, Egress::None, 5)
    );
    assert_eq!(cfg.image, "minimal", "unset keys keep their defaults");

    std::fs::write(ServerConfig::file_in(dir.path()), "listne: 1.2.3.4:1\n").expect("write");
    let err = ServerConfig::load(dir.path()).expect_err("typo");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(
        err.to_string().contains("listne"),
        "names the bad key: {err}"
    );

    std::fs::write(ServerConfig::file_in(dir.path()), "engine: vmware\n").expect("write");
    assert!(ServerConfig::load(dir.path()).is_err());

    std::fs::write(
        ServerConfig::file_in(dir.path()),
        "warm_after_secs: 100\ncold_after_secs: 10\n",
    )
    .expect("write");
    assert!(matches!(
        ServerConfig::load(dir.path()),
        Err(ConfigError::Invalid(_))
    ));
}

#[test]
fn users_create_authenticate_rotate_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.db")).expect("store");
    let issued = users::create(&store, "alice", Limits::default(), 1).expect("create");
    assert!(keys::is_well_formed(&issued.key));
    assert_ne!(issued.user.key_hash, issued.key, "only the hash is stored");
    let who = users::authenticate(&store, &issued.key)
        .expect("auth")
        .expect("known key");
    assert_eq!(who.name, "alice");
    assert!(
        users::authenticate(&store, "bht_nope")
            .expect("auth")
            .is_none()
    );
    assert!(
        users::authenticate(&store, &keys::generate_key().expect("k"))
            .expect("auth")
            .is_none()
    );

    let rotated = users::rotate_key(&store, "alice").expect("rotate");
    assert!(
        users::authenticate(&store, &issued.key)
            .expect("auth")
            .is_none()
    );
    assert!(
        users::authenticate(&store, &rotated.key)
            .expect("auth")
            .is_some()
    );

    assert!(matches!(
        users::create(&store, "-bad", Limits::default(), 1),
        Err(UserError::InvalidName(_))
    ));
    assert!(matches!(
        users::create(&store, "alice", Limits::default(), 1),
        Err(UserError::Store(_))
    ));
    let zero = Limits {
        max_sandboxes: 0,
        ..Limits::default()
    };
    assert!(matches!(
        users::create(&store, "bob", zero, 1),
        Err(UserError::InvalidLimits(_))
    ));
    store.delete_user("alice").expect("delete");
    assert!(
        users::authenticate(&store, &rotated.key)
            .expect("auth")
            .is_none()
    );
}

#[test]
fn names() {
    for ok in ["a", "web-1", "A.b_c", &"x".repeat(63)] {
        assert!(users::valid_name(ok), "{ok}");
    }
    for bad in ["", "-a", ".a", "a b", "a/b", &"x".repeat(64), "é"] {
        assert!(!users::valid_name(bad), "{bad}");
    }
}

#[test]
fn secrets_are_encrypted_with_a_0600_key_created_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("age.key");
    let sb = SecretBox::load_or_create(&key).expect("create key");
    let mode = std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let ct = sb.encrypt(b"hunter2").expect("encrypt");
    assert!(
        !ct.windows(7).any(|w| w == b"hunter2"),
        "no plaintext in ciphertext"
    );
    // A second load reads the same identity: old ciphertext still opens.
    let again = SecretBox::load_or_create(&key).expect("load");
    assert_eq!(again.decrypt(&ct).expect("decrypt"), b"hunter2");

    // Another daemon's key cannot open it; garbage is an error, not a panic.
    let other = SecretBox::load_or_create(&dir.path().join("other.key")).expect("other");
    assert!(matches!(other.decrypt(&ct), Err(SecretError::Decrypt(_))));
    assert!(sb.decrypt(b"not age").is_err());

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        SecretBox::load_or_create(&key),
        Err(SecretError::KeyFileMode { mode: 0o644, .. })
    ));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&key, "garbage\n").expect("write");
    assert!(matches!(
        SecretBox::load_or_create(&key),
        Err(SecretError::KeyFileInvalid { .. })
    ));
}
