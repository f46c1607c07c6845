//! Client commands: everything but `serve` and `user`, talking to the
//! daemon's HTTP API (../shared/API.md).

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Print the client version.
    Version,
}

pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Version => {
            println!("bhatti {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
