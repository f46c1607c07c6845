//! Boot-time bench: QEMU start → lohar answering the agent protocol, against
//! a baseline of the same kernel and rootfs booting a trivial init
//! (`/bin/sh -c "echo BOOT-OK"`), measured in the same run. Also reports
//! lohar's idle RSS inside the guest. Needs root, QEMU and the images
//! (`cargo xtask images`); prints `SKIPPED: <reason>` otherwise.
//!
//! `cargo bench -p bhatti-engine --bench boot` (BHATTI_BENCH_BOOTS=N, default 10).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use benchkit::Summary;
use bhatti_agent::ExecOptions;
use support::vm::{TestVm, VmOptions};
use support::{Need, skip_reason};

fn main() {
    if let Some(r) = skip_reason(&[Need::Root, Need::Qemu, Need::Images]) {
        println!("SKIPPED: boot bench: {r}");
        return;
    }
    let n: usize = std::env::var("BHATTI_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    if let Err(e) = run(n) {
        eprintln!("boot bench failed: {e}");
        std::process::exit(1);
    }
}

fn run(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut bare = Vec::new();
    let mut agent = Vec::new();
    let mut rss = None;
    // Interleave the two kinds so host noise hits both alike.
    for i in 0..n {
        let mut t = TestVm::start(VmOptions {
            config: None,
            init: Some("/bin/sh".into()),
            extra_cmdline: vec!["-c".into(), "\"echo BOOT-OK; reboot -f\"".into()],
            ..VmOptions::default()
        })
        .map_err(failed)?;
        t.vm.wait_for_console("BOOT-OK", Duration::from_secs(120))?;
        bare.push(t.spawned_at.elapsed());
        drop(t);

        let t = TestVm::start(VmOptions::default()).map_err(failed)?;
        let client = t.client();
        rt.block_on(client.wait_ready(Duration::from_secs(120)))?;
        agent.push(t.spawned_at.elapsed());
        if i == 0 {
            std::thread::sleep(Duration::from_secs(2));
            let r = rt.block_on(client.exec(ExecOptions::new(["cat", "/proc/1/status"])))?;
            let status = String::from_utf8_lossy(&r.stdout).into_owned();
            rss = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "));
        }
        eprint!(".");
    }
    eprintln!();
    println!("boot: {n} boots each, QEMU start → ready (TCG unless KVM can run guests)");
    println!("  bare kernel → trivial init : {}", stats(&bare));
    println!("  lohar agent ready (TCP)    : {}", stats(&agent));
    if let (Some(a), Some(b)) = (Summary::of(&agent), Summary::of(&bare)) {
        println!("  ratio agent/bare p50: {:.2}", a.ratio(&b));
    }
    println!(
        "lohar idle RSS in guest (PID 1, 2 s after ready): {}",
        rss.unwrap_or_else(|| "unknown".into())
    );
    Ok(())
}

fn failed(f: libtest_mimic::Failed) -> String {
    f.message().unwrap_or("VM start failed").to_owned()
}

/// Nearest-rank percentiles (benchkit's), printed in milliseconds.
fn stats(v: &[Duration]) -> String {
    let Some(s) = Summary::of(v) else {
        return "no samples".into();
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:>7.1} ms  p50 {:>7.1} ms  p95 {:>7.1} ms  p99 {:>7.1} ms",
        ms(s.min),
        ms(s.p50),
        ms(s.p95),
        ms(s.p99)
    )
}
