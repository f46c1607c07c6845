//! Frame codec rules from PROTOCOL.md: round trips, limits, EOF handling,
//! `try_parse`, for both the blocking and the async codec.

use std::io::Cursor;

use bhatti_proto::frame::{self, ParseResult};
use bhatti_proto::{FrameError, FrameType, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, sync_io};

fn sync_round_trip(kind: FrameType, payload: &[u8]) {
    let mut buf = Vec::new();
    sync_io::write_frame(&mut buf, kind, payload).expect("write");
    assert_eq!(buf.len(), HEADER_LEN + payload.len());
    assert_eq!(&buf[..4], &(payload.len() as u32 + 1).to_be_bytes());
    assert_eq!(buf[4], kind.0);
    let mut r = Cursor::new(buf);
    let f = sync_io::read_frame(&mut r).expect("read").expect("a frame");
    assert_eq!(f.kind, kind);
    assert_eq!(f.payload, payload);
    assert!(sync_io::read_frame(&mut r).expect("eof").is_none());
}

#[test]
fn every_frame_type_round_trips() {
    for kind in FrameType::ALL {
        sync_round_trip(kind, b"payload");
        sync_round_trip(kind, b"");
    }
    assert_eq!(FrameType::ALL.len(), 25);
}

#[test]
fn frame_type_bytes_match_the_protocol_table() {
    let table: &[(u8, &str)] = &[
        (0x01, "STDIN"),
        (0x02, "STDOUT"),
        (0x03, "STDERR"),
        (0x04, "RESIZE"),
        (0x05, "EXIT"),
        (0x06, "ERROR"),
        (0x07, "KILL"),
        (0x10, "EXEC_REQ"),
        (0x11, "AUTH"),
        (0x20, "FWD_REQ"),
        (0x21, "FWD_RESP"),
        (0x30, "EXEC_LIST_REQ"),
        (0x31, "EXEC_LIST_RESP"),
        (0x32, "EXEC_KILL"),
        (0x33, "SESSION_INFO"),
        (0x40, "ACTIVITY_REQ"),
        (0x41, "ACTIVITY_RESP"),
        (0x50, "FILE_READ_REQ"),
        (0x51, "FILE_READ_RESP"),
        (0x52, "FILE_WRITE_REQ"),
        (0x53, "FILE_WRITE_RESP"),
        (0x54, "FILE_STAT_REQ"),
        (0x55, "FILE_STAT_RESP"),
        (0x56, "FILE_LS_REQ"),
        (0x57, "FILE_LS_RESP"),
    ];
    for (kind, (byte, name)) in FrameType::ALL.iter().zip(table) {
        assert_eq!(kind.0, *byte);
        assert_eq!(kind.name(), Some(*name));
    }
    assert!(!FrameType(0x99).is_known());
    assert_eq!(format!("{:?}", FrameType(0x99)), "0x99");
}

#[test]
fn golden_bytes_of_a_stdout_frame() {
    let buf = frame::encode(FrameType::STDOUT, b"hi").expect("encode");
    assert_eq!(buf, [0, 0, 0, 3, 0x02, b'h', b'i']);
}

#[test]
fn maximum_payload_round_trips_and_one_more_byte_is_refused() {
    let max = vec![0xabu8; MAX_PAYLOAD_LEN];
    sync_round_trip(FrameType::STDOUT, &max);

    let over = vec![0u8; MAX_PAYLOAD_LEN + 1];
    let mut sink = Vec::new();
    let err = sync_io::write_frame(&mut sink, FrameType::STDOUT, &over).expect_err("too large");
    assert!(matches!(err, FrameError::PayloadTooLarge(n) if n == MAX_PAYLOAD_LEN + 1));
    assert!(
        sink.is_empty(),
        "nothing may be written for a refused frame"
    );
}

