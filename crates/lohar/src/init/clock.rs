//! The guest clock when the VM has no RTC (QEMU `-M microvm,rtc=off`
//! under TCG has no clock source that knows the date): the kernel starts
//! at 1970, which breaks TLS certificate checks, file times and the
//! timestamps lohar reports. The config drive's `config.json` was written
//! by the host just before boot, so its mtime is a usable lower bound.

/// 2020-01-01T00:00:00Z: any clock before this is certainly unset.
const PLAUSIBLE: i64 = 1_577_836_800;

/// Sets the realtime clock to `unix` seconds when the clock is unset
/// (before 2020) and `unix` is plausible. Never moves a set clock.
pub fn raise_to(unix: i64) {
    let now = crate::agent::now_unix();
    if !needs_raise(now, unix) {
        return;
    }
    let ts = libc::timespec {
        tv_sec: unix as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the duration of the call.
    let r = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
    if r == 0 {
        crate::log!("clock was unset; set to {unix} (config drive time)");
    } else {
        crate::log!("clock_settime: {}", std::io::Error::last_os_error());
    }
}

fn needs_raise(now: i64, candidate: i64) -> bool {
    now < PLAUSIBLE && candidate >= PLAUSIBLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unset_clock_is_moved_and_only_to_a_plausible_time() {
        assert!(needs_raise(5, 1_764_000_000));
        assert!(!needs_raise(1_764_000_000, 1_765_000_000));
        assert!(!needs_raise(5, 1000));
    }
}
