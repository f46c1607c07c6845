//! Property tests over arbitrary bytes: the decoders never panic, never
//! allocate past the frame limit, and agree with each other.

use std::io::Cursor;

use bhatti_proto::frame::{self, ParseResult};
use bhatti_proto::messages::{self, ExecRequest, FileReadRequest, SessionInfo};
use bhatti_proto::{FrameType, MAX_PAYLOAD_LEN, sync_io};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_codecs_agree(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let parsed = frame::try_parse(&bytes);
        let read = sync_io::read_frame(&mut Cursor::new(&bytes));
        match (parsed, read) {
            (ParseResult::Ok(p), Ok(Some(f))) => {
                prop_assert_eq!(f.kind, p.kind);
                prop_assert_eq!(&f.payload[..], &bytes[p.payload_start..p.payload_start + p.payload_len]);
                prop_assert!(f.payload.len() <= MAX_PAYLOAD_LEN);
            }
            (ParseResult::Incomplete, Ok(None)) => prop_assert!(bytes.is_empty()),
            (ParseResult::Incomplete, Err(_)) => prop_assert!(!bytes.is_empty()),
            (ParseResult::Invalid(_), Err(_)) => {}
            (p, r) => prop_assert!(false, "disagree: {:?} vs {:?}", p, r.map(|f| f.map(|f| f.kind))),
        }
        let _ = messages::decode_json::<ExecRequest>("x", &bytes);
        let _ = messages::decode_json::<SessionInfo>("x", &bytes);
        let _ = messages::decode_json::<FileReadRequest>("x", &bytes);
        let _ = messages::parse_resize(&bytes);
        let _ = messages::parse_exit(&bytes);
    }

    #[test]
    fn any_frame_round_trips(kind in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let bytes = frame::encode(FrameType(kind), &payload).expect("encode");
        let ParseResult::Ok(p) = frame::try_parse(&bytes) else { panic!("parse") };
        prop_assert_eq!(p.total_len, bytes.len());
        let f = sync_io::read_frame(&mut Cursor::new(&bytes)).expect("read").expect("frame");
        prop_assert_eq!(f.kind, FrameType(kind));
        prop_assert_eq!(f.payload, payload);
    }
}
