//! `unpack` on real layers: the tree it makes, checked on disk (run as
//! root: owners, device nodes and `security.capability` need it).

#[path = "unpack/support.rs"]
mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::{Arc, Mutex};

use bhatti_oci::unpack::{Budget, apply_layer, unpack};
use bhatti_oci::{Event, Limits};
use support::{MTIME, Pack, Scratch, Tar, exists, lstat, names, xattr};
use tar::EntryType;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn files_dirs_symlinks_and_their_metadata() {
    let mut s = Scratch::new();
    let tar = Tar::new()
        .dir("./", 0o711)
        .dir("./etc", 0o750)
        .file_owned("./etc/conf", b"hello", 0o640, 1000, 1001)
        .symlink("./etc/abs", "/usr/bin/env")
        .symlink("./etc/rel", "../conf")
        .file("./deep/a/b/c.txt", b"implicit parents")
        .finish();
    let l1 = s.layer(tar, Pack::Plain);
    let stats = s.unpack(&[l1]).expect("unpack");
    assert_eq!((stats.files, stats.dirs, stats.symlinks), (2, 2, 2));
    assert_eq!(stats.bytes, 5 + 16);

    let conf = std::fs::symlink_metadata(s.path("etc/conf")).expect("conf");
    assert_eq!(std::fs::read(s.path("etc/conf")).expect("read"), b"hello");
    assert_eq!(conf.mode() & 0o7777, 0o640);
    assert_eq!(conf.mtime(), MTIME as i64);
    if is_root() {
        assert_eq!((conf.uid(), conf.gid()), (1000, 1001));
    }
    let etc = std::fs::symlink_metadata(s.path("etc")).expect("etc");
    assert_eq!(etc.mode() & 0o7777, 0o750);
    // Set again after the layer, though entries were written into it.
    assert_eq!(etc.mtime(), MTIME as i64);
    let root_mode = std::fs::symlink_metadata(&s.root).expect("root").mode();
    assert_eq!(root_mode & 0o7777, 0o711);
    let abs = std::fs::read_link(s.path("etc/abs")).expect("abs");
    assert_eq!(abs.as_os_str(), "/usr/bin/env");
    assert_eq!(
        std::fs::read_link(s.path("etc/rel"))
            .expect("rel")
            .as_os_str(),
        "../conf"
    );
    assert_eq!(
        std::fs::read(s.path("deep/a/b/c.txt")).expect("deep"),
        b"implicit parents"
    );
    assert!(s.path("deep/a/b").is_dir());
}

#[test]
fn the_root_starts_as_0755_whatever_the_caller_made() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = Scratch::new();
    std::fs::set_permissions(&s.root, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let l1 = s.layer(Tar::new().file("f", b"no ./ entry").finish(), Pack::Plain);
    s.unpack(&[l1]).expect("unpack");
    assert_eq!(lstat(&s.root).st_mode & 0o7777, 0o755);
}

#[test]
fn non_utf8_and_long_names() {
    let mut s = Scratch::new();
    let long = format!("d/{}/{}", "x".repeat(150), "y".repeat(120));
    let mut h = Tar::header_of(EntryType::Regular, 0o644);
    h.set_size(3);
    let mut old_dir = Tar::header_of(EntryType::Regular, 0o700);
    old_dir.as_old_mut().linkflag = [0];
    let tar = Tar::new()
        .raw(b"old-style-dir/", old_dir, b"")
        .raw(b"caf\xe9", h, b"abc")
        .file(&long, b"long")
        .finish();
    let l1 = s.layer(tar, Pack::Plain);
    s.unpack(&[l1]).expect("unpack");
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    assert_eq!(
        std::fs::read(s.root.join(name)).expect("latin-1 name"),
        b"abc"
    );
    assert_eq!(std::fs::read(s.path(&long)).expect("long name"), b"long");
    assert!(s.path("old-style-dir").is_dir());
}

#[test]
fn whiteouts_remove_lower_files_and_directories() {
    let mut s = Scratch::new();
    let lower = Tar::new()
        .file("a/file", b"1")
        .file("a/other", b"2")
        .file("d/sub/x", b"3")
        .file("top", b"4")
        .finish();
    let upper = Tar::new()
        .whiteout("a", "file")
        .whiteout("", "d")
        .whiteout("", "top")
        .whiteout("", "never-existed")
        .file("new", b"written and whited out in the same layer")
        .whiteout("", "new")
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    let stats = s.unpack(&layers).expect("unpack");
    assert_eq!(stats.whiteouts, 5);
    assert_eq!(names(&s.root), ["a", "new"]);
    assert_eq!(names(&s.path("a")), ["other"]);
}

