//! FILE_LS_REQ: the entries of a directory (lstat'ed, sorted by name).
//!
//! At most [`MAX_ENTRIES`] entries are returned, and fewer when their JSON
//! would not fit in one frame. A truncated listing ends with one sentinel
//! entry: name `... truncated: <shown> of <total> entries shown`, `size` =
//! the true total, mode `"0000"`, not a directory, mtime 0. Only the kept
//! entries are held in memory; the rest are only counted.

use std::fs;
use std::sync::Arc;

use bhatti_proto::frame::{FrameType, MAX_PAYLOAD_LEN};
use bhatti_proto::messages::{FileInfo, MessageError, PathRequest, decode_json};

use bhatti_proto::text::short;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};
use crate::handlers::file_stat::file_info;
use crate::handlers::{ErrorCode, IoText, Reply};

/// Most entries one listing returns.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("ls {path}: {msg}")]
    List { path: String, msg: IoText },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::List { msg, .. } => Some(msg.code),
            Error::Conn(e) => e.code(),
        }
    }
}

pub async fn handle(_agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: PathRequest = decode_json("PathRequest", payload)?;
    let path = req.path.clone();
    let body = tokio::task::spawn_blocking(move || list(&path, MAX_ENTRIES))
        .await
        .map_err(|e| Error::List {
            path: short(&req.path),
            msg: IoText::other(e.to_string()),
        })?
        .map_err(|e| Error::List {
            path: short(&req.path),
            msg: IoText::new(&e),
        })?;
    conn.writer.send(FrameType::FILE_LS_RESP, &body).await?;
    Ok(())
}

/// Lists `path` and returns the FILE_LS_RESP payload (JSON array).
fn list(path: &str, cap: usize) -> std::io::Result<Vec<u8>> {
    if !fs::metadata(path)?.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    let dir = std::path::Path::new(path);
    let mut names = Vec::new();
    let mut total: u64 = 0;
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        total += 1;
        if names.len() < cap {
            names.push(entry.file_name());
        }
    }
    names.sort();
    let mut entries: Vec<FileInfo> = names
        .iter()
        .filter_map(|n| {
            let meta = fs::symlink_metadata(dir.join(n)).ok()?;
            Some(file_info(&n.to_string_lossy(), &meta))
        })
        .collect();
    // Entries that vanished between readdir and lstat are not counted.
    total -= (names.len() - entries.len()) as u64;
    Ok(encode_capped(&mut entries, total))
}

/// The sentinel entry of a truncated listing.
pub fn sentinel(shown: usize, total: u64) -> FileInfo {
    FileInfo {
        name: format!("... truncated: {shown} of {total} entries shown"),
        size: i64::try_from(total).unwrap_or(i64::MAX),
        mode: "0000".to_owned(),
        is_dir: false,
        mtime: 0,
    }
}

/// Serialises `entries` (plus the sentinel when `total` exceeds what is
/// shown), dropping entries from the end until the JSON fits one frame.
fn encode_capped(entries: &mut Vec<FileInfo>, total: u64) -> Vec<u8> {
    loop {
        let shown = entries.len();
        let truncated = (shown as u64) < total;
        if truncated {
            entries.push(sentinel(shown, total));
        }
        let body = serde_json::to_vec(&entries).unwrap_or_else(|_| b"[]".to_vec());
        if truncated {
            entries.pop();
        }
        if body.len() <= MAX_PAYLOAD_LEN || entries.is_empty() {
            return body;
        }
        // Cut proportionally to the overshoot (at least one entry).
        let keep = (shown as u128 * MAX_PAYLOAD_LEN as u128 / body.len() as u128) as usize;
        entries.truncate(keep.min(shown - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8]) -> Vec<FileInfo> {
        serde_json::from_slice(body).expect("json")
    }

    #[test]
    fn small_dir_has_no_sentinel_and_is_sorted() {
        let d = tempfile::tempdir().expect("tempdir");
        for n in ["b", "a", "c"] {
            fs::write(d.path().join(n), n).expect("write");
        }
        fs::create_dir(d.path().join("sub")).expect("mkdir");
        let got = decode(&list(d.path().to_str().expect("utf8"), 10).expect("list"));
        let names: Vec<_> = got.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "sub"]);
        assert!(got[3].is_dir);
    }

    #[test]
    fn capped_listing_counts_every_entry() {
        let d = tempfile::tempdir().expect("tempdir");
        for i in 0..25 {
            fs::write(d.path().join(format!("f{i:02}")), "").expect("write");
        }
        let got = decode(&list(d.path().to_str().expect("utf8"), 10).expect("list"));
        assert_eq!(got.len(), 11);
        let s = &got[10];
        assert_eq!(s.name, "... truncated: 10 of 25 entries shown");
        assert_eq!(s.size, 25);
        // Exactly at the cap: no sentinel.
        let got = decode(&list(d.path().to_str().expect("utf8"), 25).expect("list"));
        assert_eq!(got.len(), 25);
    }

    #[test]
    fn oversized_json_is_cut_to_one_frame() {
        let long = "x".repeat(250);
        let mut entries: Vec<FileInfo> = (0..10_000)
            .map(|i| FileInfo {
                name: format!("{long}{i}"),
                size: 0,
                mode: "0644".into(),
                is_dir: false,
                mtime: 0,
            })
            .collect();
        let body = encode_capped(&mut entries, 10_000);
        assert!(body.len() <= MAX_PAYLOAD_LEN);
        let got = decode(&body);
        let last = got.last().expect("sentinel");
        assert_eq!(last.size, 10_000);
        assert_eq!(
            last.name,
            format!("... truncated: {} of 10000 entries shown", got.len() - 1)
        );
    }

    #[test]
    fn not_a_directory() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("f");
        fs::write(&f, "").expect("write");
        let e = IoText::new(&list(f.to_str().expect("utf8"), 10).expect_err("file"));
        assert_eq!(
            (e.text.as_str(), e.code),
            ("not a directory", ErrorCode::NotADirectory)
        );
        let e = IoText::new(&list("/nonexistent-dir-xyz", 10).expect_err("missing"));
        assert_eq!(
            (e.text.as_str(), e.code),
            ("no such file or directory", ErrorCode::NotFound)
        );
    }
}
