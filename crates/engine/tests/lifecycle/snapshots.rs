//! Named snapshots, restore into a new sandbox and fork, with real VMs:
//! memory state (a tmpfs file, a running counter) carries over, each new
//! sandbox has its own identity and its own copy of memory and disk, and
//! a damaged snapshot is refused with the reason.

use bhatti_engine::snapshot::{CloneSpec, SnapshotId};

use super::*;

pub(crate) fn trials(vm: &[Need]) -> Vec<libtest_mimic::Trial> {
    vec![
        trial(
            "snapshot_restores_into_a_new_sandbox_with_its_own_identity",
            vm,
            restore_into_new_sandbox,
        ),
        trial(
            "fork_children_diverge_and_answer_at_once",
            vm,
            fork_children,
        ),
        trial(
            "snapshot_of_a_stopped_sandbox_and_a_damaged_one",
            vm,
            stopped_and_damaged,
        ),
        trial(
            "creates_restore_a_golden_snapshot_while_it_is_current",
            vm,
            golden_creates,
        ),
    ]
}

/// A counter in tmpfs bumped by a background loop, and a marker file.
const COUNTER: &str = "echo in-ram > /tmp/m; \
    (i=0; while true; do i=$((i+1)); echo $i > /tmp/c; sleep 0.1; done) \
    </dev/null >/dev/null 2>&1 &";

async fn counter(e: &VmEngine<AnyDriver>, sb: &SandboxId) -> Result<u64, Failed> {
    let out = sh(e, sb, "cat /tmp/c").await?;
    Ok(out.trim().parse()?)
}

/// Waits (generously) for the counter of `sb` to pass `above`.
async fn counter_grows(e: &VmEngine<AnyDriver>, sb: &SandboxId, above: u64) -> TestResult {
    for _ in 0..300 {
        if counter(e, sb).await? > above {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the counter of {sb} stayed at or below {above}").into())
}

fn snap(s: &str) -> Result<SnapshotId, Failed> {
    Ok(s.parse::<SnapshotId>()?)
}

async fn ip(e: &VmEngine<AnyDriver>, sb: &SandboxId) -> Result<String, Failed> {
    Ok(e.status(sb)
        .await?
        .ip
        .map(|i| i.to_string())
        .unwrap_or_default())
}

fn restore_into_new_sandbox() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let parent = id("snp")?;
        e.create(parent.clone(), small()).await?;
        sh(e, &parent, COUNTER).await?;
        sh(e, &parent, "echo on-disk > /root/d; sync").await?;
        counter_grows(e, &parent, 2).await?;
        let s = snap("s1")?;
        let info = e.snapshot(&parent, &s).await?;
        ensure(info.problem.is_none() && info.size_bytes > 0, || {
            format!("snapshot info {info:?}")
        })?;
        // The parent runs on.
        let at = counter(e, &parent).await?;
        counter_grows(e, &parent, at).await?;

        let child = id("snp-child")?;
        e.create_from_snapshot(child.clone(), &s, CloneSpec::default())
            .await?;
        let out = sh(e, &child, "cat /tmp/m /root/d; hostname").await?;
        ensure(out == "in-ram\non-disk\nsnp-child\n", || {
            format!("child: {out:?}")
        })?;
        let c = counter(e, &child).await?;
        counter_grows(e, &child, c).await?;
        ensure(ip(e, &child).await? != ip(e, &parent).await?, || {
            "the child has its parent's address".into()
        })?;
        // Writes stay on their own side, both ways.
        sh(
            e,
            &child,
            "echo c > /tmp/only-child; echo c > /root/only-child; sync",
        )
        .await?;
        sh(e, &parent, "echo p > /tmp/only-parent").await?;
        let seen = sh(e, &parent, "ls /tmp /root").await?;
        ensure(!seen.contains("only-child"), || {
            format!("parent sees: {seen}")
        })?;
        let seen = sh(e, &child, "ls /tmp /root").await?;
        ensure(!seen.contains("only-parent"), || {
            format!("child sees: {seen}")
        })?;

        // A clone stops and starts like any sandbox; after its first
        // restore its memory is a RAM file and its stops are small.
        let cdir = t.sandbox_dir(&child);
        e.stop(&child).await?;
        e.start(&child).await?;
        e.stop(&child).await?;
        let state = std::fs::metadata(cdir.join("mem.snap"))?.len();
        ensure(state < 1 << 20, || {
            format!("second stop wrote {state} bytes")
        })?;
        e.start(&child).await?;
        let out = sh(e, &child, "cat /tmp/m /tmp/only-child").await?;
        ensure(out == "in-ram\nc\n", || format!("after two stops: {out:?}"))?;

        // The snapshot stays for more sandboxes; deleting it leaves them.
        let list = e.list_snapshots().await;
        ensure(list.len() == 1 && list[0].id == s, || format!("{list:?}"))?;
        e.delete_snapshot(&s).await?;
        ensure(e.list_snapshots().await.is_empty(), || "not deleted".into())?;
        sh(e, &child, "true").await?;
        Ok(())
    })
}

