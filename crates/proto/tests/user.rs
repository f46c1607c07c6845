//! The `user` extension (protocol version 3, `docs/protocol.md`): optional
//! JSON fields a v1 peer never sends and ignores. Golden strings pin the
//! names; payloads without the fields (what a v1 host sends) decode as
//! "no user".

use std::io::Cursor;

use bhatti_proto::config::GuestConfig;
use bhatti_proto::messages::{self, ExecRequest, FileWriteRequest};
use bhatti_proto::{FrameType, sync_io};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Frame round trip, JSON text equal to `golden`, decode equal to `msg`.
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
    let decoded: T = messages::decode_json("test", golden.as_bytes()).expect("decode");
    assert_eq!(&decoded, msg);
}

#[test]
fn exec_request_user_is_sent_last_and_only_when_set() {
    let mut req = ExecRequest::command(["id", "-u"]);
    golden(FrameType::EXEC_REQ, &req, r#"{"argv":["id","-u"]}"#);
    req.user = Some("lohar".into());
    golden(
        FrameType::EXEC_REQ,
        &req,
        r#"{"argv":["id","-u"],"user":"lohar"}"#,
    );
    let tty = ExecRequest {
        tty: true,
        user: Some("1000".into()),
        ..ExecRequest::command(["bash"])
    };
    golden(
        FrameType::EXEC_REQ,
        &tty,
        r#"{"argv":["bash"],"tty":true,"user":"1000"}"#,
    );
}

#[test]
fn file_write_request_user() {
    let mut req = FileWriteRequest {
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
    let v1: GuestConfig = serde_json::from_str(r#"{"sandbox_id":"sb1"}"#).expect("decode");
    assert_eq!(v1.exec_user, None);
    let text = serde_json::to_string(&v1).expect("encode");
    assert!(!text.contains("exec_user"), "absent is omitted: {text}");
    let cfg = GuestConfig {
        exec_user: Some("lohar".into()),
        ..GuestConfig::default()
    };
    let text = serde_json::to_string(&cfg).expect("encode");
    assert!(text.ends_with(r#","exec_user":"lohar"}"#), "{text}");
    let back: GuestConfig = serde_json::from_str(&text).expect("decode");
    assert_eq!(back, cfg);
}
