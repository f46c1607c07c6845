//! The guest's clock under TCG.
//!
//! A microVM has no HPET and no ACPI PM timer, and under TCG the kernel's
//! TSC calibration against the PIT fails more often than not (the emulated
//! CPU is too slow for the calibration loop). The guest then falls back to
//! `refined-jiffies`: every clock read and every timer in the guest has a
//! 4 ms granularity, and `sleep 0.001` sleeps 4 ms.
//!
//! TCG's guest TSC counts at the host's TSC rate (QEMU reads the host's
//! TSC for it), so when the host's TSC is constant and does not stop, the
//! launcher tells the guest its frequency (`tsc_early_khz=`, with
//! `tsc=reliable`: there is no other clock to check it against) and the
//! guest keeps a nanosecond TSC clock. Under KVM the guest uses kvm-clock
//! and none of this applies.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the host's TSC is counted against its monotonic clock. The
/// error is the skew between the two pairs of reads (well under a
/// microsecond), so 50 ms gives a few parts per million.
const MEASURE: Duration = Duration::from_millis(50);

/// The host's TSC frequency in kHz, when the host's TSC is usable as the
/// guest's clock (flags `constant_tsc` and `nonstop_tsc`); measured once
/// per process (50 ms) and cached.
pub fn host_tsc_khz() -> Option<u64> {
    static KHZ: OnceLock<Option<u64>> = OnceLock::new();
    *KHZ.get_or_init(|| {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
        tsc_is_invariant(&cpuinfo).then(measure_khz).flatten()
    })
}

/// Whether the first CPU's flags in `cpuinfo` say its TSC ticks at one
/// rate and keeps ticking in idle states.
pub fn tsc_is_invariant(cpuinfo: &str) -> bool {
    let Some(flags) = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags").and_then(|r| r.split_once(':')))
        .map(|(_, f)| f)
    else {
        return false;
    };
    let has = |name: &str| flags.split_whitespace().any(|f| f == name);
    has("tsc") && has("constant_tsc") && has("nonstop_tsc")
}

#[cfg(target_arch = "x86_64")]
fn measure_khz() -> Option<u64> {
    let read = || {
        // SAFETY: RDTSC only reads the time-stamp counter; it has no
        // memory effects, and x86_64 always has it.
        let c = unsafe { core::arch::x86_64::_rdtsc() };
        (Instant::now(), c)
    };
    let (t0, c0) = read();
    std::thread::sleep(MEASURE);
    let (t1, c1) = read();
    let nanos = t1.duration_since(t0).as_nanos();
    let cycles = u128::from(c1.checked_sub(c0)?);
    let khz = u64::try_from(cycles * 1_000_000 / nanos.max(1)).ok()?;
    // Anything outside 100 MHz - 10 GHz is a broken reading, not a clock.
    (100_000..=10_000_000).contains(&khz).then_some(khz)
}

#[cfg(not(target_arch = "x86_64"))]
fn measure_khz() -> Option<u64> {
    None
}
