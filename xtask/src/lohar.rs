//! lohar as a static binary: `cargo build -p lohar --profile release-small
//! --target x86_64-unknown-linux-gnu` with `+crt-static`, in its own target
//! dir (`<workspace>/target-lohar-static`). The explicit `--target` keeps
//! RUSTFLAGS away from build scripts and proc-macros.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cache::{human, workspace_root};
use crate::run;

const TARGET: &str = "x86_64-unknown-linux-gnu";
const PROFILE: &str = "release-small";

/// Builds lohar and returns the binary's path.
pub fn build() -> Result<PathBuf> {
    let root = workspace_root();
    let target_dir = root.join("target-lohar-static");
    println!("[lohar] cargo build -p lohar --profile {PROFILE} --target {TARGET} (static)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run::status(
        Command::new(cargo)
            .current_dir(&root)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TARGET_DIR", &target_dir)
            .args([
                "build",
                "-p",
                "lohar",
                "--profile",
                PROFILE,
                "--target",
                TARGET,
            ]),
    )?;
    let bin = target_dir.join(TARGET).join(PROFILE).join("lohar");
    check_static(&bin)?;
    println!(
        "[lohar] {} ({}, static)",
        bin.display(),
        human(fs::metadata(&bin)?.len())
    );
    Ok(bin)
}

/// Copies lohar to `images/lohar` (via a temporary name, so a running
/// engine never reads half a binary): the engine injects it into the
/// images it imports. Skipped when the copy is already the same.
pub fn install(bin: &Path, images: &Path) -> Result<()> {
    let dest = images.join("lohar");
    if fs::read(&dest).ok() == Some(fs::read(bin)?) {
        return Ok(());
    }
    let tmp = images.join(".lohar.tmp");
    fs::copy(bin, &tmp).with_context(|| format!("cannot copy lohar to {}", tmp.display()))?;
    fs::rename(&tmp, &dest)?;
    println!("[lohar] installed {}", dest.display());
    Ok(())
}

/// Fails if `bin` is not an x86-64 ELF without a program interpreter.
fn check_static(bin: &Path) -> Result<()> {
    let data = fs::read(bin).with_context(|| format!("cannot read {}", bin.display()))?;
    match has_interpreter(&data) {
        Some(false) => Ok(()),
        Some(true) => bail!("{} is dynamically linked (has PT_INTERP)", bin.display()),
        None => bail!("{} is not a 64-bit little-endian ELF", bin.display()),
    }
}

/// Whether an ELF64 LE image has a PT_INTERP program header (`None` when
/// it is not such an ELF or is truncated).
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?);
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    let phoff = usize::try_from(phoff).ok()?;
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if p_type == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_interpreter() {
        let sh = fs::read("/bin/sh").expect("/bin/sh");
        assert_eq!(has_interpreter(&sh), Some(true));
        if let Ok(bb) = fs::read("/bin/busybox") {
            assert_eq!(
                has_interpreter(&bb),
                Some(false),
                "busybox-static is static"
            );
        }
        assert_eq!(has_interpreter(b"\x7fELF\x02\x01"), None);
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
    }
}
