//! JSON messages: exact field names and omission rules pinned by golden
//! strings (a renamed field fails here), encode → frame → decode for every
//! message, and the binary RESIZE/EXIT payloads.

use std::collections::BTreeMap;
use std::io::Cursor;

use bhatti_proto::config::GuestConfig;
use bhatti_proto::messages::{
    self, ActivityInfo, ExecKillRequest, ExecRequest, FileInfo, FileReadRequest, FileReadResponse,
    FileWriteRequest, ForwardRequest, MessageError, PathRequest, SessionInfo, StatusResponse,
};
use bhatti_proto::{FrameType, sync_io};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `msg` into a frame on a byte stream, reads it back, checks the
/// JSON text against `golden` and the decoded value against `msg`.
fn golden<T>(kind: FrameType, msg: &T, golden: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = messages::json_frame(kind, msg).expect("encode");
    let mut wire = Vec::new();
    sync_io::write_frame(&mut wire, frame.kind, &frame.payload).expect("write");
    let back = sync_io::read_frame(&mut Cursor::new(wire))
        .expect("read")
        .expect("frame");
    assert_eq!(back.kind, kind);
    assert_eq!(std::str::from_utf8(&back.payload).expect("utf8"), golden);
    let decoded: T = messages::decode_json("test", &back.payload).expect("decode");
    assert_eq!(&decoded, msg);
    let from_golden: T = messages::decode_json("test", golden.as_bytes()).expect("decode golden");
    assert_eq!(&from_golden, msg);
}

#[test]
fn exec_request_minimal_sends_only_argv() {
    golden(
        FrameType::EXEC_REQ,
        &ExecRequest::command(["echo", "hi"]),
        r#"{"argv":["echo","hi"]}"#,
    );
}

#[test]
fn exec_request_with_every_field() {
    let req = ExecRequest {
        argv: vec!["bash".into()],
        env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]),
        tty: true,
        rows: Some(40),
        cols: Some(120),
        cwd: Some("/workspace".into()),
        session_id: Some("s3".into()),
        max_idle_sec: Some(300),
        // The v1 fields only: the extensions `user`, `keep`, `tag`,
        // `defer_sync`, `stdin_closed` and `stdin_null` have their own goldens (below, `tests/kept.rs`,
        // `tests/ext.rs`).
        user: None,
        keep: false,
        tag: None,
        defer_sync: false,
        stdin_closed: false,
        stdin_null: false,
    };
    golden(
        FrameType::EXEC_REQ,
        &req,
        r#"{"argv":["bash"],"env":{"A":"1","B":"2"},"tty":true,"rows":40,"cols":120,"cwd":"/workspace","session_id":"s3","max_idle_sec":300}"#,
    );
}

