//! Directory watchers: `WatchDir` (a server stream) and
//! `CreateWatcher` / `GetWatcherEvents` / `RemoveWatcher` (polled by the
//! sync SDK).
//!
//! With an agent that has the watch request (inotify in the guest), a
//! watcher holds the agent's watch: a stream forwards its events, a
//! polled watcher buffers them (at most [`MAX_BUFFERED`]; older ones are
//! dropped) until asked. Otherwise a watcher compares listings
//! ([`super::poll`]): a stream looks every [`POLL`], a polled watcher when
//! asked. Events carry no entry (`include_entry` needs envd 0.6.3, above
//! what we advertise). An open WatchDir stream keeps its sandbox busy (not
//! frozen). Watchers are per daemon (lost on restart) and capped at
//! [`MAX_WATCHERS`] per sandbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use bhatti_agent::watch::{Watch, WatchEventType};
use bhatti_engine::engine::{Engine, SandboxId};
use bhatti_proto::ext::WatchEvent;
use futures_util::StreamExt;

use super::connect::{self, Code, RpcError, stream_error, stream_reply, unary_reply};
use super::fs_pb::{
    CreateWatcherResponse, EventType, FileType, FilesystemEvent, WatchDirResponse, WatchRequest,
    WatcherEventsResponse, WatcherRequest,
};
use super::native::{Agents, feature};
use super::poll::{Seen, diff, look};
use super::process_pb::Empty;
use super::procs::vmm_gone;
use super::{Call, users};
use crate::state::Shared;

/// How often a polling WatchDir stream looks.
pub const POLL: Duration = Duration::from_millis(500);
/// Depth of a recursive polled watch.
pub const MAX_DEPTH: u32 = 16;
/// Watchers one sandbox may have.
pub const MAX_WATCHERS: usize = 64;
/// Events a polled watcher with an agent watch keeps between two asks.
pub const MAX_BUFFERED: usize = 10_000;

type Ext = Extension<Arc<Agents>>;

/// Where a watcher's events come from.
#[derive(Debug)]
enum Source {
    Polled {
        dir: String,
        depth: u32,
        seen: Arc<tokio::sync::Mutex<Seen>>,
    },
    /// The agent's watch, drained by `task` into `buf`.
    Agent {
        buf: Arc<Mutex<Buffered>>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Self::Agent { task, .. } = self {
            task.abort();
        }
    }
}

/// Events of an agent watch not asked for yet, and how it ended.
#[derive(Debug, Default)]
struct Buffered {
    events: Vec<FilesystemEvent>,
    failed: Option<RpcError>,
}

