//! What the fuzzers may send to lohar, shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/lohar_conn.rs` (which includes this file by path) and
//! the stable smoke test `tests/frame_fuzz_smoke.rs`.
//!
//! lohar runs commands and writes files, so arbitrary bytes may not reach it
//! unfiltered: [`classify`] reads the input the way lohar's server does (an
//! optional AUTH frame, then the one request frame, or with REUSE every
//! frame after it) and refuses inputs whose
//! request would start a process or touch a path outside lohar's working
//! directory (a scratch directory the harness creates). Everything else —
//! broken framing, bad JSON, wrong types, unknown frames, trailing frames —
//! goes through as it is.
#![allow(dead_code)]

use std::path::{Component, Path};

use bhatti_proto::ext::{Ls2Request, MkdirRequest, MoveRequest, WatchRequest};
use bhatti_proto::frame::{self, Frame, ParseResult};
use bhatti_proto::messages::{
    ExecKillRequest, ExecRequest, FileReadRequest, FileWriteRequest, PathRequest, decode_json,
};
use bhatti_proto::{ErrorCode, FrameType};

/// What lohar will make of an input that [`classify`] lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The request frame is incomplete or malformed: lohar closes, maybe
    /// after an error.
    Anything,
    /// A control request whose payload does not decode as its JSON type:
    /// lohar must answer ERROR_CODE `invalid_request` then ERROR.
    InvalidRequest,
    /// A first frame lohar's control port does not serve: ERROR_CODE
    /// `unexpected_frame` then ERROR.
    UnexpectedFrame,
    /// A well-formed, allowed request: any reply, then the connection ends.
    Served,
}

/// `None` when the input would run a command or touch a path outside the
/// working directory; otherwise what lohar should answer.
pub fn classify(data: &[u8]) -> Option<Expect> {
    let mut rest = data;
    let mut first = true;
    loop {
        let ParseResult::Ok(p) = frame::try_parse(rest) else {
            return Some(Expect::Anything);
        };
        let payload = &rest[p.payload_start..p.payload_start + p.payload_len];
        if first && p.kind == FrameType::AUTH {
            // No token configured: lohar skips one AUTH frame.
            first = false;
            rest = &rest[p.total_len..];
            continue;
        }
        if p.kind == FrameType::REUSE {
            return reused(&rest[p.total_len..]);
        }
        return request(p.kind, payload);
    }
}

/// The frames after REUSE (protocol version 6) are requests one after
/// another: the input is sent only when none of them may run a command or
/// leave the working directory, and any reply is fine.
fn reused(mut rest: &[u8]) -> Option<Expect> {
    while let ParseResult::Ok(p) = frame::try_parse(rest) {
        let payload = &rest[p.payload_start..p.payload_start + p.payload_len];
        request(p.kind, payload)?;
        rest = &rest[p.total_len..];
    }
    Some(Expect::Anything)
}

fn request(kind: FrameType, payload: &[u8]) -> Option<Expect> {
    let decoded = match kind {
        FrameType::EXEC_REQ => match decode_json::<ExecRequest>("fuzz", payload) {
            // Attach (session id) and empty argv never start a process.
            Ok(r) if r.session_id.is_none() && !r.argv.is_empty() => return None,
            r => r.is_ok(),
        },
        FrameType::FILE_READ_REQ => match decode_json::<FileReadRequest>("fuzz", payload) {
            Ok(r) => return local(&r.path).then_some(Expect::Served),
            Err(_) => false,
        },
        FrameType::FILE_WRITE_REQ => match decode_json::<FileWriteRequest>("fuzz", payload) {
            Ok(r) => return local(&r.path).then_some(Expect::Served),
            Err(_) => false,
        },
        FrameType::FILE_STAT_REQ | FrameType::FILE_LS_REQ => {
            match decode_json::<PathRequest>("fuzz", payload) {
                Ok(r) => return local(&r.path).then_some(Expect::Served),
                Err(_) => false,
            }
        }
        FrameType::EXEC_KILL => decode_json::<ExecKillRequest>("fuzz", payload).is_ok(),
        // Their payloads are ignored (SYNC_REQ, version 7: a real sync).
        FrameType::EXEC_LIST_REQ
        | FrameType::ACTIVITY_REQ
        | FrameType::CAPS_REQ
        | FrameType::SYNC_REQ => true,
        // Protocol version 4: paths below the working directory only (a
        // watch ends when the harness half-closes).
        FrameType::REMOVE_REQ | FrameType::STAT2_REQ => {
            match decode_json::<PathRequest>("fuzz", payload) {
                Ok(r) => return local(&r.path).then_some(Expect::Served),
                Err(_) => false,
            }
        }
        FrameType::MKDIR_REQ => match decode_json::<MkdirRequest>("fuzz", payload) {
            Ok(r) => return local(&r.path).then_some(Expect::Served),
            Err(_) => false,
        },
        FrameType::MOVE_REQ => match decode_json::<MoveRequest>("fuzz", payload) {
            Ok(r) => return (local(&r.source) && local(&r.destination)).then_some(Expect::Served),
            Err(_) => false,
        },
        FrameType::LS2_REQ => match decode_json::<Ls2Request>("fuzz", payload) {
            Ok(r) => return local(&r.path).then_some(Expect::Served),
            Err(_) => false,
        },
        FrameType::WATCH_REQ => match decode_json::<WatchRequest>("fuzz", payload) {
            Ok(r) => return local(&r.path).then_some(Expect::Served),
            Err(_) => false,
        },
        _ => return Some(Expect::UnexpectedFrame),
    };
    Some(if decoded {
        Expect::Served
    } else {
        Expect::InvalidRequest
    })
}

