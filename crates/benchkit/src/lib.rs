//! Helpers shared by the bench binaries (`benches/*.rs`, `harness = false`)
//! of every crate: collect per-operation samples, print p50/p95/p99 and the
//! p50 ratio against a baseline measured in the same run, and check a
//! target without failing the run (benches report, they never assert).
//!
//! Set `BENCH_QUICK=1` to cut iteration counts (a smoke run).

use std::time::{Duration, Instant};

/// Percentiles of one measured operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Summary {
    /// Summarises samples (nearest-rank percentiles). `None` when empty.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Self {
            n: v.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            min: v[0],
            max: v[v.len() - 1],
        })
    }

    /// p50 of `self` divided by p50 of `baseline`.
    pub fn ratio(&self, baseline: &Summary) -> f64 {
        self.p50.as_secs_f64() / baseline.p50.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Bytes per second at the p50 time of one operation moving `bytes`.
    pub fn throughput(&self, bytes: u64) -> f64 {
        bytes as f64 / self.p50.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// True when `BENCH_QUICK` is set to anything but `0`.
pub fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0")
}

/// `full` normally, `quick` under `BENCH_QUICK`.
pub fn iterations(full: usize, quick_n: usize) -> usize {
    if quick() { quick_n } else { full }
}

/// Runs `op` `samples` times after `samples / 10` warm-up runs; each sample
/// is the mean time of one call over a batch of `batch` calls (use a batch
/// above 1 for operations far below a microsecond).
pub fn measure(samples: usize, batch: usize, mut op: impl FnMut()) -> Summary {
    let batch = batch.max(1);
    for _ in 0..(samples / 10).max(1) * batch {
        op();
    }
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        let start = Instant::now();
        for _ in 0..batch {
            op();
        }
        out.push(start.elapsed() / batch as u32);
    }
    Summary::of(&out).expect("at least one sample is always taken")
}

/// Prints one result line; with a baseline, also the p50 ratio.
pub fn report(name: &str, s: &Summary, baseline: Option<&Summary>) {
    let ratio = baseline
        .map(|b| format!("  ratio {:.2}x", s.ratio(b)))
        .unwrap_or_default();
    println!(
        "{name:<40} n={:<6} p50 {:>10.2?} p95 {:>10.2?} p99 {:>10.2?}{ratio}",
        s.n, s.p50, s.p95, s.p99
    );
}

/// Prints a result line with throughput at p50 for `bytes` per operation.
pub fn report_throughput(name: &str, s: &Summary, bytes: u64, baseline: Option<&Summary>) {
    report(name, s, baseline);
    println!("{:<40} {}", "", human_rate(s.throughput(bytes)));
}

/// `1.23 GB/s`-style rate (decimal units).
pub fn human_rate(bytes_per_sec: f64) -> String {
    const UNITS: [&str; 4] = ["B/s", "KB/s", "MB/s", "GB/s"];
    let mut v = bytes_per_sec;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

/// Prints whether a figure meets its target; never fails the run.
pub fn target(what: &str, value: f64, op: Target, goal: f64) {
    let (met, sym) = match op {
        Target::AtMost => (value <= goal, "<="),
        Target::AtLeast => (value >= goal, ">="),
    };
    println!(
        "  => {what} = {value:.3} (target {sym} {goal}): {}",
        if met { "met" } else { "MISSED" }
    );
}

/// Direction of a target.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtMost,
    AtLeast,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&v).expect("non-empty");
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(
            (s.min, s.max, s.n),
            (Duration::from_millis(1), Duration::from_millis(100), 100)
        );
        assert!(Summary::of(&[]).is_none());
        let one = Summary::of(&[Duration::from_secs(1)]).expect("one");
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
    }

    #[test]
    fn ratio_and_rate() {
        let a = Summary::of(&[Duration::from_micros(30)]).expect("a");
        let b = Summary::of(&[Duration::from_micros(10)]).expect("b");
        assert!((a.ratio(&b) - 3.0).abs() < 1e-9);
        assert_eq!(human_rate(1_500_000_000.0), "1.50 GB/s");
        assert_eq!(human_rate(999.0), "999.00 B/s");
    }
}
