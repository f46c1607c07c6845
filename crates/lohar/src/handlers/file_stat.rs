//! FILE_STAT_REQ: FileInfo of a path, following symlinks.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{FileInfo, MessageError, PathRequest, decode_json, mode_string};

use bhatti_proto::text::short;

use crate::agent::Agent;
use crate::conn::{Conn, ConnError};
use crate::handlers::{ErrorCode, IoText, Reply};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] MessageError),
    #[error("stat {path}: {msg}")]
    Stat { path: String, msg: IoText },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Reply for Error {
    fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Request(e) => e.code(),
            Error::Stat { msg, .. } => Some(msg.code),
            Error::Conn(e) => e.code(),
        }
    }
}

pub async fn handle(_agent: &Arc<Agent>, conn: Conn, payload: &[u8]) -> Result<(), Error> {
    let req: PathRequest = decode_json("PathRequest", payload)?;
    let path = req.path.clone();
    let meta = tokio::task::spawn_blocking(move || std::fs::metadata(&path))
        .await
        .map_err(|e| Error::Stat {
            path: short(&req.path),
            msg: IoText::other(e.to_string()),
        })?
        .map_err(|e| Error::Stat {
            path: short(&req.path),
            msg: IoText::new(&e),
        })?;
    let info = file_info(&base_name(&req.path), &meta);
    conn.writer.json(FrameType::FILE_STAT_RESP, &info).await?;
    Ok(())
}

/// The last component of `path` (`/` for the root).
pub fn base_name(path: &str) -> String {
    match Path::new(path).file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        None if path.starts_with('/') => "/".to_owned(),
        None => path.to_owned(),
    }
}

/// FileInfo from metadata.
pub fn file_info(name: &str, meta: &std::fs::Metadata) -> FileInfo {
    FileInfo {
        name: name.to_owned(),
        size: i64::try_from(meta.len()).unwrap_or(i64::MAX),
        mode: mode_string(meta.permissions().mode()),
        is_dir: meta.is_dir(),
        mtime: meta.mtime(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names() {
        assert_eq!(base_name("/a/b.txt"), "b.txt");
        assert_eq!(base_name("/a/dir/"), "dir");
        assert_eq!(base_name("/"), "/");
        assert_eq!(base_name("rel"), "rel");
    }
}
