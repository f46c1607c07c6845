//! `bhatti template create|list|delete`: named sandbox specs (per user).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::args::{EnvArg, Global, VolumeMount, env_object, parse_cpus, parse_env, parse_volume};
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct TemplateArgs {
    #[command(subcommand)]
    pub action: TemplateAction,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Subcommand)]
pub enum TemplateAction {
    /// Create a template.
    Create(CreateTemplate),
    /// List your templates.
    #[command(visible_alias = "ls")]
    List,
    /// Delete a template.
    #[command(visible_alias = "rm")]
    Delete {
        /// Template name or id
        template: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateTemplate {
    /// Template name
    #[arg(long)]
    pub name: String,
    /// Virtual CPUs; a fraction (v1's 0.5) is rounded up
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<u32>,
    /// Memory in MB
    #[arg(long, value_name = "MB")]
    pub memory: Option<u32>,
    /// Guest image (rootfs tier: minimal, busybox or dev)
    #[arg(long)]
    pub image: Option<String>,
    /// Environment variables (repeatable, or comma-separated: A=1,B=2)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE[,KEY=VALUE]", value_parser = parse_env)]
    pub env: Vec<EnvArg>,
    /// Command run once at boot
    #[arg(long, value_name = "COMMAND")]
    pub init: Option<String>,
    /// Secret injected into the environment (repeatable)
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// Volume mounted in sandboxes made from it (repeatable)
    #[arg(long = "volume", short = 'v', value_name = "NAME:/MOUNT[:ro]", value_parser = parse_volume)]
    pub volumes: Vec<VolumeMount>,
    /// Guest user (a name in the guest's /etc/passwd, or a uid) of
    /// sandboxes made from it, as `bhatti create --user` [default: commands
    /// as root, files owned by lohar]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

const COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("ID", "id"),
    ("CPUS", "cpus"),
    ("MEMORY_MB", "memory_mb"),
    ("IMAGE", "image"),
    ("CREATED", "created_at"),
];

fn body(c: &CreateTemplate) -> Value {
    let mut b = Map::new();
    b.insert("name".into(), json!(c.name));
    if let Some(v) = c.cpus {
        b.insert("cpus".into(), json!(v));
    }
    if let Some(v) = c.memory {
        b.insert("memory_mb".into(), json!(v));
    }
    if let Some(v) = &c.image {
        b.insert("image".into(), json!(v));
    }
    if !c.env.is_empty() {
        b.insert("env".into(), Value::Object(env_object(&c.env)));
    }
    if let Some(v) = &c.init {
        b.insert("init".into(), json!(v));
    }
    if !c.secrets.is_empty() {
        b.insert("secrets".into(), json!(c.secrets));
    }
    if let Some(v) = &c.user {
        b.insert("user".into(), json!(v));
    }
    if !c.volumes.is_empty() {
        let m: Vec<Value> = c
            .volumes
            .iter()
            .map(|m| json!({"name": m.name, "mount": m.mount, "readonly": m.readonly}))
            .collect();
        b.insert("mounts".into(), Value::Array(m));
    }
    Value::Object(b)
}

pub async fn run(a: TemplateArgs) -> anyhow::Result<Outcome> {
    match a.action {
        TemplateAction::Create(c) => {
            let ctx = Ctx::new(&a.g)?;
            let t = ctx
                .api
                .json(Method::POST, &["templates"], Some(&body(&c)))
                .await?;
            if ctx.json {
                render::json(&t);
            } else {
                println!("created template {} ({})", c.name, render::cell(&t, "id"));
            }
        }
        TemplateAction::List => {
            let ctx = Ctx::new(&a.g)?;
            let items = ctx.api.get(&["templates"]).await?;
            render::list(ctx.json, &items, COLUMNS);
        }
        TemplateAction::Delete { template } => {
            let ctx = Ctx::new(&a.g)?;
            ctx.api
                .json(Method::DELETE, &["templates", &template], None)
                .await?;
            if ctx.json {
                render::json(&json!({"template": template, "status": "deleted"}));
            } else {
                println!("deleted template {template}");
            }
        }
    }
    Ok(Outcome::Success)
}
