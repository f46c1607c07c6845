//! Sandbox lifecycle: `create`, `list`, `inspect`, `edit`, `destroy`,
//! `stop`, `start`. Without `--json`, `create` and `list` print what v1
//! printed (`ID<TAB>NAME<TAB>IP`; columns `ID NAME STATUS IP` at v1's
//! widths), `list --wide` a richer table. `create --user` sets the
//! sandbox's guest user; `inspect` shows it when set. `--ttl`,
//! `--on-expire` and `--label` (create, edit) set a TTL and labels;
//! `list --label K=V` filters on the server; `create --snapshot NAME`
//! restores a snapshot into the new sandbox.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use clap::Args;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::args::{
    EnvArg, FileSpec, Global, KeyVal, Target, VolumeMount, env_object, labels_object, parse_cpus,
    parse_env, parse_file, parse_key_val, parse_ttl, parse_volume,
};
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Sandbox name (default: generated); [a-zA-Z0-9][a-zA-Z0-9._-]{0,62}
    #[arg(long)]
    pub name: Option<String>,
    /// Virtual CPUs; a fraction (v1's 0.5) is rounded up [server default: 1]
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<u32>,
    /// Memory in MB [server default: 512]
    #[arg(long, value_name = "MB")]
    pub memory: Option<u32>,
    /// Environment variables for every command (repeatable, or comma-separated: A=1,B=2)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE[,KEY=VALUE]", value_parser = parse_env)]
    pub env: Vec<EnvArg>,
    /// Command run once at boot
    #[arg(long, value_name = "COMMAND")]
    pub init: Option<String>,
    /// Never pause or snapshot this sandbox when idle
    #[arg(long)]
    pub keep_hot: bool,
    /// Reach none of your other sandboxes over the network (they are
    /// reachable by default; other users' never are)
    #[arg(long)]
    pub isolated: bool,
    /// Guest image: a built-in tier (minimal, busybox or dev) or an image
    /// of yours (`bhatti image list`: imported or saved)
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,
    /// Template to start from (name or id)
    #[arg(long)]
    pub template: Option<String>,
    /// Restore one of your snapshots instead of booting an image (its
    /// size, image and disk apply)
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,
    /// Attach an existing volume (repeatable)
    #[arg(long = "volume", short = 'v', value_name = "NAME:/MOUNT[:ro]", value_parser = parse_volume)]
    pub volumes: Vec<VolumeMount>,
    /// Inject a stored secret into the environment (repeatable)
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// Copy a local file into the sandbox (repeatable)
    #[arg(long = "file", short = 'f', value_name = "LOCAL:/GUEST", value_parser = parse_file)]
    pub files: Vec<FileSpec>,
    /// Guest user (a name in the guest's /etc/passwd, or a uid) its
    /// commands run as and its written files belong to, unless a request
    /// names another [default: commands as root, files owned by lohar]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    #[command(flatten)]
    pub life: Lifetime,
    #[command(flatten)]
    pub g: Global,
}

/// TTL and labels, for `create` and `edit`.
#[derive(Debug, Args)]
pub struct Lifetime {
    /// Destroy (or with --on-expire stop, stop) the sandbox after this
    /// long: 90s, 30m, 2h, or seconds; in `edit`, counted from now, and 0
    /// removes the TTL
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<u64>,
    /// What the TTL does when it runs out [server default: destroy]
    #[arg(long, value_name = "ACTION", value_parser = ["destroy", "stop"])]
    pub on_expire: Option<String>,
    /// A label (repeatable); in `edit`, the labels given replace all
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub labels: Vec<KeyVal>,
}

