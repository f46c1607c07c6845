//! Sandbox lifecycle through the engine with real QEMU microVMs (TCG here),
//! the real kernel, busybox rootfs and lohar as PID 1. Every test has its
//! own data dir and its own network namespace (egress `none`); nothing is
//! sent outside it. Reported as ignored, with the reason, without root,
//! QEMU or the images (`cargo xtask images`).

mod support;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bhatti_agent::Event;
use bhatti_engine::engine::{
    Engine, EngineError, ExecOptions, ExecRequest, ReadOptions, SandboxId, SandboxSpec,
    ShellOptions,
};
use bhatti_engine::image::{ImagePaths, Tier};
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_engine::qemu::driver::{QemuDriver, SNAPSHOT_FILE};
use bhatti_engine::sandbox::{EngineConfig, Recovery, VmEngine};
use bhatti_engine::state::SandboxState;
use libtest_mimic::{Arguments, Failed};
use support::{Need, ensure, trial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Failed>;

/// An engine with its own namespace and data dir; the engine (and its VMs)
/// goes first on drop, then the namespace, then the directory.
struct TestEngine {
    engine: Arc<VmEngine<QemuDriver>>,
    _ns: NetNs,
    dir: tempfile::TempDir,
}

impl TestEngine {
    async fn start(images: ImagePaths) -> Result<Self, Failed> {
        let ns = NetNs::create(&unique_name("btlc"))?;
        let dir = tempfile::tempdir()?;
        let engine = VmEngine::start(QemuDriver::default(), config(&dir, &ns, images)).await?;
        Ok(Self {
            engine: Arc::new(engine),
            _ns: ns,
            dir,
        })
    }

    fn sandbox_dir(&self, id: &SandboxId) -> std::path::PathBuf {
        self.dir.path().join("sandboxes").join(id.as_str())
    }
}

fn config(dir: &tempfile::TempDir, ns: &NetNs, images: ImagePaths) -> EngineConfig {
    EngineConfig::new(dir.path(), images, ns.name())
}

fn run<F: Future<Output = TestResult>>(f: F) -> TestResult {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}

fn small() -> SandboxSpec {
    SandboxSpec {
        cpus: 1,
        memory_mb: 256,
        image: Tier::Busybox,
        ..SandboxSpec::default()
    }
}

/// How long a sandbox sleeps before its clock is checked after the wake.
const CLOCK_NAP: Duration = Duration::from_secs(4);

fn id(s: &str) -> Result<SandboxId, Failed> {
    Ok(s.parse::<SandboxId>()?)
}

async fn sh(e: &VmEngine<QemuDriver>, id: &SandboxId, script: &str) -> Result<String, Failed> {
    let r = e.exec(id, ExecOptions::new(["sh", "-c", script])).await?;
    ensure(r.exit_code == 0, || {
        format!(
            "`{script}` exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        )
    })?;
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

/// How far the guest's wall clock is behind the host's, in seconds: the
/// host's time just before the exec against the guest's whole seconds
/// during it. A clock on time gives at most 1.5 (the guest reads whole
/// seconds, and the RTC it was set from counts whole seconds too) and can
/// go negative by the exec's own latency.
async fn guest_clock_lag(e: &VmEngine<QemuDriver>, id: &SandboxId) -> Result<f64, Failed> {
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let out = sh(e, id, "date +%s").await?;
    let guest: f64 = out
        .trim()
        .parse()
        .map_err(|_| format!("date printed {out:?}"))?;
    Ok(host - guest)
}

/// Fails unless the guest's clock agrees with the host's (after a wake:
/// caught up by lohar from the RTC, not left where the VM stopped — a
/// clock left behind is [`CLOCK_NAP`] or more behind).
async fn ensure_on_time(e: &VmEngine<QemuDriver>, id: &SandboxId, how: &str) -> TestResult {
    let lag = guest_clock_lag(e, id).await?;
    ensure((-2.0..2.5).contains(&lag), || {
        format!("{how}: guest clock {lag:.1} s behind the host")
    })
}

fn create_exec_destroy() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("life")?;
        let info = e.create(sb.clone(), small()).await?;
        ensure(
            info.state == SandboxState::Hot && info.pid.is_some(),
            || format!("after create: {info:?}"),
        )?;
        let out = sh(e, &sb, "echo hello; id -u").await?;
        ensure(out.starts_with("hello\n"), || {
            format!("exec printed {out:?}")
        })?;
        let ip = info.ip.ok_or("no address")?;
        let tap = e.network().tap_name(sb.as_str());
        ensure(e.network().list_taps()? == [tap.clone()], || {
            "TAP missing".into()
        })?;

        e.destroy(&sb).await?;
        ensure(
            matches!(e.status(&sb).await, Err(EngineError::NotFound(_))),
            || "still listed after destroy".into(),
        )?;
        ensure(!t.sandbox_dir(&sb).exists(), || "dir left behind".into())?;
        ensure(e.network().list_taps()?.is_empty(), || "TAP left".into())?;
        ensure(!e.network().ip_in_use(ip), || "address not released".into())?;
        Ok(())
    })
}

