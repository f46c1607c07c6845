//! [`AppState`]: everything a request handler needs, shared behind an
//! `Arc` by every request and by the background tasks.
//!
//! # Threads, locks, I/O
//! The store serialises its own queries (one connection behind a mutex,
//! short indexed queries); the engine keeps one lock per sandbox; the
//! rate limiter, activity map and host-port registry hold their mutexes
//! only for an update.
//! `create_lock` (a blocking mutex, never held across an await)
//! serialises a create's quota check and its store transaction, never the
//! VM boot.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bhatti_engine::image::Tier;
use bhatti_store::Store;

use crate::activity::Activity;
use crate::hostports::HostPorts;
use crate::ratelimit::RateLimiter;
use crate::secrets::SecretBox;

/// Settings of a running daemon (from `ServerConfig` plus flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Image tier of sandboxes that do not name one.
    pub default_image: Tier,
    /// Published aliases are served at `<alias>-<tag>.<public_domain>`
    /// (`<alias>-<tag>.localhost:<port>` when none is configured).
    pub public_domain: Option<String>,
    /// The port the API listens on (for URLs handed out).
    pub listen_port: u16,
    pub warm_after: Duration,
    pub cold_after: Duration,
    pub tick: Duration,
    /// The address host-port forwards bind (`None`: off); see
    /// [`crate::hostports`].
    pub host_port_bind: Option<std::net::IpAddr>,
    /// Who may read `GET /metrics`.
    pub metrics_auth: crate::config::MetricsAuth,
}

/// Shared state of the daemon.
#[derive(Debug)]
pub struct AppState<E> {
    pub engine: Arc<E>,
    pub store: Arc<Store>,
    pub secrets: SecretBox,
    pub limiter: RateLimiter,
    pub settings: Settings,
    pub activity: Arc<Activity>,
    /// Forwards of listening guest ports to host ports.
    pub host_ports: HostPorts,
    pub started: Instant,
    /// Image import jobs ([`crate::service::import`]).
    pub imports: Arc<crate::service::import::Jobs>,
    /// Live sandbox events ([`crate::events`]).
    pub events: Arc<crate::events::Events>,
    /// Prometheus instruments ([`crate::metrics`]).
    pub metrics: crate::metrics::Metrics,
    pub(crate) create_lock: std::sync::Mutex<()>,
    /// Sandboxes being created ([`crate::service::creating`]).
    pub(crate) creating: crate::service::creating::Creating,
    /// Usage samples of running sandboxes ([`crate::history`]).
    pub history: crate::history::History,
    /// Locks of creates with an `Idempotency-Key` in flight.
    pub(crate) idempotency: crate::service::idempotent::Keys,
}

/// What handlers receive.
pub type Shared<E> = Arc<AppState<E>>;

impl<E> AppState<E> {
    pub fn new(engine: Arc<E>, store: Arc<Store>, secrets: SecretBox, settings: Settings) -> Self {
        let events = Arc::new(crate::events::Events::new(&store).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "events: sandboxes that exist are not announced");
            crate::events::Events::empty()
        }));
        Self {
            engine,
            store,
            secrets,
            limiter: RateLimiter::new(),
            activity: Arc::new(Activity::new()),
            host_ports: HostPorts::new(settings.host_port_bind).with_events(events.clone()),
            started: Instant::now(),
            imports: Arc::new(crate::service::import::Jobs::new(&settings.data_dir)),
            events,
            metrics: crate::metrics::Metrics::new(),
            create_lock: std::sync::Mutex::new(()),
            idempotency: crate::service::idempotent::Keys::default(),
            history: crate::history::History::default(),
            creating: crate::service::creating::Creating::default(),
            settings,
        }
    }
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
