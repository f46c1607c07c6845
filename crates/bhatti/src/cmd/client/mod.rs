//! Client commands: everything but `serve` and `user`, talking to the
//! daemon's HTTP API (see the API contract in the design docs).
//!
//! Each command family has its own module with its clap arguments and an
//! async `run`. [`run`] builds a current-thread tokio runtime for the
//! command (the shell adds a blocking reader for stdin; nothing else runs
//! concurrently). Exit statuses of client commands are decided here: 0
//! success, 1 an API or connection error (returned as `Err`), and for
//! `exec` and `shell` the remote command's own code ([`Outcome::Exit`]).

mod args;
mod completion;
mod config;
mod console;
mod events;
mod exec;
mod files;
mod http;
mod image;
mod ports;
mod render;
mod sandbox;
mod secret;
mod sessions;
mod setup;
mod shell;
mod snapshot;
mod template;
mod terminal;
mod version;
mod volume;

use clap::Subcommand;

use args::Global;
use config::Settings;
use http::Api;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a sandbox and wait until it is running; prints
    /// `ID<TAB>NAME<TAB>IP` (the whole sandbox with --json).
    Create(sandbox::CreateArgs),
    /// List your sandboxes, newest first: ID, NAME, STATUS, IP (more
    /// columns with -o wide).
    #[command(visible_alias = "ls")]
    List(sandbox::ListArgs),
    /// Show one sandbox.
    Inspect(args::Target),
    /// Rename a sandbox; change whether it is kept hot, its TTL or labels.
    Edit(sandbox::EditArgs),
    /// Destroy sandboxes (their volumes survive).
    #[command(visible_alias = "rm")]
    Destroy(sandbox::DestroyArgs),
    /// Make sandboxes from one snapshot of a sandbox taken now; prints
    /// the children: ID, NAME, IP.
    Fork(snapshot::ForkArgs),
    /// Stop a sandbox: snapshot it to disk and end its VM.
    Stop(args::Target),
    /// Start a stopped sandbox from its snapshot.
    Start(args::Target),
    /// Run a command in a sandbox, streaming its output; exits with its code.
    Exec(exec::ExecArgs),
    /// Open an interactive shell (reattaches to a running one by default).
    #[command(visible_alias = "sh")]
    Shell(shell::ShellArgs),
    /// List the sessions (commands and shells) of a sandbox: ID, COMMAND,
    /// RUNNING, ATTACHED (more columns with -o wide).
    Ps(sessions::PsArgs),
    /// Kill a session of a sandbox.
    KillSession(sessions::KillArgs),
    /// Read, write or list files in a sandbox.
    File(files::FileArgs),
    /// Print the last lines of a sandbox's serial console (agent lines,
    /// kernel warnings and errors; does not wake it).
    Console(console::ConsoleArgs),
    /// List TCP ports listening in a sandbox (or in all your running
    /// sandboxes), with their proxy URLs and host ports.
    Ports(ports::PortsArgs),
    /// Publish a sandbox port under a public alias (no API key needed).
    Publish(ports::PublishArgs),
    /// Stop publishing a sandbox port.
    Unpublish(ports::UnpublishArgs),
    /// Manage named snapshots of sandboxes (`create --snapshot` restores
    /// one into a new sandbox).
    Snapshot(snapshot::SnapshotArgs),
    /// Import container images and save sandboxes as images (`create
    /// --image NAME` boots one).
    Image(image::ImageArgs),
    /// Manage persistent volumes.
    Volume(volume::VolumeArgs),
    /// Manage secrets (encrypted at rest, injected only when asked for).
    Secret(secret::SecretArgs),
    /// Manage sandbox templates.
    Template(template::TemplateArgs),
    /// Configure the daemon URL and API key (~/.bhatti/config.yaml).
    Setup(setup::SetupArgs),
    /// Print live events of your sandboxes (created, state changes,
    /// ports, destroyed), one line each, until Ctrl-C.
    Events(events::EventsArgs),
    /// Print the client and server versions.
    Version(version::VersionArgs),
    /// Print a shell completion script.
    Completion(completion::CompletionArgs),
}

