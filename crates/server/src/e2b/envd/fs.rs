//! `filesystem.Filesystem`: Stat, ListDir, MakeDir, Move, Remove (unary)
//! and the watchers ([`super::watch`]).
//!
//! Stat and ListDir use the agent's STAT2 and LS2 when it has them (owner
//! and group names, symlinks with their targets); an older agent's
//! FILE_STAT and FILE_LS give entries with no owner or group that never
//! mark symlinks (stat follows them). MakeDir, Move
//! and Remove need the agent's MKDIR, MOVE and REMOVE (protocol version
//! 4); an older agent gets `unimplemented` — nothing is faked with tools
//! run in the guest.
//!
//! Paths may be relative (to the user's home, [`super::users`]).

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use bhatti_engine::engine::{Engine, FileInfo, SandboxId};

use super::connect::{self, Code, RpcError};
use super::fs_pb::{
    EntryInfo, EntryResponse, FileType, ListDirRequest, ListDirResponse, MoveRequest, PathRequest,
};
use super::native::{self, Agents, feature};
use super::process_pb::Empty;
use super::{Call, users};
use crate::state::Shared;

type Ext = Extension<std::sync::Arc<Agents>>;

/// Most entries one ListDir returns.
pub const MAX_ENTRIES: usize = 100_000;

pub fn routes<E: Engine>() -> axum::Router<Shared<E>> {
    axum::Router::new()
        .route("/filesystem.Filesystem/Stat", post(stat::<E>))
        .route("/filesystem.Filesystem/ListDir", post(list_dir::<E>))
        .route("/filesystem.Filesystem/MakeDir", post(make_dir::<E>))
        .route("/filesystem.Filesystem/Move", post(move_rpc::<E>))
        .route("/filesystem.Filesystem/Remove", post(remove::<E>))
        .merge(super::watch::routes::<E>())
}

/// An entry from the agent's FileInfo of `path`.
pub fn entry(info: &FileInfo, path: &str) -> EntryInfo {
    let mode = u32::from_str_radix(info.mode.trim_start_matches("0o"), 8).unwrap_or(0) & 0o7777;
    let name = if info.name.is_empty() {
        path.rsplit('/').next().unwrap_or_default().to_owned()
    } else {
        info.name.clone()
    };
    EntryInfo {
        name,
        kind: if info.is_dir {
            FileType::Directory
        } else {
            FileType::File
        },
        path: path.to_owned(),
        size: info.size,
        mode,
        permissions: permissions(info.is_dir, mode),
        owner: String::new(),
        group: String::new(),
        modified_time: super::pbjson::timestamp(info.mtime),
        symlink_target: None,
        metadata: BTreeMap::new(),
        is_symlink: false,
    }
}

/// `drwxr-xr-x` and the like.
fn permissions(dir: bool, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(if dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// The resolved path of a call and the sandbox, woken.
async fn target<E: Engine>(call: &Call<E>, path: &str) -> Result<(SandboxId, String), RpcError> {
    if path.is_empty() {
        return Err(RpcError::invalid("path must not be empty"));
    }
    let eid = call.wake().await?;
    let p = users::resolve(&call.st, &call.sb, &eid, call.user.as_deref(), path).await?;
    Ok((eid, p))
}

/// The entry at `path`: the agent's extended stat (lstat) when it has
/// one, else FILE_STAT (following symlinks).
pub async fn stat_entry<E: Engine>(
    call: &Call<E>,
    agents: &Agents,
    eid: &SandboxId,
    path: &str,
) -> Result<EntryInfo, RpcError> {
    let r = if agents.has(call, eid, feature::STAT2).await {
        native::stat2(call, eid, path).await
    } else {
        match call.st.engine.stat(eid, path).await {
            Ok(info) => Ok(entry(&info, path)),
            Err(e) => Err(RpcError::from(e)),
        }
    };
    r.map_err(|e| missing(e, path))
}

async fn stat<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(agents): Ext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: PathRequest = connect::unary_request(&body)?;
        let (eid, path) = target(&call, &req.path).await?;
        Ok(EntryResponse {
            entry: stat_entry(&call, &agents, &eid, &path).await?,
        })
    };
    connect::unary(&headers, run).await
}

