//! Ports: `ports` lists listening TCP ports in the guest with their proxy
//! URLs; `publish`/`unpublish` manage public aliases.

use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::args::{Global, Target};
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Sandbox name or id
    pub sandbox: String,
    /// Guest TCP port
    pub port: u16,
    /// Public alias (default: chosen by the daemon)
    #[arg(long)]
    pub alias: Option<String>,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Args)]
pub struct UnpublishArgs {
    /// Sandbox name or id
    pub sandbox: String,
    /// Guest TCP port
    pub port: u16,
    #[command(flatten)]
    pub g: Global,
}

pub async fn ports(a: Target) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let items = ctx.api.get(&["sandboxes", &a.sandbox, "ports"]).await?;
    render::list(
        ctx.json,
        &items,
        &[("PORT", "port"), ("PROXY_URL", "proxy_url")],
    );
    Ok(Outcome::Success)
}

pub async fn publish(a: PublishArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let mut body = json!({"port": a.port});
    if let Some(al) = &a.alias {
        body["alias"] = json!(al);
    }
    let res = ctx
        .api
        .json(
            Method::POST,
            &["sandboxes", &a.sandbox, "publish"],
            Some(&body),
        )
        .await?;
    if ctx.json {
        render::json(&res);
    } else {
        render::fields(&[
            ("alias", render::cell(&res, "alias")),
            ("port", render::cell(&res, "port")),
            ("url", render::cell(&res, "url")),
        ]);
    }
    Ok(Outcome::Success)
}

pub async fn unpublish(a: UnpublishArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let port = a.port.to_string();
    ctx.api
        .json(
            Method::DELETE,
            &["sandboxes", &a.sandbox, "publish", &port],
            None,
        )
        .await?;
    if ctx.json {
        render::json(&json!({"port": a.port, "status": "unpublished"}));
    } else {
        println!("unpublished port {}", a.port);
    }
    Ok(Outcome::Success)
}
