//! `bhatti serve` as a library call: [`check_prerequisites`], then
//! [`Daemon::start`] (data dir, store, secret key, engine, recovery),
//! then [`Daemon::serve`] (HTTP + thermal manager until the shutdown
//! future resolves), which ends with [`shutdown`]: every VM that
//! still has a VMM is snapshotted to disk, so that the next start brings
//! every sandbox back (recovery) with its memory and data.
//!
//! # Threads, locks, I/O
//! Runs on the caller's tokio runtime: the HTTP listener ([`crate::listen`]:
//! an accept loop and a task per connection, with header timeouts and a
//! cap on connections that have not sent a request), one thermal task,
//! one expiry task ([`crate::service::lifetime`]), one usage sampler
//! ([`crate::history`]), one host-port scanner
//! task ([`crate::hostports`]; it closes every
//! forward when the stop comes), and the engine's own helpers. Start-up
//! and shutdown are sequential.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bhatti_engine::driver::Driver;
use bhatti_engine::drivers::AnyDriver;
use bhatti_engine::engine::Engine;
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_engine::network::{Egress, NatConfig};
use bhatti_engine::sandbox::{EngineConfig, VmEngine};
use bhatti_engine::state::SandboxState;
use bhatti_store::Store;

use crate::config::ServerConfig;
use crate::secrets::SecretBox;
use crate::state::{AppState, Settings};

/// The engine the daemon runs: its driver is the one the config's
/// `engine:` names ([`driver`]).
pub type DaemonEngine = VmEngine<AnyDriver>;

/// How long a graceful shutdown waits for in-flight requests.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The command that installs what the host needs.
pub const SETUP_COMMAND: &str = "scripts/setup.sh";

