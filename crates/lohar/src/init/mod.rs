//! PID-1 mode. Filled in below.

/// Boots the sandbox and serves forever.
pub fn run() -> ! {
    loop {
        std::thread::park();
    }
}
