//! A v1 client against the real daemon: raw HTTP requests shaped exactly
//! as bhatti v1 clients (its CLI, its Go client, shell scripts with curl)
//! send them, hand-written JSON (fractional `cpus`, `volumes[].target`,
//! unknown fields such as `ssh_keys`, `name: ""`, `cpus: 0`), and every
//! response read the way a v1 Go client decodes it: field names and JSON
//! types asserted (`created_at` a string in RFC 3339 UTC, `uptime` a Go
//! duration string, `container_port` a number, …). The WebSocket client
//! treats every frame it receives as terminal bytes, as v1's does.
//!
//! The facts checked are the rows of the "HTTP API" table of
//! V1-COMPAT.md (the v1 surface; docs/api.md describes the API that
//! results). A failed check names its row: `[V1-COMPAT row: <topic>]`.
//! Checks within a trial are collected ([`Rows`]) so that one run lists
//! every row that does not hold, not only the first.
//!
//! | V1-COMPAT.md row | test(s) |
//! |---|---|
//! | unknown JSON fields in requests | `misc::health_static_errors` (a JSON body sent as `curl -d` sends it), `sandboxes::create_bodies_and_object` (`ssh_keys`, `labels`), `resources::templates_secrets_volumes` (secret, volume, template bodies), `files::files_and_user_rule` (exec body) |
//! | timestamps | `sandboxes::create_bodies_and_object` (sandbox `created_at`), `resources::templates_secrets_volumes` (secret, volume, template dates), `files::files_and_user_rule` (`mtime` stays Unix seconds), `ws::terminal_client` (sessions' `created_at` stays Unix seconds) |
//! | users in the guest | `ws::terminal_client` (the shell runs as root), `files::files_and_user_rule` (exec as root, `"user":"lohar"`, API file in `/root` readable by exec and owned by 1000, `/home/lohar`, `/workspace`), `sandboxes::create_bodies_and_object` (`init` runs as lohar) |
//! | `GET /health` | `misc::health_static_errors` |
//! | static UI | `misc::health_static_errors` |
//! | stopped sandbox | `sandboxes::stopped_sandbox_wakes_and_ports` (exec, files, sessions, ports, proxy, ws: each on a stopped sandbox) |
//! | `POST /sandboxes` | `sandboxes::create_bodies_and_object` (`cpus: 1.5`, `name: ""`, `cpus: 0`, `memory_mb: 0`), `resources::templates_secrets_volumes` (`template_id` with env merge) |
//! | create volumes | `sandboxes::create_bodies_and_object` (`volumes[].target`), `resources::templates_secrets_volumes` (`new_volumes[].mount`, template `mounts[].volume_name/target/auto_create`) |
//! | sandbox object | `sandboxes::create_bodies_and_object`, `resources::templates_secrets_volumes` (`template_id`) |
//! | `GET /sandboxes/{id}/ports` | `sandboxes::stopped_sandbox_wakes_and_ports` |
//! | `GET /ports` | `sandboxes::stopped_sandbox_wakes_and_ports` (objects, and a stopped sandbox is not woken) |
//! | WebSocket `/ws` | `ws::terminal_client` (`?token=`, header auth, frames as terminal bytes, resize, `?control=1`) |
//! | files | `files::files_and_user_rule` (GET/PUT/HEAD headers, ranges, PUT without `Content-Length`, `ls=true` entries, the 10,000 cap and its sentinel) |
//! | templates | `resources::templates_secrets_volumes` |
//! | secrets | `resources::templates_secrets_volumes` |
//! | volumes | `resources::templates_secrets_volumes` |
//! | errors | `misc::health_static_errors` (401, 404, bad body 400, 413), `files::files_and_user_rule` (missing file 404 `{"error"}`) |
//!
//! The per-sandbox and per-template `user` (the rest of the "users in the
//! guest" row) are checked in `users::one_rule_through_the_api`.
//!
//! The CLI table of V1-COMPAT.md is not HTTP; its rows are tested in
//! `crates/bhatti/tests`:
//!
//! | V1-COMPAT.md CLI row | test(s) |
//! |---|---|
//! | config | `daemon_cli::v1::v1_config_flags_and_output` (a v1 `~/.bhatti/config.yaml` as the only configuration), `cli_offline::config_precedence_flag_env_file_default`, `cli_v1::serve_finds_a_v1_config_and_says_what_it_ignores`, `cli_v1::user_finds_the_data_dir_in_the_v1_config` |
//! | `create`, `list`, `exec`, `ps`, `file ls`, `secret set` | `daemon_cli::v1::v1_config_flags_and_output` |
//! | `user create` | `cli_v1::user_create_takes_v1s_max_memory` |
//! | a bare `bhatti` | `cli_v1::bare_bhatti_prints_help` |

pub mod files;
pub mod misc;
pub mod resources;
pub mod sandboxes;
pub mod ws;

use std::time::{Duration, SystemTime};

use libtest_mimic::Failed;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult};

/// The trials of this module, for `main`.
pub fn trials() -> Vec<libtest_mimic::Trial> {
    use crate::support::trial;
    vec![
        libtest_mimic::Trial::test("v1::helpers_read_v1_values", helpers_read_v1_values),
        trial("v1::misc::health_static_errors", misc::health_static_errors),
        trial(
            "v1::sandboxes::create_bodies_and_object",
            sandboxes::create_bodies_and_object,
        ),
        trial(
            "v1::sandboxes::stopped_sandbox_wakes_and_ports",
            sandboxes::stopped_sandbox_wakes_and_ports,
        ),
        trial("v1::files::files_and_user_rule", files::files_and_user_rule),
        trial("v1::ws::terminal_client", ws::terminal_client),
        trial(
            "v1::resources::templates_secrets_volumes",
            resources::templates_secrets_volumes,
        ),
    ]
}

