//! `bhatti secret set|list|delete`. `set` reads the value from stdin when
//! it is not given (so it stays out of shell history); on a terminal it
//! prompts with echo off.

use std::io::{IsTerminal, Read};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::args::Global;
use super::{Ctx, Outcome, render, terminal};

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub action: SecretAction,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Create or replace a secret.
    Set {
        /// Secret name (also the environment variable it becomes)
        name: String,
        /// The value; read from stdin when omitted (one trailing newline dropped)
        value: Option<String>,
    },
    /// List your secrets (names and dates, never values).
    #[command(visible_alias = "ls")]
    List,
    /// Delete a secret.
    #[command(visible_alias = "rm")]
    Delete {
        /// Secret name
        name: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the secret value from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("the secret value is not valid UTF-8")]
    NotUtf8,
}

/// Drops one trailing `\n` (or `\r\n`).
pub fn trim_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

fn read_value(name: &str) -> Result<String, SecretError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let line =
            terminal::prompt_hidden(&format!("value for {name}: ")).map_err(SecretError::Stdin)?;
        return Ok(trim_newline(line));
    }
    let mut buf = Vec::new();
    stdin
        .lock()
        .read_to_end(&mut buf)
        .map_err(SecretError::Stdin)?;
    let s = String::from_utf8(buf).map_err(|_| SecretError::NotUtf8)?;
    Ok(trim_newline(s))
}

pub async fn run(a: SecretArgs) -> anyhow::Result<Outcome> {
    match a.action {
        SecretAction::Set { name, value } => {
            let ctx = Ctx::new(&a.g)?;
            let value = match value {
                Some(v) => v,
                None => read_value(&name)?,
            };
            let body = json!({"name": name, "value": value});
            let res = ctx
                .api
                .json(Method::POST, &["secrets"], Some(&body))
                .await?;
            if ctx.json {
                render::json(&res);
            } else {
                println!("set secret {name}");
            }
        }
        SecretAction::List => {
            let ctx = Ctx::new(&a.g)?;
            let items = ctx.api.get(&["secrets"]).await?;
            render::list(
                ctx.json,
                &items,
                &[
                    ("NAME", "name"),
                    ("CREATED", "created_at"),
                    ("UPDATED", "updated_at"),
                ],
            );
        }
        SecretAction::Delete { name } => {
            let ctx = Ctx::new(&a.g)?;
            ctx.api
                .json(Method::DELETE, &["secrets", &name], None)
                .await?;
            if ctx.json {
                render::json(&json!({"name": name, "status": "deleted"}));
            } else {
                println!("deleted secret {name}");
            }
        }
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::trim_newline;

    #[test]
    fn one_trailing_newline_dropped() {
        assert_eq!(trim_newline("s3cret\n".into()), "s3cret");
        assert_eq!(trim_newline("s3cret\r\n".into()), "s3cret");
        assert_eq!(trim_newline("a\n\n".into()), "a\n");
        assert_eq!(trim_newline("a".into()), "a");
    }
}
