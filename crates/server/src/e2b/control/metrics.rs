//! `GET /sandboxes/{id}/metrics?start=&end=`: the sandbox's samples
//! within `[start, end]` (unix seconds, either open) from the daemon's
//! usage history ([`crate::history`]: every 5 s while it runs, the last
//! hour, kept in memory), oldest first; when the history has none of the
//! sandbox (just made, or paused since the daemon started), one sample
//! taken now
//! ([`crate::routes::stats::sample`], which never wakes a sandbox).
//! `GET /sandboxes/metrics`: the latest sample of each sandbox named.
//!
//! Mapping: `cpuUsedPct` is the VMM's CPU over the interval since the
//! previous sample, in percent of the sandbox's vCPUs (E2B's meaning);
//! `memUsed` the VMM's resident memory, `memTotal` the guest's memory;
//! `diskUsed` the host bytes of the sandbox's files, `diskTotal` its root
//! disk's size; `memCache` 0. A cold or stopped sandbox reports 0 CPU
//! and memory (its memory is on disk).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::Sandbox;
use serde::Serialize;

use super::auth::Caller;
use super::error::ControlResult;
use super::model::disk_mb;
use super::sandboxes::find;
use crate::routes::stats::SandboxStats;
use crate::state::Shared;

/// One sample, as the SDK's `SandboxMetric`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    timestamp: String,
    timestamp_unix: i64,
    cpu_count: u32,
    cpu_used_pct: f64,
    mem_used: u64,
    mem_total: u64,
    mem_cache: u64,
    disk_used: u64,
    disk_total: u64,
}

async fn sample<E: Engine>(st: &Shared<E>, sb: &Sandbox) -> ControlResult<Metric> {
    let s = crate::routes::stats::sample(st, sb).await?;
    Ok(metric(sb, s, crate::state::now_unix()))
}

/// A sample of `sb` taken at `at` (unix seconds), as E2B shows it.
fn metric(sb: &Sandbox, s: SandboxStats, at: i64) -> Metric {
    let cpus = sb.cpus.max(1);
    Metric {
        timestamp: s.sampled_at,
        timestamp_unix: at,
        cpu_count: cpus,
        cpu_used_pct: (s.cpu_percent / f64::from(cpus) * 100.0).round() / 100.0,
        mem_used: s.memory_bytes,
        mem_total: u64::from(sb.memory_mb) << 20,
        mem_cache: 0,
        disk_used: s.disk_used_bytes,
        disk_total: disk_mb(sb) << 20,
    }
}

/// `start` and `end` of a metrics query (unix seconds).
#[derive(Debug, serde::Deserialize)]
pub struct Range {
    start: Option<i64>,
    end: Option<i64>,
}

/// `GET /sandboxes/{id}/metrics`.
pub async fn one<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> ControlResult<Json<Vec<Metric>>> {
    let sb = find(&st, &user, &id)?;
    let kept = st.history.range(&sb.id, None, None);
    if kept.is_empty() {
        return Ok(Json(vec![sample(&st, &sb).await?]));
    }
    let within = |at: i64| range.start.is_none_or(|s| at >= s) && range.end.is_none_or(|e| at <= e);
    Ok(Json(
        kept.into_iter()
            .filter(|p| within(p.at))
            .map(|p| metric(&sb, p.stats, p.at))
            .collect(),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct Ids {
    sandbox_ids: Option<String>,
}

/// `GET /sandboxes/metrics?sandbox_ids=a,b`: the caller's sandboxes among
/// those named (others are left out, as unknown ones are).
pub async fn many<E: Engine>(
    State(st): State<Shared<E>>,
    Caller(user): Caller,
    Query(q): Query<Ids>,
) -> ControlResult<Json<serde_json::Value>> {
    let mut out = BTreeMap::new();
    let ids = q.sandbox_ids.unwrap_or_default();
    for id in ids
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .take(100)
    {
        if let Ok(sb) = find(&st, &user, id) {
            let last = st.history.range(&sb.id, None, None).pop();
            let m = match last {
                Some(p) => metric(&sb, p.stats, p.at),
                None => sample(&st, &sb).await?,
            };
            out.insert(sb.id.clone(), m);
        }
    }
    Ok(Json(serde_json::json!({ "sandboxes": out })))
}