fn pause_resume_and_wake_from_warm() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("warm")?;
        e.create(sb.clone(), small()).await?;
        e.pause(&sb).await?;
        ensure(e.status(&sb).await?.state == SandboxState::Warm, || {
            "not warm after pause".into()
        })?;
        e.resume(&sb).await?;
        e.pause(&sb).await?;
        tokio::time::sleep(CLOCK_NAP).await;
        // Any agent call wakes it (ensure_hot from warm).
        let out = sh(e, &sb, "echo awake").await?;
        ensure(out == "awake\n", || format!("exec printed {out:?}"))?;
        let st = e.status(&sb).await?.state;
        ensure(st == SandboxState::Hot, || format!("state {st}"))?;
        ensure(e.restore_count(&sb)? == 0, || "warm wake restored".into())?;
        ensure_on_time(e, &sb, "after a warm wake").await
    })
}

fn stop_start_keeps_data_across_two_cycles() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("cold")?;
        let ip = e.create(sb.clone(), small()).await?.ip;
        for round in 1..=2 {
            sh(
                e,
                &sb,
                &format!("echo round{round} >> /workspace/data; sync"),
            )
            .await?;
            e.stop(&sb).await?;
            let info = e.status(&sb).await?;
            ensure(
                info.state == SandboxState::Stopped && info.pid.is_none(),
                || format!("after stop: {info:?}"),
            )?;
            let snap = t.sandbox_dir(&sb).join(SNAPSHOT_FILE);
            ensure(snap.exists(), || {
                format!("no snapshot at {}", snap.display())
            })?;
            // A stopped sandbox does not wake by itself.
            ensure(
                matches!(e.ensure_hot(&sb).await, Err(EngineError::State(_))),
                || "stopped sandbox woke on ensure_hot".into(),
            )?;
            if round == 1 {
                tokio::time::sleep(CLOCK_NAP).await;
            }
            e.start(&sb).await?;
            if round == 1 {
                ensure_on_time(e, &sb, "after a cold start").await?;
            }
            ensure(!snap.exists(), || "snapshot kept after restore".into())?;
            let info = e.status(&sb).await?;
            ensure(info.state == SandboxState::Hot && info.ip == ip, || {
                format!("after start: {info:?}")
            })?;
            let data = sh(e, &sb, "cat /workspace/data").await?;
            let want: String = (1..=round).map(|r| format!("round{r}\n")).collect();
            ensure(data == want, || format!("round {round}: data {data:?}"))?;
        }
        ensure(e.restore_count(&sb)? == 2, || {
            "expected two restores".into()
        })?;
        Ok(())
    })
}

