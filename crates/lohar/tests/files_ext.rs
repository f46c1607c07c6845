//! Protocol version 4 file management against the real lohar: CAPS,
//! MKDIR, MOVE, REMOVE, STAT2, LS2 — results, error codes, and hostile
//! paths (`..`, missing, not a directory, the root, symlinks).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use bhatti_agent::{EntryType, Error, ErrorCode, feature};
use bhatti_proto::PROTOCOL_VERSION;
use common::Lohar;

fn code(e: &Error) -> ErrorCode {
    e.agent_code()
        .unwrap_or_else(|| panic!("expected an agent error, got {e:?}"))
}

#[tokio::test]
async fn caps_lists_every_version_4_feature() {
    let l = Lohar::start().await;
    let caps = l.client.caps().await.unwrap();
    assert_eq!(caps.version, PROTOCOL_VERSION);
    for f in feature::ALL {
        assert!(caps.has(f), "{f} missing from {caps:?}");
    }
}

#[tokio::test]
async fn mkdir_creates_parents_and_reports_an_existing_directory() {
    let l = Lohar::start().await;
    let p = l.spath("a/b/c");
    let r = l.client.mkdir(&p, None).await.unwrap();
    assert!(r.created);
    assert_eq!((r.entry.kind, r.entry.name.as_str()), (EntryType::Dir, "c"));
    assert_eq!(r.entry.path, p);
    assert_eq!(r.entry.mode, 0o755);
    assert_eq!(r.entry.permissions, "drwxr-xr-x");
    for d in ["a", "a/b", "a/b/c"] {
        let m = std::fs::metadata(l.path(d)).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o777, 0o755, "{d}");
    }
    let again = l.client.mkdir(&p, None).await.unwrap();
    assert!(!again.created, "an existing directory is not created");
    assert_eq!(again.entry.kind, EntryType::Dir);
    // Through `..`, the kernel resolves it.
    let dots = l.client.mkdir(&l.spath("a/b/../x"), None).await.unwrap();
    assert!(dots.created && l.path("a/x").is_dir());
}

