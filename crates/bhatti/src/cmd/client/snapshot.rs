//! `bhatti snapshot create|list|inspect|rm` (named snapshots of a
//! sandbox, the caller's own) and `bhatti fork` (children of a sandbox
//! from one snapshot taken now); `create --snapshot NAME` makes a sandbox
//! from a snapshot ([`super::sandbox`]). Extensions over v1.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::args::{Global, KeyVal, labels_object, parse_key_val};
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: SnapshotAction,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Take a named snapshot of a sandbox (a running one pauses briefly
    /// and runs on).
    Create {
        /// Sandbox name or id
        sandbox: String,
        /// Snapshot name (unique among yours); [a-zA-Z0-9][a-zA-Z0-9._-]{0,62}
        name: String,
        /// A label (repeatable)
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_key_val)]
        labels: Vec<KeyVal>,
    },
    /// List your snapshots, newest first.
    #[command(visible_alias = "ls")]
    List {
        /// Only snapshots with this label (repeatable: all must match)
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_key_val)]
        labels: Vec<KeyVal>,
    },
    /// Show one snapshot (status `broken` and the problem when it cannot
    /// be restored).
    Inspect {
        /// Snapshot name
        name: String,
    },
    /// Delete a snapshot (sandboxes made from it stay).
    #[command(visible_alias = "rm")]
    Delete {
        /// Snapshot name
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ForkArgs {
    /// Sandbox name or id
    pub sandbox: String,
    /// How many children (1-16) [default: 1, or the number of --name]
    #[arg(long, short = 'n')]
    pub count: Option<u32>,
    /// A child's name (repeatable: one per child) [default: generated]
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// A label of every child (repeatable)
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub labels: Vec<KeyVal>,
    #[command(flatten)]
    pub g: Global,
}

const COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("SOURCE", "source_name"),
    ("STATUS", "status"),
    ("SIZE_MB", "size_mb"),
    ("CPUS", "cpus"),
    ("MEMORY_MB", "memory_mb"),
    ("CREATED", "created_at"),
];

/// Columns of the children `fork` prints.
const FORK_COLUMNS: &[(&str, &str)] = &[("ID", "id"), ("NAME", "name"), ("IP", "ip")];

pub async fn run(a: SnapshotArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    match a.action {
        SnapshotAction::Create {
            sandbox,
            name,
            labels,
        } => {
            let mut body = json!({"name": name});
            if !labels.is_empty() {
                body["labels"] = Value::Object(labels_object(&labels));
            }
            let pb = render::spinner(ctx.json, "taking the snapshot…");
            let res = ctx
                .api
                .json(
                    Method::POST,
                    &["sandboxes", &sandbox, "snapshots"],
                    Some(&body),
                )
                .await;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            show(&ctx, &res?);
        }
        SnapshotAction::List { labels } => {
            let mut url = ctx.api.url(&["snapshots"]);
            for kv in &labels {
                url.query_pairs_mut()
                    .append_pair("label", &format!("{}={}", kv.key, kv.value));
            }
            let rb = ctx
                .api
                .request(Method::GET, url)
                .header(reqwest::header::ACCEPT, "application/json");
            let items = super::http::read_json(ctx.api.send(rb).await?).await?;
            if ctx.json {
                render::json(&items);
            } else {
                render::list(false, &flat(&items), COLUMNS);
            }
        }
        SnapshotAction::Inspect { name } => {
            show(&ctx, &ctx.api.get(&["snapshots", &name]).await?);
        }
        SnapshotAction::Delete { name } => {
            ctx.api
                .json(Method::DELETE, &["snapshots", &name], None)
                .await?;
            if ctx.json {
                render::json(&json!({"name": name, "status": "deleted"}));
            } else {
                println!("deleted snapshot {name}");
            }
        }
    }
    Ok(Outcome::Success)
}

pub async fn fork(a: ForkArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let mut body = Map::new();
    let count = match (a.count, a.names.len()) {
        (Some(c), 0) => c,
        (None, 0) => 1,
        (Some(c), n) if c as usize != n => {
            anyhow::bail!("--count {c} but {n} --name given: give one --name per child")
        }
        (_, n) => u32::try_from(n)?,
    };
    body.insert("count".into(), json!(count));
    if !a.names.is_empty() {
        body.insert("names".into(), json!(a.names));
    }
    if !a.labels.is_empty() {
        body.insert("labels".into(), Value::Object(labels_object(&a.labels)));
    }
    let pb = render::spinner(ctx.json, "forking…");
    let res = ctx
        .api
        .json(
            Method::POST,
            &["sandboxes", &a.sandbox, "fork"],
            Some(&Value::Object(body)),
        )
        .await;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let v = res?;
    if ctx.json {
        render::json(&v);
    } else {
        render::list(false, &v["sandboxes"], FORK_COLUMNS);
    }
    Ok(Outcome::Success)
}

/// Snapshots with `source_name` and `size_mb` for the table.
fn flat(items: &Value) -> Value {
    let rows = items
        .as_array()
        .map(|a| a.iter().map(flat_one).collect())
        .unwrap_or_default();
    Value::Array(rows)
}

fn flat_one(s: &Value) -> Value {
    let mut s = s.clone();
    let source = s["source"]["name"].clone();
    let mb = s["size_bytes"].as_u64().map(|b| b.div_ceil(1 << 20));
    if let Some(o) = s.as_object_mut() {
        o.insert("source_name".into(), source);
        o.insert("size_mb".into(), json!(mb));
    }
    s
}

/// One snapshot: JSON, or aligned fields.
fn show(ctx: &Ctx, s: &Value) {
    if ctx.json {
        render::json(s);
        return;
    }
    let s = flat_one(s);
    let mut pairs: Vec<(&str, String)> = vec![
        ("name", render::cell(&s, "name")),
        ("id", render::cell(&s, "id")),
        ("source", render::cell(&s, "source_name")),
        ("status", render::cell(&s, "status")),
    ];
    if s.get("problem").is_some_and(|p| !p.is_null()) {
        pairs.push(("problem", render::cell(&s, "problem")));
    }
    for k in ["size_bytes", "paused_ms", "cpus", "memory_mb", "image"] {
        pairs.push((k, render::cell(&s, k)));
    }
    if s.get("disk_size_mb").is_some_and(|v| !v.is_null()) {
        pairs.push(("disk_size_mb", render::cell(&s, "disk_size_mb")));
    }
    pairs.push(("created", render::age_cell(&s, "created_at")));
    if let Some(text) = render::labels(&s) {
        pairs.push(("labels", text));
    }
    render::fields(&pairs);
}