/// One polled watcher.
#[derive(Debug)]
struct Watcher {
    sandbox: String,
    source: Source,
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

/// A watch of the request's directory, set: the agent's when it has one,
/// else the first listing.
enum Opened {
    Agent(Watch),
    Polled(String, u32, Seen),
}

async fn open<E: Engine>(
    call: &Call<E>,
    agents: &Agents,
    req: &WatchRequest,
) -> Result<(SandboxId, Opened), RpcError> {
    let eid = call.wake().await?;
    let dir = users::resolve(&call.st, &call.sb, &eid, call.user.as_deref(), &req.path).await?;
    let top = super::fs::stat_entry(call, agents, &eid, &dir).await?;
    if top.kind != FileType::Directory {
        return Err(RpcError::invalid(format!(
            "path '{dir}' is not a directory"
        )));
    }
    if agents.has(call, &eid, feature::WATCH).await {
        let (d, recursive) = (dir.clone(), req.recursive);
        let w = call
            .st
            .engine
            .agent_call(&eid, move |a| {
                let d = d.clone();
                async move { a.watch(&d, recursive).await }
            })
            .await?;
        return Ok((eid, Opened::Agent(w)));
    }
    let depth = if req.recursive { MAX_DEPTH } else { 1 };
    let seen = look(call, agents, &eid, &dir, depth).await?;
    Ok((eid, Opened::Polled(dir, depth, seen)))
}

/// envd's event for an agent's; `None` for what envd has no name for.
fn from_agent(ev: WatchEvent) -> Option<FilesystemEvent> {
    let kind = match ev.kind {
        WatchEventType::Create => EventType::Create,
        WatchEventType::Write => EventType::Write,
        WatchEventType::Remove => EventType::Remove,
        WatchEventType::Rename => EventType::Rename,
        WatchEventType::Chmod => EventType::Chmod,
        WatchEventType::Overflow | WatchEventType::Other => return None,
    };
    Some(FilesystemEvent {
        name: ev.name,
        kind,
        entry: None,
    })
}

/// The next envd event of an agent watch; `None` when it ended.
async fn next_of(w: &mut Watch) -> Option<Result<FilesystemEvent, RpcError>> {
    loop {
        match w.next().await {
            Ok(Some(ev)) => {
                if let Some(fe) = from_agent(ev) {
                    return Some(Ok(fe));
                }
            }
            Ok(None) => return None,
            Err(e) => return Some(Err(e.into())),
        }
    }
}

async fn watch_dir<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(agents): Ext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Subscribed before the watch is set: a stop meanwhile is seen.
    let states = st.engine.subscribe();
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: WatchRequest = connect::stream_request(&body)?;
        let (eid, opened) = open(&call, &agents, &req).await?;
        Ok::<_, RpcError>((call, eid, opened))
    };
    let (call, eid, opened) = match run.await {
        Ok(v) => v,
        Err(e) => return stream_error(e),
    };
    let (deadline, every) = (call.deadline, connect::keepalive(&headers));
    // An open watch keeps the sandbox from being frozen under it.
    let busy = call.st.activity.busy(&call.sb.id);
    let events = match opened {
        Opened::Agent(w) => agent_stream(w, vmm_gone(states, eid.clone())).boxed(),
        Opened::Polled(dir, depth, seen) => polled(call, agents, eid, dir, depth, seen).boxed(),
    };
    let events = events.map(move |r| {
        let _keep = &busy;
        r.map(|e| WatchDirResponse::Filesystem(Box::new(e)))
    });
    let all =
        futures_util::stream::once(async { Ok(WatchDirResponse::Start(Empty {})) }).chain(events);
    let ping = WatchDirResponse::Keepalive(Empty {});
    stream_reply(all, deadline, Some((ping, every)))
}

/// The events of an agent watch, cut with `unavailable` when the
/// sandbox's VMM goes away (its connection would hang).
fn agent_stream<G>(
    w: Watch,
    gone: G,
) -> impl futures_util::Stream<Item = Result<FilesystemEvent, RpcError>> + Send
where
    G: std::future::Future<Output = ()> + Send + 'static,
{
    let gone = Box::pin(gone);
    futures_util::stream::unfold(Some((w, gone)), |state| async move {
        let (mut w, mut gone) = state?;
        tokio::select! {
            ev = next_of(&mut w) => ev.map(|ev| (ev, Some((w, gone)))),
            () = &mut gone => {
                let why = "the sandbox's VM went away during the watch";
                Some((Err(RpcError::new(Code::Unavailable, why)), None))
            }
        }
    })
}

/// The events of a polling stream: a look every [`POLL`].
fn polled<E: Engine>(
    call: Call<E>,
    agents: Arc<Agents>,
    eid: SandboxId,
    dir: String,
    depth: u32,
    seen: Seen,
) -> impl futures_util::Stream<Item = Result<FilesystemEvent, RpcError>> + Send {
    let call = Arc::new(call);
    let looks = futures_util::stream::unfold(seen, move |seen| {
        let (call, agents, eid, dir) = (call.clone(), agents.clone(), eid.clone(), dir.clone());
        async move {
            loop {
                tokio::time::sleep(POLL).await;
                match look(&call, &agents, &eid, &dir, depth).await {
                    Ok(now) => {
                        let evs = diff(&seen, &now, false);
                        if !evs.is_empty() {
                            return Some((Ok(evs), now));
                        }
                    }
                    Err(e) => return Some((Err(e), seen)),
                }
            }
        }
    });
    looks.flat_map(|r| {
        let items: Vec<Result<FilesystemEvent, RpcError>> = match r {
            Ok(evs) => evs.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(items)
    })
}

/// Drains an agent watch into `buf` until it ends.
fn drain(mut w: Watch, buf: Arc<Mutex<Buffered>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let next = next_of(&mut w).await;
            let mut b = buf.lock().unwrap_or_else(PoisonError::into_inner);
            match next {
                Some(Ok(ev)) => {
                    if b.events.len() >= MAX_BUFFERED {
                        b.events.remove(0);
                    }
                    b.events.push(ev);
                }
                Some(Err(e)) => {
                    b.failed = Some(e);
                    return;
                }
                None => return,
            }
        }
    })
}

