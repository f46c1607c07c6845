//! Restore-based create through the daemon (`restore_creates`, on by
//! default): after two creates of one kind booted, the daemon makes a
//! pre-booted snapshot of that kind in the background, and the next
//! create of it restores that snapshot: it has its own address, hostname,
//! token and environment, and lives like a booted one (exec, stop,
//! start). With `restore_creates: false` creates keep booting.

use std::time::Duration;

use libtest_mimic::Trial;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![
        trial(
            "golden::creates_restore_after_two_boots",
            creates_restore_after_two_boots,
        ),
        trial("golden::off_keeps_booting", off_keeps_booting),
    ]
}

/// The golden snapshot of the tests' default kind (busybox, 1 vCPU).
const KEY: &str = "busybox-1c-256m";

/// Booting and snapshotting a guest in the background on a loaded host.
const GOLDEN_WAIT: Duration = Duration::from_secs(180);

fn restored(d: &TestDaemon, id: &str) -> bool {
    let dir = d.state.settings.data_dir.join("sandboxes").join(id);
    // A restored guest's console is a socket (its identity went over it).
    dir.join("console.sock").exists()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

pub fn creates_restore_after_two_boots() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let a = d.create("boot-a").await?;
        let b = d.create("boot-b").await?;
        ensure(
            !restored(&d, &id_of(&a)) && !restored(&d, &id_of(&b)),
            || "the first creates did not boot".into(),
        )?;
        let golden = d.state.settings.data_dir.join("goldens").join(KEY);
        eventually(GOLDEN_WAIT, || async {
            Ok(golden.join("snapshot.json").is_file().then_some(()))
        })
        .await?;

        let body = json!({
            "name": "quick", "memory_mb": 256, "env": {"GREETING": "hello"},
        });
        let c = d
            .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        let id = id_of(&c);
        ensure(restored(&d, &id), || {
            format!("the third create booted: {c}")
        })?;
        let out = d.sh("quick", "echo $GREETING; hostname").await?;
        ensure(out == format!("hello\n{id}\n"), || {
            format!("restored guest: {out:?}")
        })?;
        ensure(c["ip"] != a["ip"] && c["ip"] != b["ip"], || {
            format!("addresses {} {} {}", a["ip"], b["ip"], c["ip"])
        })?;
        // It lives like a booted sandbox.
        d.sh("quick", "echo kept > /tmp/k").await?;
        d.expect(d.req(Method::POST, "/sandboxes/quick/stop"), 200)
            .await?;
        d.expect(d.req(Method::POST, "/sandboxes/quick/start"), 200)
            .await?;
        let out = d.sh("quick", "cat /tmp/k").await?;
        ensure(out == "kept\n", || format!("after stop/start: {out:?}"))?;
        // A create a restore cannot honour boots.
        let body = json!({"name": "with-init", "memory_mb": 256, "init": "true"});
        let e = d
            .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        ensure(!restored(&d, &id_of(&e)), || {
            "a create with init restored".into()
        })?;
        d.finish().await
    })
}

pub fn off_keeps_booting() -> TestResult {
    run(async {
        let d = TestDaemon::start_with(Timers::default(), |c| c.restore_creates = false).await?;
        for name in ["off-a", "off-b", "off-c"] {
            let v = d.create(name).await?;
            ensure(!restored(&d, &id_of(&v)), || format!("{name} restored"))?;
        }
        // Nothing was asked for in the background either.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let goldens = d.state.settings.data_dir.join("goldens");
        ensure(!goldens.join(KEY).exists(), || {
            "a golden snapshot was made".into()
        })?;
        d.finish().await
    })
}
