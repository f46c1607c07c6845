//! The wire bytes themselves, over a blocking std `UnixStream` with
//! `bhatti_proto::sync_io` — no client in the way.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::net::UnixStream;

use bhatti_proto::messages::{ExecRequest, PathRequest, json_frame};
use bhatti_proto::{Frame, FrameType, sync_io};
use common::{Lohar, SOON};

fn connect(l: &Lohar) -> UnixStream {
    let s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    s
}

fn send(s: &mut UnixStream, f: &Frame) {
    sync_io::write_frame(s, f.kind, &f.payload).unwrap();
}

fn recv(s: &mut UnixStream) -> Frame {
    sync_io::read_frame(s).unwrap().expect("a frame, not EOF")
}

fn keys(payload: &[u8]) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
    v.as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

fn set(k: &[&str]) -> BTreeSet<String> {
    k.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn exec_frames_and_exact_exit_bytes() {
    let l = Lohar::start().await;
    let mut s = connect(&l);
    let req = ExecRequest::command(["/bin/sh", "-c", "printf hi; exit 258"]);
    send(&mut s, &json_frame(FrameType::EXEC_REQ, &req).unwrap());
    let mut out = Vec::new();
    loop {
        // Read the header by hand to check the EXIT frame's exact bytes.
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut payload = vec![0u8; len - 1];
        s.read_exact(&mut payload).unwrap();
        match FrameType(head[4]) {
            FrameType::STDOUT => out.extend_from_slice(&payload),
            FrameType::EXIT => {
                // exit 258 is 2 for the shell: length 5, type 5, i32 BE 2.
                assert_eq!(head, [0, 0, 0, 5, 5]);
                assert_eq!(payload, [0, 0, 0, 2]);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(out, b"hi");
    // One request per connection: the agent closes after EXIT.
    assert!(sync_io::read_frame(&mut s).unwrap().is_none());
}

#[tokio::test]
async fn stdin_frames_and_half_close() {
    let l = Lohar::start().await;
    let mut s = connect(&l);
    send(
        &mut s,
        &json_frame(FrameType::EXEC_REQ, &ExecRequest::command(["cat"])).unwrap(),
    );
    sync_io::write_frame(&mut s, FrameType::STDIN, b"abc").unwrap();
    sync_io::write_frame(&mut s, FrameType::STDIN, b"def").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let code = loop {
        let f = recv(&mut s);
        match f.kind {
            FrameType::STDOUT => out.extend_from_slice(&f.payload),
            FrameType::EXIT => break f.payload,
            other => panic!("unexpected {other}"),
        }
    };
    assert_eq!(out, b"abcdef");
    assert_eq!(code, [0, 0, 0, 0]);
}

#[tokio::test]
async fn list_is_an_empty_array_not_null() {
    let l = Lohar::start().await;
    let mut s = connect(&l);
    sync_io::write_frame(&mut s, FrameType::EXEC_LIST_REQ, b"").unwrap();
    let f = recv(&mut s);
    assert_eq!(f.kind, FrameType::EXEC_LIST_RESP);
    assert_eq!(f.payload, b"[]");
}

#[tokio::test]
async fn activity_json_fields() {
    let l = Lohar::start().await;
    let mut s = connect(&l);
    sync_io::write_frame(&mut s, FrameType::ACTIVITY_REQ, b"").unwrap();
    let f = recv(&mut s);
    assert_eq!(f.kind, FrameType::ACTIVITY_RESP);
    assert_eq!(
        keys(&f.payload),
        set(&["last_activity_unix", "active_sessions", "attached_sessions"])
    );
}

#[tokio::test]
async fn session_info_omits_exit_code_while_running() {
    let l = Lohar::start().await;
    let mut s = connect(&l);
    let req = ExecRequest {
        argv: vec!["sleep".into(), "30".into()],
        tty: true,
        rows: Some(10),
        cols: Some(20),
        ..ExecRequest::default()
    };
    send(&mut s, &json_frame(FrameType::EXEC_REQ, &req).unwrap());
    let f = recv(&mut s);
    assert_eq!(f.kind, FrameType::SESSION_INFO);
    assert_eq!(
        keys(&f.payload),
        set(&[
            "session_id",
            "argv",
            "tty",
            "running",
            "attached",
            "created_at"
        ])
    );
    let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
    assert_eq!(v["argv"], "sleep 30");
    assert_eq!(v["running"], true);
    // RESIZE: exactly 4 bytes, rows then cols.
    sync_io::write_frame(&mut s, FrameType::RESIZE, &[0, 50, 0, 132]).unwrap();
    // KILL ends the session (SIGTERM to the group): EXIT 143.
    sync_io::write_frame(&mut s, FrameType::KILL, b"").unwrap();
    let code = loop {
        let f = recv(&mut s);
        match f.kind {
            FrameType::STDOUT => {}
            FrameType::EXIT => break i32::from_be_bytes(f.payload[..4].try_into().unwrap()),
            other => panic!("unexpected {other}"),
        }
    };
    assert_eq!(code, 143);
}

#[tokio::test]
async fn file_read_frames_and_fields() {
    let l = Lohar::start().await;
    std::fs::write(l.path("f"), b"abc\n").unwrap();
    let mut s = connect(&l);
    let req = serde_json::json!({"path": l.spath("f")});
    sync_io::write_frame(&mut s, FrameType::FILE_READ_REQ, req.to_string().as_bytes()).unwrap();
    let f = recv(&mut s);
    assert_eq!(f.kind, FrameType::FILE_READ_RESP);
    assert_eq!(keys(&f.payload), set(&["size", "mode"]));
    let f = recv(&mut s);
    assert_eq!(
        (f.kind, f.payload.as_slice()),
        (FrameType::STDOUT, &b"abc\n"[..])
    );
    let f = recv(&mut s);
    assert_eq!(
        (f.kind, f.payload.as_slice()),
        (FrameType::EXIT, &[0u8, 0, 0, 0][..])
    );
}

#[tokio::test]
async fn stat_fields_and_write_resp() {
    let l = Lohar::start().await;
    let mut s = connect(&l);
    let req = serde_json::json!({"path": l.spath("w"), "mode": "0600", "size": 3});
    sync_io::write_frame(
        &mut s,
        FrameType::FILE_WRITE_REQ,
        req.to_string().as_bytes(),
    )
    .unwrap();
    sync_io::write_frame(&mut s, FrameType::STDIN, b"x").unwrap();
    sync_io::write_frame(&mut s, FrameType::STDIN, b"yz").unwrap();
    let f = recv(&mut s);
    assert_eq!(f.kind, FrameType::FILE_WRITE_RESP);
    assert_eq!(f.payload, br#"{"status":"ok"}"#);
    assert_eq!(std::fs::read(l.path("w")).unwrap(), b"xyz");

    let mut s = connect(&l);
    let req = PathRequest { path: l.spath("w") };
    send(&mut s, &json_frame(FrameType::FILE_STAT_REQ, &req).unwrap());
    let f = recv(&mut s);
    assert_eq!(f.kind, FrameType::FILE_STAT_RESP);
    assert_eq!(
        keys(&f.payload),
        set(&["name", "size", "mode", "is_dir", "mtime"])
    );
    let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
    assert_eq!(v["mode"], "0600");
    assert_eq!(v["size"], 3);
}

#[tokio::test]
async fn forward_response_bytes() {
    let l = Lohar::start().await;
    let ln = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = ln.local_addr().unwrap().port();
    let mut s = UnixStream::connect(&l.forward).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let req = serde_json::json!({ "port": port });
    sync_io::write_frame(&mut s, FrameType::FWD_REQ, req.to_string().as_bytes()).unwrap();
    let f = recv(&mut s);
    assert_eq!(f.kind, FrameType::FWD_RESP);
    assert_eq!(f.payload, br#"{"status":"ok"}"#);
    let (mut peer, _) = ln.accept().unwrap();
    std::io::Write::write_all(&mut s, b"\x00\x00\x00\x01raw").unwrap();
    let mut got = [0u8; 7];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"\x00\x00\x00\x01raw", "no framing after FWD_RESP");
}

#[tokio::test]
async fn resize_accepts_extra_bytes() {
    let l = Lohar::start().await;
    let mut s = connect(&l);
    let req = ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), "read x; stty size".into()],
        tty: true,
        ..ExecRequest::default()
    };
    send(&mut s, &json_frame(FrameType::EXEC_REQ, &req).unwrap());
    assert_eq!(recv(&mut s).kind, FrameType::SESSION_INFO);
    // 4 bytes count (rows 50, cols 132); the 2 extra are ignored.
    sync_io::write_frame(&mut s, FrameType::RESIZE, &[0, 50, 0, 132, 0xff, 0xff]).unwrap();
    sync_io::write_frame(&mut s, FrameType::STDIN, b"\n").unwrap();
    let mut out = Vec::new();
    loop {
        let f = recv(&mut s);
        match f.kind {
            FrameType::STDOUT => out.extend_from_slice(&f.payload),
            FrameType::EXIT => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        String::from_utf8_lossy(&out).contains("50 132"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}