/// How a successful command wants the process to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Exit with this status (the remote command's code, or 1 for a
    /// partial failure already reported on stderr).
    Exit(i32),
}

/// What every API-talking command gets: the client and the output mode.
#[derive(Debug)]
pub struct Ctx {
    pub api: Api,
    pub json: bool,
}

impl Ctx {
    pub fn new(g: &Global) -> anyhow::Result<Ctx> {
        let settings = Settings::load(&g.layer())?;
        Ok(Ctx {
            api: Api::new(&settings)?,
            json: g.json,
        })
    }

    /// Deletes each of `names` under `collection` in turn. A failure is
    /// reported on stderr and the rest go on (exit 1 at the end); a daemon
    /// that is not running ends it at once (it would fail them all the
    /// same way: say it once). Prints `done(name)` for each deleted, or
    /// with `--json` one array of `{key: name, "status": status}` and
    /// `{key: name, "error": …}`.
    pub async fn delete_each(
        &self,
        collection: &str,
        names: &[String],
        (key, status): (&str, &str),
        done: impl Fn(&str) -> String,
    ) -> anyhow::Result<Outcome> {
        use serde_json::{Value, json};
        let mut results = Vec::new();
        let mut failed = 0;
        for n in names {
            let res = self
                .api
                .json(reqwest::Method::DELETE, &[collection, n], None)
                .await;
            match res {
                Ok(_) => {
                    if !self.json {
                        println!("{}", done(n));
                    }
                    results.push(json!({key: n, "status": status}));
                }
                Err(e) => {
                    if matches!(e, http::HttpError::NotRunning { .. }) {
                        return Err(e.into());
                    }
                    eprintln!("bhatti: {n}: {e}");
                    failed += 1;
                    results.push(json!({key: n, "error": e.to_string()}));
                }
            }
        }
        if self.json {
            render::json(&Value::Array(results));
        }
        Ok(if failed == 0 {
            Outcome::Success
        } else {
            Outcome::Exit(1)
        })
    }
}

pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(dispatch(cmd));
    // Do not wait for a blocking stdin read the shell may have left behind.
    rt.shutdown_background();
    match outcome? {
        Outcome::Success => Ok(()),
        Outcome::Exit(code) => {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            std::process::exit(code)
        }
    }
}

async fn dispatch(cmd: ClientCommand) -> anyhow::Result<Outcome> {
    use ClientCommand as C;
    match cmd {
        C::Create(a) => sandbox::create(a).await,
        C::List(a) => sandbox::list(a).await,
        C::Inspect(a) => sandbox::inspect(a).await,
        C::Edit(a) => sandbox::edit(a).await,
        C::Destroy(a) => sandbox::destroy(a).await,
        C::Fork(a) => snapshot::fork(a).await,
        C::Stop(a) => sandbox::lifecycle(a, "stop").await,
        C::Start(a) => sandbox::lifecycle(a, "start").await,
        C::Exec(a) => exec::run(a).await,
        C::Shell(a) => shell::run(a).await,
        C::Ps(a) => sessions::ps(a).await,
        C::KillSession(a) => sessions::kill(a).await,
        C::File(a) => files::run(a).await,
        C::Console(a) => console::run(a).await,
        C::Ports(a) => ports::ports(a).await,
        C::Publish(a) => ports::publish(a).await,
        C::Unpublish(a) => ports::unpublish(a).await,
        C::Snapshot(a) => snapshot::run(a).await,
        C::Image(a) => image::run(a).await,
        C::Volume(a) => volume::run(a).await,
        C::Secret(a) => secret::run(a).await,
        C::Template(a) => template::run(a).await,
        C::Setup(a) => setup::run(a).await,
        C::Events(a) => events::run(a).await,
        C::Version(a) => version::run(a).await,
        C::Completion(a) => completion::run(a),
    }
}
