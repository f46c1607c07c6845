//! Sessions of a sandbox: `ps` lists them (v1's columns `ID COMMAND
//! RUNNING ATTACHED`; more with `--wide`), `kill-session` ends one.

use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::args::Global;
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Sandbox name or id
    pub sandbox: String,
    /// Session id (see `bhatti ps`)
    pub session: String,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Sandbox name or id
    pub sandbox: String,
    #[command(flatten)]
    pub wide: render::Wide,
    #[command(flatten)]
    pub g: Global,
}

/// v1's columns and their minimum widths.
const V1_COLUMNS: &[(&str, &str, usize)] = &[
    ("ID", "session_id", 10),
    ("COMMAND", "argv", 40),
    ("RUNNING", "running", 8),
    ("ATTACHED", "attached", 8),
];

/// Columns of `ps --wide`.
const WIDE_COLUMNS: &[(&str, &str)] = &[
    ("SESSION", "session_id"),
    ("COMMAND", "argv"),
    ("TTY", "tty"),
    ("RUNNING", "running"),
    ("EXIT", "exit_code"),
    ("ATTACHED", "attached"),
    ("CREATED", "created_at"),
];

pub async fn ps(a: PsArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let items = ctx.api.get(&["sandboxes", &a.sandbox, "sessions"]).await?;
    if ctx.json || a.wide.on() {
        render::list(ctx.json, &items, WIDE_COLUMNS);
    } else {
        render::fixed(&items, V1_COLUMNS);
    }
    Ok(Outcome::Success)
}

pub async fn kill(a: KillArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    ctx.api
        .json(
            Method::DELETE,
            &["sandboxes", &a.sandbox, "sessions", &a.session],
            None,
        )
        .await?;
    if ctx.json {
        render::json(&json!({"session_id": a.session, "status": "killed"}));
    } else {
        println!("killed session {}", a.session);
    }
    Ok(Outcome::Success)
}
