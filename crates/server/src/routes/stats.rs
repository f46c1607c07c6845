//! `GET /sandboxes/{id}/stats`: what a sandbox uses now, read on the host
//! without waking it ([`crate::metrics::procfs`]): its VMM's CPU (percent
//! of one CPU, over the interval since the previous call, or over a
//! quarter second on the first call) and resident memory, and the disk
//! its files take. A cold, stopped or lost sandbox has no VMM: CPU and
//! memory are 0.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use bhatti_engine::engine::Engine;
use bhatti_engine::state::SandboxState;
use serde::Serialize;

use super::{RouteDef, Verb, user};
use crate::extract::{ApiPath, ApiResult, AuthUser};
use crate::metrics::procfs;
use crate::service::engine_id;
use crate::state::Shared;

/// How long the first call of a sandbox samples its CPU.
pub const FIRST_SAMPLE: Duration = Duration::from_millis(250);

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Get,
            "/sandboxes/{id}/stats",
            "CPU, memory and disk a sandbox uses now (does not wake it)",
            get(stats::<E>),
        )
        .reply::<SandboxStats>(200),
    ]
}

/// A sandbox's resource use.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SandboxStats {
    /// CPU of the VMM process, percent of one CPU (may exceed 100 with
    /// several vCPUs), since the previous call (first call: over 250 ms).
    pub cpu_percent: f64,
    /// Resident memory of the VMM process (0 without one).
    pub memory_bytes: u64,
    /// Memory configured for the guest.
    pub memory_mb: u32,
    /// Bytes the sandbox's files (disk, config drive, snapshot) take on
    /// the host's disk.
    pub disk_used_bytes: u64,
    /// `running`, `stopped` or `unknown`.
    pub status: String,
    /// `hot`, `warm` or `cold`.
    pub thermal: String,
    /// When this was read (RFC 3339, UTC, milliseconds).
    pub sampled_at: String,
}

/// The VMM pid of a sandbox whose VMM holds its memory (hot, warm).
async fn vmm_pid<E: Engine>(st: &Shared<E>, sb: &bhatti_store::sandboxes::Sandbox) -> Option<u32> {
    let info = st.engine.status(&engine_id(sb).ok()?).await.ok()?;
    matches!(info.state, SandboxState::Hot | SandboxState::Warm)
        .then_some(info.pid)
        .flatten()
}

/// CPU percent and RSS of `pid`, sampling twice when the sandbox has no
/// recent reading. The RSS is reported even when no percentage can be
/// worked out (another reader's first reading came in between): then the
/// CPU figure is 0.
async fn vmm_usage<E: Engine>(st: &Shared<E>, id: &str, pid: u32) -> Option<(f64, u64)> {
    let samples = &st.metrics.cpu_samples;
    let u = procfs::usage(pid).ok()?;
    if let Some(p) = samples.percent(id, Instant::now(), u.cpu_seconds) {
        return Some((p, u.rss_bytes));
    }
    tokio::time::sleep(FIRST_SAMPLE).await;
    let u = procfs::usage(pid).ok()?;
    let p = samples.percent(id, Instant::now(), u.cpu_seconds);
    Some((p.unwrap_or(0.0), u.rss_bytes))
}

async fn stats<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SandboxStats>> {
    let sb = st.find(&u, &id)?;
    Ok(Json(sample(&st, &sb).await?))
}

/// What sandbox `sb` uses now (does not wake it).
pub async fn sample<E: Engine>(
    st: &Shared<E>,
    sb: &bhatti_store::sandboxes::Sandbox,
) -> Result<SandboxStats, bhatti_store::StoreError> {
    let usage = match vmm_pid(st, sb).await {
        Some(pid) => vmm_usage(st, &sb.id, pid).await,
        None => None,
    };
    if usage.is_none() {
        st.metrics.cpu_samples.forget(&sb.id);
    }
    let (cpu_percent, memory_bytes) = usage.unwrap_or((0.0, 0));
    let dir = st.settings.data_dir.join("sandboxes").join(&sb.id);
    let disk_used_bytes = tokio::task::spawn_blocking(move || procfs::disk_used(&dir))
        .await
        .unwrap_or(0);
    // The state now (the row may lag the engine by a mirror step).
    let sb = st.store.sandbox_by_id(&sb.id)?;
    Ok(SandboxStats {
        cpu_percent,
        memory_bytes,
        memory_mb: sb.memory_mb,
        disk_used_bytes,
        status: sb.status.as_str().to_owned(),
        thermal: sb.thermal.as_str().to_owned(),
        sampled_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    })
}