/// Why the daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Prerequisite(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another daemon is running on this data directory (it holds {0})")]
    Locked(std::path::PathBuf),
    #[error(transparent)]
    Store(#[from] bhatti_store::StoreError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretError),
    #[error("starting the engine: {0}")]
    Engine(#[from] bhatti_engine::engine::EngineError),
    #[error("recovery: {0}")]
    Recovery(#[from] crate::recovery::RecoveryError),
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// The image tier a config names.
fn tier(cfg: &ServerConfig) -> Result<Tier, DaemonError> {
    cfg.image
        .parse()
        .map_err(|e: bhatti_engine::image::ImageError| DaemonError::Prerequisite(e.to_string()))
}

/// The VM driver the config's `engine:` names (`auto`: the first built-in
/// driver this host can run).
pub fn driver(cfg: &ServerConfig) -> Result<AnyDriver, DaemonError> {
    AnyDriver::select(cfg.engine.as_str())
        .map_err(|e| DaemonError::Prerequisite(format!("engine {}: {e}", cfg.engine.as_str())))
}

/// Checks what the daemon needs from the host (root, what its driver
/// needs, the images); the error names the command that fixes it.
pub fn check_prerequisites(cfg: &ServerConfig, images: &ImagePaths) -> Result<(), DaemonError> {
    if !rustix::process::geteuid().is_root() {
        return Err(DaemonError::Prerequisite(
            "bhatti serve needs root (network namespaces, TAP devices); run it with sudo".into(),
        ));
    }
    driver(cfg)?
        .check_host()
        .map_err(|e| DaemonError::Prerequisite(format!("{e} (or run `{SETUP_COMMAND}`)")))?;
    let t = tier(cfg)?;
    images
        .kernel()
        .and_then(|_| images.rootfs(t))
        .map_err(|e| DaemonError::Prerequisite(format!("{e} (or run `{SETUP_COMMAND}`)")))?;
    Ok(())
}

/// A started daemon, not yet serving.
#[derive(Debug)]
pub struct Daemon {
    pub state: Arc<AppState<DaemonEngine>>,
    pub listener: tokio::net::TcpListener,
    /// What the listener asks of every connection.
    pub limits: crate::listen::Limits,
    pub recovery: crate::recovery::Report,
    /// What a graceful stop does to running sandboxes.
    pub on_shutdown: crate::config::OnShutdown,
    /// The data dir's lock ([`crate::datadir::lock`]), held until the
    /// daemon is gone.
    pub lock: std::fs::File,
}

impl Daemon {
    /// Opens everything and recovers the sandboxes of the data dir.
    pub async fn start(cfg: &ServerConfig, images: ImagePaths) -> Result<Self, DaemonError> {
        cfg.validate()?;
        let dir = &cfg.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::DataDir {
            path: dir.clone(),
            source,
        })?;
        crate::datadir::secure(dir)?;
        let lock = crate::datadir::lock(dir)?;
        let store = Arc::new(Store::open(&cfg.state_db())?);
        let secrets = SecretBox::load_or_create(&cfg.age_key())?;
        let egress = match cfg.egress {
            crate::config::Egress::None => Egress::None,
            crate::config::Egress::Nat => Egress::Nat(NatConfig {
                outer_veth: format!("{}-up", &cfg.netns[..cfg.netns.len().min(12)]),
                ..NatConfig::default()
            }),
        };
        let mut engine_cfg = EngineConfig::new(dir.clone(), images, &cfg.netns);
        engine_cfg.network.egress = egress;
        engine_cfg.restore_creates = cfg.restore_creates;
        let engine = VmEngine::start(driver(cfg)?, engine_cfg).await?;
        let recovery = crate::recovery::recover(&engine, &store, &secrets).await?;
        tracing::info!(?recovery, "recovered sandboxes");
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| DaemonError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let port = listener
            .local_addr()
            .map_or(cfg.listen.port(), |a| a.port());
        let settings = Settings {
            data_dir: dir.clone(),
            default_image: tier(cfg)?,
            public_domain: cfg.public_domain.clone(),
            listen_port: port,
            warm_after: Duration::from_secs(cfg.warm_after_secs),
            cold_after: Duration::from_secs(cfg.cold_after_secs),
            tick: Duration::from_secs(cfg.tick_secs),
            host_port_bind: cfg.host_port_bind,
            metrics_auth: cfg.metrics_auth,
        };
        let state = Arc::new(AppState::new(Arc::new(engine), store, secrets, settings));
        Ok(Self {
            state,
            listener,
            limits: crate::listen::Limits::from_config(cfg),
            recovery,
            on_shutdown: cfg.on_shutdown,
            lock,
        })
    }

    /// Serves until `stop` resolves, then shuts down gracefully.
    pub async fn serve(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let st = &self.state;
        let mirror = {
            let events = st.engine.subscribe();
            // Whatever changed before the mirror listened.
            st.sync_all().await;
            tokio::spawn(crate::mirror::run(st.clone(), events, stopped(&rx)))
        };
        let thermal = tokio::spawn(crate::thermal::run(st.clone(), stopped(&rx)));
        let expiry = tokio::spawn(crate::service::lifetime::run(st.clone(), stopped(&rx)));
        let history = tokio::spawn(crate::history::run(st.clone(), stopped(&rx)));
        let host_ports = {
            let events = st.engine.subscribe();
            tokio::spawn(crate::hostports::scan::run(
                st.clone(),
                events,
                stopped(&rx),
            ))
        };
        let preparations = {
            let (state, stop) = (st.clone(), stopped(&rx));
            tokio::spawn(async move {
                tokio::select! {
                    () = state.engine.run_preparations() => {}
                    () = stop => {}
                }
            })
        };
        let app = crate::app::router(st.clone());
        let server = crate::listen::serve(self.listener, app, self.limits, stopped(&rx));
        tokio::spawn(signal_stop(stop, tx, self.state.clone()));
        // In-flight requests get DRAIN to finish (a streaming exec or a
        // proxied stream may never end on its own).
        let mut rx3 = rx.clone();
        let drained = async move {
            let _ = rx3.wait_for(|v| *v).await;
            tokio::time::sleep(DRAIN).await;
        };
        tokio::select! {
            () = server => {}
            () = drained => {
                tracing::warn!("requests still running after {DRAIN:?}; shutting down anyway");
            }
        };
        let _ = thermal.await;
        let _ = expiry.await;
        let _ = history.await;
        let _ = host_ports.await;
        let _ = preparations.await;
        match self.on_shutdown {
            crate::config::OnShutdown::Snapshot => shutdown(&self.state).await,
            crate::config::OnShutdown::Keep => {
                // The VMs run on; the next daemon adopts them.
                self.state.engine.release_all().await;
                tracing::info!("left running sandboxes running for the next daemon");
            }
        }
        let _ = mirror.await;
        Ok(())
    }
}

/// Resolves once `rx` says stop.
fn stopped(rx: &tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Waits for `stop`, then tells every task; event streams first, as they
/// never end on their own.
async fn signal_stop<E: Engine>(
    stop: impl Future<Output = ()>,
    tx: tokio::sync::watch::Sender<bool>,
    state: Arc<AppState<E>>,
) {
    stop.await;
    state.events.close();
    let _ = tx.send(true);
}

/// Snapshots every VM that has a VMM (hot → warm → cold) and records it
/// (`on_shutdown: snapshot`).
pub async fn shutdown<E: Engine>(state: &AppState<E>) {
    for info in state.engine.list().await {
        if !info.state.has_vmm() {
            continue;
        }
        let id = info.id.clone();
        let mut res = Ok(());
        if info.state == SandboxState::Hot {
            res = state.engine.pause(&id).await;
        }
        if res.is_ok() {
            res = state.engine.freeze(&id).await;
        }
        match res {
            Ok(()) => {
                tracing::info!(sandbox = %id, "snapshotted for shutdown");
                if let Err(e) = state.sync_state(&id).await {
                    tracing::warn!(sandbox = %id, error = %e, "recording shutdown snapshot");
                }
            }
            Err(e) => tracing::warn!(sandbox = %id, error = %e, "shutdown snapshot failed"),
        }
    }
}

/// Runs the daemon to completion on its own runtime (what `bhatti serve`
/// calls): logging, prerequisite checks, start, serve until SIGTERM or
/// SIGINT, graceful shutdown.
pub fn run(cfg: &ServerConfig) -> Result<(), DaemonError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let images = ImagePaths::from_env();
    check_prerequisites(cfg, &images)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Serve)?;
    rt.block_on(async {
        let daemon = Daemon::start(cfg, images).await?;
        tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(), "bhatti serving");
        daemon.serve(stop_signal()).await
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        }
        _ => {
            tracing::warn!("no signal handlers; stopping only when killed");
            std::future::pending::<()>().await;
        }
    }
}
