//! Catching the guest's wall clock up after a pause or a restore.
//!
//! A paused (warm) or snapshotted (cold) VM does not see time pass: its
//! clock sources stop with its vCPUs, so after a wake `date` is behind by
//! as long as the sandbox slept (half an hour after a cold wake), which
//! breaks build tools, TLS and anything that compares times with the
//! outside world. The VMM's CMOS RTC (`/dev/rtc0`) follows the host's
//! clock throughout, so before handling each authenticated connection —
//! the first thing a wake leads to — lohar reads it and, when the guest's
//! clock is more than [`SLACK_SECS`] behind, steps it forward. Never
//! backwards: a clock someone set ahead on purpose is left alone, and time
//! seen by programs only ever moves on.
//!
//! Only in PID-1 mode, and only when the VM has an RTC; one `ioctl` per
//! connection (a few emulated port reads).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the kernel exposes the first RTC.
pub const RTC_DEVICE: &str = "/dev/rtc0";

/// How far behind the RTC the guest's clock may be before it is stepped.
/// The RTC counts whole seconds, so anything finer is noise.
pub const SLACK_SECS: f64 = 1.5;

/// `struct rtc_time` of `<linux/rtc.h>` (the `struct tm` layout).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct RtcTime {
    tm_sec: libc::c_int,
    tm_min: libc::c_int,
    tm_hour: libc::c_int,
    tm_mday: libc::c_int,
    tm_mon: libc::c_int,
    tm_year: libc::c_int,
    tm_wday: libc::c_int,
    tm_yday: libc::c_int,
    tm_isdst: libc::c_int,
}

/// `RTC_RD_TIME` = `_IOR('p', 0x09, struct rtc_time)`.
const RTC_RD_TIME: libc::c_ulong = (2 << 30)
    | ((std::mem::size_of::<RtcTime>() as libc::c_ulong) << 16)
    | ((b'p' as libc::c_ulong) << 8)
    | 0x09;

/// The open RTC.
#[derive(Debug)]
pub struct Rtc {
    file: File,
}

impl Rtc {
    /// Opens [`RTC_DEVICE`]; `None` when the VM has none (the caller
    /// then never adjusts the clock).
    pub fn open() -> Option<Rtc> {
        File::open(RTC_DEVICE).ok().map(|file| Rtc { file })
    }

    /// The RTC's time in unix seconds (UTC).
    pub fn read(&self) -> std::io::Result<i64> {
        let mut tm = RtcTime::default();
        // SAFETY: RTC_RD_TIME writes one `struct rtc_time` through the
        // pointer, and `tm` is a valid, writable value of that layout.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), RTC_RD_TIME, &mut tm) };
        if r == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(unix_from_utc(
            i64::from(tm.tm_year) + 1900,
            i64::from(tm.tm_mon) + 1,
            i64::from(tm.tm_mday),
            i64::from(tm.tm_hour) * 3600 + i64::from(tm.tm_min) * 60 + i64::from(tm.tm_sec),
        ))
    }

    /// Steps the guest's clock forward to the RTC's when it is behind by
    /// more than [`SLACK_SECS`]; returns how far it moved.
    pub fn catch_up(&self) -> Option<Duration> {
        let rtc = self.read().ok()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let target = step_to(rtc, now)?;
        let ts = libc::timespec {
            tv_sec: target.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(target.subsec_nanos()),
        };
        // SAFETY: `ts` is a valid timespec for the duration of the call.
        if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
            crate::log!("clock_settime: {}", std::io::Error::last_os_error());
            return None;
        }
        let moved = target.saturating_sub(now);
        crate::log!(
            "clock was {:.1} s behind the RTC; stepped forward",
            moved.as_secs_f64()
        );
        Some(moved)
    }
}

/// Where to set a clock reading `now` when the RTC says `rtc` (whole
/// seconds, truncated): the middle of that RTC second, when `now` is
/// behind it by more than [`SLACK_SECS`]; `None` otherwise.
fn step_to(rtc: i64, now: Duration) -> Option<Duration> {
    let target = Duration::from_millis(u64::try_from(rtc).ok()?.checked_mul(1000)? + 500);
    (target.as_secs_f64() - now.as_secs_f64() > SLACK_SECS).then_some(target)
}

/// Unix seconds of a UTC date (`month` 1-12) plus `secs_of_day`.
fn unix_from_utc(year: i64, month: i64, day: i64, secs_of_day: i64) -> i64 {
    // Days from civil (proleptic Gregorian), H. Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + secs_of_day
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_like_timegm() {
        assert_eq!(unix_from_utc(1970, 1, 1, 0), 0);
        assert_eq!(unix_from_utc(2000, 2, 29, 0), 951_782_400);
        assert_eq!(
            unix_from_utc(2026, 12, 1, 19 * 3600 + 51 * 60 + 16),
            1_796_154_676
        );
        assert_eq!(unix_from_utc(2038, 1, 19, 3 * 3600 + 14 * 60 + 8), 1 << 31);
        for (y, m, d) in [(1999, 12, 31), (2024, 3, 1), (2100, 2, 28)] {
            let mut tm: libc::tm = unsafe_zeroed_tm();
            tm.tm_year = (y - 1900) as libc::c_int;
            tm.tm_mon = (m - 1) as libc::c_int;
            tm.tm_mday = d as libc::c_int;
            // SAFETY: `tm` is a valid, initialised struct tm.
            let want = unsafe { libc::timegm(&mut tm) };
            assert_eq!(unix_from_utc(y, m, d, 0), want, "{y}-{m}-{d}");
        }
    }

    fn unsafe_zeroed_tm() -> libc::tm {
        // SAFETY: struct tm is plain old data; all-zero is a valid value
        // (tm_zone is a null pointer, which timegm does not read).
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn only_a_clock_well_behind_is_stepped_and_only_forward() {
        let s = Duration::from_secs;
        // 30 minutes asleep: stepped to the middle of the RTC second.
        assert_eq!(
            step_to(10_000, s(8_200)),
            Some(Duration::from_millis(10_000_500))
        );
        // Within the RTC's resolution: left alone.
        assert_eq!(step_to(10_000, s(10_000)), None);
        assert_eq!(step_to(10_000, Duration::from_millis(9_999_100)), None);
        // Ahead of the RTC: never moved back.
        assert_eq!(step_to(10_000, s(20_000)), None);
        assert_eq!(step_to(-5, s(0)), None);
    }

    #[test]
    fn ioctl_number_matches_the_kernel_header() {
        assert_eq!(RTC_RD_TIME, 0x8024_7009);
    }
}