fn concurrent_wakes_of_a_cold_sandbox_restore_once() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = t.engine.clone();
        let sb = id("herd")?;
        e.create(sb.clone(), small()).await?;
        e.pause(&sb).await?;
        e.freeze(&sb).await?;
        ensure(e.status(&sb).await?.state == SandboxState::Cold, || {
            "not cold after freeze".into()
        })?;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (e, sb) = (e.clone(), sb.clone());
            tasks.push(tokio::spawn(async move {
                e.exec(&sb, ExecOptions::new(["echo", &i.to_string()]))
                    .await
                    .map(|r| (i, r))
            }));
        }
        for task in tasks {
            let (i, r) = task.await??;
            let out = String::from_utf8_lossy(&r.stdout).into_owned();
            ensure(out == format!("{i}\n"), || {
                format!("exec {i} printed {out:?}")
            })?;
        }
        let restores = e.restore_count(&sb)?;
        ensure(restores == 1, || {
            format!("{restores} restores for 20 wakes")
        })?;
        Ok(())
    })
}

fn failed_create_leaves_nothing_behind() -> TestResult {
    run(async {
        // A "kernel" QEMU cannot load: create gets as far as spawning the
        // VMM (dir, rootfs copy, address, TAP, config drive made) and fails.
        let images = tempfile::tempdir()?;
        std::fs::write(images.path().join("vmlinux"), b"not a kernel")?;
        std::fs::write(
            images.path().join(Tier::Busybox.file_name()),
            vec![0u8; 1 << 20],
        )?;
        let t = TestEngine::start(ImagePaths::new(images.path())).await?;
        let e = &t.engine;
        let sb = id("broken")?;
        let res = e.create(sb.clone(), small()).await;
        ensure(matches!(res, Err(EngineError::Driver(_))), || {
            format!("expected a driver error, got {res:?}")
        })?;
        ensure(
            !e.network()
                .ip_in_use(std::net::Ipv4Addr::new(10, 213, 0, 2)),
            || "address not released".into(),
        )?;
        // Egress asked of an engine whose egress is `none`.
        let wants_out = SandboxSpec {
            egress: Some(true),
            ..small()
        };
        let res = e.create(id("eager")?, wants_out).await;
        ensure(
            matches!(
                res,
                Err(EngineError::Network(
                    bhatti_engine::network::NetworkError::NoEgress
                ))
            ),
            || format!("expected NoEgress, got {res:?}"),
        )?;
        ensure(
            !e.network()
                .ip_in_use(std::net::Ipv4Addr::new(10, 213, 0, 2)),
            || "address not released after the egress refusal".into(),
        )?;
        // Missing images are a clear error too.
        let none = TestEngine::start(ImagePaths::new(images.path().join("nope"))).await?;
        let res = none.engine.create(sb.clone(), small()).await;
        ensure(matches!(res, Err(EngineError::Image(_))), || {
            format!("expected an image error, got {res:?}")
        })?;
        ensure(e.list().await.is_empty(), || "listed after failure".into())?;
        ensure(e.network().list_taps()?.is_empty(), || "TAP left".into())?;
        ensure(!t.sandbox_dir(&sb).exists(), || "dir left".into())?;
        ensure(is_empty_dir(&t.dir.path().join("sandboxes")), || {
            "sandboxes dir not empty".into()
        })?;
        // Bad input is an error, not a crash.
        let bad = SandboxSpec { cpus: 0, ..small() };
        ensure(
            matches!(e.create(id("x")?, bad).await, Err(EngineError::Spec(_))),
            || "cpus 0 accepted".into(),
        )?;
        Ok(())
    })
}

