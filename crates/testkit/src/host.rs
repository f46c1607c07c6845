//! Host prerequisites of the test tiers and benches, checked without side
//! effects (a `--version` run, a file lookup, the effective uid).
//!
//! Each [`Need`] is one thing the host must have; [`skip_reason`] checks a
//! list in order and returns the first one missing. The images are looked
//! up where the engine looks ([`ImagePaths::from_env`]), so the reason
//! names the path and the `cargo xtask images` command that builds them.

use std::process::{Command, Stdio};

use bhatti_engine::image::{ImageError, ImagePaths, Tier};

/// Something a test or bench needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root (network namespaces, TAP devices, loop mounts).
    Root,
    /// `qemu-system-x86_64` runs.
    Qemu,
    /// `ip` (iproute2) runs.
    Ip,
    /// `nft` (nftables) runs.
    Nft,
    /// The kernel and the busybox rootfs built by `cargo xtask images`.
    Images,
    /// The `minimal` tier (`cargo xtask images --tier minimal`).
    MinimalImage,
    /// The `dev` tier (`cargo xtask images --tier dev`; not built by
    /// default).
    DevImage,
}

/// What a real VM needs: root, QEMU and the busybox images.
pub const VM: &[Need] = &[Need::Root, Need::Qemu, Need::Images];

/// What a daemon with VMs needs: [`VM`] plus iproute2 for its namespace.
pub const DAEMON: &[Need] = &[Need::Root, Need::Qemu, Need::Images, Need::Ip];

/// Why a test or bench cannot run on this host.
#[derive(Debug, thiserror::Error)]
pub enum Skip {
    #[error("needs root (network namespaces, TAP devices)")]
    NotRoot,
    #[error("`{program}` not runnable ({detail}); install the Debian package {package}")]
    Tool {
        program: &'static str,
        package: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// The first of `needs` this host lacks, if any.
pub fn skip_reason(needs: &[Need]) -> Option<Skip> {
    needs.iter().find_map(|n| check(*n).err())
}

/// Whether this host has `need`.
pub fn check(need: Need) -> Result<(), Skip> {
    match need {
        Need::Root => {
            if rustix::process::geteuid().is_root() {
                Ok(())
            } else {
                Err(Skip::NotRoot)
            }
        }
        Need::Qemu => tool("qemu-system-x86_64", "--version", "qemu-system-x86"),
        Need::Ip => tool("ip", "-V", "iproute2"),
        Need::Nft => tool("nft", "-V", "nftables"),
        Need::Images => {
            let paths = ImagePaths::from_env();
            paths.kernel()?;
            paths.rootfs(Tier::Busybox)?;
            Ok(())
        }
        Need::MinimalImage => {
            ImagePaths::from_env().rootfs(Tier::Minimal)?;
            Ok(())
        }
        Need::DevImage => {
            ImagePaths::from_env().rootfs(Tier::Dev)?;
            Ok(())
        }
    }
}

/// Runs `program arg` with no output; `Ok` if it exits 0.
fn tool(program: &'static str, arg: &str, package: &'static str) -> Result<(), Skip> {
    let status = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let detail = match status {
        Ok(s) if s.success() => return Ok(()),
        Ok(s) => format!("`{program} {arg}` failed: {s}"),
        Err(e) => e.to_string(),
    };
    Err(Skip::Tool {
        program,
        package,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_package() {
        let e =
            tool("bhatti-no-such-program", "--version", "some-package").expect_err("not installed");
        let msg = e.to_string();
        assert!(
            msg.contains("bhatti-no-such-program") && msg.contains("some-package"),
            "{msg}"
        );
    }

    #[test]
    fn no_needs_is_no_reason() {
        assert!(skip_reason(&[]).is_none());
    }

    #[test]
    fn root_is_what_the_uid_says() {
        let root = rustix::process::geteuid().is_root();
        assert_eq!(skip_reason(&[Need::Root]).is_none(), root);
    }
}