#[test]
fn exec_request_defaults_and_missing_argv() {
    let req: ExecRequest = messages::decode_json("exec", br#"{"tty":true}"#).expect("decode");
    assert!(
        req.argv.is_empty(),
        "missing argv decodes as empty (agent answers `empty argv`)"
    );
    assert_eq!((req.rows_or_default(), req.cols_or_default()), (24, 80));
    let zero: ExecRequest =
        messages::decode_json("exec", br#"{"argv":["x"],"rows":0,"cols":0}"#).expect("decode");
    assert_eq!((zero.rows_or_default(), zero.cols_or_default()), (24, 80));
}

#[test]
fn session_info_omits_exit_code_while_running() {
    let running = SessionInfo {
        session_id: "s1".into(),
        argv: "bash -l".into(),
        tty: true,
        running: true,
        exit_code: None,
        attached: true,
        created_at: 1_700_000_000,
    };
    golden(
        FrameType::SESSION_INFO,
        &running,
        r#"{"session_id":"s1","argv":"bash -l","tty":true,"running":true,"attached":true,"created_at":1700000000}"#,
    );
    let exited = SessionInfo {
        running: false,
        exit_code: Some(-1),
        attached: false,
        ..running
    };
    golden(
        FrameType::SESSION_INFO,
        &exited,
        r#"{"session_id":"s1","argv":"bash -l","tty":true,"running":false,"exit_code":-1,"attached":false,"created_at":1700000000}"#,
    );
}

#[test]
fn session_list_is_an_array_never_null() {
    let empty: Vec<SessionInfo> = Vec::new();
    golden(FrameType::EXEC_LIST_RESP, &empty, "[]");
}

#[test]
fn exec_kill_request() {
    golden(
        FrameType::EXEC_KILL,
        &ExecKillRequest {
            session_id: "s2".into(),
        },
        r#"{"session_id":"s2"}"#,
    );
}

#[test]
fn activity_info() {
    golden(
        FrameType::ACTIVITY_RESP,
        &ActivityInfo {
            last_activity_unix: 42,
            active_sessions: 2,
            attached_sessions: 1,
        },
        r#"{"last_activity_unix":42,"active_sessions":2,"attached_sessions":1}"#,
    );
}

#[test]
fn file_messages() {
    golden(
        FrameType::FILE_READ_REQ,
        &FileReadRequest {
            path: "/etc/hosts".into(),
            ..Default::default()
        },
        r#"{"path":"/etc/hosts"}"#,
    );
    golden(
        FrameType::FILE_READ_REQ,
        &FileReadRequest {
            path: "/a".into(),
            offset: Some(10),
            limit: Some(20),
            max_bytes: Some(4096),
        },
        r#"{"path":"/a","offset":10,"limit":20,"max_bytes":4096}"#,
    );
    golden(
        FrameType::FILE_READ_RESP,
        &FileReadResponse {
            size: 12,
            mode: "0644".into(),
        },
        r#"{"size":12,"mode":"0644"}"#,
    );
    golden(
        FrameType::FILE_WRITE_REQ,
        &FileWriteRequest {
            path: "/w/x".into(),
            mode: "0600".into(),
            size: -1,
            user: None,
        },
        r#"{"path":"/w/x","mode":"0600","size":-1}"#,
    );
    golden(
        FrameType::FILE_WRITE_RESP,
        &StatusResponse::ok(),
        r#"{"status":"ok"}"#,
    );
    golden(
        FrameType::FILE_STAT_REQ,
        &PathRequest { path: "/".into() },
        r#"{"path":"/"}"#,
    );
    golden(
        FrameType::FILE_LS_REQ,
        &PathRequest {
            path: "/tmp".into(),
        },
        r#"{"path":"/tmp"}"#,
    );
    let info = FileInfo {
        name: "ünï.txt".into(),
        size: 3,
        mode: "0755".into(),
        is_dir: false,
        mtime: 9,
    };
    golden(
        FrameType::FILE_STAT_RESP,
        &info,
        r#"{"name":"ünï.txt","size":3,"mode":"0755","is_dir":false,"mtime":9}"#,
    );
    golden(
        FrameType::FILE_LS_RESP,
        &vec![info],
        r#"[{"name":"ünï.txt","size":3,"mode":"0755","is_dir":false,"mtime":9}]"#,
    );
}

#[test]
fn forward_messages() {
    golden(
        FrameType::FWD_REQ,
        &ForwardRequest { port: 8080 },
        r#"{"port":8080}"#,
    );
    golden(
        FrameType::FWD_RESP,
        &StatusResponse::ok(),
        r#"{"status":"ok"}"#,
    );
    golden(
        FrameType::FWD_RESP,
        &StatusResponse::error("dial tcp 127.0.0.1:9: connection refused"),
        r#"{"status":"error","message":"dial tcp 127.0.0.1:9: connection refused"}"#,
    );
    assert!(!StatusResponse::error("x").is_ok());
}

#[test]
fn malformed_json_is_a_typed_error() {
    let err =
        messages::decode_json::<ExecRequest>("exec request", b"{not json").expect_err("malformed");
    assert!(matches!(
        err,
        MessageError::Json {
            what: "exec request",
            ..
        }
    ));
    assert!(err.to_string().contains("exec request"));
    let wrong_type = messages::decode_json::<ForwardRequest>("fwd", br#"{"port":"80"}"#);
    assert!(wrong_type.is_err());
    let out_of_range = messages::decode_json::<ForwardRequest>("fwd", br#"{"port":70000}"#);
    assert!(out_of_range.is_err());
}

#[test]
fn resize_payloads() {
    for (r, c) in [(0, 0), (24, 80), (u16::MAX, u16::MAX), (1, u16::MAX)] {
        let p = messages::encode_resize(r, c);
        assert_eq!(messages::parse_resize(&p).expect("parse"), (r, c));
    }
    assert_eq!(messages::encode_resize(0x0102, 0x0304), [1, 2, 3, 4]);
    assert_eq!(
        messages::parse_resize(&[0, 24, 0, 80, 9, 9]).expect("extra ignored"),
        (24, 80)
    );
    for short in [&[][..], &[0], &[0, 1, 2]] {
        assert!(matches!(
            messages::parse_resize(short),
            Err(MessageError::Short { what: "RESIZE", .. })
        ));
    }
}

#[test]
fn exit_payloads() {
    for code in [0, 1, 137, 255, -1, i32::MIN, i32::MAX] {
        assert_eq!(
            messages::parse_exit(&messages::encode_exit(code)).expect("parse"),
            code
        );
    }
    assert_eq!(messages::encode_exit(-1), [0xff, 0xff, 0xff, 0xff]);
    assert_eq!(messages::encode_exit(137), [0, 0, 0, 137]);
    assert_eq!(
        messages::parse_exit(&[0, 0, 0, 7, 1]).expect("extra ignored"),
        7
    );
    assert!(matches!(
        messages::parse_exit(&[0, 0, 7]),
        Err(MessageError::Short { what: "EXIT", .. })
    ));
}

#[test]
fn mode_strings() {
    assert_eq!(messages::mode_string(0o100644), "0644");
    assert_eq!(messages::mode_string(0o4755), "4755");
    assert_eq!(messages::mode_string(0o7), "0007");
    assert_eq!(messages::parse_mode("0644"), Some(0o644));
    assert_eq!(messages::parse_mode("755"), Some(0o755));
    for bad in ["", "0x1", "999", "77777", "abc", "-1"] {
        assert_eq!(messages::parse_mode(bad), None, "{bad:?}");
    }
}

#[test]
fn guest_config_tolerates_missing_fields_and_defaults_the_user() {
    let cfg: GuestConfig = serde_json::from_str(r#"{"sandbox_id":"sb1"}"#).expect("decode");
    assert_eq!(cfg.sandbox_id, "sb1");
    assert_eq!(cfg.user.uid, 1000);
    assert_eq!(cfg.user.name, "lohar");
    assert!(cfg.init.is_none() && cfg.files.is_empty() && cfg.token.is_empty());
    let text = serde_json::to_string(&cfg).expect("encode");
    let back: GuestConfig = serde_json::from_str(&text).expect("decode");
    assert_eq!(back, cfg);
}

// The `user` extension (protocol version 3, `docs/protocol.md`): optional
// JSON fields a v1 peer never sends and ignores. Golden strings pin the
// names; payloads without the fields (what a v1 host sends) decode as
// "no user".

#[test]
fn exec_request_user_is_sent_last_and_only_when_set() {
    let mut req = messages::ExecRequest::command(["id", "-u"]);
    golden(FrameType::EXEC_REQ, &req, r#"{"argv":["id","-u"]}"#);
    req.user = Some("lohar".into());
    golden(
        FrameType::EXEC_REQ,
        &req,
        r#"{"argv":["id","-u"],"user":"lohar"}"#,
    );
    let tty = messages::ExecRequest {
        tty: true,
        user: Some("1000".into()),
        ..messages::ExecRequest::command(["bash"])
    };
    golden(
        FrameType::EXEC_REQ,
        &tty,
        r#"{"argv":["bash"],"tty":true,"user":"1000"}"#,
    );
}

#[test]
fn file_write_request_user() {
    let mut req = messages::FileWriteRequest {
        path: "/root/a".into(),
        mode: "0644".into(),
        size: 3,
        user: None,
    };
    golden(
        FrameType::FILE_WRITE_REQ,
        &req,
        r#"{"path":"/root/a","mode":"0644","size":3}"#,
    );
    req.user = Some("root".into());
    golden(
        FrameType::FILE_WRITE_REQ,
        &req,
        r#"{"path":"/root/a","mode":"0644","size":3,"user":"root"}"#,
    );
}

#[test]
fn guest_config_exec_user_is_optional() {
    let v1: bhatti_proto::config::GuestConfig =
        serde_json::from_str(r#"{"sandbox_id":"sb1"}"#).expect("decode");
    assert_eq!(v1.exec_user, None);
    let text = serde_json::to_string(&v1).expect("encode");
    assert!(!text.contains("exec_user"), "absent is omitted: {text}");
    let cfg = bhatti_proto::config::GuestConfig {
        exec_user: Some("lohar".into()),
        ..bhatti_proto::config::GuestConfig::default()
    };
    let text = serde_json::to_string(&cfg).expect("encode");
    assert!(text.ends_with(r#","exec_user":"lohar"}"#), "{text}");
    let back: bhatti_proto::config::GuestConfig = serde_json::from_str(&text).expect("decode");
    assert_eq!(back, cfg);
}