/// The failed checks of a trial, each naming its V1-COMPAT.md row.
#[derive(Debug, Default)]
pub struct Rows {
    fails: Vec<String>,
}

impl Rows {
    /// Records a failure of `row` unless `ok`; returns `ok`.
    pub fn check(&mut self, row: &str, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            let msg = format!("[V1-COMPAT row: {row}] {}", what());
            eprintln!("v1 check failed: {msg}");
            self.fails.push(msg);
        }
        ok
    }

    /// Ok when every check held, else one error listing every failure.
    pub fn done(self) -> TestResult {
        if self.fails.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} v1 check(s) failed:\n  {}",
            self.fails.len(),
            self.fails.join("\n  ")
        )
        .into())
    }
}

/// A string in RFC 3339, UTC (`Z`), within a day of now, as v1 sends
/// `created_at` and `updated_at` and a Go client parses into `time.Time`.
pub fn rfc3339_utc(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let Ok(t) = humantime::parse_rfc3339_weak(s) else {
        return false;
    };
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    s.contains('T') && s.ends_with('Z') && t > now - day && t < now + day
}

/// A Go `time.Duration` string (`2h15m30s`, `12s`, `1.5s`, `150ms`,
/// `0s`), as v1's `/health` sends `uptime`.
pub fn go_duration(s: &str) -> bool {
    const UNITS: [&str; 7] = ["ns", "us", "µs", "ms", "h", "m", "s"];
    if s == "0s" {
        return true;
    }
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let num = &rest[..digits];
        if num.is_empty() || num.parse::<f64>().is_err() {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = UNITS.iter().find(|u| rest.starts_with(**u)) else {
            return false;
        };
        rest = &rest[unit.len()..];
        parts += 1;
    }
    parts > 0
}

/// `{"error": "<non-empty string>"}`, as every v1 error.
pub fn is_error(v: &Value) -> bool {
    v["error"].as_str().is_some_and(|m| !m.is_empty())
}

/// A non-negative integer JSON number.
pub fn is_uint(v: &Value) -> bool {
    v.is_u64()
}

/// A non-empty JSON string.
pub fn is_text(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

/// Absent, or a string (the "when known" fields of a v1 object).
pub fn opt_text(v: &Value) -> bool {
    v.is_null() || v.is_string()
}

/// Sends and returns (status, JSON body or the text as a string).
pub async fn send(
    d: &TestDaemon,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), Failed> {
    let mut r = d.req(m, path);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let (s, v) = d.call(r).await?;
    Ok((s.as_u16(), v))
}

/// Runs `sh -c script` (root by default) and returns (exit code, stdout),
/// or (-1, the reply) when the request itself failed.
pub async fn exec(
    d: &TestDaemon,
    sb: &str,
    script: &str,
    extra: Value,
) -> Result<(i64, String), Failed> {
    let mut body = json!({"cmd": ["sh", "-c", script], "timeout_sec": 120});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = send(
        d,
        Method::POST,
        &format!("/sandboxes/{sb}/exec"),
        Some(body),
    )
    .await?;
    if s != 200 {
        return Ok((-1, format!("{s} {v}")));
    }
    let out = v["stdout"].as_str().unwrap_or_default().to_owned();
    let err = v["stderr"].as_str().unwrap_or_default();
    let code = v["exit_code"].as_i64().unwrap_or(-1);
    Ok((
        code,
        if code == 0 {
            out
        } else {
            format!("{out}{err}")
        },
    ))
}

/// Checks the fields every v1 sandbox object has: `id`, `name`, `status`,
/// `ip` (strings), `created_at` (RFC 3339), and the "when known" ones.
pub fn sandbox_object(rows: &mut Rows, what: &str, v: &Value) {
    for k in ["id", "name", "status"] {
        rows.check("sandbox object", is_text(&v[k]), || {
            format!("{what}: `{k}` is not a non-empty string: {v}")
        });
    }
    rows.check("sandbox object", v["ip"].is_string(), || {
        format!("{what}: `ip` is not a string: {v}")
    });
    rows.check("timestamps", rfc3339_utc(&v["created_at"]), || {
        format!("{what}: `created_at` is not an RFC 3339 UTC string: {v}")
    });
    rows.check("sandbox object", opt_text(&v["template_id"]), || {
        format!("{what}: `template_id` is neither absent nor a string: {v}")
    });
    // This daemon always knows these two.
    for k in ["engine_id", "created_by"] {
        rows.check("sandbox object", is_text(&v[k]), || {
            format!("{what}: `{k}` is not a non-empty string: {v}")
        });
    }
}

/// The helpers' own rules (no VM).
pub fn helpers_read_v1_values() -> TestResult {
    let mut rows = Rows::default();
    for ok in [
        "2h15m30s", "12s", "0s", "1.5s", "150ms", "1h0m0s", "3m2.25s",
    ] {
        rows.check("GET /health", go_duration(ok), || format!("{ok} refused"));
    }
    for bad in ["", "12", "s", "1x", "h1", "1.2.3s"] {
        rows.check("GET /health", !go_duration(bad), || format!("{bad} taken"));
    }
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    rows.check("timestamps", rfc3339_utc(&json!(now)), || now.clone());
    rows.check("timestamps", !rfc3339_utc(&json!(1_700_000_000)), || {
        "a number taken as RFC 3339".into()
    });
    rows.done()
}
