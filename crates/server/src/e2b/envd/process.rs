//! `process.Process`: Start and Connect (server streams), List,
//! SendInput, CloseStdin, SendSignal, Update (unary); StreamInput (a
//! client stream) is [`super::input`].
//!
//! Start runs `cmd args` as a piped exec, or as a TTY session when the
//! request has `pty` (its output is `pty` data, its input `pty` bytes).
//! With `stdin: false` the command reads `/dev/null`: the agent opens it
//! (`stdin_null`, protocol version 7), or, for an older agent, the command
//! is started through `/bin/sh -c 'exec "$@" </dev/null'` (so that the
//! connection stays open for signals). The SDK always runs `/bin/bash`; in a guest
//! without it, `/bin/sh` runs instead.
//!
//! Signals: SIGKILL reaches a piped command as the agent's KILL (SIGKILL
//! to its process group), SIGTERM as SIGNAL 15 when the agent has the
//! `signal` feature (else as KILL); a TTY session gets SIGTERM from KILL
//! and SIGKILL from EXEC_KILL. CloseStdin sends an empty STDIN frame when
//! the agent has `stdin_eof` (protocol version 5), so the command can
//! still be signalled; an older agent's connection is half-closed, after
//! which a piped command cannot be signalled (`failed_precondition`).
//!
//! When the agent keeps commands (`keep`, [`super::kept`]), piped commands
//! are started as kept commands under their guest pid, and a process the
//! daemon's registry does not hold (the daemon restarted) is found again
//! in the agent: List shows it, Connect streams its further output, and
//! the unary calls reach it. List then wakes the sandbox to ask its agent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use bhatti_engine::engine::{Engine, ExecRequest, SandboxId, ShellOptions};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Call;
use super::connect::{self, Code, RpcError, stream_error, stream_reply, unary_reply};
use super::kept;
use super::native::{Agents, feature};
use super::process_pb::{
    Empty, EventResponse, ListResponse, ProcessEvent, SelectRequest, SendInputRequest,
    SendSignalRequest, Signal, StartEvent, StartRequest, UpdateRequest,
};
use super::procs::{NewProc, Out, Proc, Registry};
use crate::state::Shared;

type Reg = Extension<Arc<Registry>>;
type Ags = Extension<Arc<Agents>>;

pub fn routes<E: Engine>() -> Router<Shared<E>> {
    Router::new()
        .route("/process.Process/Start", post(start::<E>))
        .route("/process.Process/Connect", post(connect_rpc::<E>))
        .route("/process.Process/List", post(list::<E>))
        .route("/process.Process/SendInput", post(send_input::<E>))
        .route("/process.Process/CloseStdin", post(close_stdin::<E>))
        .route("/process.Process/SendSignal", post(send_signal::<E>))
        .route("/process.Process/Update", post(update::<E>))
        .route(
            "/process.Process/StreamInput",
            post(super::input::stream_input::<E>),
        )
}

async fn start<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(reg): Reg,
    Extension(agents): Ags,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: StartRequest = connect::stream_request(&body)?;
        let eid = call.wake().await?;
        let keep = req.pty.is_none() && agents.has(&call, &eid, feature::KEEP).await;
        // `stdin: false` → /dev/null by the agent itself when it can.
        let null_stdin = req.pty.is_none()
            && !req.stdin.unwrap_or(true)
            && agents.has(&call, &eid, feature::STDIN_NULL).await;
        let bash = req.process.cmd == "/bin/bash";
        let spawned = spawn(&call, &eid, (&reg, &agents), req, (keep, null_stdin)).await;
        if bash && spawned.is_err() {
            // Asked again next time: the guest may have lost it.
            agents.set_bash(&call.sb.id, false);
        }
        let (proc, rx) = spawned?;
        if let Some(at) = call.deadline {
            // Weak: a process that ended meanwhile is not kept (nor its
            // agent connection) until the deadline.
            let (st, weak) = (st.clone(), Arc::downgrade(&proc));
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                if let Some(proc) = weak.upgrade() {
                    let _ = signal(&st, &eid, &proc, Sig::HardKill).await;
                }
            });
        }
        Ok::<_, RpcError>((call.deadline, proc, rx))
    };
    match run.await {
        Ok((deadline, proc, rx)) => follow(proc.pid, rx, deadline, connect::keepalive(&headers)),
        Err(e) => stream_error(e),
    }
}