#[tokio::test]
async fn mkdir_over_a_file_or_under_a_file_is_refused() {
    let l = Lohar::start().await;
    std::fs::write(l.path("f"), "x").unwrap();
    let e = l.client.mkdir(&l.spath("f"), None).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::AlreadyExists);
    assert!(
        e.agent_message().unwrap().contains("not a directory"),
        "{e}"
    );
    let e = l.client.mkdir(&l.spath("f/sub"), None).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotADirectory);
    symlink(l.path("gone"), l.path("dangling")).unwrap();
    let e = l
        .client
        .mkdir(&l.spath("dangling"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::AlreadyExists);
    let e = l.client.mkdir("", None).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn mkdir_as_an_unknown_user_is_refused() {
    let l = Lohar::start().await;
    let e = l
        .client
        .mkdir(&l.spath("d"), Some("no-such-user-xyz"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidRequest);
    assert!(!l.path("d").exists(), "nothing created");
}

#[tokio::test]
async fn move_renames_and_creates_the_destination_parents() {
    let l = Lohar::start().await;
    std::fs::write(l.path("src.txt"), "hello").unwrap();
    let dst = l.spath("new/dir/dst.txt");
    let e = l.client.mv(&l.spath("src.txt"), &dst, None).await.unwrap();
    assert_eq!(
        (e.kind, e.name.as_str(), e.size),
        (EntryType::File, "dst.txt", 5)
    );
    assert_eq!(e.path, dst);
    assert!(!l.path("src.txt").exists());
    assert_eq!(std::fs::read(l.path("new/dir/dst.txt")).unwrap(), b"hello");
    // A directory moves whole; an existing file is replaced.
    std::fs::create_dir_all(l.path("tree/sub")).unwrap();
    std::fs::write(l.path("tree/sub/f"), "x").unwrap();
    let e = l
        .client
        .mv(&l.spath("tree"), &l.spath("moved"), None)
        .await
        .unwrap();
    assert_eq!(e.kind, EntryType::Dir);
    assert!(l.path("moved/sub/f").exists());
    std::fs::write(l.path("a"), "a").unwrap();
    std::fs::write(l.path("b"), "b").unwrap();
    l.client
        .mv(&l.spath("a"), &l.spath("b"), None)
        .await
        .unwrap();
    assert_eq!(std::fs::read(l.path("b")).unwrap(), b"a");
}

#[tokio::test]
async fn move_errors() {
    let l = Lohar::start().await;
    let e = l
        .client
        .mv(&l.spath("missing"), &l.spath("x/y"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    assert!(!l.path("x").exists(), "a failed move creates no parents");
    std::fs::create_dir(l.path("d")).unwrap();
    let e = l
        .client
        .mv(&l.spath("d"), &l.spath("d/inside"), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidRequest, "into itself: EINVAL");
    for bad in ["/", "/..", &l.spath("d/.")] {
        let e = l.client.mv(bad, &l.spath("z"), None).await.unwrap_err();
        assert_eq!(code(&e), ErrorCode::InvalidRequest, "{bad}");
    }
    let e = l.client.mv("", "x", None).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn remove_files_symlinks_and_trees_without_following_links() {
    let l = Lohar::start().await;
    let keep = l.path("outside/keep");
    std::fs::create_dir_all(l.path("outside")).unwrap();
    std::fs::write(&keep, "x").unwrap();
    std::fs::create_dir_all(l.path("t/a/b")).unwrap();
    std::fs::write(l.path("t/a/b/f"), "x").unwrap();
    symlink(l.path("outside"), l.path("t/a/link")).unwrap();
    l.client.remove(&l.spath("t")).await.unwrap();
    assert!(!l.path("t").exists());
    assert!(keep.exists(), "the symlink's target survives");
    symlink(l.path("outside"), l.path("dirlink")).unwrap();
    l.client.remove(&l.spath("dirlink")).await.unwrap();
    assert!(keep.exists() && std::fs::symlink_metadata(l.path("dirlink")).is_err());
    std::fs::write(l.path("f"), "x").unwrap();
    l.client.remove(&l.spath("f")).await.unwrap();
    assert!(!l.path("f").exists());
}

#[tokio::test]
async fn remove_refuses_the_root_and_dot_paths_and_reports_missing() {
    let l = Lohar::start().await;
    std::fs::create_dir(l.path("d")).unwrap();
    let dotdot = format!("{}/..", l.spath("d"));
    let dot = format!("{}/.", l.spath("d"));
    for bad in ["/", "//", "/.", "/..", "/tmp/..", ".", "..", &dotdot, &dot] {
        let e = l.client.remove(bad).await.unwrap_err();
        assert_eq!(code(&e), ErrorCode::InvalidRequest, "{bad}");
    }
    assert!(
        l.path("d").is_dir() && l.dir.path().is_dir(),
        "nothing removed"
    );
    let e = l.client.remove(&l.spath("missing")).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    let e = l
        .client
        .remove(&l.spath("missing/deeper"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    std::fs::write(l.path("file"), "x").unwrap();
    let e = l.client.remove(&l.spath("file/x")).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotADirectory);
    let e = l.client.remove("").await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidRequest);
    // `..` in the middle is fine: it names an entry of its own.
    l.client
        .remove(&format!("{}/../d", l.spath("d")))
        .await
        .unwrap();
    assert!(!l.path("d").exists());
}

#[tokio::test]
async fn stat2_describes_files_dirs_and_symlinks() {
    let l = Lohar::start().await;
    let p = l.path("f.txt");
    std::fs::write(&p, b"12345").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    let meta = std::fs::metadata(&p).unwrap();
    let e = l.client.stat2(&l.spath("f.txt")).await.unwrap();
    assert_eq!((e.kind, e.size, e.mode), (EntryType::File, 5, 0o640));
    assert_eq!(e.permissions, "-rw-r-----");
    assert_eq!((e.uid, e.gid), (meta.uid(), meta.gid()));
    assert!(!e.owner.is_empty() && !e.group.is_empty());
    assert_eq!(e.mtime, meta.mtime());
    assert_eq!(e.mtime_ns, meta.mtime() * 1_000_000_000 + meta.mtime_nsec());
    assert_eq!(e.symlink_target, None);
    symlink("f.txt", l.path("link")).unwrap();
    let e = l.client.stat2(&l.spath("link")).await.unwrap();
    assert_eq!(e.kind, EntryType::Symlink);
    assert_eq!(e.symlink_target.as_deref(), Some("f.txt"));
    assert_eq!(e.target_type, Some(EntryType::File));
    let real = std::fs::canonicalize(&p).unwrap();
    assert_eq!(e.resolved_path.as_deref(), real.to_str());
    let e = l.client.stat2(&l.spath("missing")).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
    let e = l.client.stat2("/").await.unwrap();
    assert_eq!((e.kind, e.name.as_str()), (EntryType::Dir, "/"));
}

#[tokio::test]
async fn ls2_lists_depth_levels_with_paths() {
    let l = Lohar::start().await;
    std::fs::create_dir_all(l.path("d/sub/deeper")).unwrap();
    std::fs::write(l.path("d/a.txt"), "a").unwrap();
    std::fs::write(l.path("d/sub/b.txt"), "b").unwrap();
    let root = l.spath("d");
    let r = l.client.ls2(&root, 1).await.unwrap();
    let paths: Vec<_> = r.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(paths, [format!("{root}/a.txt"), format!("{root}/sub")]);
    assert!(!r.truncated);
    let r = l.client.ls2(&root, 2).await.unwrap();
    let names: Vec<_> = r.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a.txt", "sub", "b.txt", "deeper"]);
    let e = l.client.ls2(&l.spath("d/a.txt"), 1).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotADirectory);
    let e = l.client.ls2(&l.spath("nope"), 1).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotFound);
}
