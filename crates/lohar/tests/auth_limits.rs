//! Auth (token required, wrong, right, deadline), unexpected first frames,
//! malformed input, and the limits that keep one client from hurting others.
//! Raw replies are checked as lohar sends every error: an ERROR_CODE frame
//! with its code, then the v1 ERROR frame.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bhatti_agent::{Client, Error, ExecOptions, ShellOptions};
use bhatti_proto::messages::{FileWriteRequest, json_frame};
use bhatti_proto::{ErrorCode, Frame, FrameType, sync_io};
use common::{Lohar, Options, SOON};

const TOKEN: &str = "00112233445566778899aabbccddeeff";

/// Reads an error reply: ERROR_CODE, then ERROR (returned with its code).
fn read_error(s: &mut UnixStream) -> (ErrorCode, Frame) {
    let code = sync_io::read_frame(s)
        .unwrap()
        .expect("an ERROR_CODE frame");
    assert_eq!(code.kind, FrameType::ERROR_CODE, "{}", code.text());
    let f = sync_io::read_frame(s).unwrap().expect("an ERROR frame");
    assert_eq!(f.kind, FrameType::ERROR);
    (ErrorCode::from_payload(&code.payload), f)
}

async fn with_token() -> Lohar {
    Lohar::start_with(Options {
        token: Some(TOKEN.into()),
        ..Options::default()
    })
    .await
}