/// Checks lohar's reply to an input classified as `expect`: whole frames
/// only, and for a malformed request the error code before an ERROR.
pub fn check(expect: Expect, reply: &[u8]) -> Result<(), String> {
    let mut rest = reply;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        match frame::try_parse(rest) {
            ParseResult::Ok(p) => {
                let payload = &rest[p.payload_start..p.payload_start + p.payload_len];
                frames.push(Frame::new(p.kind, payload));
                rest = &rest[p.total_len..];
            }
            other => return Err(format!("broken frame in the reply: {other:?}")),
        }
    }
    let want = match expect {
        Expect::InvalidRequest => ErrorCode::InvalidRequest,
        Expect::UnexpectedFrame => ErrorCode::UnexpectedFrame,
        Expect::Anything | Expect::Served => return Ok(()),
    };
    match frames.as_slice() {
        [code, err, ..]
            if code.kind == FrameType::ERROR_CODE
                && err.kind == FrameType::ERROR
                && ErrorCode::from_payload(&code.payload) == want =>
        {
            Ok(())
        }
        other => Err(format!("expected {want:?} then ERROR, got {other:?}")),
    }
}

/// A relative path that stays below the working directory (the harness's
/// scratch directory holds no symlinks, and lohar creates none). The empty
/// path is allowed: lohar refuses it.
fn local(path: &str) -> bool {
    Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Fills `dir` (lohar's working directory) with what requests can find:
/// text with lines, binary, an empty file, a subdirectory.
pub fn populate(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("d/e"))?;
    std::fs::write(dir.join("a"), b"one\ntwo\nthree\n\nfive\r\nsix")?;
    std::fs::write(
        dir.join("b"),
        (0u8..=255).cycle().take(5000).collect::<Vec<_>>(),
    )?;
    std::fs::write(dir.join("d/empty"), b"")?;
    std::fs::write(dir.join("d/e/x"), b"x\n")?;
    Ok(())
}

/// The TTY session `init` the harnesses start (a fixed command, never an
/// input's) so that inputs can attach to it: raw mode, so input comes back
/// as output and raises no signals; TERM (the KILL frame) is ignored.
pub const SESSION_SCRIPT: &str = "trap '' INT QUIT TSTP TERM HUP; stty raw -echo; exec cat";

/// Request frames that are valid and allowed, as seeds for mutation.
pub fn seeds() -> Vec<Vec<u8>> {
    let json: &[(FrameType, &str)] = &[
        (FrameType::ACTIVITY_REQ, ""),
        (FrameType::EXEC_LIST_REQ, ""),
        (FrameType::EXEC_KILL, r#"{"session_id":"s1"}"#),
        (FrameType::EXEC_REQ, r#"{"argv":[]}"#),
        (FrameType::EXEC_REQ, r#"{"session_id":"init"}"#),
        (
            FrameType::EXEC_REQ,
            r#"{"argv":["x"],"tty":true,"session_id":"init","max_idle_sec":0}"#,
        ),
        (
            FrameType::EXEC_REQ,
            r#"{"argv":["sh"],"tty":true,"rows":24,"cols":80,"session_id":"nope","max_idle_sec":5}"#,
        ),
        (FrameType::FILE_READ_REQ, r#"{"path":"a"}"#),
        (
            FrameType::FILE_READ_REQ,
            r#"{"path":"a","offset":2,"limit":3,"max_bytes":7}"#,
        ),
        (FrameType::FILE_READ_REQ, r#"{"path":"b","max_bytes":4097}"#),
        (FrameType::FILE_READ_REQ, r#"{"path":"d"}"#),
        (FrameType::FILE_STAT_REQ, r#"{"path":"d/e/x"}"#),
        (FrameType::FILE_LS_REQ, r#"{"path":"d"}"#),
        (FrameType::FILE_LS_REQ, r#"{"path":"."}"#),
        (
            FrameType::FILE_WRITE_REQ,
            r#"{"path":"w/f","mode":"0644","size":3}"#,
        ),
        (
            FrameType::FILE_WRITE_REQ,
            r#"{"path":"w/g","mode":"","size":0}"#,
        ),
        (FrameType::CAPS_REQ, ""),
        (FrameType::STAT2_REQ, r#"{"path":"d/e/x"}"#),
        (FrameType::LS2_REQ, r#"{"path":"d","depth":2}"#),
        (FrameType::MKDIR_REQ, r#"{"path":"m/n","mode":"0700"}"#),
        (
            FrameType::MOVE_REQ,
            r#"{"source":"w/f","destination":"w/h"}"#,
        ),
        (FrameType::REMOVE_REQ, r#"{"path":"w/g"}"#),
        (FrameType::WATCH_REQ, r#"{"path":"d","recursive":true}"#),
    ];
    let mut out = Vec::new();
    for (kind, payload) in json {
        let mut buf = frame::encode(*kind, payload.as_bytes()).expect("encode");
        if *kind == FrameType::FILE_WRITE_REQ {
            frame::encode_into(&mut buf, FrameType::STDIN, b"abc").expect("encode");
        }
        if payload.contains("\"init\"") {
            for (k, p) in [
                (FrameType::STDIN, &b"hello\n"[..]),
                (FrameType::RESIZE, &[0, 30, 0, 100][..]),
                (FrameType::KILL, &b""[..]),
                (FrameType::STDIN, &[0, 3, 4, 26, 28, 0xff][..]),
                (FrameType::STDIN, &b""[..]),
            ] {
                frame::encode_into(&mut buf, k, p).expect("encode");
            }
        }
        out.push(buf.clone());
        let mut authed = frame::encode(FrameType::AUTH, b"token").expect("encode");
        authed.extend_from_slice(&buf);
        out.push(authed);
    }
    out
}
