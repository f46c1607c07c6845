//! Logging: one line per event on stderr, which is the console in PID-1
//! mode. Deliberately tiny (no logging framework) to keep the static
//! binary and its resident memory small.

/// Writes `lohar: <message>` to stderr.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("lohar: {}\n", format_args!($($arg)*));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

/// Like [`log!`], only when `LOHAR_DEBUG` is set.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {{
        if $crate::log::debug_enabled() {
            $crate::log!($($arg)*);
        }
    }};
}

/// Whether `LOHAR_DEBUG` was set at startup.
pub fn debug_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("LOHAR_DEBUG").is_some())
}
