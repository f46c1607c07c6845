//! Hostile and broken layers: each a clear error (or, for symlink tricks,
//! a write that stays inside the root), and nothing written outside the
//! root, checked on disk against a sentinel directory beside it.

#[path = "unpack/support.rs"]
mod support;

use bhatti_oci::Limits;
use bhatti_oci::unpack::{ApplyError, ErrorClass, UnpackError, unpack};
use support::{Pack, Scratch, Tar, exists, names};
use tar::EntryType;

fn layer_error(err: UnpackError) -> ApplyError {
    match err {
        UnpackError::Layer { source, .. } => source,
        other => panic!("not a layer error: {other}"),
    }
}

fn regular(len: usize) -> tar::Header {
    let mut h = Tar::header_of(EntryType::Regular, 0o644);
    h.set_size(len as u64);
    h
}

#[test]
fn names_that_climb_out_or_are_absolute_are_refused() {
    let cases: [(&[u8], bool); 4] = [
        (b"../escape", false),
        (b"a/../../escape", false),
        (b"./../sentinel/owned", false),
        (b"/abs/path", true),
    ];
    for (name, absolute) in cases {
        let mut s = Scratch::new();
        let tar = Tar::new()
            .file("fine", b"ok")
            .raw(name, regular(5), b"owned")
            .finish();
        let layers = [
            s.layer(Tar::new().dir("d", 0o755).finish(), Pack::Plain),
            s.layer(tar, Pack::Plain),
        ];
        let err = s.unpack(&layers).expect_err("refused");
        assert!(err.is_client_error(), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("layer 2 (sha256:"), "{msg}");
        assert!(msg.contains(&*String::from_utf8_lossy(name)), "{msg}");
        match layer_error(err) {
            ApplyError::Absolute { .. } => assert!(absolute),
            ApplyError::LeavesRoot { .. } => assert!(!absolute),
            other => panic!("wrong error: {other}"),
        }
        s.assert_nothing_outside();
        assert!(!exists(&s.dir.path().join("escape")));
        assert!(!exists(std::path::Path::new("/abs/path")));
    }
}

#[test]
fn a_symlink_to_a_host_directory_is_followed_inside_the_root() {
    let mut s = Scratch::new();
    let sentinel = s.sentinel.to_str().expect("utf-8").to_owned();
    let lower = Tar::new()
        .symlink("evil", &sentinel)
        .symlink("up", "../../../..")
        .finish();
    let upper = Tar::new()
        .file("evil/file", b"inside")
        .file("evil/keep", b"not the sentinel's")
        .file("up/etc/passwd", b"root::0:0")
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Gzip)];
    s.unpack(&layers).expect("symlinks resolve inside the root");
    // `evil` points at the sentinel's absolute path: read in the root.
    let inside = s.root.join(s.sentinel.strip_prefix("/").expect("absolute"));
    assert_eq!(
        std::fs::read(inside.join("file")).expect("inside"),
        b"inside"
    );
    assert_eq!(
        std::fs::read(s.path("etc/passwd")).expect("clamped"),
        b"root::0:0"
    );
    s.assert_nothing_outside();
}

#[test]
fn symlink_chains_stay_inside_the_root() {
    let mut s = Scratch::new();
    let tar = Tar::new()
        .dir("x", 0o755)
        .symlink("a", "../..")
        .symlink("x/b", "../a/../../..")
        .symlink("c", "x/b/sentinel")
        .file("a/b/c", b"one")
        .file("x/b/d", b"two")
        .file("c/keep", b"three")
        .finish();
    let l1 = s.layer(tar, Pack::Plain);
    s.unpack(&[l1]).expect("unpack");
    assert_eq!(std::fs::read(s.path("b/c")).expect("a/b/c"), b"one");
    assert_eq!(std::fs::read(s.path("d")).expect("x/b/d"), b"two");
    assert_eq!(
        std::fs::read(s.path("sentinel/keep")).expect("c/keep"),
        b"three"
    );
    s.assert_nothing_outside();
}

