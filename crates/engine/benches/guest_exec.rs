//! Where an exec of `true` goes inside a TCG guest: the engine's exec of
//! `true` beside, in the same run, the guest's own `posix_spawn` + `waitpid`
//! of `/bin/true` timed inside the guest (`spawn_true.c`, built static on
//! the host with `cc` and copied in), a request with no exec (`stat` of a
//! 1-byte file: the host → agent round trip), and the guest's own `sync()`
//! or `syncfs` of `/` after a spawn (runs alternate: lohar runs a `sync()`
//! after every exec, and a `syncfs` of the root file system alone costs
//! as much). Exec and round trip run on the engine's reused agent
//! connections (protocol version 6) and, in the same run, on a new
//! connection per request as before; the engine's exec gets its EXIT
//! before lohar's sync (protocol version 7), and is also timed with the
//! sync before EXIT as before; and a `true` whose stdin is `/dev/null`,
//! opened by the agent (`stdin_null`) against the `sh -c` wrapper E2B's
//! `stdin: false` needs with older agents. Context switches and interrupts per
//! exec come from the guest's `/proc/stat`. The breakdown is
//! printed at the end and summarised in `docs/performance.md`.
//!
//! `cargo bench -p bhatti-engine --bench guest_exec` (root, QEMU and
//! `cargo xtask images`; BHATTI_BENCH_EXECS=N, default 200). Everything
//! runs in a namespace the bench creates, egress `none`.

use std::process::Command;
use std::time::{Duration, Instant};

use benchkit::Summary;
use bhatti_agent::{Event, ExecOptions, ExecRequest};
use bhatti_engine::engine::{Engine, SandboxId, SandboxSpec};
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::driver::QemuDriver;
use bhatti_engine::sandbox::{EngineConfig, VmEngine};

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const HELPER_SRC: &str = include_str!("spawn_true.c");
const HELPER_IN_GUEST: &str = "/tmp/spawn_true";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn line(name: &str, v: &[Duration]) -> Option<Summary> {
    let s = Summary::of(v)?;
    benchkit::report(name, &s, None);
    Some(s)
}

/// Builds the in-guest helper; `None` (with the reason printed) without `cc`.
fn build_helper(dir: &std::path::Path) -> Option<Vec<u8>> {
    let src = dir.join("spawn_true.c");
    let bin = dir.join("spawn_true");
    std::fs::write(&src, HELPER_SRC).ok()?;
    let ok = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("in-guest baseline skipped: `cc -static` failed");
        return None;
    }
    std::fs::read(&bin).ok()
}

/// The guest's `ctxt` and `intr` totals from `/proc/stat`.
async fn guest_counters(e: &VmEngine<QemuDriver>, id: &SandboxId) -> BenchResult<(u64, u64)> {
    let r = e.exec(id, ExecOptions::new(["cat", "/proc/stat"])).await?;
    let text = String::from_utf8_lossy(&r.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("ctxt "), field("intr ")))
}

/// One series' samples.
#[derive(Default)]
struct Series {
    exec: Vec<Duration>,
    rt: Vec<Duration>,
    exec_fresh: Vec<Duration>,
    rt_fresh: Vec<Duration>,
    exec_synced: Vec<Duration>,
    rt_after_deferred: Vec<Duration>,
}

/// Engine exec of `true` and the exec-less round trip, each on the
/// engine's reused agent connections and on a connection per request
/// (as before protocol version 6), and the exec with its sync before
/// EXIT (as before protocol version 7), interleaved. A deferred exec
/// leaves its sync running in the guest: the stat right after it is
/// timed apart (`rt_after_deferred`); every other request follows an
/// exec whose sync had finished.
async fn host_side(
    e: &VmEngine<QemuDriver>,
    id: &SandboxId,
    n: usize,
    s: &mut Series,
) -> BenchResult {
    for _ in 0..n {
        let t = Instant::now();
        e.agent_call(id, |a| async move {
            a.without_deferred_sync()
                .exec(ExecOptions::new(["true"]))
                .await
        })
        .await?;
        s.exec_synced.push(t.elapsed());
        let t = Instant::now();
        e.stat(id, "/tmp/one").await?;
        s.rt.push(t.elapsed());
        let t = Instant::now();
        e.exec(id, ExecOptions::new(["true"])).await?;
        s.exec.push(t.elapsed());
        let t = Instant::now();
        e.stat(id, "/tmp/one").await?;
        s.rt_after_deferred.push(t.elapsed());
        let t = Instant::now();
        e.agent_call(id, |a| async move {
            let fresh = a.without_reuse().without_deferred_sync();
            fresh.exec(ExecOptions::new(["true"])).await
        })
        .await?;
        s.exec_fresh.push(t.elapsed());
        let t = Instant::now();
        e.agent_call(
            id,
            |a| async move { a.without_reuse().stat("/tmp/one").await },
        )
        .await?;
        s.rt_fresh.push(t.elapsed());
    }
    Ok(())
}

