//! Sessions of a sandbox: `ps` lists them, `kill-session` ends one.

use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::args::{Global, Target};
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

const COLUMNS: &[(&str, &str)] = &[
    ("SESSION", "session_id"),
    ("COMMAND", "argv"),
    ("TTY", "tty"),
    ("RUNNING", "running"),
    ("EXIT", "exit_code"),
    ("ATTACHED", "attached"),
    ("CREATED", "created_at"),
];

pub async fn ps(a: Target) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let items = ctx.api.get(&["sandboxes", &a.sandbox, "sessions"]).await?;
    render::list(ctx.json, &items, COLUMNS);
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
