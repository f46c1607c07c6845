//! Feeds arbitrary bytes to every decoder of the wire protocol: the frame
//! readers, `try_parse`, the JSON messages and the binary payloads. None may
//! panic, and the stream reader and `try_parse` must agree.
#![no_main]

use std::io::Cursor;

use bhatti_proto::frame::{self, ParseResult};
use bhatti_proto::messages::{self, ActivityInfo, ExecRequest, FileInfo, SessionInfo};
use bhatti_proto::sync_io;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Walk the buffer frame by frame as a streaming reader would.
    let mut rest = data;
    while let ParseResult::Ok(p) = frame::try_parse(rest) {
        let payload = &rest[p.payload_start..p.payload_start + p.payload_len];
        let _ = messages::decode_json::<ExecRequest>("fuzz", payload);
        let _ = messages::decode_json::<Vec<SessionInfo>>("fuzz", payload);
        let _ = messages::decode_json::<Vec<FileInfo>>("fuzz", payload);
        let _ = messages::decode_json::<ActivityInfo>("fuzz", payload);
        let _ = messages::parse_resize(payload);
        let _ = messages::parse_exit(payload);
        rest = &rest[p.total_len..];
    }
    let mut cur = Cursor::new(data);
    let first = sync_io::read_frame(&mut cur);
    match (frame::try_parse(data), first) {
        (ParseResult::Ok(p), Ok(Some(f))) => assert_eq!(f.payload.len(), p.payload_len),
        (ParseResult::Ok(_), other) => panic!("try_parse found a frame, reader said {other:?}"),
        (_, Ok(Some(_))) => panic!("reader found a frame try_parse rejected"),
        _ => {}
    }
});