fn assert_auth_refused(r: Result<impl std::fmt::Debug, Error>) {
    match r {
        Err(Error::AuthRefused(m)) => assert_eq!(m, "auth required"),
        other => panic!("expected `auth required`, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_token_is_refused() {
    let l = with_token().await;
    assert_auth_refused(l.anonymous().activity().await);
    assert_auth_refused(l.anonymous().exec(ExecOptions::new(["true"])).await);
    assert_auth_refused(l.anonymous().forward(1).await.map(|_| ()));
}

#[tokio::test]
async fn wrong_token_is_refused() {
    let l = with_token().await;
    let bad = l.anonymous().with_token("00112233445566778899aabbccddeefe");
    assert_auth_refused(bad.activity().await);
    let short = l.anonymous().with_token("0011");
    assert_auth_refused(short.stat("/").await);
    // wait_ready gives up at once on a refused token.
    assert_auth_refused(bad.wait_ready(SOON).await);
}

#[tokio::test]
async fn right_token_works_everywhere() {
    let l = with_token().await;
    let r = l
        .client
        .exec(ExecOptions::new(["echo", "authed"]))
        .await
        .unwrap();
    assert_eq!(r.stdout, b"authed\n");
    l.client.stat("/").await.unwrap();
    // Forward port too: a refused dial proves the handshake got past AUTH.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = l.client.forward(port).await.unwrap_err();
    assert!(
        matches!(&err, Error::Agent(f) if f.message.contains("refused")),
        "{err:?}"
    );
}

#[tokio::test]
async fn silent_client_gets_auth_required_after_the_deadline() {
    let l = with_token().await;
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (code, f) = read_error(&mut s);
    assert_eq!(code, ErrorCode::AuthRequired);
    assert_eq!(f.text(), "auth required");
    assert!(
        sync_io::read_frame(&mut s).unwrap().is_none(),
        "connection closed"
    );
}

fn raw_first_frame(path: &std::path::Path, kind: u8) -> Frame {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    sync_io::write_frame(&mut s, FrameType(kind), b"").unwrap();
    let (code, f) = read_error(&mut s);
    assert_eq!(code, ErrorCode::UnexpectedFrame);
    f
}

#[tokio::test]
async fn unexpected_first_frame_is_named() {
    let l = Lohar::start().await;
    for kind in [0x02u8, 0x05, 0x99] {
        let f = raw_first_frame(&l.control, kind);
        assert_eq!(f.kind, FrameType::ERROR);
        assert_eq!(f.text(), format!("unexpected frame type 0x{kind:02x}"));
    }
    // The forward port wants FWD_REQ.
    let f = raw_first_frame(&l.forward, FrameType::EXEC_REQ.0);
    assert_eq!(f.kind, FrameType::ERROR);
    assert_eq!(f.text(), "unexpected frame type 0x10");
}

#[tokio::test]
async fn malformed_input_does_not_hurt_the_agent() {
    let mut l = Lohar::start().await;
    let garbage: [&[u8]; 5] = [
        &[0, 0, 0, 0, 0x10],                   // zero length
        &[0xff, 0xff, 0xff, 0xff, 0x10],       // length over the maximum
        &[0, 0, 0, 9, 0x10, b'{', b'x'],       // truncated frame
        &[0, 0, 0, 4, 0x10, b'{', b'x', b'!'], // bad JSON
        &[0, 0],                               // partial header
    ];
    for g in garbage {
        let mut s = UnixStream::connect(&l.control).unwrap();
        s.set_read_timeout(Some(SOON)).unwrap();
        s.write_all(g).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Whatever the reply (an ERROR or a close), it comes promptly.
        let _ = sync_io::read_frame(&mut s);
    }
    assert!(l.running(), "lohar died on malformed input");
    let r = l
        .client
        .exec(ExecOptions::new(["echo", "alive"]))
        .await
        .unwrap();
    assert_eq!(r.stdout, b"alive\n");
}

#[tokio::test]
async fn bad_json_gets_an_error_frame() {
    let l = Lohar::start().await;
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    sync_io::write_frame(&mut s, FrameType::EXEC_REQ, b"{not json").unwrap();
    let (code, f) = read_error(&mut s);
    assert_eq!(code, ErrorCode::InvalidRequest);
    assert!(!f.text().is_empty());
}

#[tokio::test]
async fn oversized_write_is_refused_up_front() {
    let l = Lohar::start().await;
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let req = FileWriteRequest {
        path: l.spath("huge"),
        mode: "0644".into(),
        size: i64::MAX,
        user: None,
    };
    let f = json_frame(FrameType::FILE_WRITE_REQ, &req).unwrap();
    sync_io::write_frame(&mut s, f.kind, &f.payload).unwrap();
    // An ERROR before any data is sent, not a wait.
    let (code, f) = read_error(&mut s);
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(!f.text().is_empty());
    assert!(!l.path("huge").exists());
}

/// Opens idle connections in batches until the agent refuses one with an
/// ERROR frame; the refusal must be clear and must not stop other clients
/// once the idle connections go away.
#[tokio::test]
async fn too_many_connections_get_a_clear_error() {
    const BATCH: usize = 64;
    let l = Lohar::start().await;
    let mut held: Vec<UnixStream> = Vec::new();
    let mut refused = None;
    'outer: while held.len() < 4096 {
        for _ in 0..BATCH {
            held.push(UnixStream::connect(&l.control).expect("connect"));
        }
        // Idle connections are all alike: if any of this batch is over the
        // limit, so is the newest one.
        let last = held.last_mut().unwrap();
        last.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match sync_io::read_frame(last) {
            Ok(Some(code)) => {
                assert_eq!(code.kind, FrameType::ERROR_CODE);
                assert_eq!(
                    ErrorCode::from_payload(&code.payload),
                    ErrorCode::LimitReached
                );
                refused = Some(sync_io::read_frame(last).unwrap().expect("ERROR"));
                break 'outer;
            }
            Ok(None) => panic!("connection closed without an ERROR after {}", held.len()),
            Err(_) => {} // timed out: accepted and waiting for a request
        }
    }
    let f = refused.expect("no connection limit below 4096 connections");
    assert_eq!(f.kind, FrameType::ERROR);
    assert!(
        f.text().contains("too many connections"),
        "unclear limit error: {}",
        f.text()
    );
    drop(held);
    // Once the idle ones are gone the agent serves again.
    let c: Client = l.client.clone();
    c.wait_ready(SOON).await.unwrap();
    c.exec(ExecOptions::new(["true"])).await.unwrap();
}

/// Starts detached sessions until the agent refuses one; the error is clear
/// and killing a session makes room again.
#[tokio::test]
async fn too_many_sessions_get_a_clear_error() {
    let l = Lohar::start().await;
    let mut ids = Vec::new();
    let err = loop {
        assert!(ids.len() < 1024, "no session limit below 1024 sessions");
        match l.client.shell(&ShellOptions::new(["sleep", "60"])).await {
            Ok(s) => ids.push(s.id().to_owned()), // dropped: detached
            Err(e) => break e,
        }
    };
    let msg = err
        .agent_message()
        .unwrap_or_else(|| panic!("{err:?}"))
        .to_owned();
    assert_eq!(
        err.agent_code(),
        Some(bhatti_agent::ErrorCode::LimitReached)
    );
    assert!(
        msg.contains("too many sessions"),
        "unclear limit error: {msg}"
    );
    // Other requests still work at the limit.
    l.client.exec(ExecOptions::new(["true"])).await.unwrap();
    l.client.kill_session(&ids[0]).await.unwrap();
    let again = tokio::time::timeout(SOON, async {
        loop {
            match l.client.shell(&ShellOptions::new(["sleep", "60"])).await {
                Ok(s) => return s.id().to_owned(),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("room for a session after a kill");
    ids.push(again);
    for id in &ids[1..] {
        l.client.kill_session(id).await.unwrap();
    }
}
