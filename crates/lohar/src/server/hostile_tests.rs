//! The server against malformed and hostile input, in process: every case
//! gets a clear ERROR (after its ERROR_CODE frame, with the code the case
//! calls for) or a closed connection, and the agent still serves a normal
//! request afterwards. Also the connection and session limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bhatti_proto::ErrorCode;
use bhatti_proto::config::GuestConfig;
use bhatti_proto::frame::{self, Frame, FrameType};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

use super::{Listener, Port, serve};
use crate::agent::{Agent, Limits};
use crate::env::Identity;

fn start(dir: &Path, limits: Limits) -> PathBuf {
    crate::children::start_reaper_thread().expect("reaper");
    let path = dir.join("control.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let identity = Identity {
        switch_to: None,
        home: "/".into(),
        user: None,
        default_cwd: None,
    };
    let agent = Arc::new(Agent::new(None, GuestConfig::default(), identity, limits));
    tokio::spawn(serve(
        agent,
        vec![(Port::Control, Listener::Unix(listener))],
    ));
    path
}

fn enc(kind: FrameType, payload: &[u8]) -> Vec<u8> {
    frame::encode(kind, payload).expect("encode")
}

/// Writes `bytes`, then reads frames until the agent closes (or 10 s).
async fn exchange(path: &Path, bytes: &[u8], half_close: bool) -> Vec<Frame> {
    let mut s = UnixStream::connect(path).await.expect("connect");
    // The agent may close early (malformed input); a failed write is fine.
    let _ = s.write_all(bytes).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let read_all = async {
        while let Ok(Some(f)) = bhatti_proto::async_io::read_frame(&mut s).await {
            out.push(f);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read_all).await;
    out
}

fn texts(frames: &[Frame]) -> Vec<(FrameType, String)> {
    frames.iter().map(|f| (f.kind, f.text())).collect()
}

/// The code and text of a reply that is exactly ERROR_CODE + ERROR.
fn error_of(frames: &[Frame]) -> (ErrorCode, String) {
    let kinds: Vec<_> = frames.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [FrameType::ERROR_CODE, FrameType::ERROR],
        "{frames:?}"
    );
    (
        ErrorCode::from_payload(&frames[0].payload),
        frames[1].text(),
    )
}

async fn still_serves(path: &Path) {
    let req = br#"{"argv":["echo","ok"]}"#;
    let got = exchange(path, &enc(FrameType::EXEC_REQ, req), false).await;
    assert_eq!(
        texts(&got),
        [
            (FrameType::STDOUT, "ok\n".to_owned()),
            (FrameType::EXIT, "\0\0\0\0".to_owned())
        ]
    );
}

#[test]
fn malformed_and_hostile_input_never_takes_the_agent_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let path = start(dir.path(), Limits::default());
        still_serves(&path).await;

        // Broken framing: the connection just closes.
        for bytes in [
            vec![0, 0, 0, 0, 0x10],
            vec![0xff, 0xff, 0xff, 0xff, 0x10],
            vec![0, 0, 0, 50, 0x10, b'{'],
            vec![0, 0],
        ] {
            let got = exchange(&path, &bytes, true).await;
            assert!(got.is_empty(), "{bytes:?}: {got:?}");
        }

        // Pseudo-random garbage.
        let mut n: u32 = 12345;
        for _ in 0..50 {
            let len = 1 + (n % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (n >> 16) as u8
                })
                .collect();
            exchange(&path, &bytes, true).await;
        }

        bad_requests_get_coded_errors(&path, dir.path()).await;

        // A TTY session fed short RESIZEs, unknown frames and a huge idle
        // timeout, then killed through the protocol.
        let mut bytes = enc(
            FrameType::EXEC_REQ,
            br#"{"argv":["cat"],"tty":true,"rows":0,"cols":0,"max_idle_sec":9223372036854775807}"#,
        );
        for (kind, payload) in [
            (FrameType::RESIZE, &b"\x01"[..]),
            (FrameType(0x99), b"??"),
            (FrameType::EXEC_REQ, b"{}"),
            (FrameType::STDIN, b"hello\n"),
            (FrameType::KILL, b""),
        ] {
            bytes.extend(enc(kind, payload));
        }
        let got = exchange(&path, &bytes, false).await;
        assert_eq!(got.first().map(|f| f.kind), Some(FrameType::SESSION_INFO));
        assert_eq!(got.last().map(|f| f.kind), Some(FrameType::EXIT), "{got:?}");

        still_serves(&path).await;
    });
}

