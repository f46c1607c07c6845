//! `bhatti exec NAME -- CMD…`: runs a command through the NDJSON streaming
//! endpoint, writing each `stdout`/`stderr` event to the matching local
//! stream as it arrives (flushed), and exits with the remote exit code.
//! With `--json` the buffered endpoint is used and its
//! `{exit_code, stdout, stderr}` printed (the exit code is still
//! forwarded). The body is read chunk by chunk on the command's runtime.
//! `--user` runs the command as another guest user (the API's `user`;
//! default the sandbox's user, else root as in v1).

use std::io::Write;

use clap::Args;
use reqwest::Method;
use reqwest::header::ACCEPT;
use serde_json::{Value, json};

use super::args::{EnvArg, Global, env_object, parse_env};
use super::http::{read_json, root_cause};
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox name or id
    pub sandbox: String,
    /// The command and its arguments (after `--`)
    #[arg(required = true, last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
    /// Environment variables for this command (repeatable, or comma-separated: A=1,B=2)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE[,KEY=VALUE]", value_parser = parse_env)]
    pub env: Vec<EnvArg>,
    /// Working directory in the sandbox
    #[arg(long, short = 'w', value_name = "DIR")]
    pub cwd: Option<String>,
    /// Kill the command after this many seconds (exit code 137)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Run as this guest user (a name in the guest's /etc/passwd, or a
    /// uid) [default: the sandbox's user, else root]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec failed: {0}")]
    Remote(String),
    #[error("the exec stream ended without an exit code")]
    NoExit,
    #[error("bad event from the daemon: {0}")]
    BadEvent(String),
    #[error("reading the exec stream: {0}")]
    Stream(String),
}

pub fn body(a: &ExecArgs) -> Value {
    let mut b = json!({"cmd": a.cmd});
    if !a.env.is_empty() {
        b["env"] = Value::Object(env_object(&a.env));
    }
    if let Some(c) = &a.cwd {
        b["cwd"] = json!(c);
    }
    if let Some(t) = a.timeout {
        b["timeout_sec"] = json!(t);
    }
    if let Some(u) = &a.user {
        b["user"] = json!(u);
    }
    b
}

pub async fn run(a: ExecArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let url = ctx.api.url(&["sandboxes", &a.sandbox, "exec"]);
    let body = body(&a);
    if ctx.json {
        let rb = ctx.api.request(Method::POST, url).json(&body);
        let res = read_json(ctx.api.send(rb).await?).await?;
        render::json(&res);
        let code = res.get("exit_code").and_then(Value::as_i64).unwrap_or(1);
        return Ok(exit_with(code));
    }
    let rb = ctx
        .api
        .request(Method::POST, url)
        .header(ACCEPT, "application/x-ndjson")
        .json(&body);
    let mut resp = ctx.api.send(rb).await?;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| ExecError::Stream(root_cause(&e)))?;
        let Some(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            if let Some(code) = handle_line(&line)? {
                return Ok(exit_with(code));
            }
        }
    }
    if !pending.is_empty()
        && let Some(code) = handle_line(&pending)?
    {
        return Ok(exit_with(code));
    }
    Err(ExecError::NoExit.into())
}

/// Handles one NDJSON event; `Some(code)` at the end.
fn handle_line(line: &[u8]) -> Result<Option<i64>, ExecError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let ev: Value =
        serde_json::from_str(text).map_err(|e| ExecError::BadEvent(format!("{e}: {text}")))?;
    let data = || ev.get("data").and_then(Value::as_str).unwrap_or("");
    match ev.get("type").and_then(Value::as_str) {
        Some("stdout") => {
            let mut out = std::io::stdout().lock();
            // A closed stdout (e.g. `| head`) is not the command's failure.
            let _ = out.write_all(data().as_bytes()).and_then(|()| out.flush());
            Ok(None)
        }
        Some("stderr") => {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(data().as_bytes()).and_then(|()| err.flush());
            Ok(None)
        }
        Some("exit") => match ev.get("exit_code").and_then(Value::as_i64) {
            Some(c) => {
                if ev.get("timed_out").and_then(Value::as_bool) == Some(true) {
                    eprintln!("bhatti: command timed out and was killed");
                }
                Ok(Some(c))
            }
            None => Err(ExecError::BadEvent(text.to_owned())),
        },
        Some("error") => Err(ExecError::Remote(data().to_owned())),
        _ => Err(ExecError::BadEvent(text.to_owned())),
    }
}

/// The process exit status for a remote exit code (kept in 0..=255).
fn exit_with(code: i64) -> Outcome {
    match code {
        0 => Outcome::Success,
        c => Outcome::Exit(i32::try_from(c.clamp(1, 255)).unwrap_or(1)),
    }
}
