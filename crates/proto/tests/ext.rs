//! Protocol version 4 (`docs/protocol.md`): frame type bytes, which are
//! outside the v1 table and collide with nothing, and golden JSON of every
//! message (a renamed field fails here), encoded through a real frame.

use std::collections::BTreeSet;
use std::io::Cursor;

use bhatti_proto::ext::{
    Caps, EntryInfo, EntryType, Ls2Request, Ls2Response, MkdirRequest, MkdirResponse, MoveRequest,
    SignalRequest, WatchEvent, WatchEventType, WatchRequest, WatchStarted, feature,
    permissions_string,
};
use bhatti_proto::messages::{self, PathRequest, StatusResponse};
use bhatti_proto::{FrameType, PROTOCOL_VERSION, sync_io};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn golden<T>(kind: FrameType, msg: &T, golden: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = messages::json_frame(kind, msg).expect("encode");
    let mut wire = Vec::new();
    sync_io::write_frame(&mut wire, frame.kind, &frame.payload).expect("write");
    // The header: length (type byte + payload), then the type byte.
    let len = u32::try_from(golden.len() + 1).expect("len");
    assert_eq!(wire[..4], len.to_be_bytes());
    assert_eq!(wire[4], kind.0);
    let back = sync_io::read_frame(&mut Cursor::new(wire))
        .expect("read")
        .expect("frame");
    assert_eq!(back.kind, kind);
    assert_eq!(std::str::from_utf8(&back.payload).expect("utf8"), golden);
    let decoded: T = messages::decode_json("test", golden.as_bytes()).expect("decode golden");
    assert_eq!(&decoded, msg);
}

#[test]
fn extension_frame_bytes_and_names() {
    let table: [(FrameType, u8, &str); 24] = [
        (FrameType::ERROR_CODE, 0x08, "ERROR_CODE"),
        (FrameType::SIGNAL, 0x09, "SIGNAL"),
        (FrameType::MKDIR_REQ, 0x58, "MKDIR_REQ"),
        (FrameType::MKDIR_RESP, 0x59, "MKDIR_RESP"),
        (FrameType::MOVE_REQ, 0x5a, "MOVE_REQ"),
        (FrameType::MOVE_RESP, 0x5b, "MOVE_RESP"),
        (FrameType::REMOVE_REQ, 0x5c, "REMOVE_REQ"),
        (FrameType::REMOVE_RESP, 0x5d, "REMOVE_RESP"),
        (FrameType::STAT2_REQ, 0x5e, "STAT2_REQ"),
        (FrameType::STAT2_RESP, 0x5f, "STAT2_RESP"),
        (FrameType::LS2_REQ, 0x60, "LS2_REQ"),
        (FrameType::LS2_RESP, 0x61, "LS2_RESP"),
        (FrameType::WATCH_REQ, 0x62, "WATCH_REQ"),
        (FrameType::WATCH_RESP, 0x63, "WATCH_RESP"),
        (FrameType::WATCH_EVENT, 0x64, "WATCH_EVENT"),
        (FrameType::CAPS_REQ, 0x70, "CAPS_REQ"),
        (FrameType::CAPS_RESP, 0x71, "CAPS_RESP"),
        (FrameType::KEPT_INFO, 0x34, "KEPT_INFO"),
        (FrameType::KEPT_LIST_REQ, 0x35, "KEPT_LIST_REQ"),
        (FrameType::KEPT_LIST_RESP, 0x36, "KEPT_LIST_RESP"),
        (FrameType::KEPT_ATTACH, 0x37, "KEPT_ATTACH"),
        (FrameType::REUSE, 0x12, "REUSE"),
        (FrameType::SYNC_REQ, 0x72, "SYNC_REQ"),
        (FrameType::SYNC_RESP, 0x73, "SYNC_RESP"),
    ];
    assert_eq!(table.len(), FrameType::EXTENSIONS.len());
    for ((kind, byte, name), ext) in table.iter().zip(FrameType::EXTENSIONS) {
        assert_eq!(*kind, ext);
        assert_eq!(kind.0, *byte);
        assert_eq!(kind.name(), Some(*name));
        assert!(kind.is_known() && !kind.is_v1(), "{name}");
    }
    let all: BTreeSet<u8> = FrameType::ALL
        .iter()
        .chain(FrameType::EXTENSIONS.iter())
        .map(|k| k.0)
        .collect();
    assert_eq!(
        all.len(),
        FrameType::ALL.len() + FrameType::EXTENSIONS.len()
    );
    assert_eq!(PROTOCOL_VERSION, 7);
}

