//! `bhatti setup`: asks for (or takes from `--url`/`--token`) the daemon
//! URL and API key, verifies them — `GET /health` for the daemon, an
//! authenticated `GET /sandboxes` for the key — and writes
//! `~/.bhatti/config.yaml` with mode 0600. Prompts only on a terminal.

use std::io::IsTerminal;

use clap::Args;
use serde_json::{Value, json};

use super::args::Global;
use super::config::{self, FileConfig, Settings};
use super::http::{Api, HttpError};
use super::{Outcome, render, terminal};

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Save without contacting the daemon
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("no API key: give --token (or BHATTI_TOKEN), or run `bhatti setup` on a terminal")]
    NoToken,
    #[error(
        "the daemon at {0} rejected the API key (HTTP 401); check it with the operator (`bhatti user rotate-key`)"
    )]
    Rejected(String),
    #[error("reading the answer: {0}")]
    Prompt(#[source] std::io::Error),
}

pub async fn run(a: SetupArgs) -> anyhow::Result<Outcome> {
    let path = config::config_path()?;
    let existing = config::load(&path)?;
    // Flags and environment first; the existing file fills in the defaults.
    let current = config::resolve(&a.g.layer(), &config::env_layer(), &existing);
    let interactive = std::io::stdin().is_terminal() && (a.g.url.is_none() || a.g.token.is_none());
    let (url, token) = if interactive {
        let url = match &a.g.url {
            Some(u) => u.clone(),
            None => terminal::prompt("daemon URL", &current.url).map_err(SetupError::Prompt)?,
        };
        let token = match &a.g.token {
            Some(t) => t.clone(),
            None => {
                let hint = if current.token.is_some() {
                    "API key (empty keeps the current one): "
                } else {
                    "API key (bht_…): "
                };
                let t = terminal::prompt_hidden(hint).map_err(SetupError::Prompt)?;
                let t = t.trim().to_owned();
                if t.is_empty() {
                    current.token.clone().ok_or(SetupError::NoToken)?
                } else {
                    t
                }
            }
        };
        (url, token)
    } else {
        (
            current.url.clone(),
            current.token.clone().ok_or(SetupError::NoToken)?,
        )
    };
    let settings = Settings {
        url: url.clone(),
        token: Some(token.clone()),
    };
    let api = Api::new(&settings)?;
    let server_version = if a.no_verify {
        Value::Null
    } else {
        verify(&api).await?
    };
    let cfg = FileConfig {
        url: Some(url.clone()),
        token: Some(token),
    };
    config::save(&path, &cfg)?;
    if a.g.json {
        render::json(&json!({
            "url": url,
            "config": path.display().to_string(),
            "server_version": server_version,
        }));
    } else {
        if let Some(v) = server_version.as_str() {
            println!("connected to bhatti {v} at {url}");
        }
        println!("saved {}", path.display());
    }
    Ok(Outcome::Success)
}

/// Health first (is it a bhatti daemon?), then an authenticated call.
async fn verify(api: &Api) -> anyhow::Result<Value> {
    let health = api.get(&["health"]).await?;
    match api.get(&["sandboxes"]).await {
        Ok(_) => {}
        Err(HttpError::Api { status: 401, .. }) => {
            return Err(SetupError::Rejected(api.base().to_string()).into());
        }
        Err(e) => return Err(e.into()),
    }
    Ok(health.get("version").cloned().unwrap_or(Value::Null))
}
