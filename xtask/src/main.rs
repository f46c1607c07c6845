//! xtask — builds the guest images (kernel, lohar, rootfs tiers) and runs
//! the test suite with them.
//!
//! Everything built lands outside the clone, in `$BHATTI_CACHE_DIR`
//! (default `/var/cache/bhatti`): `images/` holds the artifacts and
//! `manifest.json`; `kernel/` the extracted source and build tree;
//! `work/` staging directories. Each artifact is rebuilt only when the hash
//! of its inputs (its cache key, recorded in the manifest) changes.

mod cache;
mod kernel;
mod lohar;
mod prereq;
mod rootfs;
mod run;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(about = "Build bhatti's guest images and run its tests")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the guest kernel and rootfs images (cached).
    Images {
        /// Which rootfs tier(s) to build, comma-separated (`all`: every
        /// tier, `dev` included).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "busybox")]
        tier: Vec<TierArg>,
        /// Build only the kernel.
        #[arg(long)]
        kernel_only: bool,
        /// Rebuild even when the cache key matches.
        #[arg(long)]
        force: bool,
    },
    /// Build lohar as a static binary.
    Lohar,
    /// Build what the VM tests need, then run the workspace tests
    /// (nextest when installed). Extra arguments go to the test runner.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TierArg {
    /// busybox + lohar (the VM tests').
    Busybox,
    /// Debian minbase with a few tools (users' default).
    Minimal,
    /// `minimal` + zsh, tmux, Node.js, build tools, … (large).
    Dev,
    /// `minimal` + a Jupyter kernel and the code-interpreter server (E2B's
    /// `code-interpreter-v1`).
    Interpreter,
    /// Every tier (`dev` included).
    All,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cache = cache::Cache::from_env()?;
    match cli.command {
        Cmd::Images {
            tier,
            kernel_only,
            force,
        } => {
            kernel::build(&cache, force)?;
            if !kernel_only {
                let lohar = lohar::build()?;
                // The engine injects this one into imported images.
                lohar::install(&lohar, &cache.images)?;
                let wanted = |t| tier.contains(&t) || tier.contains(&TierArg::All);
                if wanted(TierArg::Busybox) {
                    rootfs::busybox::build(&cache, &lohar, force)?;
                }
                if wanted(TierArg::Minimal) {
                    rootfs::minimal::build(&cache, &lohar, force)?;
                }
                if wanted(TierArg::Dev) {
                    rootfs::dev::build(&cache, &lohar, force)?;
                }
                if wanted(TierArg::Interpreter) {
                    rootfs::interpreter::build(&cache, &lohar, force)?;
                }
            }
            cache.print_summary()?;
        }
        Cmd::Lohar => {
            lohar::build()?;
        }
        Cmd::Test { args } => test::run(&cache, &args)?,
    }
    Ok(())
}
