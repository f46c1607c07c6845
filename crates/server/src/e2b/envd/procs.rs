//! The processes envd started, per sandbox.
//!
//! A [`Proc`] holds the agent connection of one command (a piped exec or a
//! TTY session): its input half behind an async mutex (stdin, KILL,
//! resize go through it in order), and the list of subscribers its
//! output goes to. One pump task per process reads the agent's events and
//! sends each to every subscriber (bounded queues, so a slow reader slows
//! the command rather than growing memory; one that has not taken an event
//! for [`STALL`] is dropped), then the end event, then removes the process
//! from the registry. A subscriber that goes away (its stream dropped) is
//! only removed from the list: the process keeps running.
//!
//! A running process keeps its sandbox busy (the thermal manager does not
//! freeze it under a command). Pids are per-sandbox counters from 1,
//! except kept piped commands ([`super::kept`]), which keep their guest
//! pid (when no other process holds it); no lock is held across an await.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bhatti_agent::{Event, Events, Input};
use bhatti_engine::engine::{SandboxId, StateEvent};
use tokio::sync::{broadcast, mpsc};

use super::connect::{Code, RpcError};
use super::process_pb::{DataEvent, EndEvent, ProcessConfig, ProcessInfo, ProcessSelector};
use crate::activity::BusyGuard;

/// Events queued per subscriber.
const QUEUE: usize = 256;
/// Longest a subscriber may leave its queue full before it is dropped.
pub const STALL: Duration = Duration::from_secs(30);

/// What a subscriber receives: output, then the end, or `Lost` when the
/// agent connection broke first (the sandbox stopped or died): the SDK
/// then asks `/health` whether the sandbox is gone.
#[derive(Debug, Clone)]
pub enum Out {
    Data(DataEvent),
    End(EndEvent),
    Lost(String),
}

/// One process envd started.
#[derive(Debug)]
pub struct Proc {
    pub pid: u32,
    pub config: ProcessConfig,
    pub tag: Option<String>,
    /// A TTY session's id; `None` for a piped exec.
    pub session: Option<String>,
    /// The agent connection's write half; `None` once stdin was closed.
    pub input: tokio::sync::Mutex<Option<Input>>,
    subs: Mutex<Vec<mpsc::Sender<Out>>>,
    /// The last event, once the process ended (for a subscriber that
    /// comes after it was sent).
    end: Mutex<Option<Out>>,
    /// A signal was sent: an exit by it is reported as a signal death.
    pub signalled: AtomicBool,
    /// A kept piped command (agent protocol version 5): found again by
    /// [`super::kept`] after a daemon restart.
    pub kept: bool,
    /// Stdin was closed with an empty STDIN frame (`stdin_eof`): the
    /// input half stays for signals, but takes no more data.
    pub stdin_closed: AtomicBool,
}

impl Proc {
    /// A new subscriber to the process's further output (just the end,
    /// possibly twice, when it comes as the process ends).
    pub fn subscribe(&self) -> mpsc::Receiver<Out> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.subs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx.clone());
        let end = self
            .end
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(end) = end {
            let _ = tx.try_send(end);
        }
        rx
    }

    pub fn info(&self) -> ProcessInfo {
        ProcessInfo {
            config: self.config.clone(),
            pid: self.pid,
            tag: self.tag.clone(),
        }
    }

    /// Sends `out` to every subscriber; drops the gone and the stalled.
    async fn publish(&self, out: Out) {
        let subs = self
            .subs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut dead = Vec::new();
        for tx in &subs {
            if tx.send_timeout(out.clone(), STALL).await.is_err() {
                dead.push(tx.clone());
            }
        }
        if !dead.is_empty() {
            self.subs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|t| !dead.iter().any(|d| d.same_channel(t)) && !t.is_closed());
        }
    }
}

/// One sandbox's processes.
#[derive(Debug, Default)]
struct Table {
    next_pid: u32,
    procs: BTreeMap<u32, Arc<Proc>>,
}

impl Table {
    /// The next counter pid no process holds.
    fn next_free(&mut self) -> u32 {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1).max(1);
            if !self.procs.contains_key(&self.next_pid) {
                return self.next_pid;
            }
        }
    }
}

