use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use super::*;

#[test]
fn missing_images_name_the_build_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = ImagePaths::new(dir.path());
    let k = paths.kernel().expect_err("no kernel").to_string();
    assert!(k.contains("cargo xtask images"), "{k}");
    let r = paths
        .rootfs(Tier::Minimal)
        .expect_err("no rootfs")
        .to_string();
    assert!(r.contains("cargo xtask images --tier minimal"), "{r}");

    fs::write(dir.path().join("vmlinux"), b"k").expect("write");
    fs::write(dir.path().join("busybox.ext4"), b"r").expect("write");
    assert_eq!(paths.kernel().expect("kernel"), dir.path().join("vmlinux"));
    assert_eq!(
        paths.rootfs(Tier::Busybox).expect("rootfs"),
        dir.path().join("busybox.ext4")
    );
}

#[test]
fn tiers_parse_and_print() {
    for t in Tier::ALL {
        assert_eq!(t.name().parse::<Tier>().expect("parse"), t);
    }
    assert!(matches!(
        "alpine".parse::<Tier>(),
        Err(ImageError::UnknownTier(_))
    ));
}

#[test]
fn copy_keeps_content_and_holes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.img");
    let mut f = fs::File::create(&src).expect("create");
    f.set_len(64 << 20).expect("set_len");
    f.seek(SeekFrom::Start(32 << 20)).expect("seek");
    f.write_all(b"middle").expect("write");
    drop(f);
    let dst = dir.path().join("dst.img");
    copy_rootfs(&src, &dst).expect("copy");
    let (a, b) = (fs::read(&src).expect("read"), fs::read(&dst).expect("read"));
    assert!(a == b, "content differs");
    let md = fs::metadata(&dst).expect("metadata");
    assert!(
        md.blocks() * 512 < 1 << 20,
        "copy not sparse: {} blocks",
        md.blocks()
    );
}

#[test]
fn copy_failure_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err =
        copy_rootfs(&dir.path().join("absent"), &dir.path().join("x")).expect_err("must fail");
    assert!(matches!(err, ImageError::Copy { .. }), "{err:?}");
}

#[test]
fn grow_is_sparse_and_never_shrinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("root.img");
    fs::write(&p, b"superblock").expect("write");
    grow_rootfs(&p, 256 << 20).expect("grow");
    let md = fs::metadata(&p).expect("metadata");
    assert_eq!(md.len(), 256 << 20);
    assert!(md.blocks() * 512 < 1 << 20, "not sparse: {}", md.blocks());
    assert!(fs::read(&p).expect("read").starts_with(b"superblock"));
    grow_rootfs(&p, 1 << 20).expect("a smaller size is a no-op");
    assert_eq!(fs::metadata(&p).expect("metadata").len(), 256 << 20);
    let err = grow_rootfs(&dir.path().join("absent"), 1).expect_err("must fail");
    assert!(matches!(err, ImageError::Grow { .. }), "{err:?}");
}

#[test]
fn disk_limits_come_from_the_image_size_and_its_block_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (block, group_mib) in [("1024", 8u64), ("4096", 128)] {
        let img = dir.path().join(format!("fs-{block}.ext4"));
        fs::File::create(&img)
            .and_then(|f| f.set_len(32 << 20))
            .expect("image");
        let out = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", block])
            .arg(&img)
            .output()
            .expect("mkfs.ext4");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let l = disk_limits(&img).expect("limits");
        assert_eq!(l.min, 32 << 20);
        assert_eq!(l.max, MAX_GROWN_GROUPS * (group_mib << 20), "{block}");
    }
    let junk = dir.path().join("junk");
    fs::write(&junk, vec![0u8; 4096]).expect("write");
    let err = disk_limits(&junk).expect_err("not ext4");
    assert!(matches!(err, ImageError::NotExt4 { .. }), "{err:?}");
    let err = disk_limits(&dir.path().join("absent")).expect_err("absent");
    assert!(matches!(err, ImageError::NotExt4 { .. }), "{err:?}");
}

#[test]
fn image_refs_are_tiers_or_sha256_ids() {
    let id = format!("sha256:{}", "ab".repeat(32));
    for text in ["busybox", "minimal", "dev", id.as_str()] {
        let r: ImageRef = text.parse().expect(text);
        assert_eq!(r.to_string(), text);
        let json = serde_json::to_string(&r).expect("json");
        assert_eq!(serde_json::from_str::<ImageRef>(&json).expect("back"), r);
    }
    assert_eq!(
        ImageRef::stored(&id).expect("id").short(),
        "abababababababab"
    );
    for bad in ["sha256:", "sha256:AB", "sha256:../x", "sha512:00", "ubuntu"] {
        assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
    }
}

#[test]
fn overlays_name_their_image_and_never_copy_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base.ext4");
    fs::File::create(&base)
        .and_then(|f| f.set_len(64 << 20))
        .expect("base");
    let ov = dir.path().join(overlay::OVERLAY_FILE);
    overlay::create(&base, &ov, Some(128 << 20)).expect("overlay");
    assert_eq!(overlay::format_of(&ov), "qcow2");
    assert_eq!(overlay::format_of(&base), "raw");
    assert_eq!(overlay::backing_of(&ov), Some(base.clone()));
    assert!(fs::metadata(&ov).expect("meta").len() < 1 << 20);
    // A raw file is never read as an overlay, whatever it holds.
    assert_eq!(overlay::backing_of(&base), None);
    let flat = dir.path().join("flat.ext4");
    overlay::flatten(&ov, &flat).expect("flatten");
    assert_eq!(fs::metadata(&flat).expect("meta").len(), 128 << 20);
    // Sparse: an all-zero disk takes (almost) nothing.
    assert!(fs::metadata(&flat).expect("meta").blocks() <= 64);
}

#[test]
fn the_store_pins_tier_versions_and_keeps_images_by_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ImagePaths::new(dir.path().join("cache"));
    fs::create_dir_all(cache.dir()).expect("cache");
    let tier = cache.dir().join("busybox.ext4");
    fs::write(&tier, b"v1").expect("tier");
    let store = ImageStore::new(dir.path().join("images"));
    let pinned = store.base(&Tier::Busybox.into(), &cache).expect("pin");
    assert_eq!(
        store.base(&Tier::Busybox.into(), &cache).expect("again"),
        pinned
    );
    // xtask replaces the tier: the old version stays pinned while used.
    let next = cache.dir().join(".next");
    fs::write(&next, b"v2 longer").expect("next");
    fs::rename(&next, &tier).expect("rename");
    let newer = store.base(&Tier::Busybox.into(), &cache).expect("pin v2");
    assert_ne!(newer, pinned);
    assert_eq!(fs::read(&pinned).expect("old"), b"v1");
    store.prune_tiers(&std::collections::HashSet::new(), &cache);
    assert!(!pinned.exists() && newer.exists());

    let id = format!("sha256:{}", "0".repeat(64));
    let missing = store.base(&ImageRef::stored(&id).expect("id"), &cache);
    assert!(
        matches!(missing, Err(ImageError::NotStored(_))),
        "{missing:?}"
    );
    let disk = store.scratch_file("ext4").expect("scratch");
    fs::write(&disk, b"disk").expect("disk");
    let stored = store.store(&disk, &id, "test").expect("store");
    assert_eq!(store.get(&id).expect("get"), stored);
    assert_eq!(store.list(), vec![stored]);
    // A start clears tmp/; a delete right after must still work.
    store.clear_tmp();
    store.remove(&id).expect("remove");
    assert!(store.list().is_empty());
}
