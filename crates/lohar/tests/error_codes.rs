//! Error codes end to end on the agent side: the real lohar (test mode)
//! sends an ERROR_CODE frame before each ERROR, and the real client turns
//! the pair into `Error::Agent(AgentFailure { code, message })`. The code
//! comes from the errno or the handler's situation; the v1 text is
//! unchanged. The server's status for each code is tested in
//! `crates/server/src/error.rs`; a v1 agent (no code frame) against the
//! client in `crates/agent/tests/scripted_peer.rs`.
//!
//! These tests live here rather than in `crates/agent/tests` because only
//! lohar's own tests get the path of the freshly built binary
//! (`CARGO_BIN_EXE_lohar`).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use bhatti_agent::{Error, ErrorCode, Event, ExecOptions, ExecRequest, ReadOptions};
use common::Lohar;

/// The code and text of an agent error.
fn failure(r: Result<impl std::fmt::Debug, Error>) -> (ErrorCode, String) {
    match r {
        Err(Error::Agent(f)) => (f.code(), f.message().to_owned()),
        other => panic!("expected an agent error, got {other:?}"),
    }
}

#[tokio::test]
async fn file_errors_carry_the_errno_code() {
    let l = Lohar::start().await;
    std::fs::write(l.path("file"), b"x").unwrap();
    std::fs::create_dir(l.path("dir")).unwrap();
    let c = &l.client;
    let missing = l.spath("missing");

    let (code, msg) = failure(c.read_file(&missing, ReadOptions::default()).await);
    assert_eq!(code, ErrorCode::NotFound, "{msg}");
    assert!(msg.contains("no such file"), "v1 text unchanged: {msg}");

    let (code, msg) = failure(c.stat(&missing).await);
    assert_eq!(code, ErrorCode::NotFound, "{msg}");

    let (code, msg) = failure(c.ls(&l.spath("file")).await);
    assert_eq!(code, ErrorCode::NotADirectory, "{msg}");
    assert!(msg.contains("not a directory"), "{msg}");

    let (code, msg) = failure(c.ls(&missing).await);
    assert_eq!(code, ErrorCode::NotFound, "{msg}");

    let (code, msg) = failure(c.read_file(&l.spath("dir"), ReadOptions::default()).await);
    assert_eq!(code, ErrorCode::IsADirectory, "{msg}");
    assert!(msg.contains("is a directory"), "{msg}");

    let (code, msg) = failure(c.write_file(&l.spath("dir"), 0o644, 1, &b"x"[..]).await);
    assert_eq!(code, ErrorCode::IsADirectory, "{msg}");

    // A path under a regular file: ENOTDIR from the kernel.
    let (code, msg) = failure(c.stat(&format!("{}/under", l.spath("file"))).await);
    assert_eq!(code, ErrorCode::NotADirectory, "{msg}");
}

#[tokio::test]
async fn session_errors_are_session_not_found() {
    let l = Lohar::start().await;
    let (code, msg) = failure(l.client.attach("s404").await);
    assert_eq!(
        (code, msg.as_str()),
        (ErrorCode::SessionNotFound, "session not found")
    );
    let (code, msg) = failure(l.client.kill_session("s404").await);
    assert_eq!(
        (code, msg.as_str()),
        (ErrorCode::SessionNotFound, "session not found")
    );
}

#[tokio::test]
async fn exec_errors_are_start_failed_or_invalid_request() {
    let l = Lohar::start().await;
    let (code, msg) = failure(l.client.exec(ExecOptions::new(["/no/such/cmd"])).await);
    assert_eq!(code, ErrorCode::StartFailed, "{msg}");
    let (code, _) = failure(l.client.exec(ExecOptions::new(Vec::<String>::new())).await);
    assert_eq!(code, ErrorCode::InvalidRequest);

    // On a stream the code arrives with the error event.
    let mut s = l
        .client
        .exec_stream(&ExecRequest::command(["/no/such/cmd"]))
        .await
        .unwrap();
    match s.next().await.unwrap() {
        Some(Event::Error(f)) => assert_eq!(f.code, ErrorCode::StartFailed, "{f}"),
        other => panic!("expected an error event, got {other:?}"),
    }
}

#[tokio::test]
async fn permission_denied_when_not_root() {
    if rustix::process::geteuid().is_root() {
        eprintln!("skipped: root reads any file");
        return;
    }
    let l = Lohar::start().await;
    let p = l.path("secret");
    std::fs::write(&p, b"x").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let (code, msg) = failure(
        l.client
            .read_file(&l.spath("secret"), ReadOptions::default())
            .await,
    );
    assert_eq!(code, ErrorCode::PermissionDenied, "{msg}");
}
