//! Resource use read from the host: a VMM process's resident memory
//! (`/proc/<pid>/statm`) and CPU time (`/proc/<pid>/stat`, all its
//! threads), and the bytes a directory takes on disk (allocated blocks,
//! so sparse files count what they use).

use std::path::Path;
use std::time::{Duration, Instant};

/// Why a reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has an unexpected format")]
    Format { path: String },
}

/// A process's resource use now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
}

fn read(path: &str) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Resident memory and CPU time of process `pid`.
pub fn usage(pid: u32) -> Result<Usage, ProcError> {
    let statm = format!("/proc/{pid}/statm");
    let stat = format!("/proc/{pid}/stat");
    let pages = parse_statm(&read(&statm)?).ok_or(ProcError::Format { path: statm })?;
    let ticks = parse_stat(&read(&stat)?).ok_or(ProcError::Format { path: stat })?;
    let page = u64::try_from(rustix::param::page_size()).unwrap_or(4096);
    let hz = rustix::param::clock_ticks_per_second().max(1);
    #[allow(clippy::cast_precision_loss)] // ticks fit an f64 for millennia
    let cpu_seconds = ticks as f64 / hz as f64;
    Ok(Usage {
        rss_bytes: pages.saturating_mul(page),
        cpu_seconds,
    })
}

/// Resident pages: the second field of `statm`.
pub fn parse_statm(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` (clock ticks) of a `stat` line: fields 14 and 15,
/// counted after the command name, which is in parentheses and may hold
/// spaces and parentheses itself.
pub fn parse_stat(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let mut f = after.split_whitespace();
    // After ")": field 3 (state) is the first; utime is field 14.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Bytes allocated on disk under `dir` (files, not following symlinks);
/// 0 if it does not exist.
pub fn disk_used(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            }
            total = total.saturating_add(md.blocks().saturating_mul(512));
        }
    }
    total
}

/// The last CPU reading of each sandbox, to turn CPU time into a
/// percentage over the interval since the previous reading, and the last
/// percentage worked out (several readers share it: the history sampler,
/// `/metrics`, `/stats`).
#[derive(Debug, Default)]
pub struct CpuSamples(std::sync::Mutex<std::collections::HashMap<String, Reading>>);

/// When, how much CPU time, and the percentage it gave (if any yet).
type Reading = (Instant, f64, Option<f64>);

/// Readings closer together than this say too little.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

impl CpuSamples {
    /// Records `cpu_seconds` of `key` read at `at`; returns the CPU
    /// percentage (100 = one CPU busy) since the previous reading, if it
    /// is at least [`MIN_INTERVAL`] old; for a reading closer to the
    /// previous one (another reader just took one), the percentage that
    /// reading gave, if any.
    pub fn percent(&self, key: &str, at: Instant, cpu_seconds: f64) -> Option<f64> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let prev = map.get(key).copied();
        match prev {
            Some((t, _, last)) if at.saturating_duration_since(t) < MIN_INTERVAL => last,
            Some((t, c, _)) => {
                let wall = at.saturating_duration_since(t).as_secs_f64();
                let pct = ((cpu_seconds - c).max(0.0) / wall * 100.0).max(0.0);
                map.insert(key.to_owned(), (at, cpu_seconds, Some(pct)));
                Some(pct)
            }
            None => {
                map.insert(key.to_owned(), (at, cpu_seconds, None));
                None
            }
        }
    }

    /// Forgets `key` (its VMM is gone: the next reading starts afresh).
    pub fn forget(&self, key: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statm_and_stat() {
        assert_eq!(parse_statm("3000 1250 300 1 0 900 0\n"), Some(1250));
        let stat = "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    734 266 0 0 20 0 3 0 100 1000000 250 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(1000));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let u = usage(std::process::id()).expect("own usage");
        assert!(u.rss_bytes > 0 && u.cpu_seconds >= 0.0, "{u:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), vec![1u8; 64 << 10]).expect("write");
        assert!(disk_used(dir.path()) >= 64 << 10);
        assert_eq!(disk_used(&dir.path().join("none")), 0);
    }

    #[test]
    fn cpu_percent_over_the_interval() {
        let s = CpuSamples::default();
        let t = Instant::now();
        assert_eq!(s.percent("a", t, 1.0), None, "first reading");
        assert_eq!(s.percent("a", t + MIN_INTERVAL / 2, 1.0), None, "too soon");
        let p = s.percent("a", t + Duration::from_secs(2), 2.0);
        assert!(p.is_some_and(|p| (p - 50.0).abs() < 1e-9), "{p:?}");
        // Another reader right after: the same percentage, not nothing.
        let again = s.percent("a", t + Duration::from_secs(2) + MIN_INTERVAL / 2, 2.0);
        assert_eq!(again, p);
    }
}
