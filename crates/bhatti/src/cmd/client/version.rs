//! `bhatti version`: the client's version and the daemon's (from
//! `GET /health`). An unreachable daemon still prints the client version,
//! then fails with the connection error.

use clap::Args;
use serde_json::{Value, json};

use super::args::Global;
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print only the client version (no daemon contact)
    #[arg(long)]
    pub client: bool,
    #[command(flatten)]
    pub g: Global,
}

pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn run(a: VersionArgs) -> anyhow::Result<Outcome> {
    if a.client {
        if a.g.json {
            render::json(&json!({"client": CLIENT_VERSION}));
        } else {
            println!("client: {CLIENT_VERSION}");
        }
        return Ok(Outcome::Success);
    }
    let ctx = Ctx::new(&a.g)?;
    let health = ctx.api.get(&["health"]).await;
    let server = health.as_ref().ok().and_then(|h| h.get("version")).cloned();
    if ctx.json {
        render::json(&json!({
            "client": CLIENT_VERSION,
            "server": server.clone().unwrap_or(Value::Null),
            "url": ctx.api.base().as_str(),
        }));
    } else {
        println!("client: {CLIENT_VERSION}");
        if let Some(v) = &server {
            println!("server: {} ({})", v.as_str().unwrap_or("?"), ctx.api.base());
        }
    }
    health?;
    Ok(Outcome::Success)
}
