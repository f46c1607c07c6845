//! Issue 17 (crash-proof) on the agent side, against the real lohar in
//! test mode: reads of files that report no size stream their content
//! (within the agent's limit), set-id and sticky modes are refused, and
//! error messages quote at most a short prefix of huge input.
//!
//! Durability of writes (fsync of the file and its directory) cannot be
//! observed without killing the machine; the VM test that kills QEMU after
//! an acknowledged write covers it.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use bhatti_agent::{Error, ErrorCode, ExecOptions, ReadOptions};
use bhatti_proto::messages::{FileWriteRequest, json_frame};
use bhatti_proto::text::{MESSAGE_MAX, QUOTE_MAX};
use bhatti_proto::{FrameType, async_io};
use common::Lohar;
use tokio::net::UnixStream;

/// The code and text of an agent error.
fn failure(r: Result<impl std::fmt::Debug, Error>) -> (ErrorCode, String) {
    match r {
        Err(Error::Agent(f)) => (f.code(), f.message().to_owned()),
        other => panic!("expected an agent error, got {other:?}"),
    }
}

async fn read_all(l: &Lohar, path: &str, opts: ReadOptions) -> (i64, Vec<u8>) {
    let r = l.client.read_file(path, opts).await.unwrap();
    let size = r.size();
    (size, r.read_all().await.unwrap())
}

#[tokio::test]
async fn procfs_files_that_report_size_0_are_read_whole() {
    let l = Lohar::start().await;
    for path in ["/proc/version", "/proc/cmdline", "/proc/self/mounts"] {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let (size, body) = read_all(&l, path, ReadOptions::default()).await;
        assert!(
            !body.is_empty(),
            "{path}: empty body (stat says {})",
            meta.len()
        );
        assert_eq!(
            size,
            body.len() as i64,
            "{path}: size is the content's length"
        );
        if path != "/proc/self/mounts" {
            assert_eq!(body, std::fs::read(path).unwrap(), "{path}");
        }
    }
    // With a window the content comes back too.
    let opts = ReadOptions {
        max_bytes: Some(5),
        ..ReadOptions::default()
    };
    let (_, body) = read_all(&l, "/proc/version", opts).await;
    assert_eq!(body, std::fs::read("/proc/version").unwrap()[..5]);
}

#[tokio::test]
async fn sysfs_sizes_are_not_trusted() {
    // sysfs reports 4096 for every attribute; the body is what is there.
    let path = "/sys/kernel/mm/transparent_hugepage/enabled";
    let Ok(want) = std::fs::read(path) else {
        eprintln!("skipped: no {path}");
        return;
    };
    let l = Lohar::start().await;
    let (size, body) = read_all(&l, path, ReadOptions::default()).await;
    assert_eq!((size, &body), (want.len() as i64, &want));
}

#[tokio::test]
async fn endless_devices_are_too_large_unless_windowed() {
    let l = Lohar::start().await;
    let (code, msg) = failure(
        l.client
            .read_file("/dev/zero", ReadOptions::default())
            .await,
    );
    assert_eq!(code, ErrorCode::TooLarge, "{msg}");
    assert!(msg.contains("max_bytes"), "says how to read it: {msg}");

    let opts = ReadOptions {
        max_bytes: Some(100_000),
        ..ReadOptions::default()
    };
    let (size, body) = read_all(&l, "/dev/zero", opts).await;
    assert_eq!(size, 0, "unknown size");
    assert_eq!(body, vec![0u8; 100_000]);

    let (size, body) = read_all(&l, "/dev/null", ReadOptions::default()).await;
    assert_eq!((size, body.len()), (0, 0));
}

#[tokio::test]
async fn a_full_read_sends_the_size_it_announced() {
    let l = Lohar::start().await;
    std::fs::write(l.path("f"), vec![7u8; 300_000]).unwrap();
    let (size, body) = read_all(&l, &l.spath("f"), ReadOptions::default()).await;
    assert_eq!((size, body.len()), (300_000, 300_000));
}

