//! Shutdown and panics: what PID 1 does instead of exiting.
//!
//! [`power_off`] runs on the runtime thread (it never returns, so nothing
//! else needs that thread any more) and, since that thread is where
//! children are reaped, reaps the processes it kills itself.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::mount::{MountFlags, UnmountFlags};

/// How long processes get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

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

/// Stops every process (SIGTERM, a short grace, SIGKILL), flushes and
/// unmounts file systems, remounts `/` read-only, and ends the VM. Never
/// returns.
///
/// With ACPI the kernel can power off. A microVM usually has none
/// (QEMU `-M microvm,acpi=off`, Firecracker), where POWER_OFF only halts
/// the CPU and the VM lingers; there a restart ends it, because both VMMs
/// treat a guest reboot as exit (QEMU runs with `-no-reboot`).
pub fn power_off() -> ! {
    crate::log!("stopping all processes");
    signal_all(libc::SIGTERM);
    wait_until_alone(TERM_GRACE);
    signal_all(libc::SIGKILL);
    wait_until_alone(Duration::from_secs(2));
    rustix::fs::sync();
    unmount_all();
    if let Err(e) = rustix::mount::mount_remount("/", MountFlags::RDONLY, "") {
        crate::log!("remount / read-only: {e}");
    }
    rustix::fs::sync();
    let cmd = if Path::new("/sys/firmware/acpi").exists() {
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

/// Sends `sig` to every process but PID 1.
fn signal_all(sig: libc::c_int) {
    // SAFETY: kill(2) with pid -1 has no memory-safety preconditions.
    unsafe {
        libc::kill(-1, sig);
    }
}

/// Waits until no other process exists (or `limit` passes), reaping the
/// ones that exit (a zombie still counts as a process).
fn wait_until_alone(limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        crate::children::reap_exited();
        // SAFETY: signal 0 only checks for existence and permission.
        let r = unsafe { libc::kill(-1, 0) };
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmounts every disk-backed file system except `/`, innermost first; one
/// that stays busy is remounted read-only instead.
fn unmount_all() {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for target in disk_mounts(&table).iter().rev() {
        if rustix::mount::unmount(target.as_str(), UnmountFlags::empty()).is_err()
            && let Err(e) = rustix::mount::mount_remount(target.as_str(), MountFlags::RDONLY, "")
        {
            crate::log!("unmount {target}: {e}");
        }
    }
}

/// Mount points of disk-backed file systems (source under `/dev/`), in
/// mount order, without `/`. Octal escapes (`\040` for a space) are decoded.
pub fn disk_mounts(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let source = f.next()?;
            let target = unescape(f.next()?);
            (source.starts_with("/dev/") && target != "/").then_some(target)
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match code {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_mounts_skip_root_and_virtual_file_systems() {
        let table = "\
/dev/root / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
devtmpfs /dev devtmpfs rw 0 0
/dev/vdc /data ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
/dev/vdd /mnt/my\\040vol ext4 ro 0 0
";
        assert_eq!(disk_mounts(table), ["/data", "/mnt/my vol"]);
        assert_eq!(unescape("a\\777b\\0"), "a\\777b\\0");
    }
}
