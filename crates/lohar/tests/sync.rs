//! Protocol version 7: EXIT before the exec's sync (`defer_sync`),
//! SYNC_REQ, and `stdin_closed`, at the wire level and through the client.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixStream;
use std::time::Duration;

use bhatti_agent::{ExecOptions, ExecRequest, feature};
use bhatti_proto::messages::{json_frame, parse_exit};
use bhatti_proto::{FrameType, PROTOCOL_VERSION, sync_io};
use common::{Lohar, SOON};

fn recv(s: &mut UnixStream) -> bhatti_proto::Frame {
    sync_io::read_frame(s).unwrap().expect("a frame, not EOF")
}

/// Frames up to and including EXIT (anything else ending the reply fails).
fn until_exit(s: &mut UnixStream) -> Vec<bhatti_proto::Frame> {
    let mut out = Vec::new();
    loop {
        let f = recv(s);
        assert_ne!(f.kind, FrameType::ERROR, "{f:?}");
        let end = f.kind == FrameType::EXIT;
        out.push(f);
        if end {
            return out;
        }
    }
}

#[tokio::test]
async fn a_deferred_exec_then_sync_on_one_reused_connection() {
    let l = Lohar::start().await;
    let caps = l.client.caps().await.unwrap();
    assert!(caps.version >= 7 && caps.has(feature::SYNC), "{caps:?}");
    assert_eq!(PROTOCOL_VERSION, 7);

    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    sync_io::write_frame(&mut s, FrameType::REUSE, &[]).unwrap();
    let file = l.spath("out.txt");
    let req = ExecRequest {
        defer_sync: true,
        ..ExecRequest::command(["sh", "-c", &format!("echo deferred > {file}; exit 3")])
    };
    let f = json_frame(FrameType::EXEC_REQ, &req).unwrap();
    sync_io::write_frame(&mut s, f.kind, &f.payload).unwrap();
    let frames = until_exit(&mut s);
    assert_eq!(parse_exit(&frames.last().unwrap().payload).unwrap(), 3);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "deferred\n");

    // SYNC_REQ: an empty SYNC_RESP, and the connection serves on.
    for _ in 0..2 {
        sync_io::write_frame(&mut s, FrameType::SYNC_REQ, &[]).unwrap();
        let resp = recv(&mut s);
        assert_eq!((resp.kind, resp.payload.len()), (FrameType::SYNC_RESP, 0));
    }
    let f = json_frame(FrameType::EXEC_REQ, &ExecRequest::command(["true"])).unwrap();
    sync_io::write_frame(&mut s, f.kind, &f.payload).unwrap();
    let frames = until_exit(&mut s);
    assert_eq!(parse_exit(&frames.last().unwrap().payload).unwrap(), 0);
}

#[tokio::test]
async fn the_client_defers_and_syncs_and_a_sync_is_no_activity() {
    let l = Lohar::start().await;
    let c = l.client.clone().with_reuse().with_deferred_sync();
    let file = l.spath("a.txt");
    let r = c
        .exec(ExecOptions::new(["sh", "-c", &format!("echo a > {file}")]))
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "a\n");
    let before = c.activity().await.unwrap().last_activity_unix;
    // Activity counts whole seconds: a sync a second later must not move it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(c.sync().await.unwrap(), "the agent serves SYNC_REQ");
    assert!(
        l.client.sync().await.unwrap(),
        "also without reuse or deferral"
    );
    let after = c.activity().await.unwrap().last_activity_unix;
    assert_eq!(before, after, "a sync counted as activity");
    // A streamed exec defers too, and still ends with its EXIT.
    let mut stream = c
        .exec_stream(&ExecRequest::command(["sh", "-c", "echo streamed"]))
        .await
        .unwrap();
    let (out, code) = common::read_to_exit(&mut stream.events).await;
    assert_eq!((out.as_slice(), code), (&b"streamed\n"[..], 0));
}

#[tokio::test]
async fn stdin_closed_by_the_request_alone() {
    let l = Lohar::start().await;
    assert!(l.client.caps().await.unwrap().has(feature::STDIN_CLOSED));
    let mut s = UnixStream::connect(&l.control).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    sync_io::write_frame(&mut s, FrameType::REUSE, &[]).unwrap();
    // `cat` ends only on end of file: no STDIN frame is ever sent.
    let script = "cat; echo eof; test -p /dev/stdin && echo pipe";
    let req = ExecRequest {
        stdin_closed: true,
        ..ExecRequest::command(["sh", "-c", script])
    };
    for _ in 0..2 {
        let f = json_frame(FrameType::EXEC_REQ, &req).unwrap();
        sync_io::write_frame(&mut s, f.kind, &f.payload).unwrap();
        let frames = until_exit(&mut s);
        let out: Vec<u8> = frames
            .iter()
            .filter(|f| f.kind == FrameType::STDOUT)
            .flat_map(|f| f.payload.clone())
            .collect();
        // Still a pipe, as after an empty STDIN frame.
        assert_eq!(out, b"eof\npipe\n");
        assert_eq!(parse_exit(&frames.last().unwrap().payload).unwrap(), 0);
    }

    // Through the client and a supervised run (which closes stdin itself
    // unless the request did): the same, on reused connections.
    let c = l.client.clone().with_reuse();
    for _ in 0..2 {
        let stream = c.exec_stream(&req).await.unwrap();
        let run = bhatti_agent::Supervised::new(stream, None).await;
        let r = run.collect(1 << 20).await.unwrap();
        assert_eq!((r.stdout.as_slice(), r.exit_code), (&b"eof\npipe\n"[..], 0));
    }
    assert_eq!(c.stale_connections(), 0);
}

#[tokio::test]
async fn a_kept_exec_defers_its_sync_too() {
    let l = Lohar::start().await;
    let c = l.client.clone().with_reuse().with_deferred_sync();
    let file = l.spath("kept.txt");
    let req = ExecRequest {
        // Read as closed by the client (`stdin_closed` is not sent for a
        // kept exec; an empty STDIN frame follows the request instead).
        stdin_closed: true,
        ..ExecRequest::command(["sh", "-c", &format!("cat; echo kept > {file}; echo done")])
    };
    let mut k = c.exec_kept(&req).await.unwrap();
    let (out, code) = common::read_to_exit(&mut k.events).await;
    assert_eq!((out.as_slice(), code), (&b"done\n"[..], 0));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept\n");
    assert!(c.sync().await.unwrap());
}

#[tokio::test]
async fn stdin_null_is_dev_null_for_piped_and_kept_execs() {
    let l = Lohar::start().await;
    assert!(l.client.caps().await.unwrap().has(feature::STDIN_NULL));
    let c = l.client.clone().with_reuse();
    let script = "cat; test -c /dev/stdin && readlink /proc/self/fd/0";
    let req = ExecRequest {
        stdin_null: true,
        ..ExecRequest::command(["sh", "-c", script])
    };
    let r = c
        .exec_stream(&req)
        .await
        .unwrap()
        .into_split()
        .1
        .next()
        .await
        .unwrap();
    assert!(
        matches!(&r, Some(bhatti_agent::Event::Stdout(o)) if o == b"/dev/null\n"),
        "{r:?}"
    );
    // Kept: no stdin to close (KEPT_INFO says so), and the same /dev/null.
    let mut k = c.exec_kept(&req).await.unwrap();
    assert!(!k.info.stdin_open, "{:?}", k.info);
    let (out, code) = common::read_to_exit(&mut k.events).await;
    assert_eq!((out.as_slice(), code), (&b"/dev/null\n"[..], 0));
}