async fn create<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(agents): Ext,
    Extension(w): Extension<Arc<Watchers>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: WatchRequest = connect::unary_request(&body)?;
        let (_, opened) = open(&call, &agents, &req).await?;
        let source = match opened {
            Opened::Agent(watch) => {
                let buf = Arc::new(Mutex::new(Buffered::default()));
                let task = drain(watch, buf.clone());
                Source::Agent { buf, task }
            }
            Opened::Polled(dir, depth, seen) => Source::Polled {
                dir,
                depth,
                seen: Arc::new(tokio::sync::Mutex::new(seen)),
            },
        };
        let id = format!("w{}", w.next.fetch_add(1, Ordering::Relaxed) + 1);
        let mut map = w.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.values().filter(|x| x.sandbox == call.sb.id).count() >= MAX_WATCHERS {
            return Err(RpcError::new(Code::ResourceExhausted, "too many watchers"));
        }
        let sandbox = call.sb.id.clone();
        map.insert(id.clone(), Watcher { sandbox, source });
        Ok(CreateWatcherResponse { watcher_id: id })
    };
    connect::unary(&headers, run).await
}

/// What asking a watcher needs, taken out of the map.
enum Ask {
    Buffered(Arc<Mutex<Buffered>>),
    Polled(String, u32, Arc<tokio::sync::Mutex<Seen>>),
}

fn unknown(id: &str) -> RpcError {
    RpcError::new(Code::NotFound, format!("watcher {id} not found"))
}

async fn events<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(agents): Ext,
    Extension(w): Extension<Arc<Watchers>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: WatcherRequest = connect::unary_request(&body)?;
        let ask = {
            let map = w.map.lock().unwrap_or_else(PoisonError::into_inner);
            let x = map
                .get(&req.watcher_id)
                .filter(|x| x.sandbox == call.sb.id)
                .ok_or_else(|| unknown(&req.watcher_id))?;
            match &x.source {
                Source::Agent { buf, .. } => Ask::Buffered(buf.clone()),
                Source::Polled { dir, depth, seen } => {
                    Ask::Polled(dir.clone(), *depth, seen.clone())
                }
            }
        };
        let events = match ask {
            Ask::Buffered(buf) => {
                let mut b = buf.lock().unwrap_or_else(PoisonError::into_inner);
                if b.events.is_empty()
                    && let Some(e) = b.failed.clone()
                {
                    return Err(e);
                }
                std::mem::take(&mut b.events)
            }
            Ask::Polled(dir, depth, seen) => {
                let eid = call.wake().await?;
                let mut seen = seen.lock().await;
                let now = look(&call, &agents, &eid, &dir, depth).await?;
                let events = diff(&seen, &now, false);
                *seen = now;
                events
            }
        };
        Ok(WatcherEventsResponse { events })
    };
    connect::unary(&headers, run).await
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
            _ => Err(unknown(&req.watcher_id)),
        }
    };
    unary_reply(run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_events_map_to_envds() {
        let ev = |kind| WatchEvent {
            kind,
            name: "sub/f".into(),
            is_dir: false,
        };
        let got = from_agent(ev(WatchEventType::Rename)).expect("rename");
        assert_eq!((got.name.as_str(), got.kind), ("sub/f", EventType::Rename));
        assert!(from_agent(ev(WatchEventType::Overflow)).is_none());
    }
}