#[test]
fn whiteouts_and_opaque_markers_through_symlinks_stay_inside() {
    let mut s = Scratch::new();
    let sentinel = s.sentinel.to_str().expect("utf-8").to_owned();
    let lower = Tar::new()
        .symlink("evil", &sentinel)
        .symlink("rel", "../sentinel")
        .finish();
    let upper = Tar::new()
        .whiteout("evil", "keep")
        .whiteout("rel", "keep")
        .opaque("evil")
        .opaque("rel")
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    s.unpack(&layers).expect("unpack");
    s.assert_nothing_outside();
}

#[test]
fn hard_links_out_of_the_root_are_refused() {
    let passwd_links = std::fs::symlink_metadata("/etc/passwd").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.nlink()
    });
    let cases: [(&[u8], &str); 4] = [
        (b"/etc/passwd", "is an absolute path"),
        (b"../sentinel/keep", "leaves the image root"),
        // `hostetc -> /etc` reads as the root's etc/, which is not there.
        (b"hostetc/passwd", "does not exist"),
        // `etc -> /etc` inside the root is itself.
        (b"etc/passwd", "is behind a symlink loop"),
    ];
    for (target, problem) in cases {
        let mut s = Scratch::new();
        let mut tar = Tar::new().symlink("hostetc", "/etc");
        if target == b"etc/passwd" {
            tar = tar.symlink("etc", "/etc");
        }
        let tar = tar.raw_hardlink(b"stolen", target).finish();
        let l1 = s.layer(tar, Pack::Plain);
        let err = layer_error(s.unpack(&[l1]).expect_err("refused"));
        assert_eq!(err.class(), ErrorClass::BadImage);
        match &err {
            ApplyError::LinkTarget { problem: p, .. } => assert_eq!(*p, problem, "{err}"),
            other => panic!("wrong error: {other}"),
        }
        assert!(!exists(&s.path("stolen")));
        s.assert_nothing_outside();
    }
    let after = std::fs::symlink_metadata("/etc/passwd").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.nlink()
    });
    assert_eq!(passwd_links.ok(), after.ok());
}

