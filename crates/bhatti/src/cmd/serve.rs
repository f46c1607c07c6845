//! `bhatti serve`: the daemon. Its configuration, per key highest first:
//! the flags; v1's config file (the first that exists of
//! `--config`/`$BHATTI_CONFIG`, `./config.yaml`, `~/.bhatti/config.yaml`); then
//! `<data_dir>/config.yaml`; then the defaults — see
//! `bhatti_server::config`. The files read and the warnings about v1 keys
//! that mean something else here go to stderr before the daemon starts.
//! Everything else is `bhatti_server::daemon`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use bhatti_server::config::{Egress, EngineKind, Search, ServerConfig, parse_listen};
use clap::{Args, ValueEnum};

/// Flags of `bhatti serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The data directory (state.db, age.key, sandboxes, volumes) [config:
    /// data_dir of the v1 file; default /var/lib/bhatti].
    #[arg(long, env = "BHATTI_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Config file read before <data_dir>/config.yaml (v1 keys accepted);
    /// when it does not exist, the first of ./config.yaml and
    /// ~/.bhatti/config.yaml that does.
    #[arg(long, env = "BHATTI_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the HTTP API: HOST:PORT, or :PORT for all interfaces
    /// [config: listen; default 127.0.0.1:8080].
    #[arg(long, value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// VM driver [config: engine; default auto].
    #[arg(long, value_enum)]
    engine: Option<EngineArg>,
    /// Sandbox egress to the outside world [config: egress; default nat].
    #[arg(long, value_enum)]
    egress: Option<EgressArg>,
    /// Network namespace the daemon owns for sandboxes [config: netns].
    #[arg(long)]
    netns: Option<String>,
    /// Seconds idle before a sandbox is paused (warm) [config: warm_after_secs].
    #[arg(long)]
    warm_after: Option<u64>,
    /// Seconds idle before a sandbox is snapshotted to disk (cold) [config: cold_after_secs].
    #[arg(long)]
    cold_after: Option<u64>,
    /// Thermal manager tick, seconds [config: tick_secs].
    #[arg(long)]
    tick: Option<u64>,
    /// Default image tier of new sandboxes (minimal, busybox, dev) [config: image].
    #[arg(long)]
    image: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineArg {
    Auto,
    Qemu,
    Firecracker,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EgressArg {
    None,
    Nat,
}

/// The data dir `bhatti serve` would use without `--data-dir`: the v1
/// config file's `data_dir:`, else the default (for `bhatti user`).
pub fn data_dir_from_config() -> anyhow::Result<PathBuf> {
    let loaded = ServerConfig::load_search(&Search {
        explicit: std::env::var_os("BHATTI_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        candidates: Search::v1_candidates(),
        data_dir: None,
    })?;
    Ok(loaded.config.data_dir)
}

/// The configuration: files, then flags. Prints the files read and the
/// files' warnings on stderr.
pub fn config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let loaded = ServerConfig::load_search(&Search {
        explicit: args.config.clone().filter(|p| !p.as_os_str().is_empty()),
        candidates: Search::v1_candidates(),
        data_dir: args.data_dir.clone(),
    })?;
    for f in &loaded.files {
        eprintln!("bhatti serve: config {}", f.display());
    }
    for w in &loaded.warnings {
        eprintln!("bhatti serve: warning: {w}");
    }
    let mut cfg = loaded.config;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(e) = args.engine {
        cfg.engine = match e {
            EngineArg::Auto => EngineKind::Auto,
            EngineArg::Qemu => EngineKind::Qemu,
            EngineArg::Firecracker => EngineKind::Firecracker,
        };
    }
    if let Some(e) = args.egress {
        cfg.egress = match e {
            EgressArg::None => Egress::None,
            EgressArg::Nat => Egress::Nat,
        };
    }
    if let Some(n) = &args.netns {
        cfg.netns.clone_from(n);
    }
    if let Some(s) = args.warm_after {
        cfg.warm_after_secs = s;
    }
    if let Some(s) = args.cold_after {
        cfg.cold_after_secs = s;
    }
    if let Some(s) = args.tick {
        cfg.tick_secs = s;
    }
    if let Some(i) = &args.image {
        cfg.image.clone_from(i);
    }
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = config(&args)?;
    bhatti_server::daemon::run(&cfg).context("bhatti serve")
}
