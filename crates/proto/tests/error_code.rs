//! The ERROR_CODE extension (protocol version 2): golden bytes of the frame
//! pair an agent sends, every code's wire name, lenient decoding, and that
//! a reader which skips unknown types (a v1 host) sees the v1 ERROR frame
//! byte for byte.

use std::io::Cursor;

use bhatti_proto::error_code::{ErrorCodeInfo, encode_error};
use bhatti_proto::{ErrorCode, FrameType, PROTOCOL_VERSION, sync_io};

#[test]
fn error_code_frame_type_is_0x08_and_not_in_the_v1_table() {
    assert_eq!(FrameType::ERROR_CODE.0, 0x08);
    assert_eq!(FrameType::ERROR_CODE.name(), Some("ERROR_CODE"));
    assert!(FrameType::ERROR_CODE.is_known());
    assert!(!FrameType::ERROR_CODE.is_v1());
    assert!(!FrameType::ALL.contains(&FrameType::ERROR_CODE));
    assert_eq!(FrameType::EXTENSIONS[0], FrameType::ERROR_CODE);
    assert!(FrameType::ALL.iter().all(|k| k.is_v1()));
    assert_eq!(PROTOCOL_VERSION, 7);
}

#[test]
fn golden_bytes_of_an_error_with_its_code() {
    let buf =
        encode_error(ErrorCode::NotFound, "stat /x: no such file or directory").expect("encode");
    let code = br#"{"code":"not_found"}"#;
    let msg = b"stat /x: no such file or directory";
    let mut want = Vec::new();
    want.extend_from_slice(&(code.len() as u32 + 1).to_be_bytes());
    want.push(0x08);
    want.extend_from_slice(code);
    want.extend_from_slice(&(msg.len() as u32 + 1).to_be_bytes());
    want.push(0x06);
    want.extend_from_slice(msg);
    assert_eq!(buf, want);
    // The literal bytes, so that a change to the encoder cannot hide.
    assert_eq!(
        &buf[..26],
        b"\x00\x00\x00\x15\x08{\"code\":\"not_found\"}\x00"
    );
}

#[test]
fn every_code_has_its_snake_case_wire_name() {
    let table = [
        (ErrorCode::NotFound, "not_found"),
        (ErrorCode::SessionNotFound, "session_not_found"),
        (ErrorCode::IsADirectory, "is_a_directory"),
        (ErrorCode::NotADirectory, "not_a_directory"),
        (ErrorCode::InvalidRequest, "invalid_request"),
        (ErrorCode::PermissionDenied, "permission_denied"),
        (ErrorCode::AlreadyExists, "already_exists"),
        (ErrorCode::ReadOnly, "read_only"),
        (ErrorCode::NoSpace, "no_space"),
        (ErrorCode::TooLarge, "too_large"),
        (ErrorCode::LimitReached, "limit_reached"),
        (ErrorCode::StartFailed, "start_failed"),
        (ErrorCode::AuthRequired, "auth_required"),
        (ErrorCode::UnexpectedFrame, "unexpected_frame"),
        (ErrorCode::Io, "io"),
        (ErrorCode::Other, "other"),
    ];
    assert_eq!(table.len(), ErrorCode::ALL.len());
    for (code, name) in table {
        let payload = format!(r#"{{"code":"{name}"}}"#);
        assert_eq!(code.payload(), payload.as_bytes());
        assert_eq!(
            serde_json::to_string(&ErrorCodeInfo { code }).expect("json"),
            payload
        );
        assert_eq!(ErrorCode::from_payload(payload.as_bytes()), code);
        assert_eq!(code.to_string(), name);
    }
}

#[test]
fn unknown_codes_and_bad_payloads_decode_as_other() {
    assert_eq!(
        ErrorCode::from_payload(br#"{"code":"quantum_flux"}"#),
        ErrorCode::Other
    );
    // Fields added later are ignored.
    assert_eq!(
        ErrorCode::from_payload(br#"{"code":"not_found","errno":2}"#),
        ErrorCode::NotFound
    );
    for bad in [&b""[..], b"not json", b"{}", br#"{"code":2}"#, b"\xff"] {
        assert_eq!(ErrorCode::from_payload(bad), ErrorCode::Other, "{bad:?}");
    }
}

#[test]
fn codes_follow_the_errno() {
    let table = [
        (libc_enoent(), ErrorCode::NotFound),
        (
            std::io::Error::from_raw_os_error(21),
            ErrorCode::IsADirectory,
        ),
        (
            std::io::Error::from_raw_os_error(20),
            ErrorCode::NotADirectory,
        ),
        (
            std::io::Error::from_raw_os_error(13),
            ErrorCode::PermissionDenied,
        ),
        (
            std::io::Error::from_raw_os_error(1),
            ErrorCode::PermissionDenied,
        ),
        (
            std::io::Error::from_raw_os_error(17),
            ErrorCode::AlreadyExists,
        ),
        (std::io::Error::from_raw_os_error(28), ErrorCode::NoSpace),
        (std::io::Error::from_raw_os_error(30), ErrorCode::ReadOnly),
        (std::io::Error::from_raw_os_error(5), ErrorCode::Io),
        (std::io::Error::other("x"), ErrorCode::Io),
    ];
    for (e, code) in table {
        assert_eq!(ErrorCode::from_io(&e), code, "{e}");
    }
}

/// ENOENT (2 on Linux, where these tests run).
fn libc_enoent() -> std::io::Error {
    std::io::Error::from_raw_os_error(2)
}

#[test]
fn a_reader_that_skips_unknown_types_sees_the_v1_error_frame() {
    let msg = "session not found";
    let wire = encode_error(ErrorCode::SessionNotFound, msg).expect("encode");
    let mut v1 = Vec::new();
    sync_io::write_frame(&mut v1, FrameType::ERROR, msg.as_bytes()).expect("write");
    assert!(
        wire.ends_with(&v1),
        "the ERROR frame is the v1 frame, unchanged"
    );

    // A v1 reader: known = the v1 table only.
    let mut r = Cursor::new(wire);
    let mut seen = Vec::new();
    while let Some(f) = sync_io::read_frame(&mut r).expect("read") {
        if f.kind.is_v1() {
            seen.push(f);
        }
    }
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].kind, FrameType::ERROR);
    assert_eq!(seen[0].text(), msg);
}
