use std::collections::BTreeMap;
use std::process::Command;

use bhatti_proto::config::{GuestFile, GuestVolume};

use super::*;

fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs) runs");
    assert!(out.status.success(), "debugfs failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn sample() -> GuestConfig {
    GuestConfig {
        sandbox_id: "sb-1".into(),
        hostname: "box".into(),
        token: "ab".repeat(32),
        env: BTreeMap::from([("A".into(), "1".into())]),
        files: vec![GuestFile {
            path: "/etc/x".into(),
            content_b64: "aGk=".into(),
            mode: "0600".into(),
            root_owned: true,
        }],
        volumes: vec![GuestVolume {
            device: "/dev/vdc".into(),
            mount: "/data".into(),
            readonly: false,
        }],
        init: Some("echo hi".into()),
        dns: vec!["10.0.0.1".into()],
        // Kept by the scrub: a boot from this disk needs it again.
        exec_user: Some("lohar".into()),
        ..GuestConfig::default()
    }
}

#[test]
fn config_reads_back_from_the_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("config.ext4");
    let cfg = sample();
    build(&cfg, &img).expect("build");

    let json = debugfs(&img, "cat /config.json");
    let back: GuestConfig = serde_json::from_str(&json).expect("valid json");
    assert_eq!(back, cfg);

    let stat = debugfs(&img, "stat /config.json");
    assert!(stat.contains("Mode:  0600"), "{stat}");

    let label = Command::new("e2label").arg(&img).output().expect("e2label");
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), LABEL);

    // Only the image is left behind: no staging dir, no temp file.
    assert_only_the_drive_in(dir.path());
}

#[test]
fn image_is_small_and_sparse() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("c.ext4");
    build(&GuestConfig::default(), &img).expect("build");
    let md = fs::metadata(&img).expect("metadata");
    assert_eq!(md.len(), MIN_SIZE + (1 << 20));
    assert!(
        md.blocks() * 512 < md.len(),
        "not sparse: {} blocks",
        md.blocks()
    );
}

#[test]
fn rebuild_replaces_previous_drive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("c.ext4");
    build(&sample(), &img).expect("first");
    let second = GuestConfig {
        hostname: "other".into(),
        ..GuestConfig::default()
    };
    build(&second, &img).expect("second");
    let back: GuestConfig = serde_json::from_str(&debugfs(&img, "cat /config.json")).expect("json");
    assert_eq!(back.hostname, "other");
}

#[test]
fn missing_parent_is_a_clear_error() {
    let err = build(
        &GuestConfig::default(),
        Path::new("/nonexistent-dir-for-test/c.ext4"),
    )
    .expect_err("must fail");
    assert!(matches!(err, ConfigDriveError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent-dir-for-test"),
        "{err}"
    );
}

#[test]
fn size_grows_with_content() {
    assert_eq!(image_size(0), MIN_SIZE);
    assert_eq!(image_size(1), 5 << 20);
    assert_eq!(image_size(3 << 20), 10 << 20);
    assert_eq!(image_size(usize::MAX), u64::MAX);
}

#[test]
fn boot_drive_is_scrubbed_to_what_is_not_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("config.ext4");
    let cfg = sample();
    let boot = build_for_boot(&cfg, &img).expect("build");

    let first: GuestConfig =
        serde_json::from_str(&debugfs(&img, "cat /config.json")).expect("json");
    assert_eq!(first, cfg, "the guest boots with everything");
    let size = fs::metadata(&img).expect("meta").len();

    boot.scrub().expect("scrub");
    let after: GuestConfig =
        serde_json::from_str(&debugfs(&img, "cat /config.json")).expect("json");
    let token = after.token.clone();
    assert_eq!(
        after,
        GuestConfig {
            token: token.clone(),
            env: BTreeMap::new(),
            files: Vec::new(),
            init: None,
            ..cfg.clone()
        }
    );
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "lockout token {token:?}"
    );
    assert_ne!(token, cfg.token);
    let bytes = fs::read(&img).expect("read");
    for needle in [cfg.token.as_bytes(), b"echo hi", b"\"A\""] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{:?} left on the drive",
            String::from_utf8_lossy(needle)
        );
    }
    assert_eq!(fs::metadata(&img).expect("meta").len(), size, "same size");
    assert_only_the_drive_in(dir.path());
}

#[test]
fn drives_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("config.ext4");
    let boot = build_for_boot(&sample(), &img).expect("build");
    let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&img), 0o600);
    let mut scrubbed = img.as_os_str().to_owned();
    scrubbed.push(SCRUBBED_SUFFIX);
    assert_eq!(mode(Path::new(&scrubbed)), 0o600);
    boot.scrub().expect("scrub");
    assert_eq!(mode(&img), 0o600);
}

/// `dir` holds `config.ext4` and nothing else (no staging dir, no temp
/// file).
fn assert_only_the_drive_in(dir: &Path) {
    let names: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("config.ext4")]);
}
