//! The `user` option (protocol extension "user", `docs/protocol.md`) on a
//! test-mode lohar: exec, TTY sessions, file writes and the sandbox's
//! `exec_user`, with users looked up in a passwd/group of the test's own
//! (`LOHAR_ETC`).
//!
//! A root lohar (CI and the dev container run tests as root) really
//! switches: those tests check uid, groups, `HOME` and file owners. As
//! another user they only check that lohar refuses other uids with
//! `permission_denied` and runs its own uid normally; the root-only tests
//! print why they skip.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use bhatti_agent::{ErrorCode, ExecOptions, ShellOptions};
use bhatti_proto::config::GuestConfig;
use common::{Lohar, Options, SOON, read_to_exit};

/// uid/gid of the test's other user, and its extra group.
const OTHER: u32 = 65534;
const EXTRA_GROUP: u32 = 4321;

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn skip(why: &str) -> bool {
    if root() {
        return false;
    }
    eprintln!(
        "skipped: {why} needs a root lohar (tests run as uid {})",
        own_uid()
    );
    true
}

fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A passwd/group dir: `root`, `tester` (uid [`OTHER`], member of
/// [`EXTRA_GROUP`]) whose home exists and is its own, and `me` (the test's
/// uid).
fn etc() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    if root() {
        std::os::unix::fs::chown(&home, Some(OTHER), Some(OTHER)).unwrap();
    }
    let me = own_uid();
    std::fs::write(
        dir.path().join("passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/sh\n\
             tester:x:{OTHER}:{OTHER}::{}:/bin/sh\n\
             me:x:{me}:{me}::/:/bin/sh\n",
            home.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("group"),
        format!("extra:x:{EXTRA_GROUP}:tester\n"),
    )
    .unwrap();
    dir
}

async fn lohar(etc: &Path, config: Option<GuestConfig>) -> Lohar {
    Lohar::start_with(Options {
        config,
        env: vec![("LOHAR_ETC".into(), etc.display().to_string())],
        ..Options::default()
    })
    .await
}

async fn sh(l: &Lohar, user: Option<&str>, script: &str) -> bhatti_agent::Result<String> {
    let mut opts = ExecOptions::new(["/bin/sh", "-c", script]).timeout(SOON);
    if let Some(u) = user {
        opts = opts.user(u);
    }
    let r = l.client.exec(opts).await?;
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
    Ok(String::from_utf8(r.stdout).unwrap().trim().to_owned())
}

#[tokio::test]
async fn own_uid_runs_normally_by_name_or_number() {
    let etc = etc();
    let l = lohar(etc.path(), None).await;
    let me = own_uid().to_string();
    assert_eq!(sh(&l, Some(&me), "id -u").await.unwrap(), me);
    assert_eq!(
        sh(&l, Some("me"), "id -u; echo $USER").await.unwrap(),
        format!("{me}\nme")
    );
    // An empty user is no user.
    assert_eq!(sh(&l, Some(""), "id -u").await.unwrap(), me);
}

#[tokio::test]
async fn unknown_user_is_a_clear_error_for_exec_session_and_write() {
    let etc = etc();
    let l = lohar(etc.path(), None).await;
    let check = |e: bhatti_agent::Error| {
        assert_eq!(e.agent_code(), Some(ErrorCode::InvalidRequest), "{e}");
        assert!(e.to_string().contains("unknown user \"nosuchuser\""), "{e}");
    };
    check(sh(&l, Some("nosuchuser"), "true").await.unwrap_err());
    check(
        l.client
            .shell(&ShellOptions::new(["/bin/sh"]).user("nosuchuser"))
            .await
            .unwrap_err(),
    );
    let target = l.spath("never");
    let err = l
        .client
        .write_file_as(&target, 0o644, 2, &b"hi"[..], Some("nosuchuser"))
        .await
        .unwrap_err();
    check(err);
    assert!(!Path::new(&target).exists(), "nothing written");
    // The agent still serves.
    assert_eq!(sh(&l, None, "echo ok").await.unwrap(), "ok");
}

#[tokio::test]
async fn a_non_root_agent_refuses_other_users() {
    if root() {
        eprintln!("skipped: lohar runs as root here and can switch (see the other tests)");
        return;
    }
    let etc = etc();
    let l = lohar(etc.path(), None).await;
    let e = sh(&l, Some("root"), "true").await.unwrap_err();
    assert_eq!(e.agent_code(), Some(ErrorCode::PermissionDenied), "{e}");
    assert!(e.to_string().contains("cannot switch users"), "{e}");
}

#[tokio::test]
async fn exec_as_another_user_gets_its_ids_groups_and_home() {
    if skip("a switch to uid 65534") {
        return;
    }
    let etc = etc();
    let l = lohar(etc.path(), None).await;
    let home = etc.path().join("home");
    let out = sh(
        &l,
        Some("tester"),
        "id -u; id -g; id -G; echo $HOME; echo $USER $LOGNAME; pwd",
    )
    .await
    .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], OTHER.to_string());
    assert_eq!(lines[1], OTHER.to_string());
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        groups,
        [OTHER.to_string(), EXTRA_GROUP.to_string()],
        "{out}"
    );
    assert_eq!(lines[3], home.display().to_string());
    assert_eq!(lines[4], "tester tester");
    assert_eq!(lines[5], home.display().to_string());
    // A numeric uid not in passwd: gid = uid, no other groups, cwd /.
    let out = sh(&l, Some("4242"), "id -u; id -G; pwd").await.unwrap();
    assert_eq!(out, "4242\n4242\n/");
    // Back as the agent's own user afterwards: the switch was per child.
    assert_eq!(sh(&l, None, "id -u").await.unwrap(), "0");
}

