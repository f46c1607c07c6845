//! API fuzzing from the OpenAPI document: PyPI's `schemathesis` (installed
//! by `scripts/setup.sh` into `$BHATTI_CACHE_DIR/venv`, or on `PATH`) runs
//! against a real daemon over loopback, bounded in examples and time, and
//! checks that no request gets a 5xx (`not_a_server_error`), that every
//! reply matches the document (schema, status, content type, headers) and
//! that no route answers without a valid key (`ignored_auth`). Then the
//! daemon must still answer `/health` and no thread of the test process
//! may have panicked. Without schemathesis the trial is reported ignored,
//! with the reason.
//!
//! [`long_input_is_not_echoed`]: a request carrying a huge name, program
//! or path (30 kB: an URI is at most 64 kB) gets a 4xx whose message
//! quotes only a short prefix of it.
//!
//! The fuzzer runs as a user with small limits (2 sandboxes, 1 CPU,
//! 256 MB each), so random creates cannot boot many VMs. Sandboxes `fz`
//! and `fz2` exist before the run; every `{id}` path parameter is `fz`'s
//! id, except those of delete, stop, start and patch
//! (whose `ttl_sec` is a delete or stop a second later), which are
//! `fz2`'s: a deleted or stopped `fz` would turn every later operation on
//! it into a 404 or 409 that tests nothing.
//! Excluded: the reverse
//! proxy (`/proxy/`), whose 502 when nothing listens in the guest is the
//! right answer, not a fault of the daemon, and the event stream
//! (`/events`), which never ends by design (each call would wait out the
//! request timeout; `events::lifecycle_in_order` tests it). `BHATTI_FUZZ_EXAMPLES` and
//! `BHATTI_FUZZ_CHECKS` make a longer or stricter run by hand.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bhatti_server::daemon::DaemonEngine;
use bhatti_store::users::Limits;
use libtest_mimic::{Completion, Trial};
use reqwest::Method;
use serde_json::json;

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run};

const NAME: &str = "fuzz::schemathesis_against_a_daemon";
const PROGRAM: &str = "schemathesis";
/// Test cases per operation in the fuzzing phase (`BHATTI_FUZZ_EXAMPLES`
/// overrides it for a longer run by hand).
const MAX_EXAMPLES: &str = "40";
/// Checks of every reply (`BHATTI_FUZZ_CHECKS` overrides them, e.g. `all`).
const CHECKS: &str = "not_a_server_error,response_schema_conformance,\
    status_code_conformance,content_type_conformance,\
    response_headers_conformance,ignored_auth";
/// Wall-clock bound of the schemathesis process.
const BUDGET: Duration = Duration::from_secs(240);

/// The fuzzer: the setup script's venv first, then `PATH`.
fn schemathesis() -> Option<PathBuf> {
    let cache = std::env::var_os("BHATTI_CACHE_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/bhatti"), PathBuf::from);
    let venv = cache.join("venv/bin").join(PROGRAM);
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(PROGRAM))
        .find(|p| p.is_file())
}

/// The trial: the daemon's needs (as every VM test), plus schemathesis.
pub fn trial() -> Trial {
    if schemathesis().is_some() {
        return crate::support::trial(NAME, schemathesis_against_a_daemon);
    }
    let reason = format!("{PROGRAM} not found (scripts/setup.sh installs it)");
    eprintln!("SKIPPED: {NAME}: {reason}");
    Trial::ignorable_test(NAME, move || {
        println!("SKIPPED: {reason}");
        Ok(Completion::ignored_with(reason))
    })
    .with_ignored_flag(true)
}

/// Panics of any thread of this process since [`count_panics`].
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics (the daemon runs in-process), still printing them.
fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