/// A command whose stdin is `/dev/null` (E2B's `stdin: false`): opened by
/// the agent (`stdin_null`, protocol version 7) against the shell wrapper
/// used for older agents, `sh -c 'exec "$@" </dev/null' sh true`,
/// interleaved.
async fn null_stdin(
    e: &VmEngine<QemuDriver>,
    id: &SandboxId,
    n: usize,
) -> BenchResult<[Vec<Duration>; 2]> {
    let by_agent = ExecRequest {
        stdin_null: true,
        ..ExecRequest::command(["true"])
    };
    let wrapped = ExecRequest::command(["/bin/sh", "-c", "exec \"$@\" </dev/null", "sh", "true"]);
    let mut out: [Vec<Duration>; 2] = Default::default();
    for _ in 0..n {
        for (i, req) in [&by_agent, &wrapped].into_iter().enumerate() {
            let t = Instant::now();
            let mut s = e.exec_stream(id, req.clone()).await?;
            while let Some(ev) = s.next().await? {
                if let Event::Exit(code) = ev {
                    if code != 0 {
                        return Err(format!("{:?} exited {code}", req.argv).into());
                    }
                    break;
                }
            }
            out[i].push(t.elapsed());
        }
    }
    Ok(out)
}

/// TCP connect + close to the agent's control port from inside the
/// namespace, no request: the connection part of every request (the
/// engine opens one per request).
fn tcp_connects(ns: &NetNs, ip: std::net::Ipv4Addr, n: usize) -> BenchResult<Vec<Duration>> {
    let addr = std::net::SocketAddr::from((ip, bhatti_proto::CONTROL_PORT));
    let v = ns.run(move || {
        let mut v = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            v.push(t.elapsed());
            drop(s);
            // Let the guest finish the close before the next connect.
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok::<_, std::io::Error>(v)
    })??;
    Ok(v)
}

/// Context switches and interrupts per engine exec of `true` (one
/// counter read's own cost subtracted).
async fn per_exec_counters(e: &VmEngine<QemuDriver>, id: &SandboxId) -> BenchResult<(f64, f64)> {
    const K: u64 = 50;
    let a = guest_counters(e, id).await?;
    let b = guest_counters(e, id).await?;
    for _ in 0..K {
        e.exec(id, ExecOptions::new(["true"])).await?;
    }
    let c = guest_counters(e, id).await?;
    let per = |x: u64, y: u64, z: u64| (z - y).saturating_sub(y - x) as f64 / K as f64;
    Ok((per(a.0, b.0, c.0), per(a.1, b.1, c.1)))
}

/// The guest's CPU time split while it serves execs: `/proc/stat`'s cpu
/// line (user, nice, system, idle, iowait, irq, softirq), lohar's (PID 1)
/// utime/stime and its reaped children's, and each lohar thread's, all in
/// USER_HZ ticks (10 ms), read by one `sh` exec before and after `k` execs
/// of `true`. Returns (label, ms per exec) rows.
async fn cpu_split(
    e: &VmEngine<QemuDriver>,
    id: &SandboxId,
    k: usize,
) -> BenchResult<Vec<(String, f64)>> {
    let snap = "head -1 /proc/stat; cat /proc/1/stat; for t in /proc/1/task/*; do                 echo \"T $(cat $t/comm) $(cut -d' ' -f14,15 $t/stat)\"; done";
    let read = |r: bhatti_agent::ExecResult| -> Vec<(String, u64)> {
        let text = String::from_utf8_lossy(&r.stdout).into_owned();
        let mut rows = Vec::new();
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            if f.first() == Some(&"cpu") {
                for (i, n) in ["user", "nice", "system", "idle", "iowait", "irq", "softirq"]
                    .iter()
                    .enumerate()
                {
                    rows.push((format!("guest cpu {n}"), num(i + 1)));
                }
            } else if f.first() == Some(&"T") && f.len() >= 4 {
                // (A thread that ended between the glob and the reads
                // leaves a short line: skipped.)
                let n = f.len();
                let t = num(n - 1) + num(n - 2);
                rows.push((format!("lohar thread {}", f[1..n - 2].join(" ")), t));
            } else if f.get(1).is_some_and(|c| c.starts_with('(')) {
                // /proc/1/stat: utime 14, stime 15, cutime 16, cstime 17
                // (comm has no spaces: "(lohar)").
                rows.push(("lohar utime".into(), num(13)));
                rows.push(("lohar stime".into(), num(14)));
                rows.push(("children (utime+stime)".into(), num(15) + num(16)));
            }
        }
        rows
    };
    let a = read(e.exec(id, ExecOptions::new(["sh", "-c", snap])).await?);
    for _ in 0..k {
        e.exec(id, ExecOptions::new(["true"])).await?;
    }
    let b = read(e.exec(id, ExecOptions::new(["sh", "-c", snap])).await?);
    Ok(b.into_iter()
        .filter_map(|(name, v)| {
            let before = a.iter().find(|(n, _)| *n == name).map_or(0, |x| x.1);
            let per = (v.saturating_sub(before)) as f64 * 10.0 / k as f64;
            (per > 0.0 || name.starts_with("guest")).then_some((name, per))
        })
        .collect())
}