/// Starts the command of `req` (a piped one kept by the agent with
/// `keep`; with its stdin `/dev/null` opened by the agent with
/// `null_stdin`) and registers it (its pump running); the receiver is the
/// Start stream's subscription, made before any output.
async fn spawn<E: Engine>(
    call: &Call<E>,
    eid: &SandboxId,
    (reg, agents): (&Arc<Registry>, &Agents),
    req: StartRequest,
    (keep, null_stdin): (bool, bool),
) -> Result<(Arc<Proc>, mpsc::Receiver<Out>), RpcError> {
    let config = req.process.clone();
    if config.cmd.is_empty() || config.cmd.contains('\0') {
        return Err(RpcError::invalid("cmd must name a program"));
    }
    let engine = &call.st.engine;
    // Subscribed before the start: a stop meanwhile is seen.
    let states = engine.subscribe();
    let mut argv = vec![program(call, eid, agents, &config.cmd).await];
    argv.extend(config.args.iter().cloned());
    let cwd = config
        .cwd
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| crate::service::images::workdir_of(&call.sb));
    let env = config.envs.clone();
    let (session, input, events, pid) = if let Some(pty) = req.pty {
        let size = pty.size.unwrap_or_default();
        let mut opts = ShellOptions::new(argv).size(clamp(size.rows, 24), clamp(size.cols, 80));
        opts.env = env;
        opts.cwd = cwd;
        opts.user = call.user.clone();
        let (info, input, events) = engine.shell(eid, opts).await?.into_split();
        (Some(info.session_id), input, events, None)
    } else {
        if !req.stdin.unwrap_or(true) && !null_stdin {
            // An agent before protocol version 7.
            let sh = ["/bin/sh", "-c", "exec \"$@\" </dev/null", "sh"];
            argv.splice(0..0, sh.map(String::from));
        }
        let r = ExecRequest {
            argv,
            env,
            cwd,
            user: call.user.clone(),
            tag: keep.then(|| kept::label(&config, req.tag.as_deref())),
            stdin_null: null_stdin,
            ..ExecRequest::default()
        };
        if keep {
            let k = engine
                .agent_call(eid, |a| {
                    let r = r.clone();
                    async move { a.exec_kept(&r).await }
                })
                .await?;
            (None, k.input, k.events, u32::try_from(k.info.pid).ok())
        } else {
            let (input, events) = engine.exec_stream(eid, r).await?.into_split();
            (None, input, events, None)
        }
    };
    let new = NewProc {
        config,
        tag: req.tag,
        session,
        input,
        pid,
        kept: keep,
    };
    let proc = reg.add(&call.sb.id, new);
    let rx = proc.subscribe();
    let busy = call.st.activity.busy(&call.sb.id);
    let gone = super::procs::vmm_gone(states, eid.clone());
    reg.pump(call.sb.id.clone(), proc.clone(), (events, 0), gone, busy);
    Ok((proc, rx))
}

fn clamp(v: u32, default: u16) -> u16 {
    match v {
        0 => default,
        v => u16::try_from(v).unwrap_or(u16::MAX),
    }
}

/// `cmd`, or `/bin/sh` for a `/bin/bash` the guest does not have. That
/// the guest has bash is asked once (a stat in the guest, a round trip
/// the SDK's every command paid) and kept in `agents` until a start of it
/// fails; that it has not is asked each time.
async fn program<E: Engine>(call: &Call<E>, eid: &SandboxId, agents: &Agents, cmd: &str) -> String {
    if cmd != "/bin/bash" || agents.has_bash(&call.sb.id) {
        return cmd.to_owned();
    }
    if call.st.engine.stat(eid, cmd).await.is_err() {
        return "/bin/sh".into();
    }
    agents.set_bash(&call.sb.id, true);
    cmd.to_owned()
}

/// The event stream of a Start or Connect call: `start` with the pid,
/// the output, the end.
fn follow(
    pid: u32,
    rx: mpsc::Receiver<Out>,
    deadline: Option<tokio::time::Instant>,
    every: Duration,
) -> Response {
    let first = ProcessEvent::Start(StartEvent { pid });
    let rest = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let ev = match rx.recv().await {
            Some(Out::Data(d)) => Ok(ProcessEvent::Data(d)),
            Some(Out::End(e)) => {
                return Some((Ok(ProcessEvent::End(e)), (rx, true)));
            }
            Some(Out::Lost(why)) => Err(RpcError::new(Code::Unavailable, why)),
            None => Err(RpcError::new(
                Code::Unavailable,
                "the process's output was dropped: the stream did not read it in time",
            )),
        };
        let done = ev.is_err();
        Some((ev, (rx, done)))
    });
    let events = futures_util::stream::once(async { Ok(first) })
        .chain(rest)
        .map(|ev| ev.map(|event| EventResponse { event }));
    let ping = EventResponse {
        event: ProcessEvent::Keepalive(Empty {}),
    };
    stream_reply(events, deadline, Some((ping, every)))
}

async fn connect_rpc<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(reg): Reg,
    Extension(agents): Ags,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: SelectRequest = connect::stream_request(&body)?;
        let proc = kept::find(&call, &reg, &agents, &req.process).await?;
        Ok::<_, RpcError>((call.deadline, proc.pid, proc.subscribe()))
    };
    match run.await {
        Ok((deadline, pid, rx)) => follow(pid, rx, deadline, connect::keepalive(&headers)),
        Err(e) => stream_error(e),
    }
}