fn schemathesis_against_a_daemon() -> TestResult {
    count_panics();
    run(async {
        let mut d = TestDaemon::start(Timers::default()).await?;
        let limits = Limits {
            max_sandboxes: 2,
            max_cpus: 1,
            max_memory_mb: 256,
            ..Limits::default()
        };
        d.key = d.user("fuzzer", limits)?;
        let other = d.user("fuzzer2", limits)?;
        let fz = d.create("fz").await?;
        let fz2 = d.create("fz2").await?;
        let id = |v: &serde_json::Value| v["id"].as_str().unwrap_or_default().to_owned();
        let dir = tempfile::tempdir()?;
        let spec = dir.path().join("openapi.json");
        let doc = bhatti_server::openapi::document::<DaemonEngine>();
        std::fs::write(&spec, serde_json::to_vec_pretty(&doc)?)?;
        let config = config(&id(&fz), &id(&fz2), &other);
        std::fs::write(dir.path().join("schemathesis.toml"), config)?;

        let started = Instant::now();
        let out = fuzz(&d, dir.path(), &spec).await?;
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = summary(&stdout);
        println!("schemathesis: {took:.0?}\n{summary}");
        ensure(out.status.success(), || {
            format!(
                "schemathesis failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;

        let health = d.req(Method::GET, "/health").send().await?;
        ensure(health.status() == 200, || {
            format!("after the run /health answered {}", health.status())
        })?;
        let panics = PANICS.load(Ordering::SeqCst);
        ensure(panics == 0, || format!("{panics} panics during the run"))?;
        // The user can still work: the quota is not leaked by the run.
        let list = d.expect(d.req(Method::GET, "/sandboxes"), 200).await?;
        for sb in list.as_array().into_iter().flatten() {
            let path = format!("/sandboxes/{}", sb["id"].as_str().unwrap_or_default());
            past_rate_limit(&d, || d.req(Method::DELETE, &path), 200).await?;
        }
        let body = json!({"name": "after", "memory_mb": 256});
        past_rate_limit(&d, || d.req(Method::POST, "/sandboxes").json(&body), 201).await?;
        d.finish().await
    })
}

/// Sends `req()` until it is not refused by the rate limit (the run may
/// have spent the user's writes of this minute), then expects `want`.
async fn past_rate_limit(
    d: &TestDaemon,
    req: impl Fn() -> reqwest::RequestBuilder,
    want: u16,
) -> TestResult {
    let status = eventually(Duration::from_secs(90), || async {
        let (s, v) = d.call(req()).await?;
        Ok((s != 429).then_some((s, v)))
    })
    .await?;
    ensure(status.0.as_u16() == want, || {
        format!("expected {want}, got {}: {}", status.0, status.1)
    })
}

/// Settings schemathesis reads from `schemathesis.toml` in its working
/// directory: every `{id}` is sandbox `fz` by its id, but the one of
/// delete, stop, start and patch (a TTL stops or deletes) is `fz2`'s (so
/// that `fz` stays
/// running for exec, files and sessions). Creates and the
/// routes that need no sandbox (templates, volumes, secrets) run as a
/// second user, `other`: the rate limit (600 writes a minute per user) would
/// otherwise answer 429 to most of the run's later writes, and the first
/// user's quota is full with `fz` and `fz2`.
fn config(fz: &str, fz2: &str, other: &str) -> String {
    format!(
        r#"
[parameters]
"path.id" = "{fz}"

[[operations]]
include-name = [
    "DELETE /sandboxes/{{id}}",
    "POST /sandboxes/{{id}}/stop",
    "POST /sandboxes/{{id}}/start",
    "PATCH /sandboxes/{{id}}",
]
parameters = {{ "path.id" = "{fz2}" }}

[[operations]]
include-path-regex = "^/(templates|volumes|secrets|sandboxes$)"
headers = {{ Authorization = "Bearer {other}" }}
"#
    )
}

/// Runs schemathesis against `d`, killed after [`BUDGET`].
async fn fuzz(
    d: &TestDaemon,
    dir: &std::path::Path,
    spec: &std::path::Path,
) -> Result<std::process::Output, libtest_mimic::Failed> {
    let program = schemathesis().ok_or("schemathesis vanished")?;
    let child = tokio::process::Command::new(program)
        .current_dir(dir)
        .arg("run")
        .arg(spec)
        .args(["--url", &d.url])
        .args(["--header", &format!("Authorization: Bearer {}", d.key)])
        .args(["--checks", &env_or("BHATTI_FUZZ_CHECKS", CHECKS)])
        .args(["--exclude-path-regex", "/proxy/|^/events$"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args([
            "--max-examples",
            &env_or("BHATTI_FUZZ_EXAMPLES", MAX_EXAMPLES),
        ])
        // One worker: hypothesis parses lambdas' sources with `ast` from
        // each worker thread, which CPython 3.11 can fail at ("AST
        // constructor recursion depth mismatch") when two do at once.
        .args(["--seed", "17", "--workers", "1", "--no-color"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "90", "--suppress-health-check", "all"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    match tokio::time::timeout(BUDGET, child.wait_with_output()).await {
        Ok(out) => Ok(out?),
        Err(_) => Err(format!("schemathesis still running after {BUDGET:?}").into()),
    }
}

/// Environment variable `name`, or `default`.
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The closing lines of schemathesis' report (its summary).
fn summary(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    let from = lines
        .iter()
        .rposition(|l| l.contains("SUMMARY"))
        .unwrap_or(lines.len().saturating_sub(20));
    lines[from..].join("\n")
}

/// Longest error body a request with huge input may get, in bytes.
const SHORT_BODY: usize = 4096;

/// Huge inputs in a body, an exec and a query get short 4xx bodies.
pub fn long_input_is_not_echoed() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        d.create("lg").await?;
        let huge = "x".repeat(1_000_000);
        let cases = [
            (
                "create with a 1 MB name",
                d.req(Method::POST, "/sandboxes")
                    .json(&json!({"name": huge})),
            ),
            (
                "exec of a 1 MB program name",
                d.req(Method::POST, "/sandboxes/lg/exec")
                    .json(&json!({"cmd": [format!("/{huge}")]})),
            ),
            (
                "read of a 30 kB path",
                d.req(Method::GET, "/sandboxes/lg/files")
                    .query(&[("path", format!("/{}", &huge[..30_000]))]),
            ),
            (
                "write to a 30 kB path",
                d.req(Method::PUT, "/sandboxes/lg/files")
                    .query(&[("path", format!("/tmp/{}", &huge[..30_000]))])
                    .body("data"),
            ),
            (
                "a 1 MB volume name",
                d.req(Method::POST, "/volumes")
                    .json(&json!({"name": huge.as_str()})),
            ),
        ];
        for (what, req) in cases {
            let resp = req.send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            ensure(status.is_client_error(), || {
                format!("{what}: status {status}")
            })?;
            ensure(body.len() <= SHORT_BODY, || {
                let head = String::from_utf8_lossy(&body[..200.min(body.len())]).into_owned();
                format!("{what}: {status} with a {} byte body: {head}…", body.len())
            })?;
        }
        d.finish().await
    })
}