#[test]
fn opaque_directories_hide_lower_content_but_keep_their_own_layer() {
    let mut s = Scratch::new();
    let lower = Tar::new()
        .file("o/old", b"lower")
        .file("o/sub/old2", b"lower")
        .file("p/old", b"lower")
        .file("keep/me", b"other dir")
        .finish();
    // The marker after the layer's own entries in `o`, before them in `p`.
    let upper = Tar::new()
        .dir("o", 0o755)
        .file("o/new", b"upper")
        .file("o/sub/new2", b"upper")
        .opaque("o")
        .opaque("p")
        .file("p/new", b"upper")
        .finish();
    let layers = [s.layer(lower, Pack::Gzip), s.layer(upper, Pack::Gzip)];
    s.unpack(&layers).expect("unpack");
    assert_eq!(names(&s.path("o")), ["new", "sub"]);
    assert_eq!(names(&s.path("o/sub")), ["new2"]);
    assert_eq!(names(&s.path("p")), ["new"]);
    assert_eq!(names(&s.path("keep")), ["me"]);
    assert!(!exists(&s.path("o/.wh..wh..opq")));
}

#[test]
fn hard_links_share_an_inode() {
    let mut s = Scratch::new();
    let lower = Tar::new().file("bin/tool", b"binary").finish();
    let upper = Tar::new()
        .file("data", b"d")
        .hardlink("link-same-layer", "data")
        .hardlink("bin/alias", "bin/tool")
        .symlink("sym", "data")
        .hardlink("sym-link", "sym")
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    let stats = s.unpack(&layers).expect("unpack");
    assert_eq!(stats.hardlinks, 3);
    let (a, b) = (lstat(&s.path("data")), lstat(&s.path("link-same-layer")));
    assert_eq!((a.st_ino, a.st_nlink), (b.st_ino, 2));
    assert_eq!(
        lstat(&s.path("bin/tool")).st_ino,
        lstat(&s.path("bin/alias")).st_ino
    );
    // A link to a symlink is the symlink, not what it points at.
    let (sym, link) = (lstat(&s.path("sym")), lstat(&s.path("sym-link")));
    assert_eq!(sym.st_ino, link.st_ino);
    assert_eq!(
        std::fs::read_link(s.path("sym-link"))
            .expect("link")
            .as_os_str(),
        "data"
    );
}

#[test]
fn xattrs_and_file_capabilities_survive_chown() {
    if !is_root() {
        eprintln!("skipped: security.capability needs root");
        return;
    }
    let mut s = Scratch::new();
    // VFS_CAP_REVISION_2 with the effective flag; permitted: CAP_NET_BIND_SERVICE.
    let mut cap = Vec::new();
    cap.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    cap.extend_from_slice(&(1u32 << 10).to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    let tar = Tar::new()
        .file_xattrs(
            "usr/bin/ping",
            b"elf",
            &[
                ("security.capability", &cap),
                ("user.note", b"hi"),
                ("trusted.overlay.opaque", b"y"),
            ],
        )
        .finish();
    let l1 = s.layer(tar, Pack::Zstd);
    s.unpack(&[l1]).expect("unpack");
    let ping = s.path("usr/bin/ping");
    assert_eq!(
        xattr(&ping, "security.capability").as_deref(),
        Some(&cap[..])
    );
    assert_eq!(xattr(&ping, "user.note").as_deref(), Some(&b"hi"[..]));
    assert_eq!(xattr(&ping, "trusted.overlay.opaque"), None);
    assert_eq!(lstat(&ping).st_mode & 0o7777, 0o755);
}

#[test]
fn device_nodes_and_fifos() {
    if !is_root() {
        eprintln!("skipped: device nodes need root");
        return;
    }
    let mut s = Scratch::new();
    let tar = Tar::new()
        .dir("dev", 0o755)
        .node("dev/null", EntryType::Char, 0o666, 1, 3)
        .node("dev/loop0", EntryType::Block, 0o660, 7, 0)
        .node("run/fifo", EntryType::Fifo, 0o620, 0, 0)
        .finish();
    let l1 = s.layer(tar, Pack::Plain);
    let stats = s.unpack(&[l1]).expect("unpack");
    assert_eq!(stats.devices, 3);
    let null = std::fs::symlink_metadata(s.path("dev/null")).expect("null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    assert!(
        std::fs::symlink_metadata(s.path("dev/loop0"))
            .expect("loop")
            .file_type()
            .is_block_device()
    );
    let fifo = std::fs::symlink_metadata(s.path("run/fifo")).expect("fifo");
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);
    assert_eq!(fifo.mtime(), MTIME as i64);
}

