//! The daemon's HTTP listener: the accept loop, what every connection must
//! do to be kept, and graceful shutdown.
//!
//! # Connection hygiene
//! Nothing can be known about a connection before it has sent a request,
//! so until then it is held to two rules:
//!
//! - **Header timeout.** A connection gets [`Limits::header_timeout`] to
//!   deliver a complete request head, counted from the moment it is ready
//!   for one: when it is accepted, and again after each response (hyper's
//!   HTTP/1 `header_read_timeout`, which hyper, 1.12 here, starts on the
//!   first poll of a connection, before any byte arrives, and restarts
//!   whenever the connection waits for the next head; the VM test
//!   `hygiene` checks both). So a silent socket, a head sent a byte at a
//!   time and a kept-alive connection left idle are all closed after that
//!   long, without a response. Once a head is in, the request runs as long as it needs:
//!   streamed exec output, proxied streams and request bodies are not
//!   timed, and an upgraded connection (WebSocket shell) leaves hyper.
//! - **Pending cap.** At most [`Limits::max_pending`] connections may be
//!   open at once without having delivered their first request head. A
//!   new connection beyond that closes the oldest of them: a client that
//!   sends its request at once (every real client) is through before it
//!   can be the oldest, while a flood of idle sockets only evicts itself.
//!
//! # Threads, locks, I/O
//! Runs on the caller's tokio runtime: one accept task (the caller's) and
//! one task per connection, which owns the socket and serves it with
//! hyper's HTTP/1 server (upgrades enabled). The pending set is a
//! `std::sync::Mutex` held only to insert or remove one entry, never
//! across an await. Shutdown is a `watch` channel: every connection task
//! holds a receiver; one still waiting for its first request is dropped,
//! the others finish their current request and close; [`serve`] returns
//! once all of them have dropped their receivers. An accept that fails
//! for a host-side reason (out of descriptors) is retried with `backon`
//! after `ACCEPT_PAUSE`; shutdown is heard during that pause too.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use backon::{ConstantBuilder, Retryable};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;

/// The pause before accepting again after a host-side accept error.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// What a connection must do to be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to deliver a complete request head once ready for one.
    pub header_timeout: Duration,
    /// Connections open at once without a first request head.
    pub max_pending: usize,
}