#[test]
fn reader_rejects_length_over_maximum_without_allocating_it() {
    let mut bytes = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
    bytes.push(0x02);
    let err = sync_io::read_frame(&mut Cursor::new(bytes)).expect_err("over max");
    assert!(matches!(err, FrameError::LengthTooLarge(l) if l == MAX_FRAME_LEN + 1));

    let mut huge = u32::MAX.to_be_bytes().to_vec();
    huge.push(0x02);
    assert!(matches!(
        sync_io::read_frame(&mut Cursor::new(huge)),
        Err(FrameError::LengthTooLarge(u32::MAX))
    ));
}

#[test]
fn reader_rejects_zero_length() {
    let bytes = [0u8, 0, 0, 0, 0x02];
    assert!(matches!(
        sync_io::read_frame(&mut Cursor::new(bytes)),
        Err(FrameError::ZeroLength)
    ));
}

#[test]
fn empty_stream_is_a_clean_end() {
    assert!(
        sync_io::read_frame(&mut Cursor::new(Vec::new()))
            .expect("clean eof")
            .is_none()
    );
}

#[test]
fn partial_header_is_an_error_not_eof() {
    for cut in 1..HEADER_LEN {
        let full = frame::encode(FrameType::STDIN, b"abc").expect("encode");
        let err = sync_io::read_frame(&mut Cursor::new(&full[..cut])).expect_err("partial header");
        assert!(
            matches!(err, FrameError::Truncated { got, want: HEADER_LEN } if got == cut),
            "cut at {cut}: {err:?}"
        );
    }
}

#[test]
fn partial_payload_is_an_error_not_eof() {
    let full = frame::encode(FrameType::STDIN, b"abcdef").expect("encode");
    let err = sync_io::read_frame(&mut Cursor::new(&full[..HEADER_LEN + 2])).expect_err("partial");
    assert!(matches!(err, FrameError::Truncated { got: 2, want: 6 }));
}

#[test]
fn frames_follow_each_other_on_one_stream() {
    let mut buf = Vec::new();
    for i in 0..10u8 {
        sync_io::write_frame(&mut buf, FrameType::STDOUT, &vec![i; i as usize]).expect("write");
    }
    let mut r = Cursor::new(buf);
    for i in 0..10u8 {
        let f = sync_io::read_frame(&mut r).expect("read").expect("frame");
        assert_eq!(f.payload, vec![i; i as usize]);
    }
    assert!(sync_io::read_frame(&mut r).expect("eof").is_none());
}

