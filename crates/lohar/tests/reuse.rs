//! Reused control connections (protocol version 6): REUSE after AUTH, then
//! request after request on one connection, at the wire level over a
//! blocking std `UnixStream` — no client in the way.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixStream;

use bhatti_proto::kept::KeptAttachRequest;
use bhatti_proto::messages::{
    ExecRequest, FileReadRequest, FileWriteRequest, PathRequest, json_frame,
};
use bhatti_proto::{ErrorCode, Frame, FrameType, sync_io};
use common::{Lohar, Options, SOON};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn send(s: &mut UnixStream, kind: FrameType, payload: &[u8]) {
    sync_io::write_frame(s, kind, payload).unwrap();
}

fn send_json<T: serde::Serialize>(s: &mut UnixStream, kind: FrameType, msg: &T) {
    let f = json_frame(kind, msg).unwrap();
    send(s, f.kind, &f.payload);
}

fn recv(s: &mut UnixStream) -> Frame {
    sync_io::read_frame(s).unwrap().expect("a frame, not EOF")
}

/// Frames up to and including the first of `last` or ERROR.
fn reply(s: &mut UnixStream, last: FrameType) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        let f = recv(s);
        let end = f.kind == last || f.kind == FrameType::ERROR;
        out.push(f);
        if end {
            return out;
        }
    }
}

fn stdout_of(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .filter(|f| f.kind == FrameType::STDOUT)
        .flat_map(|f| f.payload.clone())
        .collect()
}

fn exit_of(frames: &[Frame]) -> i32 {
    let last = frames.last().unwrap();
    assert_eq!(last.kind, FrameType::EXIT, "{frames:?}");
    bhatti_proto::messages::parse_exit(&last.payload).unwrap()
}

async fn reused(l: &Lohar) -> UnixStream {
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    send(&mut s, FrameType::AUTH, TOKEN.as_bytes());
    send(&mut s, FrameType::REUSE, &[]);
    s
}

