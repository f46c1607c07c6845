//! File management of protocol version 4 (`docs/protocol.md`):
//! [`Client::caps`], [`Client::mkdir`], [`Client::mv`],
//! [`Client::remove`], [`Client::stat2`], [`Client::ls2`].
//!
//! Each is one request frame and one JSON reply frame (or ERROR_CODE +
//! ERROR) on its own connection. A v1 agent (or a bhatti-rs lohar before
//! version 4) answers these frames with ERROR `unexpected frame type 0xNN`
//! — code [`ErrorCode::UnexpectedFrame`] from a version 2–3 lohar,
//! [`ErrorCode::Other`] from v1 — so a caller checks [`Client::caps`]
//! first rather than reading that error.

use bhatti_proto::CONTROL_PORT;
use bhatti_proto::ext::{
    Caps, EntryInfo, Ls2Request, Ls2Response, MkdirRequest, MkdirResponse, MoveRequest,
};
use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{PathRequest, StatusResponse, json_frame};

use crate::Client;
use crate::error::{AgentFailure, Error, ErrorCode, Result};

/// The ERROR text with which every agent refuses a first frame it does
/// not serve (PROTOCOL.md), followed by the type byte.
const UNEXPECTED_FRAME: &str = "unexpected frame type";

impl Client {
    /// The agent's protocol version and features (CAPS_REQ). An agent
    /// without the query (v1, or a bhatti-rs lohar before version 4) is
    /// not an error: it refuses the frame as unexpected, and the result
    /// is [`Caps::legacy`] — version 1 with no features for a v1 agent,
    /// version 2 with `error_code` when the refusal carried a code.
    pub async fn caps(&self) -> Result<Caps> {
        let mut c = self.open(CONTROL_PORT, FrameType::CAPS_REQ, &[]).await?;
        let caps = match c.expect(FrameType::CAPS_RESP, "caps").await {
            Ok(f) => c.decode("CAPS_RESP", &f.payload)?,
            Err(Error::Agent(f)) if f.message.starts_with(UNEXPECTED_FRAME) => {
                Caps::legacy(f.code == ErrorCode::UnexpectedFrame)
            }
            Err(e) => return Err(e),
        };
        // What every later request of this client (and its clones) needs
        // to know, asked once.
        let _ = self.known_caps.set(caps.clone());
        if let Some(pool) = &self.pool {
            pool.learn(&caps);
        }
        Ok(caps)
    }

    /// Creates directory `path` and its missing parents (MKDIR_REQ).
    /// `Ok` with `created: false` when a directory was there already
    /// (nothing changed); something else at `path` is [`Error::Agent`]
    /// with [`ErrorCode::AlreadyExists`]. The directories created belong
    /// to `user` (a name or uid; `None`: the sandbox's default owner, as
    /// for writes) and get mode 0755.
    pub async fn mkdir(&self, path: &str, user: Option<&str>) -> Result<MkdirResponse> {
        let req = MkdirRequest {
            path: path.to_owned(),
            mode: None,
            user: user.map(str::to_owned),
        };
        let frame = json_frame(FrameType::MKDIR_REQ, &req)?;
        self.unary_json(frame.kind, &frame.payload, FrameType::MKDIR_RESP, "mkdir")
            .await
    }

    /// Renames `source` to `destination` (MOVE_REQ; rename(2): an existing
    /// destination file is replaced, a non-empty destination directory is
    /// an error, across file systems is [`ErrorCode::Io`]). The
    /// destination's missing parents are created, owned by `user` as in
    /// [`Client::mkdir`]. Returns the moved entry at its new path.
    pub async fn mv(
        &self,
        source: &str,
        destination: &str,
        user: Option<&str>,
    ) -> Result<EntryInfo> {
        let req = MoveRequest {
            source: source.to_owned(),
            destination: destination.to_owned(),
            user: user.map(str::to_owned),
        };
        let frame = json_frame(FrameType::MOVE_REQ, &req)?;
        self.unary_json(frame.kind, &frame.payload, FrameType::MOVE_RESP, "move")
            .await
    }

    /// Removes a file, symlink (not its target) or whole directory tree
    /// (REMOVE_REQ). Missing → [`ErrorCode::NotFound`]; `/` (or a path
    /// ending in `.` or `..`) → [`ErrorCode::InvalidRequest`].
    pub async fn remove(&self, path: &str) -> Result<()> {
        let frame = json_frame(FrameType::REMOVE_REQ, &path_req(path))?;
        let status: StatusResponse = self
            .unary_json(frame.kind, &frame.payload, FrameType::REMOVE_RESP, "remove")
            .await?;
        if status.is_ok() {
            Ok(())
        } else {
            let msg = status.message.unwrap_or(status.status);
            Err(Error::Agent(AgentFailure::new(ErrorCode::Other, msg)))
        }
    }

    /// Extended stat of `path` (STAT2_REQ): lstat's metadata with type,
    /// permission string, owner and group names, nanosecond mtime and,
    /// for a symlink, its target.
    pub async fn stat2(&self, path: &str) -> Result<EntryInfo> {
        let frame = json_frame(FrameType::STAT2_REQ, &path_req(path))?;
        self.unary_json(frame.kind, &frame.payload, FrameType::STAT2_RESP, "stat2")
            .await
    }

    /// Lists directory `path` with extended entries (LS2_REQ), `depth`
    /// levels deep (1: its own entries; 0 counts as 1), symlinks not
    /// descended into. At most [`bhatti_proto::ext::LS2_MAX_ENTRIES`]
    /// entries; `truncated` says when there were more.
    pub async fn ls2(&self, path: &str, depth: u32) -> Result<Ls2Response> {
        let req = Ls2Request {
            path: path.to_owned(),
            depth: Some(depth),
        };
        let frame = json_frame(FrameType::LS2_REQ, &req)?;
        self.unary_json(frame.kind, &frame.payload, FrameType::LS2_RESP, "ls2")
            .await
    }
}

fn path_req(path: &str) -> PathRequest {
    PathRequest {
        path: path.to_owned(),
    }
}
