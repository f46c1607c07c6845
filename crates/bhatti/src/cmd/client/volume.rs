//! `bhatti volume create|list|delete`: persistent volumes (per user).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::args::Global;
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub action: VolumeAction,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Subcommand)]
pub enum VolumeAction {
    /// Create a volume.
    Create {
        /// Volume name
        name: String,
        /// Size in MB [server default]
        #[arg(long, value_name = "MB")]
        size: Option<u32>,
    },
    /// List your volumes.
    #[command(visible_alias = "ls")]
    List,
    /// Delete a volume (refused while a sandbox uses it).
    #[command(visible_alias = "rm")]
    Delete {
        /// Volume name
        name: String,
    },
}

const COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("ID", "id"),
    ("SIZE_MB", "size_mb"),
    ("CREATED", "created_at"),
];

pub async fn run(a: VolumeArgs) -> anyhow::Result<Outcome> {
    match a.action {
        VolumeAction::Create { name, size } => {
            let ctx = Ctx::new(&a.g)?;
            let mut body = json!({"name": name});
            if let Some(s) = size {
                body["size_mb"] = json!(s);
            }
            let v = ctx
                .api
                .json(Method::POST, &["volumes"], Some(&body))
                .await?;
            if ctx.json {
                render::json(&v);
            } else {
                println!("created volume {name}");
            }
        }
        VolumeAction::List => {
            let ctx = Ctx::new(&a.g)?;
            let items = ctx.api.get(&["volumes"]).await?;
            render::list(ctx.json, &items, COLUMNS);
        }
        VolumeAction::Delete { name } => {
            let ctx = Ctx::new(&a.g)?;
            ctx.api
                .json(Method::DELETE, &["volumes", &name], None)
                .await?;
            if ctx.json {
                render::json(&json!({"name": name, "status": "deleted"}));
            } else {
                println!("deleted volume {name}");
            }
        }
    }
    Ok(Outcome::Success)
}
