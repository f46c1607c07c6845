//! Ports: `ports` lists listening TCP ports in the guest with their proxy
//! URLs and host-port forwards (`GET /sandboxes/{id}/ports`, or without a
//! sandbox `GET /ports` for all of yours); `publish`/`unpublish` manage
//! public aliases. A port object's number is read from `port`, else v1's
//! `container_port`.

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::args::Global;
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct PortsArgs {
    /// Sandbox name or id (default: every running sandbox of yours)
    pub sandbox: Option<String>,
    #[command(flatten)]
    pub g: Global,
}

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

/// `items` with `port` filled in from `container_port` where missing.
pub fn with_port(mut items: Value) -> Value {
    if let Some(a) = items.as_array_mut() {
        for p in a.iter_mut().filter_map(Value::as_object_mut) {
            if p.get("port").is_none_or(Value::is_null)
                && let Some(c) = p.get("container_port").cloned()
            {
                p.insert("port".into(), c);
            }
        }
    }
    items
}

pub async fn ports(a: PortsArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let (items, cols): (_, &[(&str, &str)]) = match &a.sandbox {
        Some(sb) => (
            ctx.api.get(&["sandboxes", sb, "ports"]).await?,
            &[
                ("PORT", "port"),
                ("HOST_PORT", "host_port"),
                ("PROXY_URL", "proxy_url"),
            ],
        ),
        None => (
            ctx.api.get(&["ports"]).await?,
            &[
                ("SANDBOX", "sandbox_id"),
                ("PORT", "port"),
                ("HOST_PORT", "host_port"),
                ("PROXY_URL", "proxy_url"),
            ],
        ),
    };
    if ctx.json {
        render::json(&items);
    } else {
        render::list(false, &with_port(items), cols);
    }
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

#[cfg(test)]
mod tests {
    use super::with_port;

    #[test]
    fn port_falls_back_to_container_port() {
        let got = with_port(serde_json::json!([
            {"port": 1, "container_port": 2},
            {"container_port": 3000, "host_port": 41000},
            {"proxy_url": "/x"}
        ]));
        assert_eq!(got[0]["port"], 1);
        assert_eq!(got[1]["port"], 3000);
        assert!(got[2].get("port").is_none());
    }
}
