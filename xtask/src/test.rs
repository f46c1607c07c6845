//! `cargo xtask test`: build what the VM tests need (kernel, lohar, busybox
//! tier, and the Debian `minimal` tier when its mirror answers; not the
//! large `dev` tier, whose VM test runs once `cargo xtask images --tier
//! dev` has built it), then run the whole workspace suite with nextest
//! when installed, else `cargo test`. Without root the images cannot be built; the suite still runs
//! and the VM tests report themselves as skipped (the host checks are
//! `bhatti-testkit`'s, whose own test also holds every `.rs` file to 500
//! lines).

use std::process::Command;

use anyhow::Result;

use crate::cache::{CACHE_DIR_ENV, Cache, workspace_root};
use crate::{kernel, lohar, prereq, rootfs, run};

pub fn run(cache: &Cache, args: &[String]) -> Result<()> {
    if prereq::is_root() {
        kernel::build(cache, false)?;
        let lohar = lohar::build()?;
        rootfs::busybox::build(cache, &lohar, false)?;
        // The tier users get by default: its VM test runs when it builds.
        // It needs the Debian mirror; without it the suite still runs and
        // that test reports itself as skipped, naming the missing image.
        if let Err(e) = rootfs::minimal::build(cache, &lohar, false) {
            println!("[test] minimal tier not built ({e:#}); its VM test will report as skipped");
        }
    } else {
        println!("[test] not root: images not built; VM tests will report as skipped");
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let nextest = Command::new(&cargo)
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .env(CACHE_DIR_ENV, &cache.root);
    if nextest {
        cmd.args(["nextest", "run", "--workspace"]);
    } else {
        cmd.args(["test", "--workspace"]);
    }
    println!(
        "[test] {}",
        if nextest {
            "cargo nextest run --workspace"
        } else {
            "cargo test --workspace"
        }
    );
    run::status(cmd.args(args))
}
