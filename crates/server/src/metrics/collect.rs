//! The metrics read at scrape time: sandboxes by state (the store's
//! rows), each live VMM's RSS and CPU time (the engine's pids, `/proc`),
//! event subscribers, agent reconnects. [`snapshot`] reads them; [`Collected`], registered
//! as a collector, encodes the last snapshot installed.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::{Status, Thermal};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::MetricsError;
use super::procfs;
use crate::state::AppState;

/// One live VMM.
#[derive(Debug, Clone, PartialEq)]
pub struct Vmm {
    pub sandbox: String,
    pub name: String,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// What one scrape read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Live sandboxes by (status, thermal); every combination a sandbox
    /// can be in is present.
    pub sandboxes: BTreeMap<(&'static str, &'static str), i64>,
    pub vmms: Vec<Vmm>,
    pub subscribers: i64,
    /// Agent reconnects by kind (`session`, `redial`).
    pub reconnects: [(&'static str, u64); 2],
}

/// The (status, thermal) pairs a live sandbox can be in.
const STATES: [(Status, Thermal); 5] = [
    (Status::Running, Thermal::Hot),
    (Status::Running, Thermal::Warm),
    (Status::Running, Thermal::Cold),
    (Status::Stopped, Thermal::Cold),
    (Status::Unknown, Thermal::Cold),
];

/// Reads what a scrape reports.
pub async fn snapshot<E: Engine>(st: &AppState<E>) -> Result<Snapshot, MetricsError> {
    let mut snap = Snapshot::default();
    for (s, t) in STATES {
        snap.sandboxes.insert((s.as_str(), t.as_str()), 0);
    }
    let rows = st.store.list_live_sandboxes()?;
    for sb in &rows {
        *snap
            .sandboxes
            .entry((sb.status.as_str(), sb.thermal.as_str()))
            .or_default() += 1;
    }
    let names: BTreeMap<&str, &str> = rows
        .iter()
        .map(|sb| (sb.id.as_str(), sb.name.as_str()))
        .collect();
    for info in st.engine.list().await {
        let Some(pid) = info.pid else { continue };
        let Ok(usage) = procfs::usage(pid) else {
            continue;
        };
        snap.vmms.push(Vmm {
            sandbox: info.id.as_str().to_owned(),
            name: names
                .get(info.id.as_str())
                .copied()
                .unwrap_or("")
                .to_owned(),
            rss_bytes: usage.rss_bytes,
            cpu_seconds: usage.cpu_seconds,
        });
    }
    snap.subscribers = i64::try_from(st.events.subscribers()).unwrap_or(i64::MAX);
    snap.reconnects = [
        ("session", st.metrics.reattaches.get()),
        ("redial", st.engine.agent_redials()),
    ];
    Ok(snap)
}

/// The collector of the last [`Snapshot`].
#[derive(Debug, Default)]
pub struct Collected(Mutex<Snapshot>);

impl Collected {
    pub fn set(&self, snap: Snapshot) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = snap;
    }
}

impl Collector for Collected {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let gauge = ConstGauge::new(0i64);
        let mut m = enc.encode_descriptor(
            "sandboxes",
            "Live sandboxes by status and thermal state",
            None,
            gauge.metric_type(),
        )?;
        for ((status, thermal), n) in &snap.sandboxes {
            let labels = [("status", *status), ("thermal", *thermal)];
            ConstGauge::new(*n).encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "vmm_resident_memory_bytes",
            "Resident memory of each live VMM process",
            None,
            gauge.metric_type(),
        )?;
        for v in &snap.vmms {
            let labels = [("sandbox", v.sandbox.as_str()), ("name", v.name.as_str())];
            let rss = i64::try_from(v.rss_bytes).unwrap_or(i64::MAX);
            ConstGauge::new(rss).encode(m.encode_family(&labels)?)?;
        }
        let counter = ConstCounter::new(0.0f64);
        let mut m = enc.encode_descriptor(
            "vmm_cpu_seconds",
            "User and system CPU time of each live VMM process",
            None,
            counter.metric_type(),
        )?;
        for v in &snap.vmms {
            let labels = [("sandbox", v.sandbox.as_str()), ("name", v.name.as_str())];
            ConstCounter::new(v.cpu_seconds).encode(m.encode_family(&labels)?)?;
        }
        let m = enc.encode_descriptor(
            "event_subscribers",
            "Open GET /events streams",
            None,
            gauge.metric_type(),
        )?;
        ConstGauge::new(snap.subscribers).encode(m)?;
        let mut m = enc.encode_descriptor(
            "agent_reconnects",
            "Reconnects to guest agents: terminals reattached, operations redialled",
            None,
            counter.metric_type(),
        )?;
        for (kind, n) in snap.reconnects {
            ConstCounter::new(n).encode(m.encode_family(&[("kind", kind)])?)?;
        }
        Ok(())
    }
}
