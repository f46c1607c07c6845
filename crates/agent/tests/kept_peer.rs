//! Protocol version 5 client behaviour against a scripted agent: the
//! frames `exec_kept`, `attach_kept`, `list_kept` and `end_stdin` send,
//! and what an agent that does not keep commands (its first frame is
//! output, not KEPT_INFO) or a malformed KEPT_INFO makes of them. The
//! real agent's side is `crates/lohar/tests/kept.rs`.
#![allow(clippy::unwrap_used)]

use bhatti_agent::{Client, Error, Event, ExecRequest};
use bhatti_proto::FrameType;
use bhatti_proto::messages::encode_exit;
use tokio::io::AsyncReadExt;

mod peer;
use peer::{PairConnector, recv, scripted, send};

#[tokio::test]
async fn exec_kept_sends_keep_and_reads_kept_info_first() {
    let (c, peer) = scripted(|mut s| async move {
        let f = recv(&mut s).await;
        assert_eq!(f.kind, FrameType::EXEC_REQ);
        assert_eq!(f.text(), r#"{"argv":["sh"],"keep":true,"tag":"t"}"#);
        let info = br#"{"id":"k1","pid":9,"argv":["sh"],"running":true,"stdin_open":true,"attached":1,"created_at":1,"dropped":0,"replay":0,"later":1}"#;
        send(&mut s, FrameType::KEPT_INFO, info).await;
        send(&mut s, FrameType::STDOUT, b"hi").await;
        // The end of input keeps the connection: an empty STDIN frame,
        // then a SIGNAL on the same connection.
        let mut raw = [0u8; 5];
        s.read_exact(&mut raw).await.unwrap();
        assert_eq!(raw, [0, 0, 0, 1, FrameType::STDIN.0]);
        let f = recv(&mut s).await;
        assert_eq!(
            (f.kind, f.text().as_str()),
            (FrameType::SIGNAL, r#"{"signal":15}"#)
        );
        send(&mut s, FrameType::EXIT, &encode_exit(143)).await;
    });
    let req = ExecRequest {
        tag: Some("t".into()),
        ..ExecRequest::command(["sh"])
    };
    let mut k = c.exec_kept(&req).await.unwrap();
    assert_eq!(
        (k.info.id.as_str(), k.info.pid, k.info.running),
        ("k1", 9, true)
    );
    assert_eq!(k.next().await.unwrap(), Some(Event::Stdout(b"hi".to_vec())));
    k.input.end_stdin().await.unwrap();
    k.input.signal(15).await.unwrap();
    assert_eq!(k.events.wait().await.unwrap(), 143);
    peer.await.unwrap();
}

#[tokio::test]
async fn an_agent_without_keep_is_a_protocol_error_not_a_hang() {
    // A v4 agent runs the exec as a plain one: output comes first.
    let (c, peer) = scripted(|mut s| async move {
        recv(&mut s).await;
        send(&mut s, FrameType::STDOUT, b"x").await;
    });
    let e = c
        .exec_kept(&ExecRequest::command(["true"]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    peer.await.unwrap();
}

#[tokio::test]
async fn attach_and_list_send_their_frames_and_check_replies() {
    let (c, peer) = scripted(|mut s| async move {
        let f = recv(&mut s).await;
        assert_eq!(
            (f.kind, f.text().as_str()),
            (FrameType::KEPT_ATTACH, r#"{"id":"k7"}"#)
        );
        send(&mut s, FrameType::KEPT_INFO, b"{not json").await;
    });
    let e = c.attach_kept("k7").await.unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    peer.await.unwrap();

    let (c, peer) = scripted(|mut s| async move {
        let f = recv(&mut s).await;
        assert_eq!((f.kind, f.payload.len()), (FrameType::KEPT_LIST_REQ, 0));
        let list = br#"{"commands":[{"id":"k2","running":false,"exit_code":3}],"truncated":true}"#;
        send(&mut s, FrameType::KEPT_LIST_RESP, list).await;
    });
    let list = c.list_kept().await.unwrap();
    assert!(list.truncated);
    assert_eq!(list.commands[0].exit_code, Some(3));
    peer.await.unwrap();

    // TTY requests are refused before anything is sent.
    let c = Client::new(PairConnector::default());
    let tty = ExecRequest {
        tty: true,
        ..ExecRequest::command(["sh"])
    };
    assert!(matches!(
        c.exec_kept(&tty).await,
        Err(Error::InvalidRequest(_))
    ));
}