fn template_free_spec_is_visible_inside() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("spec")?;
        let spec = SandboxSpec {
            cpus: 2,
            memory_mb: 320,
            env: [("BHATTI_T".to_owned(), "forty-two".to_owned())].into(),
            init: Some("echo ran > /tmp/init-ran".into()),
            files: vec![bhatti_engine::engine::FileSpec {
                path: "/etc/hello.txt".into(),
                content: b"hi there\n".to_vec(),
                mode: 0o640,
            }],
            volumes: vec![bhatti_engine::engine::VolumeSpec {
                name: "vol-a".into(),
                mount: "/data".into(),
                size_mb: 16,
                readonly: false,
            }],
            ..small()
        };
        e.create(sb.clone(), spec).await?;
        let mem = sh(e, &sb, "awk '/MemTotal/ {print $2}' /proc/meminfo").await?;
        let kib: u64 = mem.trim().parse().map_err(|_| format!("meminfo {mem:?}"))?;
        ensure((200_000..=330_000).contains(&kib), || {
            format!("MemTotal {kib} KiB")
        })?;
        let env = sh(e, &sb, "echo $BHATTI_T").await?;
        ensure(env == "forty-two\n", || format!("env {env:?}"))?;
        let file = sh(e, &sb, "cat /etc/hello.txt").await?;
        ensure(file == "hi there\n", || format!("file {file:?}"))?;
        // The init script runs in the background at boot.
        let mut ran = String::new();
        for _ in 0..50 {
            ran = sh(e, &sb, "cat /tmp/init-ran 2>/dev/null || true").await?;
            if ran == "ran\n" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure(ran == "ran\n", || format!("init marker {ran:?}"))?;
        let mounts = sh(e, &sb, "grep ' /data ' /proc/mounts || true").await?;
        ensure(mounts.contains("ext4"), || {
            format!("volume not mounted: {mounts:?}")
        })?;
        let owner = sh(e, &sb, "stat -c %u /data; id -u").await?;
        let ids: Vec<&str> = owner.lines().collect();
        ensure(ids.len() == 2 && ids[0] == ids[1] && ids[0] != "0", || {
            format!("volume owner / sandbox user: {ids:?}")
        })?;
        sh(e, &sb, "echo kept > /data/f; sync").await?;
        e.destroy(&sb).await?;

        // The volume outlives the sandbox and shows up in the next one.
        let vol = t.dir.path().join("volumes").join("vol-a.ext4");
        ensure(vol.exists(), || {
            "volume file deleted with the sandbox".into()
        })?;
        let sb2 = id("spec2")?;
        let spec2 = SandboxSpec {
            cpus: 2,
            volumes: vec![bhatti_engine::engine::VolumeSpec {
                name: "vol-a".into(),
                mount: "/data".into(),
                size_mb: 16,
                readonly: false,
            }],
            ..small()
        };
        e.create(sb2.clone(), spec2.clone()).await?;
        let kept = sh(e, &sb2, "cat /data/f").await?;
        ensure(kept == "kept\n", || format!("volume data {kept:?}"))?;
        // Attached to a running sandbox: a second one cannot take it.
        let busy = e.create(id("spec3")?, spec2).await;
        ensure(matches!(busy, Err(EngineError::VolumeBusy(_))), || {
            format!("second attach: {busy:?}")
        })?;
        // Checked last so that everything above is exercised either way.
        let cpus = sh(e, &sb2, "grep -c ^processor /proc/cpuinfo").await?;
        ensure(cpus.trim() == "2", || {
            format!("the guest sees {cpus:?} CPUs, 2 requested")
        })?;
        Ok(())
    })
}

fn two_vms_reach_each_other_also_after_restore() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let (a, b, c) = (id("net-a")?, id("net-b")?, id("net-c")?);
        let tenant = |t: &str| SandboxSpec {
            tenant: Some(t.into()),
            ..small()
        };
        e.create(a.clone(), tenant("one")).await?;
        let ip_b = e
            .create(b.clone(), tenant("one"))
            .await?
            .ip
            .ok_or("no address")?;
        e.create(c.clone(), tenant("two")).await?;
        sh(
            e,
            &b,
            "mkdir -p /tmp/www && echo pong > /tmp/www/index.html && httpd -p 8080 -h /tmp/www",
        )
        .await?;
        // busybox-static's wget crashes in glibc's resolver; speak HTTP
        // with nc instead.
        let fetch = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {ip_b} 8080");
        let got = sh(e, &a, &fetch).await?;
        ensure(got.ends_with("pong\n"), || {
            format!("A fetched {got:?} from B")
        })?;
        // Another tenant's guest gets nothing.
        let other = sh(e, &c, &format!("{fetch} -w 3; echo end")).await?;
        ensure(other == "end\n", || format!("C fetched {other:?} from B"))?;

        // Both go cold and come back: addresses, TAPs and the server in B
        // survive, and the host reaches both agents right away.
        for sb in [&a, &b] {
            e.stop(sb).await?;
        }
        // The snapshot holds guest memory: the daemon's alone, whatever
        // the umask of the process (this test's is not the daemon's 077).
        let snap = t.dir.path().join("sandboxes/net-a/mem.snap");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&snap)?.permissions());
        ensure(mode & 0o777 == 0o600, || {
            format!("{} mode {mode:o}", snap.display())
        })?;
        for sb in [&b, &a] {
            e.start(sb).await?;
        }
        let got = sh(e, &a, &fetch).await?;
        ensure(got.ends_with("pong\n"), || {
            format!("after restore A fetched {got:?}")
        })?;
        Ok(())
    })
}

