//! Builds a user command: merged environment, program looked up on the
//! merged `PATH`, working directory, and the identity switch (uid, gid and
//! supplementary groups, [`crate::run_as`] resolves them). Pure
//! construction: a [`UserCommand`] becomes a std `Command` for TTY sessions
//! ([`UserCommand::command`], spawned under [`crate::spawn::with_creds`])
//! or is spawned by [`crate::spawn`] for piped execs; both go through
//! [`crate::children`].

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::agent::Agent;
use crate::env::{self, Creds, Identity, LookupError};

/// Why a user command cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("chdir {dir}: {msg}")]
    Chdir { dir: String, msg: String },
}

/// A user command, ready to spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCommand {
    /// The resolved program.
    pub program: PathBuf,
    /// `argv`, `argv[0]` as the request gave it.
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Credentials to switch to; `None` runs as the agent's own user.
    pub switch_to: Option<Creds>,
}

impl UserCommand {
    /// The same command as a std `Command` (stdio null until the caller
    /// sets it). It carries no credentials: spawn it under
    /// [`crate::spawn::with_creds`] with [`UserCommand::switch_to`].
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if let Some((arg0, args)) = self.argv.split_first() {
            cmd.arg0(arg0).args(args);
        }
        cmd.env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// Prepares `argv` (non-empty) to run as a user command of `id`.
pub fn user_command(
    agent: &Agent,
    id: &Identity,
    argv: &[String],
    req_env: &BTreeMap<String, String>,
    cwd: Option<&str>,
) -> Result<UserCommand, CommandError> {
    let Some(program) = argv.first() else {
        return Err(LookupError::NotFound(String::new()).into());
    };
    let env = env::merge(id, &agent.env(), req_env);
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
                dir: bhatti_proto::text::short(&dir.display().to_string()),
                msg,
            });
        }
    }
    let program = env::lookup(program, env.get("PATH").map(String::as_str), cwd.as_deref())?;
    Ok(UserCommand {
        program,
        argv: argv.to_vec(),
        env,
        cwd,
        switch_to: id.switch_to.clone(),
    })
}

/// Makes the child get SIGKILL when the agent dies (test mode, TTY
/// sessions only: it needs a `pre_exec` hook, i.e. a fork; piped execs
/// use [`crate::spawn`], which has no hook).
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
