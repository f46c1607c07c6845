//! Prometheus metrics (`GET /metrics`, [`crate::routes::metrics`]), kept
//! with the `prometheus-client` crate: one [`Registry`] per daemon, no
//! global state.
//!
//! | metric | type | labels |
//! |--------|------|--------|
//! | `bhatti_http_requests_total` | counter | `method`, `route` (the matched route template, e.g. `/sandboxes/{id}/exec`; `/e2b/*` for the E2B face; `unmatched` for unknown paths), `status` |
//! | `bhatti_http_request_duration_seconds` | histogram | `method`, `route`, `class` (`2xx`…`5xx`): until the response head (a stream's body is not counted) |
//! | `bhatti_sandbox_create_duration_seconds` | histogram | `source` (`boot`, `snapshot`): successful creates, request to usable |
//! | `bhatti_sandbox_wake_duration_seconds` | histogram | `from` (`warm`, `cold`, `stopped`): wakes that had work to do |
//! | `bhatti_snapshot_duration_seconds` | histogram | — : named snapshots taken |
//! | `bhatti_exec_duration_seconds` | histogram | — : buffered (JSON) execs, start to exit |
//! | `bhatti_sandboxes` | gauge | `status`, `thermal` (every combination, zeros included) |
//! | `bhatti_vmm_resident_memory_bytes` | gauge | `sandbox`, `name`: each live VMM's RSS |
//! | `bhatti_vmm_cpu_seconds_total` | counter | `sandbox`, `name`: each live VMM's user + system CPU time |
//! | `bhatti_event_subscribers` | gauge | — : open `GET /events` streams |
//! | `bhatti_errors_total` | counter | `kind`: error replies of the native API by [`ApiError::kind`](crate::error::ApiError::kind) (`bad_request`, `not_found`, …; the 5xx kinds `internal`, `bad_gateway` — a guest or its agent unreachable or answering nonsense —, `unavailable`, `gateway_timeout`, `insufficient_storage` are the daemon's or the guest's failures) |
//! | `bhatti_agent_reconnects_total` | counter | `kind`: `session` (a terminal reattached to a running agent session over `GET /sandboxes/{id}/ws`, e.g. the web UI after a dropped connection), `redial` (an agent operation that found the connection refused, woke the sandbox again and dialled anew: [`Engine::agent_redials`]) |
//!
//! The first six and the errors are recorded as things happen (the HTTP
//! ones by [`track`], a middleware on every route, which reads an error's
//! kind from the response, [`crate::error::ErrorKind`]); the rest are
//! read at scrape time ([`scrape`]: the store's rows, the engine's VMM
//! pids and redial count, `/proc`, the session reattaches counted by the
//! shell route).
//!
//! # Threads, locks, I/O
//! Instruments are atomics (label families behind the crate's `RwLock`,
//! held for a lookup). A scrape reads the store, the engine's list (never
//! waits for a sandbox lock) and two small `/proc` files per live VMM,
//! then fills the per-scrape snapshot under a mutex held only to swap it.

mod collect;
pub mod procfs;

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bhatti_engine::engine::Engine;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::{AppState, Shared};

pub use collect::Snapshot;

