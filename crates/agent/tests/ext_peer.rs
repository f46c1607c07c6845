//! Protocol version 4 client behaviour lohar does not provoke: how
//! [`Client::caps`] reads an agent without the query (v1: no code; a
//! version 2–3 lohar: `unexpected_frame`), the frames the v4 methods send,
//! and a watch stream with unknown frames, a bad event and an end.
//! The peer is a scripted agent on a real Unix socket pair.
#![allow(clippy::unwrap_used)]

use bhatti_agent::{Error, ErrorCode, WatchEventType};
use bhatti_proto::messages::encode_exit;
use bhatti_proto::{FrameType, async_io};

mod peer;
use peer::{recv, scripted, send};

#[tokio::test]
async fn a_v1_agent_refusing_caps_reads_as_version_1_without_features() {
    let (c, peer) = scripted(|mut s| async move {
        let f = recv(&mut s).await;
        assert_eq!((f.kind, f.payload.len()), (FrameType::CAPS_REQ, 0));
        send(&mut s, FrameType::ERROR, b"unexpected frame type 0x70").await;
    });
    let caps = c.caps().await.unwrap();
    assert_eq!((caps.version, caps.features.len()), (1, 0));
    peer.await.unwrap();
}

#[tokio::test]
async fn a_v3_lohar_refusing_caps_reads_as_version_2_with_error_codes() {
    let (c, peer) = scripted(|mut s| async move {
        recv(&mut s).await;
        send(
            &mut s,
            FrameType::ERROR_CODE,
            br#"{"code":"unexpected_frame"}"#,
        )
        .await;
        send(&mut s, FrameType::ERROR, b"unexpected frame type 0x70").await;
    });
    let caps = c.caps().await.unwrap();
    assert_eq!(caps.version, 2);
    assert!(caps.has("error_code") && !caps.has("watch"));
    peer.await.unwrap();
}

#[tokio::test]
async fn other_caps_errors_stay_errors() {
    let (c, peer) = scripted(|mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::ERROR, b"auth required").await;
    });
    assert!(matches!(c.caps().await, Err(Error::AuthRefused(_))));
    peer.await.unwrap();
}

#[tokio::test]
async fn v4_requests_carry_their_exact_json() {
    let cases: [(FrameType, &[u8]); 5] = [
        (FrameType::MKDIR_REQ, br#"{"path":"/w/d","user":"lohar"}"#),
        (
            FrameType::MOVE_REQ,
            br#"{"source":"/a","destination":"/b"}"#,
        ),
        (FrameType::REMOVE_REQ, br#"{"path":"/w/x"}"#),
        (FrameType::STAT2_REQ, br#"{"path":"/w/x"}"#),
        (FrameType::LS2_REQ, br#"{"path":"/w","depth":3}"#),
    ];
    for (kind, want) in cases {
        let (c, peer) = scripted(move |mut s| async move {
            let f = recv(&mut s).await;
            assert_eq!(f.kind, kind);
            assert_eq!(f.text(), String::from_utf8_lossy(want));
            send(&mut s, FrameType::ERROR_CODE, br#"{"code":"not_found"}"#).await;
            send(&mut s, FrameType::ERROR, b"nope").await;
        });
        let r = match kind {
            FrameType::MKDIR_REQ => c.mkdir("/w/d", Some("lohar")).await.map(|_| ()),
            FrameType::MOVE_REQ => c.mv("/a", "/b", None).await.map(|_| ()),
            FrameType::REMOVE_REQ => c.remove("/w/x").await,
            FrameType::STAT2_REQ => c.stat2("/w/x").await.map(|_| ()),
            _ => c.ls2("/w", 3).await.map(|_| ()),
        };
        assert_eq!(r.unwrap_err().agent_code(), Some(ErrorCode::NotFound));
        peer.await.unwrap();
    }
}

#[tokio::test]
async fn a_watch_skips_unknown_frames_and_ends_on_exit() {
    let (c, peer) = scripted(|mut s| async move {
        let f = recv(&mut s).await;
        assert_eq!(f.text(), r#"{"path":"/w","recursive":true}"#);
        send(&mut s, FrameType::WATCH_RESP, br#"{"path":"/w"}"#).await;
        send(&mut s, FrameType(0x99), b"future").await;
        send(
            &mut s,
            FrameType::WATCH_EVENT,
            br#"{"type":"create","name":"a"}"#,
        )
        .await;
        send(
            &mut s,
            FrameType::WATCH_EVENT,
            br#"{"type":"open","name":"b","x":1}"#,
        )
        .await;
        send(&mut s, FrameType::EXIT, &encode_exit(0)).await;
        // The client keeps its side open until the watch is dropped.
        assert!(async_io::read_frame(&mut s).await.unwrap().is_none());
    });
    let mut w = c.watch("/w", true).await.unwrap();
    assert_eq!(w.path, "/w");
    let a = w.next().await.unwrap().unwrap();
    assert_eq!(
        (a.kind, a.name.as_str(), a.is_dir),
        (WatchEventType::Create, "a", false)
    );
    let b = w.next().await.unwrap().unwrap();
    assert_eq!(b.kind, WatchEventType::Other);
    assert!(w.next().await.unwrap().is_none());
    assert!(w.next().await.unwrap().is_none(), "stays ended");
    drop(w);
    peer.await.unwrap();
}

#[tokio::test]
async fn a_watch_error_and_a_malformed_event_are_errors() {
    let (c, peer) = scripted(|mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::WATCH_RESP, br#"{"path":"/w"}"#).await;
        send(&mut s, FrameType::WATCH_EVENT, b"not json").await;
    });
    let mut w = c.watch("/w", false).await.unwrap();
    assert!(matches!(w.next().await, Err(Error::Protocol(_))));
    peer.await.unwrap();
    let (c, peer) = scripted(|mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::WATCH_RESP, br#"{"path":"/w"}"#).await;
        send(&mut s, FrameType::ERROR_CODE, br#"{"code":"io"}"#).await;
        send(&mut s, FrameType::ERROR, b"watch /w: broken").await;
    });
    let mut w = c.watch("/w", false).await.unwrap();
    let e = w.next().await.unwrap_err();
    assert_eq!(e.agent_code(), Some(ErrorCode::Io));
    peer.await.unwrap();
    // Closed without EXIT: not a clean end.
    let (c, peer) = scripted(|mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::WATCH_RESP, br#"{"path":"/w"}"#).await;
    });
    let mut w = c.watch("/w", false).await.unwrap();
    peer.await.unwrap();
    assert!(matches!(w.next().await, Err(Error::Closed(_))));
}

#[tokio::test]
async fn signal_frames_carry_the_number() {
    let (c, peer) = scripted(|mut s| async move {
        recv(&mut s).await;
        let f = recv(&mut s).await;
        assert_eq!(
            (f.kind, f.text().as_str()),
            (FrameType::SIGNAL, r#"{"signal":15}"#)
        );
        send(&mut s, FrameType::EXIT, &encode_exit(143)).await;
    });
    let mut s = c
        .exec_stream(&bhatti_agent::ExecRequest::command(["sleep", "9"]))
        .await
        .unwrap();
    s.input.signal(15).await.unwrap();
    assert_eq!(s.events.wait().await.unwrap(), 143);
    peer.await.unwrap();
}
