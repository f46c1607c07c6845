//! Protocol version 7 against an agent without it: a v1 agent (it refuses
//! CAPS) gets neither `defer_sync` nor `stdin_closed` nor a SYNC_REQ from
//! a client that defers, and a command whose stdin the caller wanted
//! closed still reads end of file (the client half-closes instead). The
//! peer is a scripted agent on real Unix socket pairs.
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
