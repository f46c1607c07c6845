//! Client behaviour that lohar cannot provoke: unknown frame types (which
//! the client must skip), AUTH placement, error mapping (ERROR_CODE frames
//! of a version 2 agent, and a v1 agent that sends none) and write framing.
//! The peer is a scripted agent on the other end of a real Unix socket pair
//! speaking real frames; lohar itself is tested in `crates/lohar/tests`.
#![allow(clippy::unwrap_used)]

use bhatti_agent::{Error, ErrorCode, Event, ExecOptions, ExecRequest, ReadOptions, ShellOptions};
use bhatti_proto::messages::encode_exit;
use bhatti_proto::{FrameType, MAX_PAYLOAD_LEN};
use tokio::net::UnixStream;

mod peer;
use peer::{recv, scripted_with as scripted, send};

const UNKNOWN_A: FrameType = FrameType(0x99);
const UNKNOWN_B: FrameType = FrameType(0x7e);

#[tokio::test]
async fn exec_skips_unknown_frames() {
    let (c, peer) = scripted(None, |mut s| async move {
        let req = recv(&mut s).await;
        assert_eq!(req.kind, FrameType::EXEC_REQ);
        send(&mut s, UNKNOWN_A, b"ignore me").await;
        send(&mut s, FrameType::STDOUT, b"out").await;
        send(&mut s, UNKNOWN_B, &[0u8; 70_000]).await;
        send(&mut s, FrameType::STDERR, b"err").await;
        send(&mut s, UNKNOWN_A, b"").await;
        send(&mut s, FrameType::EXIT, &encode_exit(3)).await;
    });
    let r = c.exec(ExecOptions::new(["x"])).await.unwrap();
    assert_eq!(
        (r.exit_code, &r.stdout[..], &r.stderr[..]),
        (3, &b"out"[..], &b"err"[..])
    );
    peer.await.unwrap();
}

#[tokio::test]
async fn exec_stream_skips_unknown_frames() {
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(&mut s, UNKNOWN_A, b"?").await;
        send(&mut s, FrameType::STDOUT, b"1").await;
        send(&mut s, UNKNOWN_B, b"?").await;
        send(&mut s, FrameType::EXIT, &encode_exit(-1)).await;
    });
    let mut st = c.exec_stream(&ExecRequest::command(["x"])).await.unwrap();
    assert_eq!(st.next().await.unwrap(), Some(Event::Stdout(b"1".to_vec())));
    assert_eq!(st.next().await.unwrap(), Some(Event::Exit(-1)));
    assert_eq!(st.next().await.unwrap(), None);
    peer.await.unwrap();
}

#[tokio::test]
async fn file_read_skips_unknown_frames_inside_the_body() {
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(&mut s, UNKNOWN_A, b"before").await;
        send(
            &mut s,
            FrameType::FILE_READ_RESP,
            br#"{"size":2,"mode":"0600"}"#,
        )
        .await;
        send(&mut s, UNKNOWN_B, &[1u8; 200_000]).await;
        send(&mut s, FrameType::STDOUT, b"x").await;
        send(&mut s, UNKNOWN_A, b"").await;
        send(&mut s, FrameType::STDOUT, b"").await;
        send(&mut s, FrameType::STDOUT, b"y").await;
        send(&mut s, FrameType::EXIT, &encode_exit(0)).await;
    });
    let r = c.read_file("/f", ReadOptions::default()).await.unwrap();
    assert_eq!((r.size(), r.mode()), (2, "0600"));
    assert_eq!(r.read_all().await.unwrap(), b"xy");
    peer.await.unwrap();
}

#[tokio::test]
async fn file_read_error_mid_body_is_an_agent_error() {
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(
            &mut s,
            FrameType::FILE_READ_RESP,
            br#"{"size":9,"mode":"0644"}"#,
        )
        .await;
        send(&mut s, FrameType::STDOUT, b"part").await;
        send(&mut s, FrameType::ERROR, b"read: I/O error").await;
    });
    let r = c.read_file("/f", ReadOptions::default()).await.unwrap();
    let err = r.read_all().await.unwrap_err();
    assert!(
        matches!(&err, Error::Agent(f)
            if f.message == "read: I/O error" && f.code == ErrorCode::Other),
        "{err:?}"
    );
    peer.await.unwrap();
}

#[tokio::test]
async fn file_read_cut_short_is_closed_not_eof() {
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(
            &mut s,
            FrameType::FILE_READ_RESP,
            br#"{"size":9,"mode":"0644"}"#,
        )
        .await;
        send(&mut s, FrameType::STDOUT, b"part").await;
        // Connection ends without EXIT.
    });
    let r = c.read_file("/f", ReadOptions::default()).await.unwrap();
    let err = r.read_all().await.unwrap_err();
    assert!(matches!(err, Error::Closed(_)), "{err:?}");
    peer.await.unwrap();
}