#[test]
fn caps_golden_and_legacy() {
    let caps = Caps::current();
    golden(
        FrameType::CAPS_RESP,
        &caps,
        r#"{"version":7,"features":["error_code","user","identify","caps","mkdir","move","remove","stat2","ls2","signal","watch","stdin_eof","keep","reuse","sync","stdin_closed","stdin_null"]}"#,
    );
    assert!(caps.has(feature::WATCH) && !caps.has("teleport"));
    assert_eq!(
        Caps::legacy(false),
        Caps {
            version: 1,
            features: vec![]
        }
    );
    let v2 = Caps::legacy(true);
    assert_eq!((v2.version, v2.has(feature::ERROR_CODE)), (2, true));
    // Unknown features and a missing list are tolerated.
    let c: Caps = messages::decode_json("caps", br#"{"version":9}"#).expect("decode");
    assert!(c.features.is_empty());
    let c: Caps = messages::decode_json("caps", br#"{"version":5,"features":["x"],"more":1}"#)
        .expect("decode");
    assert!(c.has("x"));
}

#[test]
fn signal_golden() {
    golden(
        FrameType::SIGNAL,
        &SignalRequest { signal: 15 },
        r#"{"signal":15}"#,
    );
}

#[test]
fn sync_frames_defer_sync_and_stdin_closed_golden() {
    // Version 7: SYNC_REQ and SYNC_RESP are empty frames.
    for (kind, byte) in [(FrameType::SYNC_REQ, 0x72), (FrameType::SYNC_RESP, 0x73)] {
        let mut wire = Vec::new();
        sync_io::write_frame(&mut wire, kind, &[]).expect("write");
        assert_eq!(wire, [0, 0, 0, 1, byte]);
    }
    let plain = messages::ExecRequest::command(["true"]);
    let cases = [
        (
            messages::ExecRequest {
                defer_sync: true,
                ..plain.clone()
            },
            r#"{"argv":["true"],"defer_sync":true}"#,
        ),
        (
            messages::ExecRequest {
                stdin_closed: true,
                ..plain.clone()
            },
            r#"{"argv":["true"],"stdin_closed":true}"#,
        ),
        (
            messages::ExecRequest {
                stdin_null: true,
                ..plain.clone()
            },
            r#"{"argv":["true"],"stdin_null":true}"#,
        ),
    ];
    for (req, json) in &cases {
        golden(FrameType::EXEC_REQ, req, json);
    }
}

fn entry() -> EntryInfo {
    EntryInfo {
        name: "a.txt".into(),
        path: "/w/a.txt".into(),
        kind: EntryType::File,
        size: 5,
        mode: 0o644,
        permissions: "-rw-r--r--".into(),
        uid: 1000,
        gid: 1000,
        owner: "lohar".into(),
        group: "lohar".into(),
        mtime: 1_700_000_000,
        mtime_ns: 1_700_000_000_123_456_789,
        symlink_target: None,
        resolved_path: None,
        target_type: None,
    }
}

const ENTRY: &str = r#"{"name":"a.txt","path":"/w/a.txt","type":"file","size":5,"mode":420,"permissions":"-rw-r--r--","uid":1000,"gid":1000,"owner":"lohar","group":"lohar","mtime":1700000000,"mtime_ns":1700000000123456789}"#;

#[test]
fn entry_info_golden_omits_symlink_fields_for_files() {
    golden(FrameType::STAT2_RESP, &entry(), ENTRY);
    let link = EntryInfo {
        kind: EntryType::Symlink,
        permissions: "lrwxrwxrwx".into(),
        mode: 0o777,
        symlink_target: Some("../t".into()),
        resolved_path: Some("/t".into()),
        target_type: Some(EntryType::Dir),
        ..entry()
    };
    golden(
        FrameType::STAT2_RESP,
        &link,
        r#"{"name":"a.txt","path":"/w/a.txt","type":"symlink","size":5,"mode":511,"permissions":"lrwxrwxrwx","uid":1000,"gid":1000,"owner":"lohar","group":"lohar","mtime":1700000000,"mtime_ns":1700000000123456789,"symlink_target":"../t","resolved_path":"/t","target_type":"dir"}"#,
    );
    let odd: EntryType = serde_json::from_str(r#""whiteout""#).expect("decode");
    assert_eq!(odd, EntryType::Other);
}

#[test]
fn file_management_goldens() {
    golden(
        FrameType::MKDIR_REQ,
        &MkdirRequest {
            path: "/w/d".into(),
            ..MkdirRequest::default()
        },
        r#"{"path":"/w/d"}"#,
    );
    golden(
        FrameType::MKDIR_REQ,
        &MkdirRequest {
            path: "/w/d".into(),
            mode: Some("0700".into()),
            user: Some("lohar".into()),
        },
        r#"{"path":"/w/d","mode":"0700","user":"lohar"}"#,
    );
    golden(
        FrameType::MKDIR_RESP,
        &MkdirResponse {
            created: true,
            entry: entry(),
        },
        &format!(r#"{{"created":true,"entry":{ENTRY}}}"#),
    );
    golden(
        FrameType::MOVE_REQ,
        &MoveRequest {
            source: "/a".into(),
            destination: "/b/c".into(),
            user: None,
        },
        r#"{"source":"/a","destination":"/b/c"}"#,
    );
    golden(FrameType::MOVE_RESP, &entry(), ENTRY);
    let path = PathRequest {
        path: "/w/x".into(),
    };
    golden(FrameType::REMOVE_REQ, &path, r#"{"path":"/w/x"}"#);
    golden(
        FrameType::REMOVE_RESP,
        &StatusResponse::ok(),
        r#"{"status":"ok"}"#,
    );
    golden(FrameType::STAT2_REQ, &path, r#"{"path":"/w/x"}"#);
    golden(
        FrameType::LS2_REQ,
        &Ls2Request {
            path: "/w".into(),
            depth: Some(2),
        },
        r#"{"path":"/w","depth":2}"#,
    );
    golden(
        FrameType::LS2_RESP,
        &Ls2Response {
            entries: vec![entry()],
            truncated: false,
        },
        &format!(r#"{{"entries":[{ENTRY}],"truncated":false}}"#),
    );
}

#[test]
fn watch_goldens() {
    golden(
        FrameType::WATCH_REQ,
        &WatchRequest {
            path: "/w".into(),
            recursive: false,
        },
        r#"{"path":"/w"}"#,
    );
    golden(
        FrameType::WATCH_REQ,
        &WatchRequest {
            path: "/w".into(),
            recursive: true,
        },
        r#"{"path":"/w","recursive":true}"#,
    );
    golden(
        FrameType::WATCH_RESP,
        &WatchStarted { path: "/w".into() },
        r#"{"path":"/w"}"#,
    );
    let table = [
        (WatchEventType::Create, "create"),
        (WatchEventType::Write, "write"),
        (WatchEventType::Remove, "remove"),
        (WatchEventType::Rename, "rename"),
        (WatchEventType::Chmod, "chmod"),
        (WatchEventType::Overflow, "overflow"),
    ];
    for (kind, name) in table {
        golden(
            FrameType::WATCH_EVENT,
            &WatchEvent {
                kind,
                name: "sub/f".into(),
                is_dir: false,
            },
            &format!(r#"{{"type":"{name}","name":"sub/f"}}"#),
        );
    }
    golden(
        FrameType::WATCH_EVENT,
        &WatchEvent {
            kind: WatchEventType::Create,
            name: "d".into(),
            is_dir: true,
        },
        r#"{"type":"create","name":"d","is_dir":true}"#,
    );
    let later: WatchEvent =
        messages::decode_json("w", br#"{"type":"open","name":"x"}"#).expect("decode");
    assert_eq!(later.kind, WatchEventType::Other);
}

#[test]
fn permission_strings_are_ls_style() {
    assert_eq!(permissions_string(0o100_644), "-rw-r--r--");
    assert_eq!(permissions_string(0o040_755), "drwxr-xr-x");
    assert_eq!(permissions_string(0o120_777), "lrwxrwxrwx");
    assert_eq!(permissions_string(0o104_755), "-rwsr-xr-x");
    assert_eq!(permissions_string(0o102_644), "-rw-r-Sr--");
    assert_eq!(permissions_string(0o041_777), "drwxrwxrwt");
    assert_eq!(permissions_string(0o041_776), "drwxrwxrwT");
    assert_eq!(permissions_string(0o010_600), "prw-------");
    assert_eq!(permissions_string(0o140_000), "s---------");
    assert_eq!(permissions_string(0o020_620), "crw--w----");
    assert_eq!(permissions_string(0o060_660), "brw-rw----");
}