#[tokio::test]
async fn a_session_runs_as_the_requested_user() {
    if skip("a session as uid 65534") {
        return;
    }
    let etc = etc();
    let l = lohar(etc.path(), None).await;
    let mut s = l
        .client
        .shell(&ShellOptions::new(["/bin/sh", "-c", "echo uid=$(id -u) home=$HOME"]).user("tester"))
        .await
        .unwrap();
    let (out, code) = read_to_exit(&mut s.events).await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("uid={OTHER}")), "{text}");
    assert!(
        text.contains(&etc.path().join("home").display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn a_write_as_a_user_owns_the_file_and_new_dirs() {
    if skip("chown to uid 65534") {
        return;
    }
    let etc = etc();
    let l = lohar(etc.path(), None).await;
    let c = &l.client;
    let file = l.path("sub/dir/f");
    let path = file.display().to_string();
    c.write_file_as(&path, 0o640, 2, &b"hi"[..], Some("tester"))
        .await
        .unwrap();
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (OTHER, OTHER, 0o640));
    let d = std::fs::metadata(l.path("sub/dir")).unwrap();
    assert_eq!(d.uid(), OTHER, "a directory the write created");
    // A default write replacing it keeps its owner ...
    c.write_file(&path, 0o644, 3, &b"new"[..]).await.unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), OTHER);
    // ... a write naming a user gives it to that user.
    c.write_file_as(&path, 0o644, 1, &b"x"[..], Some("root"))
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[tokio::test]
async fn the_sandbox_exec_user_is_the_default_for_everything() {
    if skip("exec_user 65534") {
        return;
    }
    let etc = etc();
    let config = GuestConfig {
        exec_user: Some("tester".into()),
        init: Some("echo init-uid=$(id -u)".into()),
        ..GuestConfig::default()
    };
    let l = lohar(etc.path(), Some(config)).await;
    assert_eq!(sh(&l, None, "id -u").await.unwrap(), OTHER.to_string());
    // The request still wins.
    assert_eq!(sh(&l, Some("root"), "id -u").await.unwrap(), "0");
    let mut init = l.client.attach("init").await.unwrap();
    let (out, _) = read_to_exit(&mut init.events).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(&format!("init-uid={OTHER}")), "{text}");
    // Files written through the API default to it too (new files).
    let file = l.path("owned");
    c_write(&l, &file).await;
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), OTHER);
}

async fn c_write(l: &Lohar, file: &Path) {
    l.client
        .write_file(&file.display().to_string(), 0o644, 1, &b"x"[..])
        .await
        .unwrap();
}
