//! Stat and directory listings.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use bhatti_agent::{Error, ErrorCode};
use common::Lohar;

fn agent_msg(e: Error) -> String {
    match e {
        Error::Agent(f) => f.message,
        other => panic!("expected an agent error, got {other:?}"),
    }
}

fn agent_code(e: &Error) -> ErrorCode {
    e.agent_code()
        .unwrap_or_else(|| panic!("expected an agent error, got {e:?}"))
}

#[tokio::test]
async fn stat_regular_file() {
    let l = Lohar::start().await;
    let p = l.path("f.txt");
    std::fs::write(&p, b"12345").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o604)).unwrap();
    let i = l.client.stat(&l.spath("f.txt")).await.unwrap();
    assert_eq!(i.name, "f.txt");
    assert_eq!(i.size, 5);
    assert_eq!(i.mode, "0604");
    assert!(!i.is_dir);
    assert_eq!(i.mtime, std::fs::metadata(&p).unwrap().mtime());
}

#[tokio::test]
async fn stat_directory() {
    let l = Lohar::start().await;
    std::fs::create_dir(l.path("d")).unwrap();
    let i = l.client.stat(&l.spath("d")).await.unwrap();
    assert_eq!(i.name, "d");
    assert!(i.is_dir);
}

#[tokio::test]
async fn stat_missing() {
    let l = Lohar::start().await;
    let e = l.client.stat(&l.spath("nope")).await.unwrap_err();
    assert_eq!(agent_code(&e), ErrorCode::NotFound);
    assert!(agent_msg(e).contains("no such file"));
}

#[tokio::test]
async fn stat_follows_symlinks() {
    let l = Lohar::start().await;
    std::fs::write(l.path("target"), vec![0u8; 1234]).unwrap();
    symlink(l.path("target"), l.path("link")).unwrap();
    std::fs::create_dir(l.path("dir")).unwrap();
    symlink(l.path("dir"), l.path("dirlink")).unwrap();
    let i = l.client.stat(&l.spath("link")).await.unwrap();
    assert_eq!(i.size, 1234);
    assert!(!i.is_dir);
    let i = l.client.stat(&l.spath("dirlink")).await.unwrap();
    assert!(i.is_dir);
    symlink(l.path("gone"), l.path("dangling")).unwrap();
    let e = l.client.stat(&l.spath("dangling")).await.unwrap_err();
    assert!(agent_msg(e).contains("no such file"));
}

#[tokio::test]
async fn ls_lists_entries_with_lstat() {
    let l = Lohar::start().await;
    let d = l.path("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("a.txt"), b"abc").unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    symlink(d.join("sub"), d.join("link")).unwrap();
    std::fs::write(d.join("ünï"), b"").unwrap();
    let list = l.client.ls(&l.spath("d")).await.unwrap();
    let names: BTreeSet<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["a.txt", "sub", "link", "ünï"]));
    let get = |n: &str| list.iter().find(|i| i.name == n).unwrap();
    assert_eq!(get("a.txt").size, 3);
    assert!(!get("a.txt").is_dir);
    assert!(get("sub").is_dir);
    assert!(
        !get("link").is_dir,
        "entries are lstat'ed: a symlink is not a dir"
    );
}

#[tokio::test]
async fn ls_empty_directory() {
    let l = Lohar::start().await;
    std::fs::create_dir(l.path("empty")).unwrap();
    assert!(l.client.ls(&l.spath("empty")).await.unwrap().is_empty());
}

#[tokio::test]
async fn ls_errors() {
    let l = Lohar::start().await;
    std::fs::write(l.path("file"), b"x").unwrap();
    let e = l.client.ls(&l.spath("file")).await.unwrap_err();
    assert_eq!(agent_code(&e), ErrorCode::NotADirectory);
    assert!(agent_msg(e).contains("not a directory"));
    let e = l.client.ls(&l.spath("missing")).await.unwrap_err();
    assert_eq!(agent_code(&e), ErrorCode::NotFound);
    assert!(agent_msg(e).contains("no such file"));
}

#[tokio::test]
async fn ls_caps_at_10k_with_a_sentinel_carrying_the_total() {
    let l = Lohar::start().await;
    const TOTAL: usize = 10_123;
    let d = l.path("many");
    std::fs::create_dir(&d).unwrap();
    for i in 0..TOTAL {
        std::fs::write(d.join(format!("f{i:05}")), b"").unwrap();
    }
    let list = l.client.ls(&l.spath("many")).await.unwrap();
    assert_eq!(list.len(), 10_001, "10,000 entries plus one sentinel");
    let real: BTreeSet<&str> = list[..10_000].iter().map(|i| i.name.as_str()).collect();
    assert_eq!(real.len(), 10_000, "entries are distinct");
    assert!(
        real.iter().all(|n| d.join(n).exists()),
        "entries are real files"
    );
    let sentinel = &list[10_000];
    assert!(
        !d.join(&sentinel.name).exists(),
        "the last entry is a sentinel, not a file: {sentinel:?}"
    );
    assert!(
        sentinel.name.contains(&TOTAL.to_string()) || sentinel.size == TOTAL as i64,
        "sentinel does not carry the true total {TOTAL}: {sentinel:?}"
    );
}

#[tokio::test]
async fn ls_of_exactly_10k_has_no_sentinel() {
    let l = Lohar::start().await;
    let d = l.path("tenk");
    std::fs::create_dir(&d).unwrap();
    for i in 0..10_000 {
        std::fs::write(d.join(format!("f{i:05}")), b"").unwrap();
    }
    let list = l.client.ls(&l.spath("tenk")).await.unwrap();
    assert_eq!(list.len(), 10_000);
    assert!(list.iter().all(|i| d.join(&i.name).exists()));
}