impl Lifetime {
    /// Adds the fields given to a create or PATCH body.
    fn put(&self, b: &mut Map<String, Value>) {
        if let Some(t) = self.ttl {
            b.insert("ttl_sec".into(), json!(t));
        }
        if let Some(o) = &self.on_expire {
            b.insert("on_expire".into(), json!(o));
        }
        if !self.labels.is_empty() {
            b.insert("labels".into(), Value::Object(labels_object(&self.labels)));
        }
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sandboxes with this label (repeatable: all must match)
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub labels: Vec<KeyVal>,
    #[command(flatten)]
    pub wide: render::Wide,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// Sandbox name or id
    pub sandbox: String,
    /// New name
    #[arg(long)]
    pub name: Option<String>,
    /// Keep the sandbox hot (never paused or snapshotted when idle)
    #[arg(long, conflicts_with = "allow_cold")]
    pub keep_hot: bool,
    /// Let the sandbox cool down when idle again
    #[arg(long)]
    pub allow_cold: bool,
    /// Cut the sandbox off from your other sandboxes' network
    #[arg(long, conflicts_with = "peers")]
    pub isolated: bool,
    /// Let the sandbox reach your other sandboxes again
    #[arg(long)]
    pub peers: bool,
    #[command(flatten)]
    pub life: Lifetime,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Sandbox names or ids
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
    #[command(flatten)]
    pub g: Global,
}

/// v1's columns of the sandbox list and their minimum widths.
const V1_COLUMNS: &[(&str, &str, usize)] = &[
    ("ID", "id", 20),
    ("NAME", "name", 20),
    ("STATUS", "status", 10),
    ("IP", "ip", 16),
];

/// Columns of `list --wide`.
const WIDE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("STATUS", "status"),
    ("IP", "ip"),
    ("THERMAL", "thermal"),
    ("CPUS", "cpus"),
    ("MEMORY_MB", "memory_mb"),
    ("KEEP_HOT", "keep_hot"),
    ("CREATED", "created_at"),
    ("EXPIRES", "expires_at"),
];

/// The `POST /sandboxes` body for `a` (local files read and encoded).
pub fn create_body(a: &CreateArgs) -> anyhow::Result<Value> {
    let mut b = Map::new();
    let mut put = |k: &str, v: Value| {
        b.insert(k.to_owned(), v);
    };
    if let Some(n) = &a.name {
        put("name", json!(n));
    }
    if let Some(t) = &a.template {
        put("template_id", json!(t));
    }
    if let Some(s) = &a.snapshot {
        put("snapshot", json!(s));
    }
    if let Some(c) = a.cpus {
        put("cpus", json!(c));
    }
    if let Some(m) = a.memory {
        put("memory_mb", json!(m));
    }
    if !a.env.is_empty() {
        put("env", Value::Object(env_object(&a.env)));
    }
    if let Some(i) = &a.init {
        put("init", json!(i));
    }
    if a.keep_hot {
        put("keep_hot", json!(true));
    }
    if a.isolated {
        put("peers", json!(false));
    }
    if let Some(i) = &a.image {
        put("image", json!(i));
    }
    if let Some(u) = &a.user {
        put("user", json!(u));
    }
    if !a.volumes.is_empty() {
        let v: Vec<Value> = a
            .volumes
            .iter()
            .map(|m| json!({"name": m.name, "mount": m.mount, "readonly": m.readonly}))
            .collect();
        put("volumes", Value::Array(v));
    }
    if !a.secrets.is_empty() {
        put("secrets", json!(a.secrets));
    }
    if !a.files.is_empty() {
        let mut files = Vec::new();
        for f in &a.files {
            let data = std::fs::read(&f.local)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.local.display()))?;
            let mode = std::fs::metadata(&f.local)
                .map(|m| format!("{:04o}", m.permissions().mode() & 0o7777))
                .unwrap_or_else(|_| "0644".to_owned());
            files.push(json!({
                "path": f.guest,
                "content_b64": base64::engine::general_purpose::STANDARD.encode(data),
                "mode": mode,
            }));
        }
        put("files", Value::Array(files));
    }
    a.life.put(&mut b);
    Ok(Value::Object(b))
}

pub async fn create(a: CreateArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let body = create_body(&a)?;
    let pb = render::spinner(ctx.json, "creating sandbox (booting the VM)…");
    let res = ctx
        .api
        .json(Method::POST, &["sandboxes"], Some(&body))
        .await;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let sb = res?;
    if ctx.json {
        render::json(&sb);
    } else {
        // v1's line: ID<TAB>NAME<TAB>IP.
        let f = |k: &str| render::raw(&sb, k);
        println!("{}\t{}\t{}", f("id"), f("name"), f("ip"));
    }
    Ok(Outcome::Success)
}