/// What a new registry entry is.
#[derive(Debug)]
pub struct NewProc {
    pub config: ProcessConfig,
    pub tag: Option<String>,
    /// A TTY session's id; `None` for a piped exec.
    pub session: Option<String>,
    pub input: Input,
    /// The guest pid of a kept command: its pid here too, when free.
    pub pid: Option<u32>,
    pub kept: bool,
}

impl NewProc {
    fn into_proc(self, pid: u32) -> Arc<Proc> {
        Arc::new(Proc {
            pid,
            config: self.config,
            tag: self.tag,
            session: self.session,
            input: tokio::sync::Mutex::new(Some(self.input)),
            subs: Mutex::new(Vec::new()),
            end: Mutex::new(None),
            signalled: AtomicBool::new(false),
            kept: self.kept,
            stdin_closed: AtomicBool::new(false),
        })
    }
}

/// Every sandbox's processes.
#[derive(Debug, Default)]
pub struct Registry {
    sandboxes: Mutex<HashMap<String, Table>>,
}

impl Registry {
    fn with<T>(&self, sandbox: &str, f: impl FnOnce(&mut Table) -> T) -> T {
        let mut map = self
            .sandboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(map.entry(sandbox.to_owned()).or_default())
    }

    /// Registers a started process under its guest pid (`new.pid`, when
    /// no other process holds it) or a new counter pid; the pump (see
    /// [`Registry::pump`]) must be started with the returned process.
    pub fn add(&self, sandbox: &str, new: NewProc) -> Arc<Proc> {
        self.with(sandbox, |t| {
            let pid = match new.pid {
                Some(p) if p != 0 && !t.procs.contains_key(&p) => p,
                _ => t.next_free(),
            };
            let p = new.into_proc(pid);
            t.procs.insert(pid, p.clone());
            p
        })
    }

    /// Registers a kept command found again under its guest pid; `Err`
    /// with the process already there when another call was first.
    pub fn adopt(&self, sandbox: &str, pid: u32, new: NewProc) -> Result<Arc<Proc>, Arc<Proc>> {
        self.with(sandbox, |t| {
            if let Some(p) = t.procs.get(&pid) {
                return Err(p.clone());
            }
            let p = new.into_proc(pid);
            t.procs.insert(pid, p.clone());
            Ok(p)
        })
    }

    /// Whether a process of the sandbox holds `pid`.
    pub fn has(&self, sandbox: &str, pid: u32) -> bool {
        self.with(sandbox, |t| t.procs.contains_key(&pid))
    }

    /// The running process `sel` names (in this registry only; see
    /// [`super::kept::find`] for commands started before a restart).
    pub fn find(&self, sandbox: &str, sel: &ProcessSelector) -> Result<Arc<Proc>, RpcError> {
        self.with(sandbox, |t| match sel {
            ProcessSelector::Pid(pid) => t.procs.get(pid).cloned(),
            ProcessSelector::Tag(tag) => t
                .procs
                .values()
                .find(|p| p.tag.as_deref() == Some(tag))
                .cloned(),
        })
        .ok_or_else(|| RpcError::new(Code::NotFound, format!("process {sel:?} not found")))
    }

    /// Every running process of a sandbox.
    pub fn list(&self, sandbox: &str) -> Vec<ProcessInfo> {
        self.with(sandbox, |t| t.procs.values().map(|p| p.info()).collect())
    }

    fn remove(&self, sandbox: &str, pid: u32) {
        let mut map = self
            .sandboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = map.get_mut(sandbox) {
            t.procs.remove(&pid);
        }
    }

    /// Runs the process's pump on its own task: events to subscribers,
    /// then the end, then the process leaves the registry. `gone`
    /// resolves when the sandbox's VMM goes away (destroyed, stopped,
    /// frozen): a guest connection is then cut without a word, so the
    /// pump stops waiting for it. `busy` keeps the sandbox from being
    /// frozen while the process runs. The first `skip` bytes of output
    /// (a kept command's replay on attach) are not sent.
    pub fn pump<G>(
        self: &Arc<Self>,
        sandbox: String,
        proc: Arc<Proc>,
        (events, skip): (Events, u64),
        gone: G,
        busy: BusyGuard,
    ) where
        G: Future<Output = ()> + Send + 'static,
    {
        let reg = self.clone();
        tokio::spawn(async move {
            let _busy = busy;
            let end = tokio::select! {
                end = forward(&proc, events, skip, &sandbox) => end,
                () = gone => lost(&sandbox, "its VM went away"),
            };
            // Gone from List and Connect before the end is seen.
            reg.remove(&sandbox, proc.pid);
            *proc.end.lock().unwrap_or_else(PoisonError::into_inner) = Some(end.clone());
            proc.publish(end).await;
        });
    }
}

