//! lohar's connection handling on arbitrary bytes: the real server (auth,
//! first-frame dispatch, the handlers' payload decoding and validation, the
//! connection's frame reader) serves each input on a Unix socket, in
//! process, in a scratch working directory.
//!
//! lohar is a binary crate, so its modules are compiled into this target by
//! path, as `main.rs` declares them (`init` and `testmode`, the two start-up
//! modes, are left out). A module added to lohar that the others use must be
//! added here too.
//!
//! Safety: lohar runs commands and writes files. `fuzz_input::classify`
//! (shared with lohar's stable smoke test) drops every input whose request
//! would start a process or name a path outside the scratch directory.
//! The one process the target starts is its own fixed TTY session `init`
//! (raw-mode `cat`), so inputs can attach to it and exercise the session
//! relay (STDIN, RESIZE, KILL, scrollback, displacement).
//! Checked here: no panic anywhere (libfuzzer-sys aborts on a panic in any
//! thread, including lohar's tasks), the agent closes every connection, the
//! reply is a clean frame stream, and a malformed request gets its error.
#![no_main]
#![allow(dead_code, unused_imports, unused_macros, clippy::all)]

#[path = "../../crates/lohar/src/agent.rs"]
mod agent;
#[path = "../../crates/lohar/src/children.rs"]
mod children;
#[path = "../../crates/lohar/src/command.rs"]
mod command;
#[path = "../../crates/lohar/src/conn.rs"]
mod conn;
#[path = "../../crates/lohar/src/env.rs"]
mod env;
#[path = "../../crates/lohar/tests/fuzz_input/mod.rs"]
mod fuzz_input;
#[path = "../../crates/lohar/src/handlers/mod.rs"]
mod handlers;
#[path = "../../crates/lohar/src/log.rs"]
mod log;
#[path = "../../crates/lohar/src/pty.rs"]
mod pty;
#[path = "../../crates/lohar/src/ring.rs"]
mod ring;
#[path = "../../crates/lohar/src/rtc.rs"]
mod rtc;
#[path = "../../crates/lohar/src/run_as.rs"]
mod run_as;
#[path = "../../crates/lohar/src/server.rs"]
mod server;
#[path = "../../crates/lohar/src/sessions.rs"]
mod sessions;
#[path = "../../crates/lohar/src/spawn.rs"]
mod spawn;
#[path = "../../crates/lohar/src/users.rs"]
mod users;
#[path = "../../crates/lohar/src/vsock.rs"]
mod vsock;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bhatti_proto::config::GuestConfig;
use bhatti_proto::frame::{self, ParseResult};
use bhatti_proto::messages::{FileReadRequest, decode_json};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use agent::{Agent, Limits};
use env::Identity;
use server::{Listener, Port};

/// A connection that lohar has not closed after this long is a hang.
const HANG: Duration = Duration::from_secs(30);
/// Inputs between two resets of the scratch directory (writes accumulate).
const RESET_EVERY: u64 = 20_000;

struct Harness {
    rt: tokio::runtime::Runtime,
    agent: Arc<Agent>,
    sock: PathBuf,
    scratch: PathBuf,
    runs: AtomicU64,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("lohar-fuzz-{}", std::process::id()));
        let scratch = base.join("cwd");
        let _ = std::fs::remove_dir_all(&base);
        fuzz_input::populate(&scratch).expect("scratch dir");
        // Relative request paths resolve here (classify allows no other).
        std::env::set_current_dir(&scratch).expect("chdir");
        let sock = base.join("control.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(async { tokio::net::UnixListener::bind(&sock) })
            .expect("bind");
        let identity = Identity {
            switch_to: None,
            home: scratch.display().to_string(),
            user: None,
            default_cwd: None,
        };
        let limits = Limits {
            max_write_bytes: 1 << 20,
            ..Limits::default()
        };
        let agent = Arc::new(Agent::new(None, GuestConfig::default(), identity, limits));
        children::start_reaper().expect("reaper");
        rt.spawn(server::serve(
            agent.clone(),
            vec![(Port::Control, Listener::Unix(listener))],
        ));
        Harness {
            rt,
            agent,
            sock,
            scratch,
            runs: AtomicU64::new(0),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(expect) = fuzz_input::classify(data) else {
        return;
    };
    let h = harness();
    if h.runs.fetch_add(1, Ordering::Relaxed) % RESET_EVERY == RESET_EVERY - 1 {
        reset(&h.scratch);
    }
    let reply = h.rt.block_on(async {
        ensure_session(&h.agent);
        exchange(&h.sock, data).await
    });
    if let Err(e) = fuzz_input::check(expect, &reply) {
        panic!("{e}");
    }
    window(data);
});

/// Empties the scratch directory (it stays lohar's working directory) and
/// fills it again.
fn reset(scratch: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(scratch) {
        for e in entries.flatten() {
            let path = e.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    fuzz_input::populate(scratch).expect("scratch dir");
}

/// (Re)starts the session "init" when an input ended it (EXEC_KILL, the
/// idle timer of a detached session).
fn ensure_session(agent: &Arc<Agent>) {
    let id = sessions::INIT_SESSION;
    if agent.sessions.get(id).is_some_and(|s| s.is_running()) {
        return;
    }
    agent.sessions.remove(id);
    handlers::session::start_init(agent, fuzz_input::SESSION_SCRIPT).expect("start the session");
}

/// Sends `data`, half-closes, and reads until lohar closes.
async fn exchange(sock: &PathBuf, data: &[u8]) -> Vec<u8> {
    let s = UnixStream::connect(sock).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    let send = async {
        // lohar may close early (malformed input): a failed write is fine.
        let _ = w.write_all(data).await;
        let _ = w.shutdown().await;
    };
    let mut reply = Vec::new();
    let recv = r.read_to_end(&mut reply);
    let both = async { tokio::join!(send, recv) };
    match tokio::time::timeout(HANG, both).await {
        Ok(_) => reply,
        Err(_) => panic!("lohar kept the connection open for {HANG:?}"),
    }
}

/// file_read's line window over the input itself, cut at a varying chunk
/// size, for FILE_READ_REQ parameters the input carries.
fn window(data: &[u8]) {
    let ParseResult::Ok(p) = frame::try_parse(data) else {
        return;
    };
    let payload = &data[p.payload_start..p.payload_start + p.payload_len];
    let Ok(req) = decode_json::<FileReadRequest>("fuzz", payload) else {
        return;
    };
    let Some(mut w) = handlers::file_read::LineWindow::new(req.offset, req.limit, req.max_bytes)
    else {
        return;
    };
    let body = &data[p.total_len..];
    let step = usize::from(data[0] % 16) + 1;
    let mut sent = 0usize;
    for chunk in body.chunks(step) {
        let (start, end, done) = w.feed(chunk);
        assert!(
            start <= end && end <= chunk.len(),
            "window out of the chunk"
        );
        sent += end - start;
        if done {
            break;
        }
    }
    if let Some(max) = req.max_bytes.filter(|m| *m > 0) {
        assert!(sent as u64 <= max as u64, "window sent past max_bytes");
    }
}
