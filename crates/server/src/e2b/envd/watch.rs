//! Directory watchers: `WatchDir` (a server stream) and
//! `CreateWatcher` / `GetWatcherEvents` / `RemoveWatcher` (polled by the
//! sync SDK).
//!
//! The agent has no file-watch request yet, so a watcher compares
//! listings: it keeps the last listing of the directory (recursive:
//! [`MAX_DEPTH`] levels) as name → (is_dir, size, mtime) and reports what
//! appeared (`CREATE`), went (`REMOVE`) or changed size or mtime
//! (`WRITE`). A stream polls every [`POLL`]; a polled watcher compares
//! when asked. Changes undone between two looks, and writes that keep the
//! size within the same second, are not seen. Watchers are per daemon
//! (lost on restart) and capped at [`MAX_WATCHERS`] per sandbox.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use bhatti_engine::engine::{Engine, SandboxId};
use futures_util::StreamExt;

use super::connect::{self, Code, RpcError, stream_error, stream_reply, unary_reply};
use super::fs::walk;
use super::fs_pb::{
    CreateWatcherResponse, EntryInfo, EventType, FileType, FilesystemEvent, WatchDirResponse,
    WatchRequest, WatcherEventsResponse, WatcherRequest,
};
use super::process_pb::Empty;
use super::{Call, users};
use crate::state::Shared;

/// How often a WatchDir stream looks.
pub const POLL: Duration = Duration::from_millis(500);
/// Depth of a recursive watch.
pub const MAX_DEPTH: u32 = 16;
/// Watchers one sandbox may have.
pub const MAX_WATCHERS: usize = 64;

/// What a listing remembers of an entry.
type Seen = BTreeMap<String, (bool, i64, i64, EntryInfo)>;

/// One polled watcher.
#[derive(Debug)]
struct Watcher {
    sandbox: String,
    dir: String,
    depth: u32,
    with_entry: bool,
    seen: Arc<tokio::sync::Mutex<Seen>>,
}

/// The polled watchers, by id.
#[derive(Debug, Default)]
pub struct Watchers {
    next: AtomicU64,
    map: Mutex<HashMap<String, Watcher>>,
}

pub fn routes<E: Engine>() -> Router<Shared<E>> {
    Router::new()
        .route("/filesystem.Filesystem/WatchDir", post(watch_dir::<E>))
        .route("/filesystem.Filesystem/CreateWatcher", post(create::<E>))
        .route("/filesystem.Filesystem/GetWatcherEvents", post(events::<E>))
        .route("/filesystem.Filesystem/RemoveWatcher", post(remove::<E>))
}

/// The listing of `dir` (`depth` levels), by path relative to it.
async fn look<E: Engine>(
    call: &Call<E>,
    eid: &SandboxId,
    dir: &str,
    depth: u32,
) -> Result<Seen, RpcError> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let entries = walk(call, eid, dir, depth).await?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let rel = e.path.strip_prefix(&prefix).unwrap_or(&e.path).to_owned();
            let key = (e.kind == FileType::Directory, e.size, mtime_key(&e));
            (rel, (key.0, key.1, key.2, e))
        })
        .collect())
}

fn mtime_key(e: &EntryInfo) -> i64 {
    // The RFC 3339 text orders like the time; its hash is enough to
    // tell a change.
    e.modified_time
        .bytes()
        .fold(0i64, |h, b| h.wrapping_mul(31).wrapping_add(i64::from(b)))
}