#[test]
fn try_parse_needs_a_whole_header_and_a_whole_frame() {
    let full = frame::encode(FrameType::EXIT, &[0, 0, 0, 7]).expect("encode");
    for cut in 0..full.len() {
        assert_eq!(
            frame::try_parse(&full[..cut]),
            ParseResult::Incomplete,
            "cut {cut}"
        );
    }
    match frame::try_parse(&full) {
        ParseResult::Ok(p) => {
            assert_eq!(p.kind, FrameType::EXIT);
            assert_eq!(p.payload_start, 5);
            assert_eq!(p.payload_len, 4);
            assert_eq!(p.total_len, 9);
        }
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn try_parse_leaves_trailing_bytes_for_the_next_frame() {
    let mut buf = frame::encode(FrameType::STDOUT, b"one").expect("encode");
    let second = frame::encode(FrameType::STDERR, b"second").expect("encode");
    buf.extend_from_slice(&second);
    buf.extend_from_slice(&[0, 0]); // start of a third, incomplete

    let ParseResult::Ok(p1) = frame::try_parse(&buf) else {
        panic!("first frame")
    };
    assert_eq!(
        &buf[p1.payload_start..p1.payload_start + p1.payload_len],
        b"one"
    );
    let rest = &buf[p1.total_len..];
    let ParseResult::Ok(p2) = frame::try_parse(rest) else {
        panic!("second frame")
    };
    assert_eq!(p2.kind, FrameType::STDERR);
    assert_eq!(
        &rest[p2.payload_start..p2.payload_start + p2.payload_len],
        b"second"
    );
    assert_eq!(
        frame::try_parse(&rest[p2.total_len..]),
        ParseResult::Incomplete
    );
}

#[test]
fn try_parse_rejects_zero_and_oversized_lengths() {
    assert!(matches!(
        frame::try_parse(&[0, 0, 0, 0, 1]),
        ParseResult::Invalid(_)
    ));
    let mut over = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
    over.push(1);
    assert!(matches!(frame::try_parse(&over), ParseResult::Invalid(_)));
    assert!(!frame::try_parse(&over).is_ok());
}

#[tokio::test]
async fn async_codec_round_trips_and_agrees_with_sync_bytes() {
    use bhatti_proto::async_io;
    for kind in FrameType::ALL {
        let mut abuf = Vec::new();
        async_io::write_frame(&mut abuf, kind, b"xyz")
            .await
            .expect("write");
        let mut sbuf = Vec::new();
        sync_io::write_frame(&mut sbuf, kind, b"xyz").expect("write");
        assert_eq!(abuf, sbuf, "codecs must produce identical bytes");
        let mut r = abuf.as_slice();
        let f = async_io::read_frame(&mut r)
            .await
            .expect("read")
            .expect("frame");
        assert_eq!((f.kind, f.payload.as_slice()), (kind, &b"xyz"[..]));
        assert!(async_io::read_frame(&mut r).await.expect("eof").is_none());
    }
}

#[tokio::test]
async fn async_codec_enforces_the_same_limits() {
    use bhatti_proto::async_io;
    let empty: &[u8] = &[];
    assert!(
        async_io::read_frame(&mut &*empty)
            .await
            .expect("eof")
            .is_none()
    );
    let partial: &[u8] = &[0, 0, 0];
    assert!(matches!(
        async_io::read_frame(&mut &*partial).await,
        Err(FrameError::Truncated { got: 3, want: 5 })
    ));
    let zero: &[u8] = &[0, 0, 0, 0, 2];
    assert!(matches!(
        async_io::read_frame(&mut &*zero).await,
        Err(FrameError::ZeroLength)
    ));
    let mut over = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
    over.push(2);
    assert!(matches!(
        async_io::read_frame(&mut over.as_slice()).await,
        Err(FrameError::LengthTooLarge(_))
    ));
    let body: &[u8] = &[0, 0, 0, 9, 2, 1, 2];
    assert!(matches!(
        async_io::read_frame(&mut &*body).await,
        Err(FrameError::Truncated { got: 2, want: 8 })
    ));
    let mut sink = Vec::new();
    let big = vec![0u8; MAX_PAYLOAD_LEN + 1];
    assert!(matches!(
        async_io::write_frame(&mut sink, FrameType::STDIN, &big).await,
        Err(FrameError::PayloadTooLarge(_))
    ));
    assert!(sink.is_empty());
}

/// Yields `bytes`, then fails the test if read again: a peer that sent a
/// bad length and then went silent must not be waited for.
struct ThenSilent(Cursor<Vec<u8>>);

impl std::io::Read for ThenSilent {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        assert!(
            n > 0,
            "the reader waited for bytes after a bad length field"
        );
        Ok(n)
    }
}

#[test]
fn a_bad_length_field_fails_before_the_type_byte() {
    for len in [0u32, MAX_FRAME_LEN + 1, u32::MAX] {
        let mut r = ThenSilent(Cursor::new(len.to_be_bytes().to_vec()));
        let e = sync_io::read_frame(&mut r).expect_err("bad length");
        assert!(
            matches!(e, FrameError::ZeroLength | FrameError::LengthTooLarge(_)),
            "{e}"
        );
    }
}

#[tokio::test]
async fn async_reader_fails_on_a_bad_length_while_the_peer_stays_silent() {
    use tokio::io::AsyncWriteExt;
    for len in [0u32, u32::MAX] {
        let (mut agent, mut host) = tokio::io::duplex(64);
        agent.write_all(&len.to_be_bytes()).await.expect("write");
        // `agent` stays open: without the early check the read would wait.
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            bhatti_proto::async_io::read_frame(&mut host),
        )
        .await
        .expect("read_frame waited for a type byte after a bad length");
        assert!(r.is_err(), "length {len}");
        drop(agent);
    }
}