impl Limits {
    /// The limits a configuration names.
    pub fn from_config(cfg: &crate::config::ServerConfig) -> Self {
        Self {
            header_timeout: Duration::from_secs(cfg.header_timeout_secs),
            max_pending: cfg.max_pending_connections,
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then lets every open
/// connection finish its current request and returns when all are closed.
/// (The caller bounds that wait: a stream may never end on its own.)
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let pending = Arc::new(Mutex::new(Pending::new(limits.max_pending)));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        // A host-side accept error (out of descriptors, most likely) is
        // retried after a pause that lets some connections close; one that
        // belongs to a single connection passes it over.
        let accept = (|| listener.accept())
            .retry(
                ConstantBuilder::new()
                    .with_delay(ACCEPT_PAUSE)
                    .without_max_times(),
            )
            .when(|e| !is_per_connection(e))
            .notify(|e, pause| tracing::error!(error = %e, "accept failed; retrying in {pause:?}"));
        let tcp = tokio::select! {
            () = &mut stop => break,
            r = accept => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let (evict_tx, evicted) = oneshot::channel();
        let (id, oldest) = lock(&pending).admit(evict_tx);
        if let Some(tx) = oldest {
            tracing::debug!("pending connection cap reached: closing the oldest");
            let _ = tx.send(());
        }
        let ticket = Ticket {
            id,
            pending: pending.clone(),
            done: AtomicBool::new(false),
        };
        tokio::spawn(connection(
            tcp,
            app.clone(),
            http.clone(),
            ticket,
            evicted,
            closing_rx.clone(),
        ));
    }
    drop(listener);
    drop(closing_rx);
    let _ = closing_tx.send(true);
    closing_tx.closed().await;
}

/// Serves one connection until it ends, is evicted, or shutdown has let
/// its current request finish.
async fn connection(
    tcp: TcpStream,
    app: Router,
    http: http1::Builder,
    ticket: Ticket,
    evicted: oneshot::Receiver<()>,
    mut closing: watch::Receiver<bool>,
) {
    // No Nagle: a proxied response goes out as headers, then body chunks;
    // with Nagle the second small write waits for the client's delayed
    // ACK (40 ms on every reused connection).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY");
    }
    let ticket = Arc::new(ticket);
    let service = {
        let ticket = ticket.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            ticket.settle();
            app.clone().oneshot(req)
        })
    };
    let conn = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    // The sender is dropped without a word when the connection settles.
    let evicted = async {
        if evicted.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let closing = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    let res = tokio::select! {
        r = conn.as_mut() => r,
        () = evicted => return,
        () = closing => {
            if !ticket.done.load(Ordering::Relaxed) {
                return; // no request yet: nothing to finish
            }
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// Accept errors that concern one connection only.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection's place in the pending set; it leaves the set on the
/// first request head or when the connection ends, whichever is first.
#[derive(Debug)]
struct Ticket {
    id: u64,
    pending: Arc<Mutex<Pending<oneshot::Sender<()>>>>,
    done: AtomicBool,
}

impl Ticket {
    fn settle(&self) {
        if !self.done.swap(true, Ordering::Relaxed) {
            lock(&self.pending).remove(self.id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.settle();
    }
}

/// Connections without a first request head, oldest first, at most `cap`
/// of them; `T` is how to close one.
#[derive(Debug)]
struct Pending<T> {
    cap: usize,
    next: u64,
    open: BTreeMap<u64, T>,
}

impl<T> Pending<T> {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            next: 0,
            open: BTreeMap::new(),
        }
    }

    /// Admits a connection: its id, and the oldest one to close if the
    /// set was full.
    fn admit(&mut self, close: T) -> (u64, Option<T>) {
        let evicted = if self.open.len() >= self.cap {
            self.open.pop_first().map(|(_, t)| t)
        } else {
            None
        };
        let id = self.next;
        self.next += 1;
        self.open.insert(id, close);
        (id, evicted)
    }

    /// The connection `id` has sent a request head, or ended.
    fn remove(&mut self, id: u64) {
        self.open.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Limits, Pending};
    use crate::config::{ConfigError, ServerConfig};

    #[test]
    fn limits_come_from_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = ServerConfig::file_in(dir.path());
        let load = || ServerConfig::load(dir.path());
        let defaults = Limits::from_config(&load().expect("defaults"));
        assert_eq!(defaults.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.max_pending, 256);
        std::fs::write(
            &file,
            "header_timeout_secs: 3\nmax_pending_connections: 9\n",
        )
        .expect("write");
        let set = Limits::from_config(&load().expect("file"));
        assert_eq!(
            set,
            Limits {
                header_timeout: Duration::from_secs(3),
                max_pending: 9
            }
        );
        for bad in ["header_timeout_secs: 0\n", "max_pending_connections: 0\n"] {
            std::fs::write(&file, bad).expect("write");
            assert!(matches!(load(), Err(ConfigError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn pending_set_evicts_the_oldest_beyond_its_cap() {
        let mut p = Pending::new(3);
        let ids: Vec<u64> = ["a", "b", "c"]
            .into_iter()
            .map(|t| {
                let (id, out) = p.admit(t);
                assert_eq!(out, None, "room for {t}");
                id
            })
            .collect();
        assert_eq!(p.admit("d").1, Some("a"), "full: the oldest goes");
        // b sends its request: it leaves, and makes room.
        p.remove(ids[1]);
        assert_eq!(p.admit("e").1, None);
        assert_eq!(p.admit("f").1, Some("c"));
        assert_eq!(p.admit("g").1, Some("d"));
        // Removing twice, or an evicted id, changes nothing.
        p.remove(ids[1]);
        p.remove(ids[0]);
        assert_eq!(
            p.open.values().copied().collect::<Vec<_>>(),
            ["e", "f", "g"]
        );
    }

    #[test]
    fn a_cap_of_zero_still_admits_one() {
        let mut p = Pending::new(0);
        assert_eq!(p.admit(1).1, None);
        assert_eq!(p.admit(2).1, Some(1));
        assert_eq!(p.open.len(), 1);
    }
}
