//! `bhatti image import|list|inspect|rm|save`: root filesystem images
//! imported from container images (a registry, an OCI layout or archive,
//! a `docker save` archive, a rootfs tarball) or saved from a sandbox's
//! disk, beside the built-in tiers; `create --image NAME` boots one.
//! The import is a job on the daemon, followed with progress
//! ([`import`]); the source syntax and default names are in [`plan`].

mod chan;
mod import;
mod layout;
mod plan;
mod progress;
mod rewrite;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::args::Global;
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub action: ImageAction,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Import a container image as a sandbox image, showing progress;
    /// prints the image (`create --image NAME` boots it).
    #[command(after_help = IMPORT_HELP)]
    Import {
        /// What to import: docker://HOST/REPO:TAG, REPO:TAG, oci:DIR[:TAG],
        /// oci-archive:FILE[:TAG], docker-archive:FILE[:REF] or
        /// rootfs:FILE.tar (below)
        source: String,
        /// Image name; [a-zA-Z0-9][a-zA-Z0-9._-]{0,62} [default: from SOURCE]
        #[arg(long)]
        name: Option<String>,
        /// Reach the registry over plain HTTP or with an unverified
        /// certificate
        #[arg(long)]
        insecure: bool,
        /// Registry user name (the password is prompted for, or read from
        /// stdin with --password-stdin)
        #[arg(long, short = 'u', value_name = "USER")]
        username: Option<String>,
        /// Read the registry password from stdin
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// Read a registry bearer token from stdin
        #[arg(long, conflicts_with_all = ["username", "password_stdin"])]
        token_stdin: bool,
    },
    /// List the images you can boot: imported and saved ones, and the
    /// built-in tiers (SOURCE `builtin`).
    #[command(visible_alias = "ls")]
    List,
    /// Show one image, with the defaults from its config (environment,
    /// working directory, user, entrypoint and command).
    Inspect {
        /// Image name
        name: String,
    },
    /// Delete images (refused while a sandbox or snapshot uses one).
    #[command(visible_alias = "delete")]
    Rm {
        /// Image names
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Save a sandbox's disk as it is now as a new image (a running
    /// sandbox pauses briefly and runs on).
    Save {
        /// Sandbox name or id
        sandbox: String,
        /// Name of the new image
        name: String,
    },
}

/// The rest of `image import --help`: the sources and default names.
const IMPORT_HELP: &str = "\
Sources (skopeo's transport names):
  docker://HOST/REPO:TAG   a registry; REPO:TAG alone is the same, on Docker Hub
                           when no host is named (python:3.12 is
                           docker.io/library/python:3.12)
  oci:DIR[:TAG]            an OCI image layout directory (TAG picks its
                           org.opencontainers.image.ref.name entry)
  oci-archive:FILE[:TAG]   a tar of an OCI image layout
  docker-archive:FILE[:REF]
                           `docker save` output; REF picks an image by its tag
                           (RepoTags), :@N the N-th (from 0)
  rootfs:FILE.tar          a tarball of a root filesystem (also .tar.gz)
Local sources are uploaded to the daemon (a layout directory as an oci-archive;
an archive with TAG or REF with only that image in its list).

Default NAME: the repository's last component, plus -TAG unless the tag is
latest (python:3.12-slim is python-3.12-slim, ghcr.io/o/app is app); for files
and layouts, the name without .tar/.tar.gz, plus -TAG when a TAG is given (-N
for :@N); a docker-archive's REF names it as that registry reference would.";

const COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("ID", "short_id"),
    ("SIZE", "size"),
    ("USED", "used"),
    ("SOURCE", "source_cell"),
    ("CREATED", "created_at"),
];

pub async fn run(a: ImageArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    match a.action {
        ImageAction::Import {
            source,
            name,
            insecure,
            username,
            password_stdin,
            token_stdin,
        } => {
            let req = import::Request {
                source,
                name,
                insecure,
                username,
                password_stdin,
                token_stdin,
            };
            let img = import::import(&ctx, req).await?;
            if ctx.json {
                render::json(&img);
            } else {
                println!("imported {}", summary(&img));
            }
        }
        ImageAction::List => {
            let items = ctx.api.get(&["images"]).await?;
            if ctx.json {
                render::json(&items);
            } else {
                render::list(false, &flat(&items), COLUMNS);
            }
        }
        ImageAction::Inspect { name } => show(&ctx, &ctx.api.get(&["images", &name]).await?),
        ImageAction::Rm { names } => return rm(&ctx, &names).await,
        ImageAction::Save { sandbox, name } => {
            let pb = render::spinner(ctx.json, "saving the disk…");
            let res = ctx
                .api
                .json(
                    Method::POST,
                    &["sandboxes", &sandbox, "image"],
                    Some(&json!({"name": name})),
                )
                .await;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            let img = res?;
            if ctx.json {
                render::json(&img);
            } else {
                println!("saved {sandbox} as {}", summary(&img));
            }
        }
    }
    Ok(Outcome::Success)
}

