//! Builds the `Command` of a user command: merged environment, program
//! looked up on the merged `PATH`, working directory, and the identity
//! switch (uid/gid; std clears supplementary groups when it sets the uid
//! as root). Pure construction: spawning goes through [`crate::children`].

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::agent::Agent;
use crate::env::{self, LookupError};

/// Why a user command cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("chdir {dir}: {msg}")]
    Chdir { dir: String, msg: String },
}

/// Prepares `argv` (non-empty) to run as a user command.
pub fn user_command(
    agent: &Agent,
    argv: &[String],
    req_env: &BTreeMap<String, String>,
    cwd: Option<&str>,
) -> Result<Command, CommandError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(LookupError::NotFound(String::new()).into());
    };
    let id = &agent.identity;
    let vars = env::merge(id, &agent.config.env, req_env);
    let cwd: Option<PathBuf> = match cwd.filter(|c| !c.is_empty()) {
        Some(c) => Some(PathBuf::from(c)),
        None => id.default_cwd.clone(),
    };
    if let Some(dir) = &cwd {
        let problem = match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("not a directory".to_owned()),
            Err(e) => Some(crate::handlers::io_text(&e)),
        };
        if let Some(msg) = problem {
            return Err(CommandError::Chdir {
                dir: dir.display().to_string(),
                msg,
            });
        }
    }
    let resolved = env::lookup(
        program,
        vars.get("PATH").map(String::as_str),
        cwd.as_deref(),
    )?;
    let mut cmd = Command::new(resolved);
    cmd.arg0(program)
        .args(args)
        .env_clear()
        .envs(&vars)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if let Some((uid, gid)) = id.switch_to {
        cmd.uid(uid).gid(gid);
    }
    Ok(cmd)
}

/// Makes the child get SIGKILL when the agent dies (test mode, TTY
/// sessions only: it needs a `pre_exec` hook, which costs piped execs
/// std's fast `posix_spawn` path, about 0.3 ms each).
pub fn die_with_agent(cmd: &mut Command) {
    // SAFETY: runs in the forked child before exec; prctl is
    // async-signal-safe and the closure allocates nothing. The signal is
    // tied to the forking thread, the runtime thread, which lives as long
    // as the agent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
}
