//! `unpack` on real layers: the tree it makes, checked on disk (run as
//! root: owners, device nodes and `security.capability` need it).

#[path = "unpack/support.rs"]
mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use bhatti_oci::Limits;
use bhatti_oci::unpack::unpack;
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
        lstat(&s.path("etc/abs")).st_mtime,
        MTIME as i64,
        "a symlink's own time"
    );
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

/// umoci writes the root directory as an entry named `/`; it is the root,
/// as Docker and containerd read it, not an absolute name.
#[test]
fn a_root_entry_named_slash_is_the_root() {
    let mut s = Scratch::new();
    let tar = Tar::new()
        .raw(b"/", Tar::header_of(EntryType::Directory, 0o700), b"")
        .file("etc/hostname", b"box")
        .finish();
    let l1 = s.layer(tar, Pack::Plain);
    s.unpack(&[l1]).expect("unpack");
    let root_mode = std::fs::symlink_metadata(&s.root).expect("root").mode();
    assert_eq!(root_mode & 0o7777, 0o700);
    assert_eq!(std::fs::read(s.path("etc/hostname")).expect("read"), b"box");
    s.assert_nothing_outside();
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
                ("security.selinux", b"system_u:object_r:bin_t:s0"),
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
    assert_eq!(xattr(&ping, "security.selinux"), None);
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