fn engine_restart_recovers_snapshotted_sandboxes() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let (kept, lost) = (id("kept")?, id("lost")?);
        let ip = t.engine.create(kept.clone(), small()).await?.ip;
        t.engine.create(lost.clone(), small()).await?;
        sh(&t.engine, &kept, "echo saved > /workspace/f; sync").await?;
        t.engine.stop(&kept).await?;
        // The daemon goes away: `lost` dies hot, without a snapshot.
        let TestEngine {
            engine,
            _ns: ns,
            dir,
        } = t;
        drop(engine);

        let e = VmEngine::start(
            QemuDriver::default(),
            config(&dir, &ns, ImagePaths::from_env()),
        )
        .await?;
        let rec = e.recover().await?;
        ensure(
            rec.len() == 2 && rec.contains(&Recovery::Cold(kept.clone())),
            || format!("recovery: {rec:?}"),
        )?;
        ensure(
            rec.iter().any(
                |r| matches!(r, Recovery::Unknown { reason, .. } if reason.contains("no snapshot")),
            ),
            || format!("lost sandbox not reported: {rec:?}"),
        )?;
        ensure(
            matches!(e.status(&lost).await, Err(EngineError::NotFound(_))),
            || "unrecoverable sandbox registered".into(),
        )?;
        let info = e.status(&kept).await?;
        ensure(info.state == SandboxState::Cold && info.ip == ip, || {
            format!("recovered: {info:?}")
        })?;
        let data = sh(&e, &kept, "cat /workspace/f").await?;
        ensure(data == "saved\n", || {
            format!("data after recovery {data:?}")
        })?;
        // Recovering again finds nothing new.
        let again = e.recover().await?;
        ensure(again.len() == 1, || format!("second recovery: {again:?}"))?;
        drop(e);
        drop(ns);
        drop(dir);
        Ok(())
    })
}

