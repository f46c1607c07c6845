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

/// Flushes file systems and ends the VM. Never returns.
///
/// With ACPI the kernel can power off. A microVM usually has none
/// (QEMU `-M microvm,acpi=off`, Firecracker), where POWER_OFF only halts
/// the CPU and the VM lingers; there a restart ends it, because both VMMs
/// treat a guest reboot as exit (QEMU runs with `-no-reboot`).
pub fn power_off() -> ! {
    rustix::fs::sync();
    let cmd = if std::path::Path::new("/sys/firmware/acpi").exists() {
        rustix::system::RebootCommand::PowerOff
    } else {
        rustix::system::RebootCommand::Restart
    };
    crate::log!("powering off ({cmd:?})");
    if let Err(e) = rustix::system::reboot(cmd) {
        crate::log!("reboot({cmd:?}): {e}");
    }
    // Only reachable without CAP_SYS_BOOT; PID 1 must not exit.
    loop {
        std::thread::park();
    }
}