#[tokio::test]
async fn session_and_stat_skip_unknown_frames() {
    let (c, peer) = scripted(None, |mut s| async move {
        let req = recv(&mut s).await;
        let v: serde_json::Value = serde_json::from_slice(&req.payload).unwrap();
        assert_eq!(v["tty"], true);
        send(&mut s, UNKNOWN_A, b"?").await;
        let info = br#"{"session_id":"s1","argv":"sh","tty":true,"running":true,"attached":true,"created_at":1}"#;
        send(&mut s, FrameType::SESSION_INFO, info).await;
        send(&mut s, UNKNOWN_B, b"?").await;
        send(&mut s, FrameType::STDOUT, b"$ ").await;
        send(&mut s, FrameType::EXIT, &encode_exit(0)).await;
    });
    let mut sess = c.shell(&ShellOptions::new(["sh"])).await.unwrap();
    assert_eq!(sess.id(), "s1");
    assert_eq!(
        sess.next().await.unwrap(),
        Some(Event::Stdout(b"$ ".to_vec()))
    );
    assert_eq!(sess.wait().await.unwrap(), 0);
    peer.await.unwrap();

    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(&mut s, UNKNOWN_A, b"?").await;
        let info = br#"{"name":"f","size":1,"mode":"0644","is_dir":false,"mtime":5}"#;
        send(&mut s, FrameType::FILE_STAT_RESP, info).await;
    });
    assert_eq!(c.stat("/f").await.unwrap().mtime, 5);
    peer.await.unwrap();
}

#[tokio::test]
async fn auth_comes_first_and_refusal_is_typed() {
    let (c, peer) = scripted(Some("tok"), |mut s| async move {
        let a = recv(&mut s).await;
        assert_eq!(
            (a.kind, a.payload.as_slice()),
            (FrameType::AUTH, &b"tok"[..])
        );
        let r = recv(&mut s).await;
        assert_eq!(r.kind, FrameType::ACTIVITY_REQ);
        send(&mut s, FrameType::ERROR, b"auth required").await;
    });
    let err = c.activity().await.unwrap_err();
    assert!(
        matches!(&err, Error::AuthRefused(m) if m == "auth required"),
        "{err:?}"
    );
    peer.await.unwrap();
}

#[tokio::test]
async fn wrong_frame_is_a_protocol_violation() {
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::FILE_LS_RESP, b"[]").await;
    });
    let err = c.exec(ExecOptions::new(["x"])).await.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    peer.await.unwrap();

    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::ACTIVITY_RESP, b"{not json").await;
    });
    let err = c.activity().await.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    peer.await.unwrap();
}

#[tokio::test]
async fn write_is_streamed_in_bounded_frames() {
    const SIZE: usize = (5 << 19) + 123; // 2.5 MiB + change: three frames
    let (c, peer) = scripted(None, |mut s| async move {
        let req = recv(&mut s).await;
        let v: serde_json::Value = serde_json::from_slice(&req.payload).unwrap();
        assert_eq!(v["size"], SIZE);
        assert_eq!(v["mode"], "0640");
        let mut total = 0;
        let mut frames = 0;
        while total < SIZE {
            let f = recv(&mut s).await;
            assert_eq!(f.kind, FrameType::STDIN);
            assert!(f.payload.len() <= MAX_PAYLOAD_LEN);
            assert!(f.payload.iter().all(|b| *b == 0xab));
            total += f.payload.len();
            frames += 1;
        }
        assert_eq!(total, SIZE);
        assert_eq!(frames, 3);
        send(&mut s, FrameType::FILE_WRITE_RESP, br#"{"status":"ok"}"#).await;
    });
    let data = vec![0xabu8; SIZE];
    c.write_file("/f", 0o640, SIZE as u64, &data[..])
        .await
        .unwrap();
    peer.await.unwrap();
}

#[tokio::test]
async fn forward_error_status_is_an_agent_error() {
    let (c, peer) = scripted(None, |mut s| async move {
        let r = recv(&mut s).await;
        assert_eq!(r.kind, FrameType::FWD_REQ);
        assert_eq!(r.payload, br#"{"port":8080}"#);
        send(
            &mut s,
            FrameType::FWD_RESP,
            br#"{"status":"error","message":"dial tcp 127.0.0.1:8080: connection refused"}"#,
        )
        .await;
    });
    let err = c.forward(8080).await.unwrap_err();
    assert!(
        matches!(&err, Error::Agent(f) if f.message.contains("refused")),
        "{err:?}"
    );
    peer.await.unwrap();
}

/// Sends ERROR_CODE `code` and ERROR `msg` as a version 2 agent does.
async fn send_coded(s: &mut UnixStream, code: &str, msg: &str) {
    let payload = format!(r#"{{"code":"{code}"}}"#);
    send(s, FrameType::ERROR_CODE, payload.as_bytes()).await;
    send(s, FrameType::ERROR, msg.as_bytes()).await;
}

fn failure(err: &Error) -> (ErrorCode, &str) {
    match err {
        Error::Agent(f) => (f.code(), f.message()),
        other => panic!("expected an agent error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_code_frame_types_the_error_after_it() {
    // Request/response (stat).
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(&mut s, UNKNOWN_A, b"?").await;
        send_coded(&mut s, "not_found", "stat /x: no such file or directory").await;
    });
    let err = c.stat("/x").await.unwrap_err();
    assert_eq!(
        failure(&err),
        (ErrorCode::NotFound, "stat /x: no such file or directory")
    );
    peer.await.unwrap();

    // Buffered exec.
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send_coded(&mut s, "start_failed", "start: no such file or directory").await;
    });
    let err = c.exec(ExecOptions::new(["nope"])).await.unwrap_err();
    assert_eq!(failure(&err).0, ErrorCode::StartFailed);
    peer.await.unwrap();

    // A file read failing mid-body.
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        let resp = br#"{"size":9,"mode":"0644"}"#;
        send(&mut s, FrameType::FILE_READ_RESP, resp).await;
        send(&mut s, FrameType::STDOUT, b"part").await;
        send_coded(&mut s, "io", "read /f: input/output error").await;
    });
    let r = c.read_file("/f", ReadOptions::default()).await.unwrap();
    let err = r.read_all().await.unwrap_err();
    assert_eq!(
        failure(&err),
        (ErrorCode::Io, "read /f: input/output error")
    );
    peer.await.unwrap();
}

