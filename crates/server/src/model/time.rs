//! Times as v1 clients read them: RFC 3339 strings in UTC
//! (`"2026-03-22T10:00:00Z"`) for the dates of API objects, and Go
//! duration strings (`"2h15m30s"`) for `GET /health`'s uptime. The store
//! keeps Unix seconds; these are the API's spelling of them. Times that
//! come from the agent protocol (sessions, file entries) stay Unix
//! seconds, as in v1.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds as an RFC 3339 UTC string with whole seconds. Times
/// before 1970 (which the store never holds) are shown as the epoch.
pub fn rfc3339(unix: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// [`rfc3339`] of an optional time.
pub fn rfc3339_opt(unix: Option<i64>) -> Option<String> {
    unix.map(rfc3339)
}

/// Unix seconds of an RFC 3339 string (for tests and clients that read
/// the API's dates back).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let at: SystemTime = humantime::parse_rfc3339_weak(s).ok()?;
    i64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// A duration as Go's `time.Duration.String()` prints whole seconds:
/// `0s`, `42s`, `5m0s`, `2h15m30s`.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc_and_read_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_774_173_600), "2026-03-22T10:00:00Z");
        assert_eq!(parse_rfc3339("2026-03-22T10:00:00Z"), Some(1_774_173_600));
        assert_eq!(parse_rfc3339(&rfc3339(1_700_000_123)), Some(1_700_000_123));
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations_are_spelled_as_go_does() {
        let d = |s| go_duration(Duration::from_secs(s));
        assert_eq!(d(0), "0s");
        assert_eq!(d(42), "42s");
        assert_eq!(d(300), "5m0s");
        assert_eq!(d(2 * 3600 + 15 * 60 + 30), "2h15m30s");
        assert_eq!(d(50 * 3600), "50h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1999)), "1s");
    }
}