/// Sends a FILE_WRITE_REQ with a raw mode string (the client refuses
/// set-id modes itself) and returns the error code and text.
async fn write_with_mode(l: &Lohar, path: &str, mode: &str) -> (ErrorCode, String) {
    let mut s = UnixStream::connect(&l.control).await.unwrap();
    let req = FileWriteRequest {
        path: path.to_owned(),
        mode: mode.to_owned(),
        size: 1,
        user: None,
    };
    let f = json_frame(FrameType::FILE_WRITE_REQ, &req).unwrap();
    async_io::write_frame(&mut s, f.kind, &f.payload)
        .await
        .unwrap();
    // lohar may refuse the request and close before this arrives.
    let _ = async_io::write_frame(&mut s, FrameType::STDIN, b"x").await;
    let mut code = ErrorCode::Other;
    loop {
        let f = async_io::read_frame(&mut s)
            .await
            .unwrap()
            .expect("a reply");
        match f.kind {
            FrameType::ERROR_CODE => code = ErrorCode::from_payload(&f.payload),
            FrameType::ERROR => return (code, f.text()),
            other => panic!("mode {mode}: expected an error, got {other}"),
        }
    }
}

#[tokio::test]
async fn setuid_setgid_and_sticky_modes_are_refused() {
    let l = Lohar::start().await;
    let path = l.spath("suid");
    for mode in ["7777", "4755", "2755", "1777", "04755", "17777", "99"] {
        let (code, msg) = write_with_mode(&l, &path, mode).await;
        assert_eq!(code, ErrorCode::InvalidRequest, "mode {mode}: {msg}");
        assert!(msg.contains("mode"), "{msg}");
        assert!(!l.path("suid").exists(), "mode {mode} wrote the file");
    }
    // Plain permission bits still work, and the client refuses set-id
    // bits before sending anything.
    l.client
        .write_file(&path, 0o755, 1, &b"x"[..])
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
    match l.client.write_file(&path, 0o4755, 1, &b"x"[..]).await {
        Err(Error::InvalidRequest(m)) => assert!(m.contains("4755"), "{m}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

/// Asserts that an error message quotes a short prefix, not the input.
fn assert_short(what: &str, msg: &str) {
    assert!(
        msg.chars().count() < QUOTE_MAX + 160,
        "{what}: message of {} chars: {}…",
        msg.len(),
        msg.chars().take(200).collect::<String>()
    );
    assert!(msg.chars().count() <= MESSAGE_MAX + 1);
}

#[tokio::test]
async fn errors_quote_a_short_prefix_of_huge_input() {
    let l = Lohar::start().await;
    let huge = format!("/{}", "a".repeat(1_000_000));
    let c = &l.client;

    let (_, msg) = failure(c.stat(&huge).await);
    assert_short("stat", &msg);
    assert!(msg.contains("aaaa…"), "{msg}");
    let (_, msg) = failure(c.ls(&huge).await);
    assert_short("ls", &msg);
    let (_, msg) = failure(c.read_file(&huge, ReadOptions::default()).await);
    assert_short("read", &msg);
    let (_, msg) = failure(c.write_file(&huge, 0o644, 1, &b"x"[..]).await);
    assert_short("write", &msg);

    let (code, msg) = failure(c.exec(ExecOptions::new([huge[1..].to_owned()])).await);
    assert_eq!(code, ErrorCode::StartFailed);
    assert_short("exec", &msg);
    let (_, msg) = failure(c.exec(ExecOptions::new(["true"]).cwd(huge.clone())).await);
    assert_short("exec cwd", &msg);

    // A mode string of a megabyte, and JSON whose decoder error quotes a
    // huge value.
    let (code, msg) = write_with_mode(&l, &l.spath("m"), &"7".repeat(1_000_000)).await;
    assert_eq!(code, ErrorCode::InvalidRequest);
    assert_short("mode", &msg);
    let mut s = UnixStream::connect(&l.control).await.unwrap();
    let bad = format!(
        r#"{{"path":"/x","mode":"0644","size":"{}"}}"#,
        "9".repeat(1_000_000)
    );
    async_io::write_frame(&mut s, FrameType::FILE_WRITE_REQ, bad.as_bytes())
        .await
        .unwrap();
    let f = async_io::read_frame(&mut s).await.unwrap().unwrap();
    assert_eq!(f.kind, FrameType::ERROR_CODE);
    let f = async_io::read_frame(&mut s).await.unwrap().unwrap();
    assert_eq!(f.kind, FrameType::ERROR);
    assert_short("json", &f.text());
}