fn agent_operations_through_the_engine() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = t.engine.clone();
        let sb = id("ops")?;
        e.create(sb.clone(), small()).await?;

        // Files: write, read, truncated read, stat, ls.
        e.write_file(
            &sb,
            "/workspace/k.txt",
            0o600,
            14,
            Box::new(std::io::Cursor::new(b"one\ntwo\nthree\n".to_vec())),
        )
        .await?;
        let all = e
            .read_file(&sb, "/workspace/k.txt", ReadOptions::default())
            .await?
            .read_all()
            .await?;
        ensure(all == b"one\ntwo\nthree\n", || format!("read {all:?}"))?;
        let first = e
            .read_file(
                &sb,
                "/workspace/k.txt",
                ReadOptions {
                    limit: Some(1),
                    ..ReadOptions::default()
                },
            )
            .await?
            .read_all()
            .await?;
        ensure(first == b"one\n", || format!("truncated read {first:?}"))?;
        let st = e.stat(&sb, "/workspace/k.txt").await?;
        ensure(st.size == 14 && st.mode == "0600", || {
            format!("stat {st:?}")
        })?;
        let names: Vec<String> = e
            .ls(&sb, "/workspace")
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect();
        ensure(names.contains(&"k.txt".to_owned()), || {
            format!("ls {names:?}")
        })?;

        // Ten concurrent execs.
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (e, sb) = (e.clone(), sb.clone());
                tokio::spawn(async move {
                    e.exec(&sb, ExecOptions::new(["sh", "-c", &format!("echo {i}")]))
                        .await
                        .map(|r| (i, r.stdout))
                })
            })
            .collect();
        for task in tasks {
            let (i, out) = task.await??;
            ensure(out == format!("{i}\n").into_bytes(), || {
                format!("exec {i}: {out:?}")
            })?;
        }

        // Sessions: start, list, attach, kill.
        let session = e.shell(&sb, ShellOptions::new(["sh"])).await?;
        let sid = session.id().to_owned();
        session.detach();
        let list = e.list_sessions(&sb).await?;
        ensure(
            list.iter().any(|s| s.session_id == sid && s.running),
            || format!("sessions {list:?}"),
        )?;
        let mut again = e.attach(&sb, &sid).await?;
        again.write(b"echo attached-$((40+2))\n").await?;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&seen).contains("attached-42") {
            match tokio::time::timeout_at(deadline, again.next()).await {
                Ok(Ok(Some(Event::Stdout(b)))) => seen.extend(b),
                Ok(Ok(Some(_))) => {}
                other => return Err(format!("session output {other:?}, saw {seen:?}").into()),
            }
        }
        drop(again);
        e.kill_session(&sb, &sid).await?;
        let mut gone = false;
        for _ in 0..50 {
            let list = e.list_sessions(&sb).await?;
            if list.iter().all(|s| s.session_id != sid || !s.running) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure(gone, || "session still running after kill".into())?;

        // Streaming exec: output arrives as events, then the exit code.
        let req = ExecRequest {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            ..ExecRequest::default()
        };
        let mut stream = e.exec_stream(&sb, req).await?;
        let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
        while let Some(ev) = stream.next().await? {
            match ev {
                Event::Stdout(b) => out.extend(b),
                Event::Stderr(b) => err.extend(b),
                Event::Exit(c) => code = Some(c),
                Event::Error(m) => return Err(m.into()),
            }
        }
        ensure(
            out == b"out\n" && err == b"err\n" && code == Some(3),
            || format!("stream: {out:?} {err:?} {code:?}"),
        )?;

        // A tunnel to a guest port.
        sh(
            &e,
            &sb,
            "mkdir -p /tmp/www && echo tunnelled > /tmp/www/index.html && httpd -p 8081 -h /tmp/www",
        )
        .await?;
        let ports = e.listening_ports(&sb).await?;
        ensure(ports.contains(&8081), || {
            format!("listening ports {ports:?}")
        })?;
        let mut tunnel = e.tunnel(&sb, 8081).await?;
        tunnel.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), tunnel.read_to_end(&mut resp)).await??;
        let resp = String::from_utf8_lossy(&resp);
        ensure(resp.ends_with("tunnelled\n"), || {
            format!("tunnel read {resp:?}")
        })?;

        // Activity moved with all of this.
        let act = e.activity(&sb).await?;
        ensure(act.last_activity_unix > 0, || format!("activity {act:?}"))?;
        Ok(())
    })
}