pub async fn list(a: ListArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let mut url = ctx.api.url(&["sandboxes"]);
    for kv in &a.labels {
        url.query_pairs_mut()
            .append_pair("label", &format!("{}={}", kv.key, kv.value));
    }
    let rb = ctx
        .api
        .request(Method::GET, url)
        .header(reqwest::header::ACCEPT, "application/json");
    let items = super::http::read_json(ctx.api.send(rb).await?).await?;
    if ctx.json || a.wide.on() {
        render::list(ctx.json, &items, WIDE_COLUMNS);
    } else {
        render::fixed(&items, V1_COLUMNS);
    }
    Ok(Outcome::Success)
}

pub async fn inspect(a: Target) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let sb = ctx.api.get(&["sandboxes", &a.sandbox]).await?;
    show(&ctx, &sb);
    Ok(Outcome::Success)
}

pub async fn edit(a: EditArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let mut body = Map::new();
    if let Some(n) = &a.name {
        body.insert("name".into(), json!(n));
    }
    if a.keep_hot || a.allow_cold {
        body.insert("keep_hot".into(), json!(a.keep_hot));
    }
    if a.isolated || a.peers {
        body.insert("peers".into(), json!(a.peers));
    }
    a.life.put(&mut body);
    if body.is_empty() {
        anyhow::bail!(
            "nothing to change: give --name, --keep-hot, --allow-cold, --isolated, --peers, \
             --ttl, --on-expire or --label"
        );
    }
    let sb = ctx
        .api
        .json(
            Method::PATCH,
            &["sandboxes", &a.sandbox],
            Some(&Value::Object(body)),
        )
        .await?;
    show(&ctx, &sb);
    Ok(Outcome::Success)
}

pub async fn destroy(a: DestroyArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    ctx.delete_each("sandboxes", &a.sandboxes, ("sandbox", "destroyed"), |s| {
        format!("destroyed {s}")
    })
    .await
}

/// `stop` or `start`.
pub async fn lifecycle(a: Target, verb: &str) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let msg = if verb == "stop" {
        "stopping (snapshot to disk)…"
    } else {
        "starting (restoring the snapshot)…"
    };
    let pb = render::spinner(ctx.json, msg);
    let res = ctx
        .api
        .json(Method::POST, &["sandboxes", &a.sandbox, verb], None)
        .await;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    show(&ctx, &res?);
    Ok(Outcome::Success)
}

/// One sandbox: JSON, or aligned fields.
fn show(ctx: &Ctx, sb: &Value) {
    if ctx.json {
        render::json(sb);
        return;
    }
    let mut pairs: Vec<(&str, String)> = vec![
        ("name", render::cell(sb, "name")),
        ("id", render::cell(sb, "id")),
        ("status", render::cell(sb, "status")),
        ("thermal", render::cell(sb, "thermal")),
        ("ip", render::cell(sb, "ip")),
        ("cpus", render::cell(sb, "cpus")),
        ("memory_mb", render::cell(sb, "memory_mb")),
        ("keep_hot", render::cell(sb, "keep_hot")),
    ];
    for k in ["image", "template_id", "user", "status_reason"] {
        if sb.get(k).is_some_and(|v| !v.is_null()) {
            pairs.push((k, render::cell(sb, k)));
        }
    }
    pairs.push(("created", render::age_cell(sb, "created_at")));
    if sb.get("stopped_at").is_some_and(|v| !v.is_null()) {
        pairs.push(("stopped", render::age_cell(sb, "stopped_at")));
    }
    if sb.get("expires_at").is_some_and(|v| !v.is_null()) {
        let action = render::cell(sb, "on_expire");
        pairs.push((
            "expires",
            format!("{} ({action})", render::cell(sb, "expires_at")),
        ));
    }
    if let Some(text) = render::labels(sb) {
        pairs.push(("labels", text));
    }
    render::fields(&pairs);
}
