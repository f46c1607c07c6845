//! The api bench's E2B part: exec of `true` through the unmodified E2B
//! Python SDK (`commands.run`, the venv `scripts/setup.sh` makes) against
//! `POST /exec` of the same guest command from the same Python process
//! (`e2b_exec.py`), on a sandbox of its own user (the per-user exec rate
//! is shared with the other parts otherwise). Skipped, with the reason,
//! without the venv or the SDK. `BHATTI_BENCH_E2B_GAP_MS` idles that
//! long before each timed call (a caller's think time; default 0).

use std::path::PathBuf;
use std::time::Duration;

use benchkit::{iterations, report};
use bhatti_engine::engine::{Engine, ExecOptions, SandboxId};
use bhatti_store::users::Limits;
use serde_json::json;

use super::{Bench, BenchResult, summary};

/// The venv's Python (`$BHATTI_CACHE_DIR/venv`, default
/// `/var/cache/bhatti/venv`), when it has the SDK.
fn python() -> Result<PathBuf, String> {
    let venv = std::env::var_os("BHATTI_CACHE_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/bhatti"), PathBuf::from)
        .join("venv/bin/python");
    let ok = std::process::Command::new(&venv)
        .args(["-c", "import e2b, httpx"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(venv)
    } else {
        Err(format!(
            "no e2b SDK in {} (scripts/setup.sh installs it)",
            venv.display()
        ))
    }
}

/// A busybox sandbox of user `key`'s whose `/bin/bash` is a script
/// running busybox's `sh`: the E2B path then takes its bash branch, as in
/// the images E2B users bring, at busybox's cost (a real bash's login
/// shell takes ~120 ms under TCG here, which would bury the path's cost).
async fn sandbox_with_bash(
    b: &Bench,
    key: &str,
) -> Result<SandboxId, Box<dyn std::error::Error + Send + Sync>> {
    let sb: serde_json::Value = b
        .http
        .post(format!("{}/sandboxes", b.url))
        .bearer_auth(key)
        .json(&json!({"name": "e", "memory_mb": 256}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id: SandboxId = sb["id"].as_str().unwrap_or_default().parse()?;
    let script = "printf '#!/bin/sh\\nexec /bin/sh \"$@\"\\n' > /bin/bash && chmod 755 /bin/bash";
    let r = b
        .state
        .engine
        .exec(&id, ExecOptions::new(["/bin/sh", "-c", script]))
        .await?;
    if r.exit_code != 0 {
        return Err(format!("/bin/bash wrapper: {}", String::from_utf8_lossy(&r.stderr)).into());
    }
    Ok(id)
}

pub async fn e2b_exec(b: &Bench) -> BenchResult {
    println!("== exec `true` through the E2B SDK");
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED: {why}");
            return Ok(());
        }
    };
    let user = bhatti_server::users::create(&b.state.store, "e2b", Limits::default(), 0)?;
    let id = sandbox_with_bash(b, &user.key).await?;
    let n = iterations(200, 20);
    let url = b.url.clone();
    let run = tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/api/e2b_exec.py"
        ))
        .env("E2B_API_KEY", &user.key)
        .env("E2B_API_URL", format!("{url}/e2b"))
        .env("E2B_SANDBOX_URL", format!("{url}/e2b"))
        .env("E2B_DOMAIN", "invalid.localhost")
        .env("BHATTI_URL", &url)
        .env("BHATTI_SANDBOX_ID", id.to_string())
        .env("BHATTI_ARGV", r#"["/bin/bash", "-l", "-c", "true"]"#)
        .env("BHATTI_N", n.to_string())
        .env(
            "BHATTI_GAP_MS",
            std::env::var("BHATTI_BENCH_E2B_GAP_MS").unwrap_or_default(),
        )
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run).await??;
    if !out.status.success() {
        return Err(format!(
            "e2b_exec.py: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let times: std::collections::BTreeMap<String, Vec<u64>> = serde_json::from_slice(&out.stdout)?;
    let of = |k: &str| {
        let v: Vec<Duration> = times[k]
            .iter()
            .map(|ns| Duration::from_nanos(*ns))
            .collect();
        summary(&v)
    };
    let (native, e2b) = (of("native"), of("e2b"));
    report("POST /exec bash -l -c true (Python)", &native, None);
    report("E2B commands.run(\"true\")", &e2b, Some(&native));
    println!(
        "{:<40} {:.3} ms",
        "E2B - POST /exec at p50",
        (e2b.p50.as_secs_f64() - native.p50.as_secs_f64()) * 1e3
    );
    Ok(())
}
