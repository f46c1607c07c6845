//! LS2_REQ (protocol version 4): extended entries of a directory, `depth`
//! levels deep.
//!
//! The directory itself may be reached through a symlink (as FILE_LS);
//! below it, symlinks are listed, never descended into. The walk is
//! breadth first and keeps at most [`LS2_MAX_ENTRIES`] entries (the
//! shallower ones), then fewer when their JSON would not fit one frame;
//! either cut sets `truncated`. Entries are sorted by path. Each entry's
//! `path` is the request's path joined with the entry's path below it.
//! Entries that vanish between readdir and lstat are skipped; an
//! unreadable subdirectory is listed but not descended into.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bhatti_proto::ext::{EntryType, LS2_MAX_ENTRIES, Ls2Request, Ls2Response};
use bhatti_proto::frame::{FrameType, MAX_PAYLOAD_LEN};
use bhatti_proto::messages::{MessageError, decode_json};
use bhatti_proto::text::short;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};
use crate::handlers::entry::{Names, entry_info};
use crate::handlers::{ErrorCode, IoText, Reply};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("ls: empty path")]
    EmptyPath,
    #[error("ls {path}: {msg}")]
    List { path: String, msg: IoText },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::EmptyPath => Some(ErrorCode::InvalidRequest),
            Error::List { msg, .. } => Some(msg.code),
            Error::Conn(e) => e.code(),
        }
    }
}

pub async fn handle(agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: Ls2Request = decode_json("Ls2Request", payload)?;
    if req.path.is_empty() {
        return Err(Error::EmptyPath);
    }
    let depth = req.depth.unwrap_or(1).max(1);
    let etc = agent.etc.clone();
    let path = req.path.clone();
    let body = tokio::task::spawn_blocking(move || {
        let names = Names::load(&etc);
        list(&path, depth, LS2_MAX_ENTRIES, &names).map(encode_capped)
    })
    .await
    .map_err(|e| Error::List {
        path: short(&req.path),
        msg: IoText::other(e.to_string()),
    })?
    .map_err(|e| Error::List {
        path: short(&req.path),
        msg: IoText::new(&e),
    })?;
    conn.writer.send(FrameType::LS2_RESP, &body).await?;
    Ok(())
}

/// Lists `path` down to `depth` levels, at most `cap` entries.
fn list(path: &str, depth: u32, cap: usize, names: &Names) -> std::io::Result<Ls2Response> {
    if !fs::metadata(path)?.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    let shown_root = Path::new(path);
    let mut out = Ls2Response::default();
    // (directory on disk, its path below the root, its level)
    let mut queue: VecDeque<(PathBuf, PathBuf, u32)> = VecDeque::new();
    queue.push_back((PathBuf::from(path), PathBuf::new(), 1));
    let mut first = true;
    while let Some((dir, rel, level)) = queue.pop_front() {
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            // The root must be readable; a subdirectory may not be.
            Err(e) if first => return Err(e),
            Err(_) => continue,
        };
        first = false;
        let mut here: Vec<_> = read.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        here.sort();
        for name in here {
            if out.entries.len() >= cap {
                out.truncated = true;
                break;
            }
            let on_disk = dir.join(&name);
            let Ok(meta) = fs::symlink_metadata(&on_disk) else {
                continue;
            };
            let rel = rel.join(&name);
            let shown = shown_root.join(&rel);
            let info = entry_info(
                &name.to_string_lossy(),
                &shown.to_string_lossy(),
                &on_disk,
                &meta,
                names,
            );
            if info.kind == EntryType::Dir && level < depth {
                queue.push_back((on_disk, rel, level + 1));
            }
            out.entries.push(info);
        }
        if out.truncated {
            break;
        }
    }
    out.entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The LS2_RESP payload, entries dropped from the end (and `truncated`
/// set) until it fits one frame.
fn encode_capped(mut r: Ls2Response) -> Vec<u8> {
    loop {
        let body = serde_json::to_vec(&r).unwrap_or_else(|_| br#"{"entries":[]}"#.to_vec());
        if body.len() <= MAX_PAYLOAD_LEN || r.entries.is_empty() {
            return body;
        }
        let n = r.entries.len();
        let keep = (n as u128 * MAX_PAYLOAD_LEN as u128 / body.len() as u128) as usize;
        r.entries.truncate(keep.min(n - 1));
        r.truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(d.path().join("a/b/c")).expect("mkdir");
        fs::write(d.path().join("a/f"), "x").expect("write");
        fs::write(d.path().join("a/b/g"), "x").expect("write");
        fs::write(d.path().join("top"), "x").expect("write");
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("link")).expect("link");
        d
    }

    fn paths(r: &Ls2Response, root: &Path) -> Vec<String> {
        r.entries
            .iter()
            .map(|e| {
                Path::new(&e.path)
                    .strip_prefix(root)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn depth_limits_the_walk_and_symlinks_are_not_descended() {
        let d = tree();
        let root = d.path().to_str().expect("utf8");
        let n = Names::default();
        let one = list(root, 1, 100, &n).expect("list");
        assert_eq!(paths(&one, d.path()), ["a", "link", "top"]);
        let two = list(root, 2, 100, &n).expect("list");
        assert_eq!(paths(&two, d.path()), ["a", "a/b", "a/f", "link", "top"]);
        let all = list(root, 99, 100, &n).expect("list");
        assert_eq!(
            paths(&all, d.path()),
            ["a", "a/b", "a/b/c", "a/b/g", "a/f", "link", "top"]
        );
        assert!(!all.truncated);
        let cut = list(root, 99, 4, &n).expect("list");
        assert_eq!(cut.entries.len(), 4);
        assert!(cut.truncated);
    }

    #[test]
    fn oversized_json_is_cut_to_one_frame() {
        let d = tree();
        let n = Names::default();
        let mut r = list(d.path().to_str().expect("utf8"), 1, 100, &n).expect("list");
        let one = r.entries[0].clone();
        r.entries = (0..10_000)
            .map(|i| {
                let mut e = one.clone();
                e.path = format!("{}{i}", "x".repeat(200));
                e
            })
            .collect();
        let body = encode_capped(r);
        assert!(body.len() <= MAX_PAYLOAD_LEN);
        let back: Ls2Response = serde_json::from_slice(&body).expect("json");
        assert!(back.truncated && !back.entries.is_empty());
    }
}
