//! `bhatti completion bash|zsh|fish`: prints a completion script.

use clap::{Args, CommandFactory, ValueEnum};

use super::Outcome;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// Shell to generate the script for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(a: CompletionArgs) -> anyhow::Result<Outcome> {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = crate::Cli::command();
    clap_complete::generate(shell, &mut cmd, "bhatti", &mut std::io::stdout());
    Ok(Outcome::Success)
}
