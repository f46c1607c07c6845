//! Protocol version 5 (`docs/protocol.md`): golden JSON of the kept-exec
//! messages and of the new EXEC_REQ fields (a renamed field fails here),
//! and the v1 bytes of an EXEC_REQ without them (unchanged).

use bhatti_proto::kept::{KeptAttachRequest, KeptInfo, KeptList};
use bhatti_proto::messages::{self, ExecRequest};
use bhatti_proto::{FrameType, sync_io};

fn golden<T>(kind: FrameType, msg: &T, golden: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = messages::json_frame(kind, msg).expect("encode");
    let mut wire = Vec::new();
    sync_io::write_frame(&mut wire, frame.kind, &frame.payload).expect("write");
    let len = u32::try_from(golden.len() + 1).expect("len");
    assert_eq!(wire[..4], len.to_be_bytes());
    assert_eq!(wire[4], kind.0);
    assert_eq!(std::str::from_utf8(&wire[5..]).expect("utf8"), golden);
    let decoded: T = messages::decode_json("test", golden.as_bytes()).expect("decode golden");
    assert_eq!(&decoded, msg);
}

#[test]
fn exec_request_keep_and_tag_are_omitted_unless_set() {
    let plain = ExecRequest::command(["sleep", "1"]);
    golden(FrameType::EXEC_REQ, &plain, r#"{"argv":["sleep","1"]}"#);
    let kept = ExecRequest {
        keep: true,
        tag: Some("t".into()),
        ..ExecRequest::command(["sleep", "1"])
    };
    golden(
        FrameType::EXEC_REQ,
        &kept,
        r#"{"argv":["sleep","1"],"keep":true,"tag":"t"}"#,
    );
}

#[test]
fn kept_info_list_and_attach_golden() {
    let running = KeptInfo {
        id: "k1".into(),
        pid: 42,
        argv: vec!["sh".into(), "-c".into(), "yes".into()],
        argv_cut: false,
        cwd: Some("/w".into()),
        tag: None,
        user: None,
        running: true,
        exit_code: None,
        stdin_open: true,
        attached: 1,
        created_at: 1_700_000_000,
        dropped: 0,
        replay: 0,
    };
    golden(
        FrameType::KEPT_INFO,
        &running,
        r#"{"id":"k1","pid":42,"argv":["sh","-c","yes"],"cwd":"/w","running":true,"stdin_open":true,"attached":1,"created_at":1700000000,"dropped":0,"replay":0}"#,
    );
    let exited = KeptInfo {
        id: "k2".into(),
        argv_cut: true,
        tag: Some("x".into()),
        user: Some("lohar".into()),
        exit_code: Some(143),
        dropped: 5,
        replay: 7,
        ..KeptInfo::default()
    };
    golden(
        FrameType::KEPT_LIST_RESP,
        &KeptList {
            commands: vec![exited],
            truncated: false,
        },
        r#"{"commands":[{"id":"k2","pid":0,"argv":[],"argv_cut":true,"tag":"x","user":"lohar","running":false,"exit_code":143,"stdin_open":false,"attached":0,"created_at":0,"dropped":5,"replay":7}]}"#,
    );
    golden(
        FrameType::KEPT_ATTACH,
        &KeptAttachRequest { id: "k1".into() },
        r#"{"id":"k1"}"#,
    );
    // Fields a later version adds are ignored; missing ones default.
    let i: KeptInfo =
        messages::decode_json("info", br#"{"id":"k3","later":true}"#).expect("decode");
    assert_eq!((i.id.as_str(), i.running), ("k3", false));
}
