//! Protocol version 7 against an agent without it: a v1 agent (it refuses
//! CAPS) gets neither `defer_sync` nor `stdin_closed` nor a SYNC_REQ from
//! a client that defers, and a command whose stdin the caller wanted
//! closed still reads end of file (the client half-closes instead); a
//! version 6 agent gets an empty STDIN frame instead, which keeps KILL
//! working. The peer is a scripted agent on real Unix socket pairs.
#![allow(clippy::unwrap_used)]

use bhatti_agent::{Event, ExecOptions, ExecRequest};
use bhatti_proto::messages::{decode_json, encode_exit};
use bhatti_proto::{FrameType, async_io};

mod peer;
use peer::{recv, scripted_conns, send};

/// The EXEC_REQ the peer read next on `s`.
async fn exec_request(s: &mut tokio::net::UnixStream) -> ExecRequest {
    let f = recv(s).await;
    assert_eq!(f.kind, FrameType::EXEC_REQ);
    decode_json("ExecRequest", &f.payload).unwrap()
}

#[tokio::test]
async fn a_v1_agent_gets_no_version_7_fields_or_frames() {
    // Three connections: CAPS, a buffered exec, a streamed exec. A fourth
    // (a SYNC_REQ) would find no scripted end and fail.
    let (c, peer) = scripted_conns(3, |conns| async move {
        let [mut caps, mut buffered, mut streamed] = <[_; 3]>::try_from(conns).unwrap();
        let f = recv(&mut caps).await;
        assert_eq!(f.kind, FrameType::CAPS_REQ);
        send(&mut caps, FrameType::ERROR, b"unexpected frame type 0x70").await;

        let req = exec_request(&mut buffered).await;
        assert!(!req.defer_sync && !req.stdin_closed, "{req:?}");
        send(&mut buffered, FrameType::EXIT, &encode_exit(0)).await;

        let req = exec_request(&mut streamed).await;
        assert!(!req.defer_sync && !req.stdin_closed, "{req:?}");
        // Stdin closed the v1 way: a half-close right after the request.
        assert!(async_io::read_frame(&mut streamed).await.unwrap().is_none());
        send(&mut streamed, FrameType::EXIT, &encode_exit(0)).await;
    });
    let c = c.with_deferred_sync();
    let r = c.exec(ExecOptions::new(["true"])).await.unwrap();
    assert_eq!(r.exit_code, 0);
    assert!(!c.sync().await.unwrap(), "no SYNC_REQ for a v1 agent");
    let req = ExecRequest {
        stdin_closed: true,
        ..ExecRequest::command(["cat"])
    };
    let mut stream = c.exec_stream(&req).await.unwrap();
    let ev = stream.next().await.unwrap();
    assert!(matches!(ev, Some(Event::Exit(0))), "{ev:?}");
    peer.await.unwrap();
}

#[tokio::test]
async fn a_version_6_agent_gets_stdin_closed_by_a_frame_that_keeps_kill() {
    // An agent with `stdin_eof` but not `stdin_closed`, on connections it
    // does not reuse: the client closes the command's stdin with an empty
    // STDIN frame, not a half-close, so a KILL (a timeout's) still gets
    // through afterwards.
    let (c, peer) = scripted_conns(2, |conns| async move {
        let [mut caps, mut streamed] = <[_; 2]>::try_from(conns).unwrap();
        assert_eq!(recv(&mut caps).await.kind, FrameType::CAPS_REQ);
        let v6 = r#"{"version":6,"features":["stdin_eof","signal","reuse"]}"#;
        send(&mut caps, FrameType::CAPS_RESP, v6.as_bytes()).await;

        let req = exec_request(&mut streamed).await;
        assert!(!req.stdin_closed, "{req:?}");
        let f = recv(&mut streamed).await;
        assert_eq!((f.kind, f.payload.len()), (FrameType::STDIN, 0));
        assert_eq!(recv(&mut streamed).await.kind, FrameType::KILL);
        send(&mut streamed, FrameType::EXIT, &encode_exit(137)).await;
    });
    let req = ExecRequest {
        stdin_closed: true,
        ..ExecRequest::command(["cat"])
    };
    let (mut input, mut events) = c.exec_stream(&req).await.unwrap().into_split();
    input.kill().await.unwrap();
    let ev = events.next().await.unwrap();
    assert!(matches!(ev, Some(Event::Exit(137))), "{ev:?}");
    peer.await.unwrap();
}