async fn with_token() -> Lohar {
    Lohar::start_with(Options {
        token: Some(TOKEN.into()),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn one_connection_serves_request_after_request() {
    let l = with_token().await;
    let mut s = reused(&l).await;
    let file = l.spath("f.txt");
    std::fs::write(&file, b"hello").unwrap();

    // Every reusable kind, each answered on the same connection.
    send(&mut s, FrameType::CAPS_REQ, &[]);
    let caps: bhatti_proto::ext::Caps = serde_json::from_slice(&recv(&mut s).payload).unwrap();
    assert!(caps.version >= 6 && caps.has("reuse"), "{caps:?}");
    for _ in 0..3 {
        let req = FileReadRequest {
            path: file.clone(),
            ..FileReadRequest::default()
        };
        send_json(&mut s, FrameType::FILE_READ_REQ, &req);
        let r = reply(&mut s, FrameType::EXIT);
        assert_eq!(r[0].kind, FrameType::FILE_READ_RESP);
        assert_eq!((stdout_of(&r), exit_of(&r)), (b"hello".to_vec(), 0));
    }
    send_json(
        &mut s,
        FrameType::FILE_STAT_REQ,
        &PathRequest { path: file },
    );
    assert_eq!(recv(&mut s).kind, FrameType::FILE_STAT_RESP);
    send(&mut s, FrameType::ACTIVITY_REQ, &[]);
    assert_eq!(recv(&mut s).kind, FrameType::ACTIVITY_RESP);

    // A write: exactly `size` bytes of STDIN, then the next request.
    let target = l.spath("dir/w.txt");
    let req = FileWriteRequest {
        path: target.clone(),
        mode: "0644".into(),
        size: 6,
        user: None,
    };
    send_json(&mut s, FrameType::FILE_WRITE_REQ, &req);
    send(&mut s, FrameType::STDIN, b"abc");
    send(&mut s, FrameType::STDIN, b"def");
    assert_eq!(recv(&mut s).kind, FrameType::FILE_WRITE_RESP);
    assert_eq!(std::fs::read(&target).unwrap(), b"abcdef");

    // Piped execs: output, exit code, stdin ended by an empty STDIN frame.
    for i in 0..3 {
        let cmd = format!("printf run{i}; exit {i}");
        let req = ExecRequest::command(["/bin/sh", "-c", &cmd]);
        send_json(&mut s, FrameType::EXEC_REQ, &req);
        let r = reply(&mut s, FrameType::EXIT);
        assert_eq!(stdout_of(&r), format!("run{i}").into_bytes());
        assert_eq!(exit_of(&r), i);
    }
    send_json(&mut s, FrameType::EXEC_REQ, &ExecRequest::command(["cat"]));
    send(&mut s, FrameType::STDIN, b"piped");
    send(&mut s, FrameType::STDIN, &[]);
    let r = reply(&mut s, FrameType::EXIT);
    assert_eq!((stdout_of(&r), exit_of(&r)), (b"piped".to_vec(), 0));

    // An error ends its reply, not the connection.
    let missing = FileReadRequest {
        path: l.spath("missing"),
        ..FileReadRequest::default()
    };
    send_json(&mut s, FrameType::FILE_READ_REQ, &missing);
    let r = reply(&mut s, FrameType::EXIT);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(ErrorCode::from_payload(&r[0].payload), ErrorCode::NotFound);
    send_json(&mut s, FrameType::EXEC_REQ, &ExecRequest::command(["true"]));
    assert_eq!(exit_of(&reply(&mut s, FrameType::EXIT)), 0);

    // Input that raced the end of an exec is skipped, not read as a request.
    send(&mut s, FrameType::KILL, &[]);
    send(&mut s, FrameType::STDIN, b"late");
    send(&mut s, FrameType::ACTIVITY_REQ, &[]);
    assert_eq!(recv(&mut s).kind, FrameType::ACTIVITY_RESP);
}

#[tokio::test]
async fn operations_that_own_the_connection_end_it() {
    let l = with_token().await;
    // A KEPT_ATTACH is not reusable: its error is the connection's last.
    let mut s = reused(&l).await;
    let req = KeptAttachRequest { id: "k404".into() };
    send_json(&mut s, FrameType::KEPT_ATTACH, &req);
    let r = reply(&mut s, FrameType::EXIT);
    assert_eq!(r.last().unwrap().kind, FrameType::ERROR);
    assert!(sync_io::read_frame(&mut s).unwrap().is_none());

    // A TTY session: the connection is the session's until it ends.
    let mut s = reused(&l).await;
    let mut req = ExecRequest::command(["/bin/sh", "-c", "exit 3"]);
    req.tty = true;
    send_json(&mut s, FrameType::EXEC_REQ, &req);
    let r = reply(&mut s, FrameType::EXIT);
    assert_eq!(r[0].kind, FrameType::SESSION_INFO);
    assert_eq!(exit_of(&r), 3);
    assert!(sync_io::read_frame(&mut s).unwrap().is_none());

    // A frame that is no control request: ERROR, then the close.
    let mut s = reused(&l).await;
    send(&mut s, FrameType::FWD_REQ, b"{\"port\":1}");
    let r = reply(&mut s, FrameType::EXIT);
    assert_eq!(
        ErrorCode::from_payload(&r[0].payload),
        ErrorCode::UnexpectedFrame
    );
    assert!(sync_io::read_frame(&mut s).unwrap().is_none());
}

#[tokio::test]
async fn reuse_needs_auth_and_v1_connections_still_close() {
    let l = with_token().await;
    // REUSE is no substitute for AUTH.
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    send(&mut s, FrameType::REUSE, &[]);
    let r = reply(&mut s, FrameType::EXIT);
    assert_eq!(
        ErrorCode::from_payload(&r[0].payload),
        ErrorCode::AuthRequired
    );
    assert!(sync_io::read_frame(&mut s).unwrap().is_none());

    // Without REUSE, one request per connection, as v1 hosts expect.
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    send(&mut s, FrameType::AUTH, TOKEN.as_bytes());
    send(&mut s, FrameType::ACTIVITY_REQ, &[]);
    assert_eq!(recv(&mut s).kind, FrameType::ACTIVITY_RESP);
    assert!(sync_io::read_frame(&mut s).unwrap().is_none());
}
