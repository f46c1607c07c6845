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