/// `image rm`: each name in turn; a failure is reported and the rest go
/// on (exit 1 at the end), as `destroy` does.
async fn rm(ctx: &Ctx, names: &[String]) -> anyhow::Result<Outcome> {
    ctx.delete_each("images", names, ("name", "deleted"), |n| {
        format!("deleted image {n}")
    })
    .await
}

/// `1.5 GiB`, `320 MiB`, `12 KiB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if v < 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.0} {}", UNITS[unit]),
    }
}

/// The first 12 hex digits of an image id (`sha256:` dropped); a
/// built-in tier's id (its name) as it is.
pub fn short_id(id: &str) -> String {
    match id.strip_prefix("sha256:") {
        Some(hex) => hex.chars().take(12).collect(),
        None => id.to_owned(),
    }
}

fn bytes_cell(v: &Value, key: &str) -> Value {
    v[key]
        .as_u64()
        .map_or(Value::Null, |n| json!(human_bytes(n)))
}

/// An image with the table's derived cells added.
fn flat_one(img: &Value) -> Value {
    let mut v = img.clone();
    let short = img["id"].as_str().map(short_id);
    let source = if img["builtin"].as_bool() == Some(true) {
        json!("builtin")
    } else {
        img["source"].clone()
    };
    let (size, used) = (bytes_cell(img, "size_bytes"), bytes_cell(img, "used_bytes"));
    if let Some(o) = v.as_object_mut() {
        o.insert("short_id".into(), json!(short));
        o.insert("source_cell".into(), source);
        o.insert("size".into(), size);
        o.insert("used".into(), used);
    }
    v
}

fn flat(items: &Value) -> Value {
    let rows = items
        .as_array()
        .map(|a| a.iter().map(flat_one).collect())
        .unwrap_or_default();
    Value::Array(rows)
}

/// `NAME (id 0123456789ab, 1.0 GiB disk, 37 MiB used)`.
fn summary(img: &Value) -> String {
    let f = flat_one(img);
    format!(
        "{} (id {}, {} disk, {} used)",
        render::cell(&f, "name"),
        render::cell(&f, "short_id"),
        render::cell(&f, "size"),
        render::cell(&f, "used")
    )
}

/// One image: JSON, or aligned fields and its config's defaults.
fn show(ctx: &Ctx, img: &Value) {
    if ctx.json {
        render::json(img);
        return;
    }
    let f = flat_one(img);
    let mut pairs: Vec<(&str, String)> = vec![
        ("name", render::cell(&f, "name")),
        ("id", render::cell(&f, "id")),
        ("source", render::cell(&f, "source_cell")),
        ("size", render::cell(&f, "size")),
        ("used", render::cell(&f, "used")),
        ("created", render::age_cell(&f, "created_at")),
    ];
    pairs.extend(config_fields(&img["config"]));
    render::fields(&pairs);
}

/// The config's defaults as fields: `env` one `K=V` per line, commands
/// as JSON arrays (exact, quoting included).
fn config_fields(c: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let list = |k: &str| match c.get(k) {
        Some(v @ Value::Array(a)) if !a.is_empty() => v.to_string(),
        _ => "-".to_owned(),
    };
    out.push(("entrypoint", list("entrypoint")));
    out.push(("cmd", list("cmd")));
    out.push(("working_dir", render::cell(c, "working_dir")));
    out.push(("user", render::cell(c, "user")));
    let env: Vec<String> = c
        .get("env")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if env.is_empty() {
        out.push(("env", "-".to_owned()));
    } else {
        let pad = " ".repeat("working_dir: ".len());
        out.push(("env", env.join(&format!("\n{pad}"))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ids() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(320 << 20), "320 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("minimal"), "minimal");
    }

    #[test]
    fn table_cells() {
        let img = json!({"name": "py", "id": "sha256:abcdef0123456789", "source": "docker://x/py:3",
            "size_bytes": 2048, "used_bytes": null, "builtin": false});
        let f = flat_one(&img);
        assert_eq!(f["short_id"], "abcdef012345");
        assert_eq!(f["size"], "2.0 KiB");
        assert_eq!(f["source_cell"], "docker://x/py:3");
        assert!(f["used"].is_null());
        let b = flat_one(&json!({"name": "minimal", "builtin": true, "source": null}));
        assert_eq!(b["source_cell"], "builtin");
        assert_eq!(summary(&img), "py (id abcdef012345, 2.0 KiB disk, - used)");
    }

    #[test]
    fn config_is_shown_exactly() {
        let c = json!({"env": {"PATH": "/usr/bin", "A": "b c"}, "working_dir": "/app",
            "user": null, "entrypoint": ["/bin/sh", "-c"], "cmd": []});
        let f: std::collections::HashMap<_, _> = config_fields(&c).into_iter().collect();
        assert_eq!(f["entrypoint"], r#"["/bin/sh","-c"]"#);
        assert_eq!(f["cmd"], "-");
        assert_eq!(f["user"], "-");
        assert_eq!(f["working_dir"], "/app");
        assert!(f["env"].contains("A=b c") && f["env"].contains("PATH=/usr/bin"));
    }
}