/// Why metrics could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("encoding metrics: {0}")]
    Encode(#[from] std::fmt::Error),
    #[error("reading sandboxes: {0}")]
    Store(#[from] bhatti_store::StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DurationLabels {
    method: String,
    route: String,
    class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FromLabel {
    from: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The daemon's instruments and registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<DurationLabels>,
    create_seconds: Histograms<SourceLabel>,
    wake_seconds: Histograms<FromLabel>,
    snapshot_seconds: Histogram,
    exec_seconds: Histogram,
    errors: Family<KindLabel, Counter>,
    /// Terminals reattached to a running session (read at scrape time).
    pub reattaches: Counter,
    snapshot: std::sync::Arc<collect::Collected>,
    /// CPU readings of `GET /sandboxes/{id}/stats`.
    pub cpu_samples: procfs::CpuSamples,
}

fn fast() -> Histogram {
    // 1 ms … ~60 s.
    Histogram::new(exponential_buckets(0.001, 2.5, 13))
}

fn slow() -> Histogram {
    // 50 ms … ~100 s.
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every instrument at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bhatti");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds: Histograms<DurationLabels> = Family::new_with_constructor(fast);
        let create_seconds: Histograms<SourceLabel> = Family::new_with_constructor(slow);
        let wake_seconds: Histograms<FromLabel> = Family::new_with_constructor(fast);
        let snapshot_seconds = slow();
        let exec_seconds = fast();
        let errors = Family::<KindLabel, Counter>::default();
        let snapshot = std::sync::Arc::new(collect::Collected::default());
        let r = &mut registry;
        r.register("http_requests", "API requests answered", requests.clone());
        r.register(
            "http_request_duration_seconds",
            "API request latency until the response head",
            request_seconds.clone(),
        );
        r.register(
            "sandbox_create_duration_seconds",
            "Successful sandbox creates, request to usable",
            create_seconds.clone(),
        );
        r.register(
            "sandbox_wake_duration_seconds",
            "Wakes of warm, cold or stopped sandboxes",
            wake_seconds.clone(),
        );
        r.register(
            "snapshot_duration_seconds",
            "Named snapshots taken",
            snapshot_seconds.clone(),
        );
        r.register(
            "exec_duration_seconds",
            "Buffered execs, start to exit",
            exec_seconds.clone(),
        );
        r.register("errors", "Error replies of the API by kind", errors.clone());
        r.register_collector(Box::new(snapshot.clone()));
        Self {
            registry,
            requests,
            request_seconds,
            create_seconds,
            wake_seconds,
            snapshot_seconds,
            exec_seconds,
            errors,
            reattaches: Counter::default(),
            snapshot,
            cpu_samples: procfs::CpuSamples::default(),
        }
    }

    /// A create that succeeded after `took` (`from_snapshot`: a restore).
    pub fn created(&self, took: Duration, from_snapshot: bool) {
        let source = if from_snapshot { "snapshot" } else { "boot" };
        self.create_seconds
            .get_or_create(&SourceLabel { source })
            .observe(took.as_secs_f64());
    }

    /// A wake from `from` (`warm`, `cold`, `stopped`) that took `took`.
    pub fn woke(&self, from: &'static str, took: Duration) {
        self.wake_seconds
            .get_or_create(&FromLabel { from })
            .observe(took.as_secs_f64());
    }

    /// A named snapshot that took `took`.
    pub fn snapshotted(&self, took: Duration) {
        self.snapshot_seconds.observe(took.as_secs_f64());
    }

    /// A buffered exec that took `took`.
    pub fn exec(&self, took: Duration) {
        self.exec_seconds.observe(took.as_secs_f64());
    }

    /// An error reply of kind `kind` ([`crate::error::ApiError::kind`]).
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.request_seconds
            .get_or_create(&DurationLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                class,
            })
            .observe(took.as_secs_f64());
    }

    /// The registry in the Prometheus text format (0.0.4), or OpenMetrics
    /// with `openmetrics`, after installing `snap` as what the scrape saw.
    pub fn render(&self, snap: Snapshot, openmetrics: bool) -> Result<String, MetricsError> {
        self.snapshot.set(snap);
        let mut out = String::new();
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        }
        Ok(out)
    }
}

/// Middleware of every route: counts the request and its latency by
/// method, matched route template and status, and an error reply by its
/// kind.
pub async fn track<E: Engine>(State(st): State<Shared<E>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = route_of(&req);
    let resp = next.run(req).await;
    st.metrics
        .request(&method, &route, resp.status().as_u16(), start.elapsed());
    if let Some(kind) = resp.extensions().get::<crate::error::ErrorKind>() {
        st.metrics.error(kind.0);
    }
    resp
}

/// The `from` label of a wake of a sandbox in `state` (`None`: it was
/// hot, nothing to wake).
pub fn wake_from(state: bhatti_engine::state::SandboxState) -> Option<&'static str> {
    use bhatti_engine::state::SandboxState as S;
    match state {
        S::Warm => Some("warm"),
        S::Cold => Some("cold"),
        S::Stopped => Some("stopped"),
        S::Hot | S::Destroyed => None,
    }
}

/// The `route` label of a request: its matched route template. Nested
/// services set none: the E2B face counts as one route, `/e2b/*`; any
/// other path matched no route (`unmatched`; never the raw path, which
/// would make a label per URL).
fn route_of(req: &Request) -> String {
    if let Some(m) = req.extensions().get::<MatchedPath>() {
        return m.as_str().to_owned();
    }
    let path = req.uri().path();
    if path == "/e2b" || path.starts_with("/e2b/") {
        "/e2b/*".to_owned()
    } else {
        "unmatched".to_owned()
    }
}

/// What a scrape reads now (see the module doc).
pub async fn scrape<E: Engine>(st: &AppState<E>) -> Result<Snapshot, MetricsError> {
    collect::snapshot(st).await
}

#[cfg(test)]
mod tests;
