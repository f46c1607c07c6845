//! QMP latency on a bare QEMU microVM (TCG, no kernel): pause (`stop`),
//! resume (`cont`) and `query-status` through [`QmpClient`], beside a raw
//! `query-status` round trip written straight on the socket in the same
//! run; then snapshot-to-file and restore times and snapshot size.
//!
//! Run: `cargo bench -p bhatti-engine --bench qmp` (needs qemu-system-x86_64).

#[path = "../tests/bare_qemu/mod.rs"]
mod bare_qemu;

use std::time::{Duration, Instant};

use bare_qemu::{BareQemu, file_len};
use benchkit::Summary;
use bhatti_engine::qemu::qmp::{QmpClient, incoming_uri};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ROUNDS: usize = 2000;
const SNAPSHOTS: usize = 10;
const T: Duration = Duration::from_secs(20);

type BenchResult = Result<(), Box<dyn std::error::Error>>;

/// Prints one operation's percentiles (with its p50 ratio to `baseline`)
/// and returns its summary, the baseline of later lines.
fn report(name: &str, samples: &[Duration], baseline: Option<&Summary>) -> Summary {
    let s = Summary::of(samples).expect("every step takes samples");
    benchkit::report(name, &s, baseline);
    s
}

/// The baseline: one hand-written `query-status` exchange per round, on
/// the same (running) VM the client is measured on afterwards.
async fn raw_round_trips(vm: &BareQemu) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let stream = loop {
        match tokio::net::UnixStream::connect(&vm.qmp).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?; // greeting
    w.write_all(b"{\"execute\":\"qmp_capabilities\"}\n").await?;
    line.clear();
    r.read_line(&mut line).await?;
    // Measure with the vCPU running, as the client's rounds are.
    w.write_all(b"{\"execute\":\"cont\"}\n").await?;
    line.clear();
    while !line.contains("\"return\"") {
        line.clear();
        r.read_line(&mut line).await?;
    }
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        w.write_all(b"{\"execute\":\"query-status\",\"id\":1}\n")
            .await?;
        line.clear();
        r.read_line(&mut line).await?;
        samples.push(t.elapsed());
    }
    if !line.contains("\"return\"") {
        return Err(format!("raw baseline got {line:?}").into());
    }
    Ok(samples)
}

async fn latency() -> BenchResult {
    let vm = BareQemu::spawn(None)?;
    let raw = raw_round_trips(&vm).await?;
    let base = report("raw query-status (baseline)", &raw, None);

    let mut q = QmpClient::connect_retry(&vm.qmp, T).await?;
    let mut status = Vec::with_capacity(ROUNDS);
    let mut stop = Vec::with_capacity(ROUNDS);
    let mut cont = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        q.query_status().await?;
        status.push(t.elapsed());
    }
    for _ in 0..ROUNDS {
        let t = Instant::now();
        q.stop().await?;
        stop.push(t.elapsed());
        let t = Instant::now();
        q.cont().await?;
        cont.push(t.elapsed());
        let _ = q.take_events();
    }
    report("client query-status", &status, Some(&base));
    report("client stop (pause)", &stop, Some(&base));
    report("client cont (resume)", &cont, Some(&base));
    q.quit().await?;
    Ok(())
}

async fn snapshots() -> BenchResult {
    let mut boot = Vec::new();
    let mut save = Vec::new();
    let mut restore = Vec::new();
    let mut size = 0;
    let mut transferred = 0;
    for _ in 0..SNAPSHOTS {
        let t = Instant::now();
        let mut src = BareQemu::spawn(None)?;
        let mut q = QmpClient::connect_retry(&src.qmp, T).await?;
        boot.push(t.elapsed());
        q.cont().await?;
        q.stop().await?;
        let snap = src.path("mem.snap");
        let t = Instant::now();
        let stats = q.migrate_to_file(&snap, T).await?;
        save.push(t.elapsed());
        q.quit().await?;
        src.wait_exit(T);
        size = file_len(&snap);
        transferred = stats.transferred_bytes;

        let uri = incoming_uri(&snap)?;
        let t = Instant::now();
        let dst = BareQemu::spawn(Some(&uri))?;
        let mut q = QmpClient::connect_retry(&dst.qmp, T).await?;
        q.wait_incoming(T).await?;
        q.cont().await?;
        restore.push(t.elapsed());
        q.quit().await?;
        drop(dst);
        drop(src);
    }
    let base = report("spawn QEMU to QMP ready (baseline)", &boot, None);
    report("snapshot to file (stopped, 64 MiB)", &save, None);
    report("spawn -incoming + load + cont", &restore, Some(&base));
    println!("snapshot file size {size} B (RAM transferred {transferred} B)");
    Ok(())
}

fn main() -> BenchResult {
    if let Some(reason) = bare_qemu::skip_reason() {
        println!("skipping QMP bench: {reason}");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        latency().await?;
        snapshots().await
    })
}