fn orphan_vmm_processes_are_killed_at_start() -> TestResult {
    run(async {
        let ns = NetNs::create(&unique_name("btorph"))?;
        let dir = tempfile::tempdir()?;
        // A stand-in for a VMM left by a crashed daemon: its argv names a
        // file under <data_dir>/sandboxes/ (as QEMU's -drive and -qmp do).
        let sb_dir = dir.path().join("sandboxes").join("old");
        std::fs::create_dir_all(&sb_dir)?;
        let fake = sb_dir.join("vmm");
        std::os::unix::fs::symlink("/bin/sleep", &fake)?;
        let mut orphan = std::process::Command::new(&fake).arg("300").spawn()?;
        let mut bystander = std::process::Command::new("sleep").arg("300").spawn()?;

        let _engine = VmEngine::start(
            QemuDriver::default(),
            config(&dir, &ns, ImagePaths::from_env()),
        )
        .await?;
        let mut status = None;
        for _ in 0..100 {
            status = orphan.try_wait()?;
            if status.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let alive = bystander.try_wait()?.is_none();
        let _ = bystander.kill();
        let _ = bystander.wait();
        let _ = orphan.kill();
        let _ = orphan.wait();
        use std::os::unix::process::ExitStatusExt;
        ensure(status.and_then(|s| s.signal()) == Some(9), || {
            format!("orphan not killed: {status:?}")
        })?;
        ensure(alive, || "an unrelated process was killed".into())?;
        ensure(sb_dir.exists(), || "the sandbox dir was deleted".into())?;
        Ok(())
    })
}

fn create_fails_cleanly_when_the_agent_never_answers() -> TestResult {
    run(async {
        // The real kernel with a root filesystem that has no init: the
        // guest panics, the agent never answers, create must undo it all.
        let images = tempfile::tempdir()?;
        let real = ImagePaths::from_env();
        std::fs::copy(real.kernel()?, images.path().join("vmlinux"))?;
        let rootfs = images.path().join(Tier::Busybox.file_name());
        std::fs::File::create(&rootfs)?.set_len(16 << 20)?;
        let out = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&rootfs)
            .output()?;
        ensure(out.status.success(), || "mkfs.ext4 failed".into())?;

        let ns = NetNs::create(&unique_name("btnoag"))?;
        let dir = tempfile::tempdir()?;
        let mut cfg = config(&dir, &ns, ImagePaths::new(images.path()));
        // Long enough that only noticing QEMU's exit ends the wait in time.
        cfg.agent_ready_timeout = Duration::from_secs(600);
        let e = VmEngine::start(QemuDriver::default(), cfg).await?;
        let sb = id("noagent")?;
        let res = tokio::time::timeout(Duration::from_secs(120), e.create(sb.clone(), small()))
            .await
            .map_err(|_| "create did not notice the VMM exit")?;
        ensure(
            matches!(&res, Err(EngineError::NotReady(m)) if m.contains("exited")),
            || format!("expected NotReady (QEMU exited), got {res:?}"),
        )?;
        ensure(e.list().await.is_empty(), || "listed after failure".into())?;
        ensure(e.network().list_taps()?.is_empty(), || "TAP left".into())?;
        ensure(
            !e.network()
                .ip_in_use(std::net::Ipv4Addr::new(10, 213, 0, 2)),
            || "address not released".into(),
        )?;
        ensure(is_empty_dir(&dir.path().join("sandboxes")), || {
            "sandbox dir left".into()
        })?;
        ensure(
            bhatti_engine::sandbox::orphans::find(&dir.path().display().to_string()).is_empty(),
            || "VMM process left running".into(),
        )?;
        Ok(())
    })
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

fn main() {
    let args = Arguments::from_args();
    let vm = [Need::Root, Need::Qemu, Need::Images];
    let trials = vec![
        trial("create_exec_destroy", &vm, create_exec_destroy),
        trial(
            "pause_resume_and_wake_from_warm",
            &vm,
            pause_resume_and_wake_from_warm,
        ),
        trial(
            "stop_start_keeps_data_across_two_cycles",
            &vm,
            stop_start_keeps_data_across_two_cycles,
        ),
        trial(
            "concurrent_wakes_of_a_cold_sandbox_restore_once",
            &vm,
            concurrent_wakes_of_a_cold_sandbox_restore_once,
        ),
        trial(
            "template_free_spec_is_visible_inside",
            &vm,
            template_free_spec_is_visible_inside,
        ),
        trial(
            "two_vms_reach_each_other_also_after_restore",
            &vm,
            two_vms_reach_each_other_also_after_restore,
        ),
        trial(
            "engine_restart_recovers_snapshotted_sandboxes",
            &vm,
            engine_restart_recovers_snapshotted_sandboxes,
        ),
        trial(
            "agent_operations_through_the_engine",
            &vm,
            agent_operations_through_the_engine,
        ),
        trial(
            "orphan_vmm_processes_are_killed_at_start",
            &[Need::Root],
            orphan_vmm_processes_are_killed_at_start,
        ),
        trial(
            "create_fails_cleanly_when_the_agent_never_answers",
            &vm,
            create_fails_cleanly_when_the_agent_never_answers,
        ),
        trial(
            "failed_create_leaves_nothing_behind",
            &[Need::Root, Need::Qemu],
            failed_create_leaves_nothing_behind,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