#[test]
fn setuid_setgid_and_sticky_bits_survive_chown() {
    let mut s = Scratch::new();
    let tar = Tar::new()
        .file_owned("usr/bin/su", b"su", 0o4755, 0, 0)
        .file_owned("usr/bin/wall", b"wall", 0o2755, 1000, 5)
        .dir("tmp", 0o1777)
        .finish();
    let l1 = s.layer(tar, Pack::Plain);
    s.unpack(&[l1]).expect("unpack");
    assert_eq!(lstat(&s.path("usr/bin/su")).st_mode & 0o7777, 0o4755);
    let wall = lstat(&s.path("usr/bin/wall"));
    assert_eq!(wall.st_mode & 0o7777, 0o2755);
    if is_root() {
        assert_eq!((wall.st_uid, wall.st_gid), (1000, 5));
    }
    assert_eq!(lstat(&s.path("tmp")).st_mode & 0o7777, 0o1777);
}

#[test]
fn files_and_directories_replace_each_other() {
    let mut s = Scratch::new();
    let lower = Tar::new()
        .file("was-dir/inner", b"x")
        .file("was-file", b"y")
        .file("was-link-target/f", b"z")
        .symlink("was-link", "was-link-target")
        .dir("stays", 0o700)
        .file("stays/child", b"kept")
        .finish();
    let upper = Tar::new()
        .file("was-dir", b"now a file")
        .dir("was-file", 0o755)
        .dir("was-link", 0o755)
        .dir("stays", 0o711)
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    s.unpack(&layers).expect("unpack");
    assert_eq!(
        std::fs::read(s.path("was-dir")).expect("file"),
        b"now a file"
    );
    assert!(s.path("was-file").is_dir());
    let link = std::fs::symlink_metadata(s.path("was-link")).expect("was-link");
    assert!(link.is_dir(), "the symlink is replaced, not followed");
    assert_eq!(names(&s.path("was-link-target")), ["f"]);
    assert_eq!(names(&s.path("stays")), ["child"]);
    assert_eq!(lstat(&s.path("stays")).st_mode & 0o7777, 0o711);
}

#[test]
fn absolute_symlinks_resolve_inside_the_root() {
    let mut s = Scratch::new();
    let lower = Tar::new()
        .dir("run", 0o755)
        .symlink("var/run", "/run")
        .finish();
    let upper = Tar::new().file("var/run/app.pid", b"42").finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    s.unpack(&layers).expect("unpack");
    assert_eq!(std::fs::read(s.path("run/app.pid")).expect("pid"), b"42");
    assert_eq!(
        std::fs::read_link(s.path("var/run"))
            .expect("link")
            .as_os_str(),
        "/run"
    );
}

#[test]
fn compressions_by_media_type_and_by_magic() {
    for pack in [Pack::Plain, Pack::Gzip, Pack::Zstd, Pack::GzipAsTar] {
        let mut s = Scratch::new();
        let tar = Tar::new().file("f", &vec![7u8; 3 << 20]).finish();
        let l1 = s.layer(tar, pack);
        let size = l1.size;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let progress: bhatti_oci::Progress = Arc::new(move |e| sink.lock().expect("lock").push(e));
        let stats = unpack(
            std::slice::from_ref(&l1),
            &s.root,
            Limits::default(),
            &progress,
        )
        .expect("unpack");
        assert_eq!(stats.bytes, 3 << 20, "{pack:?}");
        assert_eq!(std::fs::read(s.path("f")).expect("f").len(), 3 << 20);
        let events = events.lock().expect("lock");
        assert_eq!(events.first(), Some(&Event::Phase("unpacking".into())));
        let last = Event::Bytes {
            what: l1.digest.clone(),
            done: size,
            total: size,
        };
        assert_eq!(events.last(), Some(&last), "{pack:?}");
    }
}

#[test]
fn apply_layer_takes_a_plain_stream_and_a_shared_budget() {
    let s = Scratch::new();
    let one = Tar::new().file("a", &[1u8; 600]).finish();
    let two = Tar::new().file("b", &[2u8; 600]).finish();
    let mut budget = Budget::new(1000);
    let stats = apply_layer(&one[..], &s.root, &mut budget).expect("first");
    assert_eq!((stats.files, budget.used()), (1, 600));
    let err = apply_layer(&two[..], &s.root, &mut budget).expect_err("over budget");
    assert_eq!(err.class(), bhatti_oci::unpack::ErrorClass::TooLarge);
    assert!(!exists(&s.path("b")), "refused before it was written");
}

