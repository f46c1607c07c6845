//! Start-up: the test-mode contract (missing variables) and the client's
//! wait-until-ready.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use bhatti_agent::{Client, Error};
use common::SOON;

#[test]
fn test_mode_without_sockets_exits_1_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (missing, present, path) in [
        ("LOHAR_SOCK", "LOHAR_FWD_SOCK", "f.sock"),
        ("LOHAR_FWD_SOCK", "LOHAR_SOCK", "c.sock"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lohar"))
            .env("LOHAR_TEST", "1")
            .env_remove(missing)
            .env(present, dir.path().join(path))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "missing {missing}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(missing),
            "message does not name {missing}: {err}"
        );
    }
}

#[tokio::test]
async fn wait_ready_times_out_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::unix(dir.path().join("none.sock"), dir.path().join("none2.sock"));
    let err = c.wait_ready(Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn wait_ready_succeeds_once_lohar_listens() {
    let dir = tempfile::tempdir().unwrap();
    let (control, forward) = (dir.path().join("c.sock"), dir.path().join("f.sock"));
    let c = Client::unix(&control, &forward);
    // Start waiting before lohar exists.
    let waiter = tokio::spawn(async move { c.wait_ready(SOON).await });
    let mut child = Command::new(env!("CARGO_BIN_EXE_lohar"))
        .env("LOHAR_TEST", "1")
        .env("LOHAR_SOCK", &control)
        .env("LOHAR_FWD_SOCK", &forward)
        .env_remove("LOHAR_TOKEN")
        .env_remove("LOHAR_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let res = waiter.await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let info = res.unwrap();
    assert_eq!(info.active_sessions, 0);
}