#[test]
fn truncated_and_corrupt_layers_are_the_images_fault() {
    let big: Vec<u8> = (0..400_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let tar = Tar::new().file("a", b"a").file("big", &big).finish();
    let gz = support::gzip(&tar);
    let plain_cut = tar[..tar.len() / 2].to_vec();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            gz[..gz.len() / 2].to_vec(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            gz[..gz.len() - 4].to_vec(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (plain_cut, "application/vnd.oci.image.layer.v1.tar"),
        (
            b"definitely not gzip".to_vec(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3],
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (vec![b'x'; 512], "application/vnd.oci.image.layer.v1.tar"),
    ];
    for (i, (bytes, media_type)) in cases.into_iter().enumerate() {
        let mut s = Scratch::new();
        let layer = s.blob(&bytes, media_type);
        let err = layer_error(s.unpack(&[layer]).expect_err("corrupt"));
        assert!(matches!(err, ApplyError::Corrupt { .. }), "case {i}: {err}");
        assert_eq!(err.class(), ErrorClass::BadImage);
        s.assert_nothing_outside();
    }
}

#[test]
fn layers_over_the_size_limits_are_refused() {
    let mut s = Scratch::new();
    let tar = Tar::new()
        .file("a", &[1; 4000])
        .file("b", &[2; 4000])
        .finish();
    let layer = s.layer(tar, Pack::Gzip);
    let limits = Limits {
        max_layer_bytes: 1 << 20,
        max_unpacked_bytes: 6000,
    };
    let err = unpack(
        std::slice::from_ref(&layer),
        &s.root,
        limits,
        &bhatti_oci::no_progress(),
    )
    .expect_err("big");
    assert_eq!(err.class(), ErrorClass::TooLarge);
    assert!(err.to_string().contains("entry `b`"), "{err}");
    assert!(!exists(&s.path("b")));
    s.assert_nothing_outside();

    let small_blobs = Limits {
        max_layer_bytes: 10,
        max_unpacked_bytes: 1 << 30,
    };
    let err = unpack(&[layer], &s.root, small_blobs, &bhatti_oci::no_progress()).expect_err("blob");
    assert!(matches!(err, UnpackError::LayerTooLarge { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::TooLarge);
}

#[test]
fn malformed_entries_and_media_types_are_refused() {
    let mut s = Scratch::new();
    let encrypted = s.blob(b"", "application/vnd.oci.image.layer.v1.tar+encrypted");
    let err = s.unpack(&[encrypted]).expect_err("media type");
    assert!(matches!(err, UnpackError::MediaType { .. }), "{err}");
    assert!(err.is_client_error());

    let bad_whiteout = Tar::new().file("d/.wh...", b"").finish();
    let mut sparse = tar::Builder::new(Vec::new());
    let pax = [("GNU.sparse.major", &b"1"[..]), ("GNU.sparse.name", b"big")];
    sparse.append_pax_extensions(pax).expect("pax");
    sparse
        .append_data(&mut regular(1), "GNUSparseFile.0/big", &b"x"[..])
        .expect("append");
    let sparse = sparse.into_inner().expect("tar");
    let file_as_dir = Tar::new().file("f", b"").file("f/child", b"").finish();
    for tar in [bad_whiteout, file_as_dir, sparse] {
        let l = s.layer(tar, Pack::Plain);
        let err = s.unpack(&[l]).expect_err("malformed");
        assert!(err.is_client_error(), "{err}");
        assert!(matches!(layer_error(err), ApplyError::Invalid { .. }));
    }
    s.assert_nothing_outside();
    assert!(names(&s.root).len() <= 2);
}

#[test]
fn entries_replace_symlinks_to_outside_rather_than_write_through_them() {
    use std::os::unix::fs::MetadataExt;
    let mut s = Scratch::new();
    let keep = s.sentinel.join("keep");
    let mode_before = std::fs::metadata(&s.sentinel).expect("sentinel").mode();
    let lower = Tar::new()
        .symlink("file", keep.to_str().expect("utf-8"))
        .symlink("dir", s.sentinel.to_str().expect("utf-8"))
        .symlink("node", keep.to_str().expect("utf-8"))
        .symlink("rel", "../sentinel/keep")
        .finish();
    let upper = Tar::new()
        .file_owned("file", b"overwritten?", 0o4777, 1000, 1000)
        .dir("dir", 0o777)
        .node("node", EntryType::Fifo, 0o666, 0, 0)
        .hardlink("rel", "file")
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    s.unpack(&layers).expect("unpack");
    assert_eq!(
        std::fs::read(s.path("file")).expect("file"),
        b"overwritten?"
    );
    assert!(
        std::fs::symlink_metadata(s.path("dir"))
            .expect("dir")
            .is_dir()
    );
    assert_eq!(
        std::fs::metadata(&s.sentinel).expect("sentinel").mode(),
        mode_before
    );
    assert_eq!(
        std::fs::metadata(&keep).expect("keep").mode() & 0o7777,
        0o644
    );
    s.assert_nothing_outside();
}

#[test]
fn errors_name_the_layer_and_the_entry() {
    let mut s = Scratch::new();
    let lower = s.layer(Tar::new().file("ok", b"").finish(), Pack::Plain);
    let tar = Tar::new()
        .raw(b"../../etc/passwd", regular(4), b"root")
        .finish();
    let upper = s.layer(tar, Pack::Gzip);
    let err = s.unpack(&[lower, upper.clone()]).expect_err("refused");
    let hex = upper.digest.strip_prefix("sha256:").expect("sha256");
    let expected = format!(
        "layer 2 (sha256:{}…): entry `../../etc/passwd` leaves the image root",
        &hex[..12]
    );
    assert_eq!(err.to_string(), expected);
    assert_eq!(err.class(), ErrorClass::BadImage);
    s.assert_nothing_outside();
}

#[test]
fn huge_extension_headers_are_refused_before_they_fill_memory() {
    let mut s = Scratch::new();
    let huge = vec![b'a'; 20 << 20];
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("comment", &huge[..])])
        .expect("pax");
    let mut h = regular(1);
    b.append_data(&mut h, "f", &b"x"[..]).expect("append");
    let layer = s.layer(b.into_inner().expect("tar"), Pack::Gzip);
    assert!(layer.size < 1 << 20, "a small blob: {}", layer.size);
    let err = layer_error(s.unpack(&[layer]).expect_err("refused"));
    assert!(matches!(err, ApplyError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("over 16 MiB"), "{err}");
    assert!(!exists(&s.path("f")));
    s.assert_nothing_outside();
}

/// Another writer in the root (which the caller promises there is not)
/// swapping directories for symlinks to the outside while a layer is
/// applied: entries may fail or land oddly, but nothing lands outside.
#[test]
fn a_concurrent_writer_in_the_root_cannot_redirect_writes_outside() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut s = Scratch::new();
    let sentinel = s.sentinel.to_str().expect("utf-8").to_owned();
    let mut tar = Tar::new();
    for i in 0..300 {
        tar = tar
            .dir("a", 0o755)
            .dir("a/b", 0o755)
            .file_mode(&format!("a/b/f{i}"), b"data", 0o4755)
            .node(&format!("a/n{i}"), EntryType::Fifo, 0o666, 0, 0)
            .hardlink(&format!("a/h{i}"), &format!("a/b/f{i}"))
            .file_xattrs(&format!("a/x{i}"), b"x", &[("user.k", b"v")])
            .whiteout("a/b", &format!("f{i}"));
    }
    let layer = s.layer(tar.finish(), Pack::Plain);
    let done = Arc::new(AtomicBool::new(false));
    let (root, flag) = (s.root.clone(), done.clone());
    let attacker = std::thread::spawn(move || {
        use rustix::fs::{AtFlags, Mode, OFlags};
        let targets = [sentinel.as_str(), "../sentinel", "/", "../../.."];
        let dir = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let rootfd = rustix::fs::open(&root, dir, Mode::empty()).expect("root");
        // The attacker itself must not write outside through the symlinks
        // it plants: *at() calls only, a directory moved aside (inside the
        // root) rather than removed.
        let swap = |fd: &std::os::fd::OwnedFd, name: &str, target: &str, n: usize| {
            let trash = format!("trash{n}");
            if rustix::fs::unlinkat(fd, name, AtFlags::empty()).is_err() {
                let _ = rustix::fs::renameat(fd, name, &rootfd, trash.as_str());
            }
            let _ = rustix::fs::symlinkat(target, fd, name);
        };
        let mut i = 0usize;
        while !flag.load(Ordering::Relaxed) {
            i += 1;
            let target = targets[i % targets.len()];
            let a = rustix::fs::openat(&rootfd, "a", dir | OFlags::NOFOLLOW, Mode::empty());
            match a {
                Ok(afd) if i.is_multiple_of(2) => swap(&afd, "b", target, i),
                _ => swap(&rootfd, "a", target, i),
            }
            std::thread::yield_now();
        }
    });
    // Each run stops at its first failure, somewhere else each time.
    let mut failures = 0;
    for _ in 0..40 {
        failures += usize::from(s.unpack(std::slice::from_ref(&layer)).is_err());
    }
    done.store(true, Ordering::Relaxed);
    attacker.join().expect("attacker");
    s.assert_nothing_outside();
    for host in ["/a", "/b", "/f0", "/n0", "/x0", "/etc/b", "/etc/f0"] {
        assert!(!exists(std::path::Path::new(host)), "{host} was made");
    }
    use std::os::unix::fs::MetadataExt;
    let keep = std::fs::metadata(s.sentinel.join("keep")).expect("keep");
    assert_eq!((keep.mode() & 0o7777, keep.nlink()), (0o644, 1));
    assert_eq!(xattr_names(&s.sentinel.join("keep")), 0);
    eprintln!("{failures} of 40 runs failed");
}

fn xattr_names(path: &std::path::Path) -> usize {
    let mut buf = vec![0u8; 1024];
    rustix::fs::llistxattr(path, &mut buf).expect("listxattr")
}
