//! Accelerator choice: KVM only when it can really run a standard guest
//! kernel on this host, TCG otherwise.
//!
//! Two checks, cached per process: the host's KVM must not be PVM (the
//! `kvm_pvm` module: a paravirtual KVM that only runs PVM-enabled guest
//! kernels; a standard kernel starts under it and then hangs in the host's
//! instruction emulator), and a tiny firmware must run under it (a cheap
//! probe that rules out a missing or unusable `/dev/kvm`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::QEMU_BINARY;

/// Hardware accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when it can really run a guest here, else TCG. The probe runs a
    /// few instructions in a throwaway QEMU (well under a second) once per
    /// process; the answer is cached.
    pub fn auto() -> Accel {
        static PROBE: OnceLock<Accel> = OnceLock::new();
        *PROBE.get_or_init(|| {
            if !kvm_is_pvm(Path::new(SYS_MODULES)) && probe_runs_guest(Accel::Kvm) {
                Accel::Kvm
            } else {
                Accel::Tcg
            }
        })
    }

    /// The `-cpu` model used with this accelerator (the probe uses the same,
    /// so a host whose KVM rejects the host CPU's MSRs falls back to TCG).
    pub fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }

    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Where the host kernel lists its loaded modules.
const SYS_MODULES: &str = "/sys/module";

/// Whether the host's KVM is PVM (module `kvm_pvm` loaded under
/// `sys_modules`). PVM runs only guest kernels built for it, so a
/// standard guest kernel cannot boot: the firmware probe alone would pass
/// (real-mode code is emulated) and every VM would hang early in boot.
pub fn kvm_is_pvm(sys_modules: &Path) -> bool {
    sys_modules.join("kvm_pvm").exists()
}

/// Whether QEMU with `accel` can execute guest code: boots a 64 KiB
/// firmware whose reset vector writes to `isa-debug-exit`, which makes
/// QEMU exit with code `(0x2a << 1) | 1`, with the same `-cpu` model a
/// real guest gets. Anything else (an error, a hang
/// killed after 5 s) means no.
pub fn probe_runs_guest(accel: Accel) -> bool {
    const EXPECTED: i32 = (0x2a << 1) | 1;
    let dir = std::env::temp_dir().join(format!("bhatti-accel-probe-{}", std::process::id()));
    if fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let bios = dir.join(format!("{}.bin", accel.as_str()));
    let mut image = vec![0xf4_u8; 64 << 10]; // hlt everywhere
    // Reset vector (CS:IP = F000:FFF0): mov al,0x2a; out 0xf4,al; hlt; jmp $-1
    image[0xfff0..0xfff7].copy_from_slice(&[0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
    if fs::write(&bios, &image).is_err() {
        return false;
    }
    let child = Command::new(QEMU_BINARY)
        .args(["-M", "microvm,x-option-roms=off,isa-serial=off,rtc=off"])
        .args(["-accel", accel.as_str(), "-cpu", accel.cpu_model()])
        .args(["-nodefaults", "-no-user-config"])
        .args(["-display", "none", "-m", "16", "-bios"])
        .arg(&bios)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let ok = match child {
        Ok(mut child) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => break status.code() == Some(EXPECTED),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break false;
                    }
                }
            }
        }
        Err(_) => false,
    };
    let _ = fs::remove_dir_all(&dir);
    ok
}