/// Sends the process's output, after its first `skip` bytes, to its
/// subscribers; returns its last event.
async fn forward(proc: &Proc, mut events: Events, mut skip: u64, sandbox: &str) -> Out {
    loop {
        let ev = match events.next().await {
            Ok(Some(Event::Stdout(d))) => Ok(Some(Event::Stdout(skipped(d, &mut skip)))),
            Ok(Some(Event::Stderr(d))) => Ok(Some(Event::Stderr(skipped(d, &mut skip)))),
            other => other,
        };
        if matches!(&ev, Ok(Some(Event::Stdout(d) | Event::Stderr(d))) if d.is_empty()) {
            continue;
        }
        let out = match ev {
            Ok(Some(Event::Stdout(d))) if proc.session.is_some() => DataEvent::Pty(d),
            Ok(Some(Event::Stdout(d))) => DataEvent::Stdout(d),
            Ok(Some(Event::Stderr(d))) => DataEvent::Stderr(d),
            Ok(Some(Event::Exit(code))) => return Out::End(exit_event(code, proc)),
            Ok(Some(Event::Error(f))) => return Out::End(failed(f.message)),
            Ok(None) => return lost(sandbox, "closed"),
            Err(e) => return lost(sandbox, &e.to_string()),
        };
        proc.publish(Out::Data(out)).await;
    }
}

/// `d` without the part of it that `skip` still counts.
fn skipped(mut d: Vec<u8>, skip: &mut u64) -> Vec<u8> {
    let n = usize::try_from(*skip).unwrap_or(usize::MAX).min(d.len());
    *skip -= n as u64;
    d.drain(..n);
    d
}

/// Resolves when sandbox `id` leaves the states with a VMM (a missed
/// event, when the receiver lags, is not seen).
pub async fn vmm_gone(mut rx: broadcast::Receiver<StateEvent>, id: SandboxId) {
    loop {
        match rx.recv().await {
            Ok(ev) if ev.id == id && !ev.state.has_vmm() => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// The end event of an exit code; after a signal we sent, the code the
/// agent gives a signal death (128 + n) is reported as envd does (-1,
/// not exited, `signal: …`).
pub fn exit_event(code: i32, proc: &Proc) -> EndEvent {
    end_of(code, proc.signalled.load(Ordering::SeqCst))
}

fn end_of(code: i32, by_signal: bool) -> EndEvent {
    match code {
        137 if by_signal => signal_end("killed"),
        143 if by_signal => signal_end("terminated"),
        c => EndEvent {
            exit_code: c,
            exited: true,
            status: format!("exit status {c}"),
            error: None,
        },
    }
}

fn signal_end(name: &str) -> EndEvent {
    EndEvent {
        exit_code: -1,
        exited: false,
        status: format!("signal: {name}"),
        error: None,
    }
}

fn lost(sandbox: &str, why: &str) -> Out {
    Out::Lost(format!(
        "the connection to sandbox {sandbox} ended before the process did ({why})"
    ))
}

fn failed(message: String) -> EndEvent {
    EndEvent {
        exit_code: -1,
        exited: false,
        status: "error".into(),
        error: Some(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_after_our_signals_read_as_envds() {
        assert_eq!(end_of(137, true).exit_code, -1);
        assert_eq!(end_of(137, true).status, "signal: killed");
        assert!(!end_of(143, true).exited);
        // Not signalled by us: the code as the command gave it.
        let e = end_of(137, false);
        assert_eq!(
            (e.exit_code, e.exited, e.status.as_str()),
            (137, true, "exit status 137")
        );
        assert_eq!(failed("x".into()).error.as_deref(), Some("x"));
    }

    #[test]
    fn the_replay_is_skipped_across_events() {
        let mut skip = 5;
        assert_eq!(skipped(b"abc".to_vec(), &mut skip), b"");
        assert_eq!(skipped(b"defg".to_vec(), &mut skip), b"fg");
        assert_eq!(skipped(b"h".to_vec(), &mut skip), b"h");
        assert_eq!(skip, 0);
    }
}
