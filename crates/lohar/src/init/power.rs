//! Power-off and panics: what PID 1 does instead of exiting.

use std::io::Write;

/// Logs panics to the console (and stderr), so a PID-1 panic is never
/// silent.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("lohar: PANIC: {info}\n");
        if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
            let _ = c.write_all(msg.as_bytes());
        }
        let _ = std::io::stderr().write_all(msg.as_bytes());
    }));
}

/// Flushes file systems and powers the VM off. Never returns.
pub fn power_off() -> ! {
    crate::log!("powering off");
    rustix::fs::sync();
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
        crate::log!("reboot(POWER_OFF): {e}");
    }
    // Only reachable without CAP_SYS_BOOT; PID 1 must not exit.
    loop {
        std::thread::park();
    }
}