#[tokio::test]
async fn a_code_frame_types_a_stream_error_event() {
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send_coded(&mut s, "session_not_found", "session not found").await;
    });
    let mut st = c.exec_stream(&ExecRequest::command(["x"])).await.unwrap();
    match st.next().await.unwrap() {
        Some(Event::Error(f)) => {
            assert_eq!(
                (f.code, f.message.as_str()),
                (ErrorCode::SessionNotFound, "session not found")
            );
        }
        other => panic!("expected an error event, got {other:?}"),
    }
    assert_eq!(st.next().await.unwrap(), None);
    peer.await.unwrap();

    // A code only belongs to the ERROR right after it.
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::ERROR_CODE, br#"{"code":"not_found"}"#).await;
        send(&mut s, FrameType::STDOUT, b"x").await;
        send(&mut s, FrameType::ERROR, b"boom").await;
    });
    let mut st = c.exec_stream(&ExecRequest::command(["x"])).await.unwrap();
    assert_eq!(st.next().await.unwrap(), Some(Event::Stdout(b"x".to_vec())));
    let (_input, mut events) = st.into_split();
    let err = events.wait().await.unwrap_err();
    assert_eq!(failure(&err), (ErrorCode::Other, "boom"));
    peer.await.unwrap();
}

#[tokio::test]
async fn unknown_codes_are_other_and_auth_required_is_a_refusal() {
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send_coded(&mut s, "quantum_flux", "something new").await;
    });
    let err = c.ls("/d").await.unwrap_err();
    assert_eq!(failure(&err), (ErrorCode::Other, "something new"));
    peer.await.unwrap();

    let (c, peer) = scripted(Some("tok"), |mut s| async move {
        recv(&mut s).await;
        recv(&mut s).await;
        send_coded(&mut s, "auth_required", "auth required").await;
    });
    let err = c.activity().await.unwrap_err();
    assert!(
        matches!(&err, Error::AuthRefused(m) if m == "auth required"),
        "{err:?}"
    );
    assert_eq!(err.agent_code(), Some(ErrorCode::AuthRequired));
    peer.await.unwrap();
}

#[tokio::test]
async fn a_v1_agent_without_code_frames_gives_code_other_and_its_text() {
    // v1 wording of a missing path: the client does not guess a code.
    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(
            &mut s,
            FrameType::ERROR,
            b"stat /x: no such file or directory",
        )
        .await;
    });
    let err = c.stat("/x").await.unwrap_err();
    assert_eq!(
        failure(&err),
        (ErrorCode::Other, "stat /x: no such file or directory")
    );
    assert_eq!(err.to_string(), "agent: stat /x: no such file or directory");
    peer.await.unwrap();

    let (c, peer) = scripted(None, |mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::ERROR, b"session not found").await;
    });
    let err = c.kill_session("s9").await.unwrap_err();
    assert_eq!(failure(&err), (ErrorCode::Other, "session not found"));
    peer.await.unwrap();
}
