//! Feeds arbitrary bytes to every decoder of the wire protocol: the frame
//! readers (sync, and async as lohar's connections read), `try_parse`, the
//! JSON messages and the binary payloads. None may panic, and all three
//! frame decoders must find the same frames in the same stream and fail
//! (or end cleanly) at the same point.
#![no_main]

use std::io::Cursor;
use std::task::{Context, Poll, Waker};

use bhatti_proto::frame::{self, Frame, ParseResult};
use bhatti_proto::messages::{
    self, ActivityInfo, ExecKillRequest, ExecRequest, FileInfo, FileReadRequest, FileReadResponse,
    FileWriteRequest, ForwardRequest, PathRequest, SessionInfo, StatusResponse,
};
use bhatti_proto::{ErrorCode, async_io, sync_io};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Walk the buffer frame by frame as a streaming reader would.
    let mut rest = data;
    let mut walked = Vec::new();
    while let ParseResult::Ok(p) = frame::try_parse(rest) {
        let payload = &rest[p.payload_start..p.payload_start + p.payload_len];
        payloads(payload);
        walked.push(Frame::new(p.kind, payload));
        rest = &rest[p.total_len..];
    }
    // A clean end only when nothing is left over.
    let clean_end = rest.is_empty();

    let mut cur = Cursor::new(data);
    let mut sync = Vec::new();
    let sync_end = loop {
        match sync_io::read_frame(&mut cur) {
            Ok(Some(f)) => sync.push(f),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    assert_eq!(walked, sync, "try_parse and the sync reader disagree");
    assert_eq!(
        clean_end, sync_end,
        "end of stream: try_parse vs sync reader"
    );

    let (asynced, async_end) = now(async {
        let mut r = data;
        let mut out = Vec::new();
        loop {
            match async_io::read_frame(&mut r).await {
                Ok(Some(f)) => out.push(f),
                Ok(None) => return (out, true),
                Err(_) => return (out, false),
            }
        }
    });
    assert_eq!(walked, asynced, "try_parse and the async reader disagree");
    assert_eq!(
        clean_end, async_end,
        "end of stream: try_parse vs async reader"
    );
});

/// Every payload decoder, as either side would apply it to a frame.
fn payloads(payload: &[u8]) {
    let _ = messages::decode_json::<ExecRequest>("fuzz", payload);
    let _ = messages::decode_json::<ExecKillRequest>("fuzz", payload);
    let _ = messages::decode_json::<FileReadRequest>("fuzz", payload);
    let _ = messages::decode_json::<FileReadResponse>("fuzz", payload);
    let _ = messages::decode_json::<FileWriteRequest>("fuzz", payload);
    let _ = messages::decode_json::<PathRequest>("fuzz", payload);
    let _ = messages::decode_json::<ForwardRequest>("fuzz", payload);
    let _ = messages::decode_json::<StatusResponse>("fuzz", payload);
    let _ = messages::decode_json::<Vec<SessionInfo>>("fuzz", payload);
    let _ = messages::decode_json::<Vec<FileInfo>>("fuzz", payload);
    let _ = messages::decode_json::<ActivityInfo>("fuzz", payload);
    let _ = messages::parse_resize(payload);
    let _ = messages::parse_exit(payload);
    let _ = ErrorCode::from_payload(payload);
    if let Ok(s) = std::str::from_utf8(payload) {
        let _ = messages::parse_mode(s);
    }
}

/// Runs a future that cannot wait: reading a byte slice is never pending.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("reading a byte slice went pending"),
    }
}