fn fork_children() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let parent = id("frk")?;
        e.create(parent.clone(), small()).await?;
        sh(e, &parent, COUNTER).await?;
        let kids: Vec<SandboxId> = ["frk-a", "frk-b", "frk-c"]
            .into_iter()
            .map(id)
            .collect::<Result<_, _>>()?;
        let specs = kids
            .iter()
            .map(|k| (k.clone(), CloneSpec::default()))
            .collect();
        let made = e.fork(&parent, specs).await?;
        ensure(made.len() == 3, || format!("{made:?}"))?;
        let mut ips = vec![ip(e, &parent).await?];
        for k in &kids {
            sh(
                e,
                k,
                &format!("echo {k} > /tmp/mine; echo {k} > /root/mine; sync"),
            )
            .await?;
            ips.push(ip(e, k).await?);
        }
        ips.sort();
        ips.dedup();
        ensure(ips.len() == 4, || format!("addresses {ips:?}"))?;
        for k in &kids {
            let out = sh(e, k, "cat /tmp/mine /root/mine; hostname").await?;
            ensure(out == format!("{k}\n{k}\n{k}\n"), || {
                format!("{k}: {out:?}")
            })?;
        }
        let seen = sh(e, &parent, "ls /tmp /root").await?;
        ensure(!seen.contains("mine"), || format!("parent sees {seen}"))?;
        // Two children answer at the same time.
        let (a, b) = tokio::join!(
            sh(e, &kids[0], "sleep 1; hostname"),
            sh(e, &kids[1], "sleep 1; hostname")
        );
        ensure(a? == "frk-a\n" && b? == "frk-b\n", || "hostnames".into())?;
        ensure(is_empty_dir(&t.dir.path().join("forks")), || {
            "the fork's snapshot was left behind".into()
        })?;
        Ok(())
    })
}

fn stopped_and_damaged() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("snpst")?;
        e.create(sb.clone(), small()).await?;
        sh(e, &sb, "echo kept > /tmp/m").await?;
        e.stop(&sb).await?;
        let s = snap("stopped")?;
        e.snapshot(&sb, &s).await?;
        ensure(e.status(&sb).await?.state == SandboxState::Stopped, || {
            "a snapshot started a stopped sandbox".into()
        })?;
        let dup = e.snapshot(&sb, &s).await;
        ensure(matches!(dup, Err(EngineError::SnapshotExists(_))), || {
            format!("duplicate: {dup:?}")
        })?;
        let child = id("snpst-c")?;
        e.create_from_snapshot(child.clone(), &s, CloneSpec::default())
            .await?;
        ensure(sh(e, &child, "cat /tmp/m").await? == "kept\n", || {
            "m".into()
        })?;

        // Cut the state file short: reported, refused, nothing left.
        let state = t.dir.path().join("snapshots/stopped/mem.snap");
        let len = std::fs::metadata(&state)?.len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&state)?
            .set_len(len / 2)?;
        let list = e.list_snapshots().await;
        ensure(list.first().is_some_and(|i| i.problem.is_some()), || {
            format!("damage not reported: {list:?}")
        })?;
        let bad = id("snpst-bad")?;
        let r = e
            .create_from_snapshot(bad.clone(), &s, CloneSpec::default())
            .await;
        ensure(matches!(r, Err(EngineError::SnapshotBroken { .. })), || {
            format!("restore of a damaged snapshot: {r:?}")
        })?;
        ensure(!t.sandbox_dir(&bad).exists(), || "a dir was left".into())?;
        ensure(
            matches!(e.status(&bad).await, Err(EngineError::NotFound(_))),
            || "a sandbox was left".into(),
        )?;
        Ok(())
    })
}

/// Whether `sb` was restored (a clone's console is a socket) or booted.
fn restored(t: &TestEngine, sb: &SandboxId) -> bool {
    t.sandbox_dir(sb).join("console.sock").exists()
}

fn golden_creates() -> TestResult {
    run(async {
        // Images of its own, so that the test can change one.
        let images = tempfile::tempdir()?;
        let shared = ImagePaths::from_env();
        for f in [shared.kernel()?, shared.rootfs(Tier::Busybox)?] {
            let name = f.file_name().ok_or("image name")?;
            std::fs::copy(&f, images.path().join(name))?;
        }
        let t = TestEngine::start(ImagePaths::new(images.path())).await?;
        let e = &t.engine;
        ensure(e.prepare_golden(&small()).await?, || {
            "no golden made".into()
        })?;
        ensure(!e.prepare_golden(&small()).await?, || "made twice".into())?;

        let a = id("gold-a")?;
        let mut spec = small();
        spec.env.insert("GREETING".into(), "hello".into());
        spec.hostname = Some("gold-host".into());
        e.create(a.clone(), spec).await?;
        ensure(restored(&t, &a), || {
            format!(
                "the create booted: {:?}",
                std::fs::read_dir(t.sandbox_dir(&a))
                    .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            )
        })?;
        let out = sh(e, &a, "echo $GREETING; hostname").await?;
        ensure(out == "hello\ngold-host\n", || {
            format!("restored guest: {out:?}")
        })?;

        // What a restore cannot honour boots.
        let b = id("gold-b")?;
        let mut spec = small();
        spec.init = Some("echo init-ran > /tmp/init".into());
        e.create(b.clone(), spec).await?;
        ensure(!restored(&t, &b), || "a create with init restored".into())?;

        // A changed image makes the golden snapshot stale.
        let image = images.path().join(Tier::Busybox.file_name());
        let f = std::fs::OpenOptions::new().write(true).open(&image)?;
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))?;
        let c = id("gold-c")?;
        e.create(c.clone(), small()).await?;
        ensure(!restored(&t, &c), || "restored from a stale golden".into())?;
        for sb in [a, b, c] {
            e.destroy(&sb).await?;
        }
        Ok(())
    })
}