/// The entries under `dir`, `depth` levels deep (1: its own): the agent's
/// LS2 when it has it, else FILE_LS per directory.
pub async fn walk<E: Engine>(
    call: &Call<E>,
    agents: &Agents,
    eid: &SandboxId,
    dir: &str,
    depth: u32,
) -> Result<Vec<EntryInfo>, RpcError> {
    if agents.has(call, eid, feature::LS2).await {
        let d = dir.to_owned();
        let depth = depth.max(1);
        let r = call
            .st
            .engine
            .agent_call(eid, move |a| {
                let d = d.clone();
                async move { a.ls2(&d, depth).await }
            })
            .await?;
        return Ok(r.entries.iter().map(native::entry).collect());
    }
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_owned(), depth.max(1))];
    while let Some((d, left)) = todo.pop() {
        let list = match call.st.engine.ls(eid, &d).await {
            Ok(l) => l,
            // A subdirectory that went away meanwhile is skipped.
            Err(_) if d != dir => continue,
            Err(e) => return Err(e.into()),
        };
        for info in list.iter().filter(|i| !i.name.starts_with("... truncated")) {
            let path = format!("{}/{}", d.trim_end_matches('/'), info.name);
            if info.is_dir && left > 1 {
                todo.push((path.clone(), left - 1));
            }
            out.push(entry(info, &path));
            if out.len() >= MAX_ENTRIES {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

async fn list_dir<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(agents): Ext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: ListDirRequest = connect::unary_request(&body)?;
        let (eid, path) = target(&call, &req.path).await?;
        let top = stat_entry(&call, &agents, &eid, &path).await?;
        if top.kind != FileType::Directory {
            return Err(RpcError::invalid(format!(
                "path '{path}' is not a directory"
            )));
        }
        Ok(ListDirResponse {
            entries: walk(&call, &agents, &eid, &path, req.depth).await?,
        })
    };
    connect::unary(&headers, run).await
}

/// The error for an agent that lacks `feature` (a guest whose lohar is
/// older than protocol version 4): the operation is refused, never faked
/// with tools run in the guest.
fn lacks(feature: &str) -> RpcError {
    RpcError::new(
        Code::Unimplemented,
        format!(
            "this sandbox's guest agent does not support {feature} (it needs agent protocol \
             version 4); recreate the sandbox from a current image"
        ),
    )
}

async fn make_dir<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(agents): Ext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: PathRequest = connect::unary_request(&body)?;
        let (eid, path) = target(&call, &req.path).await?;
        let exists = || RpcError::new(Code::AlreadyExists, format!("path '{path}' already exists"));
        if agents.has(&call, &eid, feature::MKDIR).await {
            let (p, u) = (path.clone(), call.user.clone());
            let r = call
                .st
                .engine
                .agent_call(&eid, move |a| {
                    let (p, u) = (p.clone(), u.clone());
                    async move { a.mkdir(&p, u.as_deref()).await }
                })
                .await?;
            return if r.created {
                Ok(EntryResponse {
                    entry: native::entry(&r.entry),
                })
            } else {
                Err(exists())
            };
        }
        Err(lacks(feature::MKDIR))
    };
    connect::unary(&headers, run).await
}

async fn move_rpc<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(agents): Ext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: MoveRequest = connect::unary_request(&body)?;
        let (eid, from) = target(&call, &req.source).await?;
        let (_, to) = target(&call, &req.destination).await?;
        if agents.has(&call, &eid, feature::MOVE).await {
            let (f, t, u) = (from.clone(), to.clone(), call.user.clone());
            let e = call
                .st
                .engine
                .agent_call(&eid, move |a| {
                    let (f, t, u) = (f.clone(), t.clone(), u.clone());
                    async move { a.mv(&f, &t, u.as_deref()).await }
                })
                .await
                .map_err(|e| missing(e.into(), &from))?;
            return Ok(EntryResponse {
                entry: native::entry(&e),
            });
        }
        Err(lacks(feature::MOVE))
    };
    connect::unary(&headers, run).await
}

/// `e` with envd's message when it says `path` is missing.
fn missing(e: RpcError, path: &str) -> RpcError {
    match e.code {
        Code::NotFound => RpcError::new(Code::NotFound, format!("path '{path}' does not exist")),
        _ => e,
    }
}

async fn remove<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(agents): Ext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: PathRequest = connect::unary_request(&body)?;
        let (eid, path) = target(&call, &req.path).await?;
        if path == "/" {
            return Err(RpcError::new(
                Code::PermissionDenied,
                "refusing to remove /",
            ));
        }
        if agents.has(&call, &eid, feature::REMOVE).await {
            let p = path.clone();
            let r = call
                .st
                .engine
                .agent_call(&eid, move |a| {
                    let p = p.clone();
                    async move { a.remove(&p).await }
                })
                .await;
            // Like envd (RemoveAll), a missing path is no error.
            return match r.map_err(RpcError::from) {
                Err(e) if e.code != Code::NotFound => Err(e),
                _ => Ok(Empty {}),
            };
        }
        Err(lacks(feature::REMOVE))
    };
    connect::unary(&headers, run).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_from_agent_file_info() {
        let info = FileInfo {
            name: "d".into(),
            size: 4096,
            mode: "0755".into(),
            is_dir: true,
            mtime: 0,
        };
        let e = entry(&info, "/x/d");
        assert_eq!((e.mode, e.permissions.as_str()), (0o755, "drwxr-xr-x"));
        assert_eq!(e.kind, FileType::Directory);
        assert_eq!(permissions(false, 0o640), "-rw-r-----");
    }
}