#[test]
fn without_root_devices_capabilities_and_owners_are_let_go() {
    if !is_root() {
        eprintln!("skipped: the test drops root on its own thread");
        return;
    }
    let mut s = Scratch::new();
    let nobody = 65534;
    std::fs::set_permissions(
        s.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    std::os::unix::fs::chown(&s.root, Some(nobody), Some(nobody)).expect("chown");
    let cap = [1u8, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let tar = Tar::new()
        .file_owned("owned", b"x", 0o644, 1000, 1000)
        .node("null", EntryType::Char, 0o666, 1, 3)
        .node("fifo", EntryType::Fifo, 0o600, 0, 0)
        .file_xattrs(
            "ping",
            b"elf",
            &[("security.capability", &cap), ("user.a", b"b")],
        )
        .finish();
    let l1 = s.layer(tar, Pack::Plain);
    let root = s.root.clone();
    // Credentials are per thread at the syscall level: only this one drops.
    let stats = std::thread::spawn(move || {
        let gid = rustix::process::Gid::from_raw(nobody);
        let uid = rustix::process::Uid::from_raw(nobody);
        rustix::thread::set_thread_res_gid(gid, gid, gid).expect("setresgid");
        rustix::thread::set_thread_res_uid(uid, uid, uid).expect("setresuid");
        unpack(&[l1], &root, Limits::default(), &bhatti_oci::no_progress())
    })
    .join()
    .expect("thread")
    .expect("unpack");
    assert_eq!((stats.files, stats.devices, stats.skipped), (2, 1, 2));
    assert!(!exists(&s.path("null")));
    assert_eq!(lstat(&s.path("owned")).st_uid, nobody);
    assert_eq!(xattr(&s.path("ping"), "user.a").as_deref(), Some(&b"b"[..]));
    assert_eq!(xattr(&s.path("ping"), "security.capability"), None);
}

#[test]
fn diff_ids_are_checked_on_the_uncompressed_stream() {
    use bhatti_oci::unpack::{UnpackError, unpack_verified};
    use sha2::{Digest, Sha256};
    let diff_id = |tar: &[u8]| format!("sha256:{:x}", Sha256::digest(tar));
    let no = bhatti_oci::no_progress();
    let mut s = Scratch::new();
    let (one, two) = (
        Tar::new().file("a", b"1").finish(),
        Tar::new().file("b", b"2").finish(),
    );
    let ids = [diff_id(&one), diff_id(&two)];
    let layers = [s.layer(one, Pack::Gzip), s.layer(two, Pack::Zstd)];
    let stats = unpack_verified(&layers, &ids, &s.root, Limits::default(), &no).expect("match");
    assert_eq!(stats.files, 2);

    let swapped = [ids[1].clone(), ids[0].clone()];
    let err =
        unpack_verified(&layers, &swapped, &s.root, Limits::default(), &no).expect_err("mismatch");
    assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
    assert!(err.to_string().starts_with("layer 1 (sha256:"), "{err}");
    assert!(err.is_client_error());

    let err =
        unpack_verified(&layers, &ids[..1], &s.root, Limits::default(), &no).expect_err("count");
    assert!(
        matches!(
            err,
            UnpackError::DiffIdCount {
                layers: 2,
                diff_ids: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn directories_changed_without_an_entry_keep_their_times() {
    let mut s = Scratch::new();
    let lower = Tar::new()
        .dir("./", 0o755)
        .dir("keep", 0o755)
        .file("keep/a", b"a")
        .dir("opq", 0o755)
        .file("opq/old", b"old")
        .finish();
    let upper = Tar::new()
        .file("keep/b", b"b")
        .whiteout("keep", "a")
        .opaque("opq")
        .file("top", b"at the root")
        .finish();
    let layers = [s.layer(lower, Pack::Plain), s.layer(upper, Pack::Plain)];
    s.unpack(&layers).expect("unpack");
    assert_eq!(names(&s.path("keep")), ["b"]);
    for dir in ["keep", "opq", ""] {
        let m = std::fs::symlink_metadata(s.path(dir)).expect("dir");
        assert_eq!(m.mtime(), MTIME as i64, "`{dir}`");
    }
}

#[test]
fn failures_on_our_side_are_internal() {
    use bhatti_oci::unpack::{ApplyError, ErrorClass, UnpackError};
    let s = Scratch::new();
    let layer = |path: std::path::PathBuf| bhatti_oci::Layer {
        path,
        digest: "sha256:00".into(),
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        size: 0,
    };
    // A blob that cannot be read (a directory: EISDIR) is not a corrupt image.
    let err = s
        .unpack(&[layer(s.sentinel.clone())])
        .expect_err("unreadable");
    assert!(
        matches!(
            &err,
            UnpackError::Layer {
                source: ApplyError::Read { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Internal);
    let err = s
        .unpack(&[layer(s.dir.path().join("gone"))])
        .expect_err("missing");
    assert!(matches!(err, UnpackError::Blob { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Internal);
}
