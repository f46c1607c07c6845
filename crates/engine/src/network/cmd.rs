//! Runs the `ip` and `nft` commands that configure sandbox networking, and
//! turns failures into typed errors that carry the command and its stderr.
//!
//! # Threads, locks, I/O
//! Every function blocks the calling thread until the child exits (call
//! from `tokio::task::spawn_blocking` in async code). No shared state.
//! Commands inside a namespace use `ip -n <ns>` or `ip netns exec <ns>`.

use std::io::Write;
use std::process::{Command, Stdio};

/// Errors from running a configuration command.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` printed output that is not valid JSON: {reason}")]
    BadOutput { command: String, reason: String },
}

impl CmdError {
    /// The failed command's stderr, if it ran and failed.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Self::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// Runs `program args...`, feeding `stdin` if given; returns stdout.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CmdError> {
    let command = render(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error (the child exited early) shows up in its status.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| CmdError::Spawn {
        command: command.clone(),
        source,
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CmdError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// `ip -n <netns> args...`.
pub fn ip_in(netns: &str, args: &[&str]) -> Result<String, CmdError> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full, None)
}

/// `ip -j -n <netns> args...`, parsed as JSON.
pub fn ip_json_in(netns: &str, args: &[&str]) -> Result<serde_json::Value, CmdError> {
    let mut full = vec!["-j", "-n", netns];
    full.extend_from_slice(args);
    let out = run("ip", &full, None)?;
    if out.trim().is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_str(&out).map_err(|e| CmdError::BadOutput {
        command: render("ip", &full),
        reason: e.to_string(),
    })
}

/// `nft args...` inside `netns`, with `stdin` as input (e.g. `-f -`).
pub fn nft_in(netns: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CmdError> {
    let mut full = vec!["netns", "exec", netns, "nft"];
    full.extend_from_slice(args);
    run("ip", &full, stdin)
}

/// `sysctl -w key=value` inside `netns`.
pub fn sysctl_in(netns: &str, key: &str, value: &str) -> Result<(), CmdError> {
    let kv = format!("{key}={value}");
    run(
        "ip",
        &["netns", "exec", netns, "sysctl", "-q", "-w", &kv],
        None,
    )
    .map(drop)
}

fn render(program: &str, args: &[&str]) -> String {
    let mut s = program.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_command_and_stderr() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"], None);
        match err {
            Err(CmdError::Failed {
                command, stderr, ..
            }) => {
                assert_eq!(command, "sh -c echo boom >&2; exit 3");
                assert_eq!(stderr, "boom");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn stdin_is_fed_and_stdout_returned() {
        assert_eq!(run("cat", &[], Some("hi\n")).ok().as_deref(), Some("hi\n"));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        assert!(matches!(
            run("/nonexistent/prog", &[], None),
            Err(CmdError::Spawn { .. })
        ));
    }
}
