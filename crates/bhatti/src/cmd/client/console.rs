//! `console SANDBOX [-n N]`: the last lines of a sandbox's serial console
//! (`GET /sandboxes/{id}/console`: the agent's own lines, the kernel's
//! warnings and errors), printed as they are. It never wakes the sandbox; a sandbox
//! without a log prints nothing. (v1 had no such command.)

use clap::Args;
use reqwest::Method;

use super::args::Global;
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Sandbox name or id
    pub sandbox: String,
    /// How many lines, from the end (at most 10000)
    #[arg(short = 'n', long, default_value_t = 200)]
    pub lines: u32,
    #[command(flatten)]
    pub g: Global,
}

pub async fn run(a: ConsoleArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let mut url = ctx.api.url(&["sandboxes", &a.sandbox, "console"]);
    url.query_pairs_mut()
        .append_pair("lines", &a.lines.to_string());
    let resp = ctx.api.send(ctx.api.request(Method::GET, url)).await?;
    let text = resp.text().await.map_err(|e| ctx.api.transport(&e))?;
    if ctx.json {
        render::json(&serde_json::json!({"sandbox": a.sandbox, "console": text}));
    } else {
        print!("{text}");
    }
    Ok(Outcome::Success)
}