/// Requests that decode badly or make no sense: one ERROR each, after an
/// ERROR_CODE with the code the case calls for; no temp file is left.
async fn bad_requests_get_coded_errors(path: &Path, dir: &Path) {
    // Bad payloads for every request type: one coded ERROR each.
    for kind in [
        FrameType::EXEC_REQ,
        FrameType::EXEC_KILL,
        FrameType::FILE_READ_REQ,
        FrameType::FILE_WRITE_REQ,
        FrameType::FILE_STAT_REQ,
        FrameType::FILE_LS_REQ,
    ] {
        for payload in [&b"not json"[..], b"", b"[]", b"{\"argv\":5}", b"\xff\xfe"] {
            let got = exchange(path, &enc(kind, payload), false).await;
            let (code, _) = error_of(&got);
            assert_eq!(code, ErrorCode::InvalidRequest, "{kind:?} {payload:?}");
        }
    }

    // Values that are well-formed JSON but nonsense.
    let start = ErrorCode::StartFailed;
    let cases: [(&[u8], ErrorCode, &str); 5] = [
        (br#"{"argv":["a\u0000b"]}"#, start, "start: "),
        (
            br#"{"argv":["true"],"env":{"A=B\u0000":"x"}}"#,
            start,
            "start: ",
        ),
        (
            br#"{"argv":["true"],"cwd":"/nonexistent/dir"}"#,
            start,
            "start: chdir",
        ),
        (
            br#"{"argv":[],"session_id":"s999999"}"#,
            ErrorCode::SessionNotFound,
            "session not found",
        ),
        (
            br#"{"argv":[],"tty":true}"#,
            ErrorCode::InvalidRequest,
            "empty argv",
        ),
    ];
    for (payload, want_code, want) in cases {
        let (code, text) =
            error_of(&exchange(path, &enc(FrameType::EXEC_REQ, payload), false).await);
        assert_eq!(code, want_code, "{text}");
        assert!(text.starts_with(want), "{text:?} should start with {want}");
    }
    let write = |size: &str| {
        format!(
            r#"{{"path":"{}/w","mode":"0644","size":{size}}}"#,
            dir.display()
        )
    };
    let (code, text) = error_of(
        &exchange(
            path,
            &enc(FrameType::FILE_WRITE_REQ, write("17179869185").as_bytes()),
            false,
        )
        .await,
    );
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(text.contains("exceeds the write limit"), "{text}");
    let mut bytes = enc(FrameType::FILE_WRITE_REQ, write("3").as_bytes());
    bytes.extend(enc(FrameType::STDIN, b"four"));
    let (code, text) = error_of(&exchange(path, &bytes, false).await);
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(text.contains("received more than 3 bytes"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn connection_and_session_limits_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let limits = Limits {
            max_connections: 3,
            max_sessions: 1,
            ..Limits::default()
        };
        let path = start(dir.path(), limits);
        // One TTY session holds a connection and the only session slot.
        let mut tty = UnixStream::connect(&path).await.expect("connect");
        tty.write_all(&enc(FrameType::EXEC_REQ, br#"{"argv":["cat"],"tty":true}"#))
            .await
            .expect("write");
        let info = bhatti_proto::async_io::read_frame(&mut tty)
            .await
            .expect("read");
        assert_eq!(info.map(|f| f.kind), Some(FrameType::SESSION_INFO));
        let got = error_of(
            &exchange(
                &path,
                &enc(FrameType::EXEC_REQ, br#"{"argv":["cat"],"tty":true}"#),
                false,
            )
            .await,
        );
        assert_eq!(
            got,
            (
                ErrorCode::LimitReached,
                "too many sessions (limit 1)".to_owned()
            )
        );

        // Two idle connections fill the remaining slots.
        let _a = UnixStream::connect(&path).await.expect("connect");
        let _b = UnixStream::connect(&path).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = error_of(&exchange(&path, &enc(FrameType::ACTIVITY_REQ, b""), false).await);
        assert_eq!(
            got,
            (
                ErrorCode::LimitReached,
                "too many connections (limit 3)".to_owned()
            )
        );
        drop(_a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = exchange(&path, &enc(FrameType::ACTIVITY_REQ, b""), false).await;
        assert_eq!(got.first().map(|f| f.kind), Some(FrameType::ACTIVITY_RESP));

        let got = texts(
            &exchange(
                &path,
                &enc(FrameType::EXEC_KILL, br#"{"session_id":"s1"}"#),
                false,
            )
            .await,
        );
        assert_eq!(got, [(FrameType::EXIT, "\0\0\0\0".to_owned())]);
    });
}
