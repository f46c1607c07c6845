//! `bhatti` — the host binary: `bhatti serve` runs the daemon; operator
//! commands (`bhatti user …`) work on the data directory directly; every
//! other subcommand is a client of the daemon's HTTP API.
//!
//! Exit codes are decided in one place ([`exit_code`]): 0 success, 1 an
//! API/connection/runtime error, 2 a usage error (clap's own).

mod cmd;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// MicroVM sandboxes for AI agents and the people who run them.
#[derive(Debug, Parser)]
#[command(name = "bhatti", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (HTTP/WebSocket API, engine, thermal manager).
    Serve(cmd::serve::ServeArgs),
    /// Manage users and their API keys (operator, on the daemon host).
    User {
        /// The daemon's data directory [default: the `data_dir:` of the
        /// config file `bhatti serve` reads ($BHATTI_CONFIG, ./config.yaml,
        /// ~/.bhatti/config.yaml), else /var/lib/bhatti].
        #[arg(long, global = true, env = "BHATTI_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Print machine-readable JSON and nothing else on stdout.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: cmd::user::UserAction,
    },
    /// Print the API's OpenAPI 3.1 document (what `GET /openapi.json`
    /// serves), built from the route table; needs no daemon.
    Openapi,
    /// Client commands (talk to the daemon's API).
    #[command(flatten)]
    Client(cmd::client::ClientCommand),
}

/// Every error the binary reports (API, connection, daemon start-up,
/// runtime) exits 1; clap's usage errors exit 2 on their own.
fn exit_code(_err: &anyhow::Error) -> ExitCode {
    ExitCode::from(1)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::User {
            data_dir,
            json,
            action,
        } => {
            let data_dir = match data_dir {
                Some(d) => d,
                None => cmd::serve::data_dir_from_config()?,
            };
            cmd::user::run(&data_dir, json, action)
        }
        Command::Openapi => {
            let doc = bhatti_server::openapi::document::<bhatti_server::daemon::DaemonEngine>();
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::Client(c) => cmd::client::run(c),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bhatti: {err:#}");
            exit_code(&err)
        }
    }
}
