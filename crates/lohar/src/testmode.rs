//! Test mode: the whole protocol on Unix sockets, no root, no VM.
//!
//! Environment: `LOHAR_SOCK` and `LOHAR_FWD_SOCK` (required), `LOHAR_TOKEN`
//! (require this AUTH token), `LOHAR_CONFIG` (a `config.json` supplying the
//! sandbox env, init script and, without `LOHAR_TOKEN`, the token),
//! `LOHAR_ETC` (directory of the `passwd` and `group` files that request
//! users are looked up in; default `/etc`), `LOHAR_CONSOLE_INPUT` (a FIFO
//! read for identify lines as the console is in a VM; only the token,
//! environment and connection steps apply, see [`crate::identify`] — its
//! result line goes to the log), `LOHAR_KEPT_LIMITS` (`running,exited,
//! retain_secs`: the kept-exec limits of [`Limits`], for tests of their
//! bounds). Commands run as the current
//! user with its `HOME` and working directory unless a request or the
//! config's `exec_user` names a user: a root lohar switches to it, any
//! other runs only its own uid (see [`crate::run_as`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bhatti_proto::config::GuestConfig;
use tokio::net::UnixListener;

use crate::agent::{Agent, Limits};
use crate::env::Identity;
use crate::server::{self, Listener, Port};

/// Why test mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestModeError {
    #[error("test mode needs {0} (the {1} socket path)")]
    MissingVar(&'static str, &'static str),
    #[error("cannot read LOHAR_CONFIG {path}: {msg}")]
    Config { path: String, msg: String },
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Startup(String),
}

pub fn run() -> ExitCode {
    match start() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::log!("{e}");
            ExitCode::from(1)
        }
    }
}

fn start() -> Result<(), TestModeError> {
    let control = var_path("LOHAR_SOCK", "control")?;
    let forward = var_path("LOHAR_FWD_SOCK", "forward")?;
    let config = match std::env::var("LOHAR_CONFIG") {
        Ok(path) => load_config(&path)?,
        Err(_) => GuestConfig::default(),
    };
    let token = match std::env::var("LOHAR_TOKEN") {
        Ok(t) if !t.is_empty() => Some(t.into_bytes()),
        _ if !config.token.is_empty() => Some(config.token.clone().into_bytes()),
        _ => None,
    };
    let identity = Identity {
        switch_to: None,
        home: std::env::var("HOME").unwrap_or_else(|_| "/".to_owned()),
        user: std::env::var("USER").ok(),
        default_cwd: None,
    };
    crate::start_workers().map_err(TestModeError::Startup)?;
    let rt = crate::runtime().map_err(|e| TestModeError::Startup(e.to_string()))?;
    rt.block_on(async move {
        crate::children::start_reaping();
        let c = bind(&control)?;
        let f = bind(&forward)?;
        let mut agent = Agent::new(token, config, identity, limits_from_env());
        agent.children_die_with_agent = true;
        agent.sync_after_exec = std::env::var("LOHAR_EXEC_SYNC").map_or(true, |v| v != "0");
        if let Some(etc) = std::env::var_os("LOHAR_ETC").filter(|v| !v.is_empty()) {
            agent.etc = PathBuf::from(etc);
        }
        let agent = Arc::new(agent);
        if let Some(input) = std::env::var_os("LOHAR_CONSOLE_INPUT").filter(|v| !v.is_empty()) {
            let mode = crate::identify::Mode::Test;
            crate::identify::start(agent.clone(), Path::new(&input), mode)
                .map_err(|e| TestModeError::Startup(e.to_string()))?;
        }
        if let Some(script) = agent.config.init.clone().filter(|s| !s.trim().is_empty())
            && let Err(e) = crate::handlers::session::start_init(&agent, &script)
        {
            crate::log!("init session: {e}");
        }
        crate::log!(
            "ready control={} forward={}",
            control.display(),
            forward.display()
        );
        server::serve(agent, vec![(Port::Control, c), (Port::Forward, f)]).await;
        Ok(())
    })
}

fn var_path(name: &'static str, what: &'static str) -> Result<PathBuf, TestModeError> {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(TestModeError::MissingVar(name, what)),
    }
}

fn load_config(path: &str) -> Result<GuestConfig, TestModeError> {
    let err = |msg: String| TestModeError::Config {
        path: path.to_owned(),
        msg,
    };
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| err(e.to_string()))
}

fn bind(path: &Path) -> Result<Listener, TestModeError> {
    // A stale socket from an earlier run would make bind fail.
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        let _ = std::fs::remove_file(path);
    }
    UnixListener::bind(path)
        .map(Listener::Unix)
        .map_err(|source| TestModeError::Listen {
            path: path.display().to_string(),
            source,
        })
}

/// [`Limits::default`] with `LOHAR_KEPT_LIMITS` (`running,exited,
/// retain_secs`) applied when it parses; ignored (logged) otherwise.
fn limits_from_env() -> Limits {
    let mut limits = Limits::default();
    let Ok(v) = std::env::var("LOHAR_KEPT_LIMITS") else {
        return limits;
    };
    let n: Vec<u64> = v.split(',').filter_map(|p| p.trim().parse().ok()).collect();
    match n.as_slice() {
        [running, exited, retain] => {
            limits.max_kept = usize::try_from(*running).unwrap_or(usize::MAX);
            limits.max_kept_exited = usize::try_from(*exited).unwrap_or(usize::MAX);
            limits.kept_retain = std::time::Duration::from_secs(*retain);
        }
        _ => crate::log!("LOHAR_KEPT_LIMITS={v:?}: want running,exited,retain_secs; ignored"),
    }
    limits
}
