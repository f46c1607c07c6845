//! Secrets at rest and file modes on the host: after create, after stop
//! (the snapshot is written) and after start, every directory under the
//! data dir is 0700, every regular file 0600 and no other entry has a
//! group or other bit; no file but `mem.snap` holds the secret env value,
//! and only `sandbox.json` (and `mem.snap`) the agent token: the config
//! drive was scrubbed once the agent answered. The guest still sees its
//! env after a stop and start.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use bhatti_engine::qemu::driver::SNAPSHOT_FILE;
use bhatti_engine::qemu::driver::shared_ram::RAM_FILE;
use bhatti_engine::sandbox::{CONFIG_DRIVE_FILE, META_FILE};
use libtest_mimic::Failed;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

pub fn private_files_and_scrubbed_drive() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let data = d.state.settings.data_dir.clone();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let secret = format!("s3cret-{nanos:x}");
        let plain = format!("plain-{nanos:x}");
        d.expect(
            d.req(Method::POST, "/secrets")
                .json(&json!({"name": "MODES_SECRET", "value": secret})),
            201,
        )
        .await?;
        let body = json!({
            "name": "modes", "memory_mb": 256,
            "secrets": ["MODES_SECRET"], "env": {"PLAIN_VAR": plain},
        });
        let sb = d
            .expect(d.req(Method::POST, "/sandboxes").json(&body), 201)
            .await?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();
        let dir = data.join("sandboxes").join(&id);
        let meta: Value = serde_json::from_slice(&std::fs::read(dir.join(META_FILE))?)?;
        let token = meta["token"].as_str().unwrap_or_default().to_owned();
        ensure(token.len() >= 32, || {
            format!("token in {META_FILE}: {meta}")
        })?;
        let env_script = "printf '%s %s' \"$MODES_SECRET\" \"$PLAIN_VAR\"";
        let want_env = format!("{secret} {plain}");

        check_private(&data, "after create")?;
        check_at_rest(&data, &dir, &secret, &plain, &token, "after create")?;
        let got = d.sh("modes", env_script).await?;
        ensure(got == want_env, || format!("env after create: {got:?}"))?;

        d.expect(d.req(Method::POST, "/sandboxes/modes/stop"), 200)
            .await?;
        ensure(dir.join(SNAPSHOT_FILE).is_file(), || {
            format!("no {SNAPSHOT_FILE} after stop")
        })?;
        check_private(&data, "after stop")?;
        check_at_rest(&data, &dir, &secret, &plain, &token, "after stop")?;

        d.expect(d.req(Method::POST, "/sandboxes/modes/start"), 200)
            .await?;
        let got = d.sh("modes", env_script).await?;
        ensure(got == want_env, || format!("env after start: {got:?}"))?;
        check_private(&data, "after start")?;
        check_at_rest(&data, &dir, &secret, &plain, &token, "after start")?;
        d.finish().await
    })
}

/// Every entry under `root` (and `root` itself) is the owner's alone.
fn check_private(root: &Path, when: &str) -> TestResult {
    let mut bad = Vec::new();
    let mut seen = 0;
    let mut pending = vec![root.to_owned()];
    while let Some(p) = pending.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        let ok = if kind.is_dir() {
            for e in std::fs::read_dir(&p)? {
                pending.push(e?.path());
            }
            mode == 0o700
        } else if kind.is_file() {
            mode == 0o600
        } else {
            kind.is_symlink() || mode & 0o077 == 0
        };
        seen += 1;
        if !ok {
            bad.push(format!("{:o} {}", mode, p.display()));
        }
    }
    ensure(bad.is_empty(), || {
        format!("{when}: entries open to others:\n{}", bad.join("\n"))
    })?;
    ensure(seen > 10, || format!("{when}: only {seen} entries walked"))
}

/// The plain secret and env values are in no file but the snapshot; the
/// token only in `sandbox.json` and the snapshot; the drive holds none.
fn check_at_rest(
    data: &Path,
    dir: &Path,
    secret: &str,
    plain: &str,
    token: &str,
    when: &str,
) -> TestResult {
    let drive = std::fs::read(dir.join(CONFIG_DRIVE_FILE))?;
    for (what, needle) in [("secret", secret), ("env value", plain), ("token", token)] {
        ensure(!contains(&drive, needle.as_bytes()), || {
            format!("{when}: the {what} is in {CONFIG_DRIVE_FILE}")
        })?;
    }
    let in_secret = files_containing(data, secret)?;
    ensure(in_secret.is_empty(), || {
        format!("{when}: the secret value is in {in_secret:?}")
    })?;
    let in_token = files_containing(data, token)?;
    ensure(in_token == vec![dir.join(META_FILE)], || {
        format!("{when}: the token is in {in_token:?}")
    })
}

/// Files under `root` that contain `needle`, except the files that are
/// guest memory (a snapshot, and the RAM file a guest runs on after its
/// first wake from one): memory holds everything the guest knows.
fn files_containing(root: &Path, needle: &str) -> Result<Vec<PathBuf>, Failed> {
    let out = Command::new("grep")
        .args(["-r", "-l", "-a", "-F", "--exclude"])
        .arg(SNAPSHOT_FILE)
        .args(["--exclude", RAM_FILE])
        .args(["-e", needle, "--"])
        .arg(root)
        .output()?;
    // grep: 0 found, 1 none, 2 trouble.
    ensure(out.status.code() != Some(2), || {
        format!("grep: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let mut files: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    files.sort();
    Ok(files)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