/// What changed from `old` to `new`.
fn diff(old: &Seen, new: &Seen, with_entry: bool) -> Vec<FilesystemEvent> {
    let ev = |name: &str, kind, e: Option<&EntryInfo>| FilesystemEvent {
        name: name.to_owned(),
        kind,
        entry: e.filter(|_| with_entry).cloned(),
    };
    let mut out = Vec::new();
    for (name, n) in new {
        match old.get(name) {
            None => out.push(ev(name, EventType::Create, Some(&n.3))),
            Some(o) if (o.0, o.1, o.2) != (n.0, n.1, n.2) && !n.0 => {
                out.push(ev(name, EventType::Write, Some(&n.3)));
            }
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(ev(name, EventType::Remove, None));
    }
    out
}

/// The watched directory of a request, checked to be a directory.
async fn start<E: Engine>(
    call: &Call<E>,
    req: &WatchRequest,
) -> Result<(SandboxId, String, u32), RpcError> {
    let eid = call.wake().await?;
    let dir = users::resolve(&call.st, &call.sb, &eid, call.user.as_deref(), &req.path).await?;
    let top = super::fs::stat_entry(call, &eid, &dir).await?;
    if top.kind != FileType::Directory {
        return Err(RpcError::invalid(format!(
            "path '{dir}' is not a directory"
        )));
    }
    let depth = if req.recursive { MAX_DEPTH } else { 1 };
    Ok((eid, dir, depth))
}

async fn watch_dir<E: Engine>(
    State(st): State<Shared<E>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: WatchRequest = connect::stream_request(&body)?;
        let (eid, dir, depth) = start(&call, &req).await?;
        let seen = look(&call, &eid, &dir, depth).await?;
        Ok::<_, RpcError>((call, eid, dir, depth, seen, req.include_entry))
    };
    let (call, eid, dir, depth, seen, with_entry) = match run.await {
        Ok(v) => v,
        Err(e) => return stream_error(e),
    };
    let deadline = call.deadline;
    let polls = futures_util::stream::unfold((call, seen), move |(call, seen)| {
        let (eid, dir) = (eid.clone(), dir.clone());
        async move {
            loop {
                tokio::time::sleep(POLL).await;
                match look(&call, &eid, &dir, depth).await {
                    Ok(now) => {
                        let evs = diff(&seen, &now, with_entry);
                        if !evs.is_empty() {
                            return Some((Ok(evs), (call, now)));
                        }
                    }
                    Err(e) => return Some((Err(e), (call, seen))),
                }
            }
        }
    });
    let events = polls.flat_map(|r| {
        let items: Vec<Result<WatchDirResponse, RpcError>> = match r {
            Ok(evs) => evs
                .into_iter()
                .map(|e| Ok(WatchDirResponse::Filesystem(Box::new(e))))
                .collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(items)
    });
    let all =
        futures_util::stream::once(async { Ok(WatchDirResponse::Start(Empty {})) }).chain(events);
    let ping = WatchDirResponse::Keepalive(Empty {});
    stream_reply(all, deadline, Some((ping, Duration::from_secs(50))))
}

async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(w): Extension<Arc<Watchers>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: WatchRequest = connect::unary_request(&body)?;
        let (eid, dir, depth) = start(&call, &req).await?;
        let seen = look(&call, &eid, &dir, depth).await?;
        let id = format!("w{}", w.next.fetch_add(1, Ordering::Relaxed) + 1);
        let mut map = w.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.values().filter(|x| x.sandbox == call.sb.id).count() >= MAX_WATCHERS {
            return Err(RpcError::new(Code::ResourceExhausted, "too many watchers"));
        }
        let watcher = Watcher {
            sandbox: call.sb.id.clone(),
            dir,
            depth,
            with_entry: req.include_entry,
            seen: Arc::new(tokio::sync::Mutex::new(seen)),
        };
        map.insert(id.clone(), watcher);
        Ok(CreateWatcherResponse { watcher_id: id })
    };
    unary_reply(run.await)
}

async fn events<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(w): Extension<Arc<Watchers>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: WatcherRequest = connect::unary_request(&body)?;
        let (dir, depth, with_entry, seen) = {
            let map = w.map.lock().unwrap_or_else(PoisonError::into_inner);
            let x = map
                .get(&req.watcher_id)
                .filter(|x| x.sandbox == call.sb.id)
                .ok_or_else(|| {
                    RpcError::new(
                        Code::NotFound,
                        format!("watcher {} not found", req.watcher_id),
                    )
                })?;
            (x.dir.clone(), x.depth, x.with_entry, x.seen.clone())
        };
        let eid = call.wake().await?;
        let mut seen = seen.lock().await;
        let now = look(&call, &eid, &dir, depth).await?;
        let events = diff(&seen, &now, with_entry);
        *seen = now;
        Ok(WatcherEventsResponse { events })
    };
    unary_reply(run.await)
}

async fn remove<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(w): Extension<Arc<Watchers>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = || {
        let call = Call::new(&st, &headers)?;
        let req: WatcherRequest = connect::unary_request(&body)?;
        let mut map = w.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&req.watcher_id) {
            Some(x) if x.sandbox == call.sb.id => {
                map.remove(&req.watcher_id);
                Ok(Empty {})
            }
            _ => Err(RpcError::new(
                Code::NotFound,
                format!("watcher {} not found", req.watcher_id),
            )),
        }
    };
    unary_reply(run())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, size: i64) -> (String, (bool, i64, i64, EntryInfo)) {
        let info = bhatti_engine::engine::FileInfo {
            name: name.into(),
            size,
            mode: "0644".into(),
            is_dir: false,
            mtime: 1,
        };
        let entry = super::super::fs::entry(&info, &format!("/d/{name}"));
        (name.into(), (false, size, mtime_key(&entry), entry))
    }

    #[test]
    fn listings_diff_into_events() {
        let old: Seen = [e("a", 1), e("b", 1)].into_iter().collect();
        let new: Seen = [e("a", 2), e("c", 1)].into_iter().collect();
        let kinds: Vec<(String, EventType)> = diff(&old, &new, false)
            .into_iter()
            .map(|x| (x.name, x.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a".into(), EventType::Write),
                ("c".into(), EventType::Create),
                ("b".into(), EventType::Remove)
            ]
        );
    }
}