async fn list<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(reg): Reg,
    Extension(agents): Ags,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let mut processes = reg.list(&call.sb.id);
        processes.extend(kept::unregistered(&call, &reg, &agents).await);
        Ok::<_, RpcError>(ListResponse { processes })
    };
    unary_reply(run.await)
}

async fn send_input<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(reg): Reg,
    Extension(agents): Ags,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: SendInputRequest = connect::unary_request(&body)?;
        let proc = kept::find(&call, &reg, &agents, &req.process).await?;
        if proc.stdin_closed.load(Ordering::SeqCst) {
            return Err(RpcError::new(Code::FailedPrecondition, "stdin is closed"));
        }
        let mut input = proc.input.lock().await;
        let w = input
            .as_mut()
            .ok_or_else(|| RpcError::new(Code::FailedPrecondition, "stdin is closed"))?;
        w.write_stdin(req.input.bytes()).await?;
        Ok(Empty {})
    };
    connect::unary(&headers, run).await
}

async fn close_stdin<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(reg): Reg,
    Extension(agents): Ags,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: SelectRequest = connect::unary_request(&body)?;
        let proc = kept::find(&call, &reg, &agents, &req.process).await?;
        if proc.session.is_some() {
            return Err(RpcError::new(
                Code::FailedPrecondition,
                "a PTY has no stdin to close",
            ));
        }
        // An empty STDIN keeps the connection for signals (a kept
        // command's agent always has it).
        let eof = proc.kept || {
            let eid = call.wake().await?;
            agents.has(&call, &eid, feature::STDIN_EOF).await
        };
        let mut input = proc.input.lock().await;
        if eof {
            if let Some(w) = input.as_mut()
                && !proc.stdin_closed.swap(true, Ordering::SeqCst)
            {
                w.end_stdin().await?;
            }
        } else if let Some(mut w) = input.take() {
            w.close_stdin().await?;
        }
        Ok(Empty {})
    };
    connect::unary(&headers, run).await
}

async fn send_signal<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(reg): Reg,
    Extension(agents): Extension<Arc<Agents>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: SendSignalRequest = connect::unary_request(&body)?;
        let proc = kept::find(&call, &reg, &agents, &req.process).await?;
        let eid = call.wake().await?;
        let sig = if req.signal == Signal::Term && agents.has(&call, &eid, feature::SIGNAL).await {
            Sig::Term
        } else {
            Sig::from(req.signal)
        };
        signal(&st, &eid, &proc, sig).await?;
        Ok(Empty {})
    };
    connect::unary(&headers, run).await
}

/// What a signal request becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    /// KILL: SIGKILL to a piped command, SIGTERM to a TTY session.
    Kill,
    /// SIGKILL however the process runs.
    HardKill,
    /// SIGTERM through the agent's SIGNAL request.
    Term,
    Invalid,
}

impl From<Signal> for Sig {
    /// Without the agent's SIGNAL request, SIGTERM is KILL.
    fn from(s: Signal) -> Self {
        match s {
            Signal::Kill => Self::HardKill,
            Signal::Term => Self::Kill,
            Signal::Unspecified => Self::Invalid,
        }
    }
}

/// Sends `sig` to a process (see the module docs for what reaches it).
async fn signal<E: Engine>(
    st: &Shared<E>,
    eid: &SandboxId,
    proc: &Proc,
    sig: Sig,
) -> Result<(), RpcError> {
    if sig == Sig::Invalid {
        return Err(RpcError::invalid("signal must be SIGTERM or SIGKILL"));
    }
    proc.signalled.store(true, Ordering::SeqCst);
    if let (Some(session), Sig::HardKill) = (&proc.session, sig) {
        return Ok(st.engine.kill_session(eid, session).await?);
    }
    let mut input = proc.input.lock().await;
    let w = input.as_mut().ok_or_else(|| {
        RpcError::new(
            Code::FailedPrecondition,
            "the command's stdin was closed; it can no longer be signalled",
        )
    })?;
    match sig {
        Sig::Term => Ok(w.signal(15).await?),
        _ => Ok(w.kill().await?),
    }
}

async fn update<E: Engine>(
    State(st): State<Shared<E>>,
    Extension(reg): Reg,
    Extension(agents): Ags,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let call = Call::new(&st, &headers)?;
        let req: UpdateRequest = connect::unary_request(&body)?;
        let proc = kept::find(&call, &reg, &agents, &req.process).await?;
        let Some(size) = req.pty.and_then(|p| p.size) else {
            return Ok(Empty {});
        };
        if proc.session.is_none() {
            return Err(RpcError::new(
                Code::FailedPrecondition,
                "the process has no PTY",
            ));
        }
        if let Some(w) = proc.input.lock().await.as_mut() {
            w.resize(clamp(size.rows, 24), clamp(size.cols, 80)).await?;
        }
        Ok(Empty {})
    };
    connect::unary(&headers, run).await
}