/// Runs the helper in the guest: per-run spawn and wait times, sync or
/// syncfs times (alternate runs), and the context switches and interrupts
/// per run.
async fn guest_side(
    e: &VmEngine<QemuDriver>,
    id: &SandboxId,
    n: usize,
    mode: &str,
) -> BenchResult<GuestSide> {
    let script = format!(
        "grep -E '^(ctxt|intr) ' /proc/stat >&2; {HELPER_IN_GUEST} {n} {mode}; \
         grep -E '^(ctxt|intr) ' /proc/stat >&2"
    );
    let r = e.exec(id, ExecOptions::new(["sh", "-c", &script])).await?;
    let mut cols: [Vec<Duration>; 4] = Default::default();
    for l in String::from_utf8_lossy(&r.stdout).lines() {
        for (col, v) in cols.iter_mut().zip(l.split_whitespace()) {
            if let Ok(v) = v.parse::<f64>() {
                col.push(Duration::from_secs_f64(v / 1000.0));
            }
        }
    }
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    let nums = |p: &str| -> Vec<u64> {
        err.lines()
            .filter_map(|l| l.strip_prefix(p))
            .filter_map(|v| v.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let delta = |v: Vec<u64>| match v.as_slice() {
        [a, b] => (b - a) as f64 / n as f64,
        _ => f64::NAN,
    };
    Ok((cols, delta(nums("ctxt ")), delta(nums("intr "))))
}

/// An engine with one busybox sandbox.
async fn sandbox(dir: &std::path::Path) -> BenchResult<(VmEngine<QemuDriver>, NetNs, SandboxId)> {
    let ns = NetNs::create(&unique_name("btgexec"))?;
    let engine = VmEngine::start(
        QemuDriver::default(),
        EngineConfig::new(dir, ImagePaths::from_env(), ns.name()),
    )
    .await?;
    let id: SandboxId = "gexec".parse()?;
    let spec = SandboxSpec {
        cpus: 1,
        memory_mb: 256,
        image: Tier::Busybox.into(),
        ..SandboxSpec::default()
    };
    engine.create(id.clone(), spec).await?;
    let one: bhatti_engine::engine::FileSource = Box::new(std::io::Cursor::new(vec![b'x']));
    engine.write_file(&id, "/tmp/one", 0o644, 1, one).await?;
    Ok((engine, ns, id))
}

async fn bench(n: usize) -> BenchResult {
    let dir = tempfile::tempdir()?;
    let (engine, ns, id) = sandbox(dir.path()).await?;
    let helper = build_helper(dir.path());
    if let Some(bin) = &helper {
        let len = bin.len() as u64;
        let src: bhatti_engine::engine::FileSource = Box::new(std::io::Cursor::new(bin.clone()));
        engine
            .write_file(&id, HELPER_IN_GUEST, 0o755, len, src)
            .await?;
    }
    // Warm up: translated code, page cache, the agent's connections.
    host_side(&engine, &id, 20, &mut Series::default()).await?;
    let mut s = Series::default();
    host_side(&engine, &id, n, &mut s).await?;
    if let Some(ip) = engine.status(&id).await?.ip {
        line(
            "TCP connect to the agent (no request)",
            &tcp_connects(&ns, ip, n)?,
        );
    }
    let (ctxt, intr) = per_exec_counters(&engine, &id).await?;
    let split = cpu_split(&engine, &id, n).await?;
    let guest = match helper {
        Some(_) => Some((
            guest_side(&engine, &id, n, "").await?,
            guest_side(&engine, &id, n, "vfork").await?,
        )),
        None => None,
    };
    if let (Some(e), Some(f)) = (
        line("exec true, a connection per request", &s.exec_fresh),
        line("round trip, a connection per request", &s.rt_fresh),
    ) {
        println!(
            "  a new connection per request costs {:.2} ms per exec, {:.2} ms per stat (p50)",
            // Both sync before EXIT.
            ms(e.p50) - Summary::of(&s.exec_synced).map_or(0.0, |x| ms(x.p50)),
            ms(f.p50) - Summary::of(&s.rt).map_or(0.0, |x| ms(x.p50)),
        );
    }
    if let (Some(y), Some(a)) = (
        line("exec true, sync before EXIT (reused)", &s.exec_synced),
        line(
            "round trip right after a deferred exec",
            &s.rt_after_deferred,
        ),
    ) {
        let (exec, rt) = (Summary::of(&s.exec), Summary::of(&s.rt));
        let saved = ms(y.p50) - exec.map_or(0.0, |x| ms(x.p50));
        let paid = ms(a.p50) - rt.map_or(0.0, |x| ms(x.p50));
        println!(
            "  EXIT before the sync (protocol 7) saves {saved:.2} ms per exec (p50); \
             a request right after it pays {paid:.2} ms of the sync"
        );
    }
    let [by_agent, wrapped] = null_stdin(&engine, &id, n).await?;
    if let (Some(a), Some(w)) = (
        line("exec true, stdin /dev/null by the agent", &by_agent),
        line("exec true, stdin /dev/null by sh -c", &wrapped),
    ) {
        println!(
            "  stdin_null (protocol 7) saves {:.2} ms per E2B command with stdin false (p50)",
            ms(w.p50) - ms(a.p50)
        );
    }
    print_results(&s.exec, &s.rt, guest.as_ref(), (ctxt, intr));
    println!("guest CPU time per engine exec of `true` (USER_HZ ticks over {n} execs):");
    for (name, per) in split {
        println!("  {name:<36} {per:>6.2} ms");
    }
    engine.destroy(&id).await?;
    Ok(())
}

type GuestSide = ([Vec<Duration>; 4], f64, f64);

fn print_results(
    exec: &[Duration],
    rt: &[Duration],
    guest: Option<&(GuestSide, GuestSide)>,
    c: (f64, f64),
) {
    println!("exec `true` in a TCG guest, {} samples each", exec.len());
    let Some(e) = line("exec true (engine, reused connection)", exec) else {
        return;
    };
    let Some(r) = line("host->agent round trip (stat 1 B, reused)", rt) else {
        return;
    };
    println!(
        "  guest per engine exec: {:.1} context switches, {:.1} interrupts",
        c.0, c.1
    );
    let Some((([spawn, wait, sync, syncfs], gctxt, gintr), bare)) = guest else {
        return;
    };
    let whole: Vec<Duration> = (0..spawn.len().min(wait.len()))
        .map(|i| spawn[i] + wait[i])
        .collect();
    let (Some(s), Some(w), Some(y), Some(_), Some(g)) = (
        line("guest posix_spawn (returns)", spawn),
        line("guest waitpid (child runs, exits)", wait),
        line("guest sync() after a spawn", sync),
        line("guest syncfs(/) after a spawn", syncfs),
        line("guest posix_spawn+wait (baseline)", &whole),
    ) else {
        return;
    };
    println!("  guest per own spawn+wait: {gctxt:.1} context switches, {gintr:.1} interrupts");
    // The engine's exec gets its EXIT before lohar's sync (protocol 7).
    let rest = ms(e.p50) - ms(r.p50) - ms(g.p50);
    println!("breakdown of the engine exec p50 ({:.2} ms):", ms(e.p50));
    println!("  host->agent round trip, framing  {:>7.2} ms", ms(r.p50));
    println!("  spawn (guest posix_spawn)        {:>7.2} ms", ms(s.p50));
    println!("  child runs and exits (waitpid)   {:>7.2} ms", ms(w.p50));
    println!("  lohar's own exec path (the rest) {rest:>7.2} ms");
    println!("  (the sync, {:.2} ms, now follows EXIT)", ms(y.p50));
    let over = ms(e.p50) - ms(g.p50);
    println!(
        "  => engine exec - guest spawn+wait = {over:.2} ms (issue 16 target <= 1.5 ms): {}",
        if over <= 1.5 { "met" } else { "MISSED" }
    );
    print_bare(e, &bare.0);
}

/// The helper's vfork + execve runs: the least a spawn costs in the
/// guest, and the engine's exec over it.
fn print_bare(exec: Summary, [spawn, wait, ..]: &[Vec<Duration>; 4]) {
    let whole: Vec<Duration> = (0..spawn.len().min(wait.len()))
        .map(|i| spawn[i] + wait[i])
        .collect();
    if let (Some(_), Some(b)) = (
        line("guest vfork+execve (returns)", spawn),
        line("guest vfork+execve+wait", &whole),
    ) {
        println!(
            "  engine exec - guest vfork+execve+wait = {:.2} ms (all of the agent's and the \
             link's cost over the cheapest spawn)",
            ms(exec.p50) - ms(b.p50)
        );
    }
}

fn main() -> BenchResult {
    if let Some(reason) = bhatti_testkit::skip_reason(bhatti_testkit::VM) {
        println!("skipping guest_exec bench: {reason}");
        return Ok(());
    }
    let n: usize = std::env::var("BHATTI_BENCH_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(n))
}
