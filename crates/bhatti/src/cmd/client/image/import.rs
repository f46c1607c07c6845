//! `bhatti image import SOURCE`: start an import job on the daemon and
//! follow it to its end.
//!
//! A registry source is `POST /images` with JSON (the reference, the
//! name, `insecure`, and credentials read from stdin or a hidden prompt —
//! never from the command line). A local source is uploaded as the body
//! of `POST /images?format=…&name=…`, streamed from disk (a layout made
//! into a tar, an archive with its image list cut, on the fly). Either answers
//! 202 with a job, polled at `GET /images/jobs/{id}` until it is `done`
//! (its image is the result) or `failed` (its error message is ours, exit
//! 1). Progress goes to stderr: a bar on a terminal (the upload, then the
//! job's phase and bytes), one line per phase otherwise, nothing with
//! `--json`.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::super::http::{HttpError, read_json};
use super::super::{Ctx, secret::trim_newline, terminal};
use super::chan::Chunk;
use super::layout::{Layout, LayoutError};
use super::plan::{Plan, PlanError, default_name, plan};
use super::progress::Progress;
use super::rewrite::{Rewrite, RewriteError};

/// How often a running job is polled.
const POLL: Duration = Duration::from_millis(300);

/// What `import` was asked for (the command's flags).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub source: String,
    pub name: Option<String>,
    pub insecure: bool,
    pub username: Option<String>,
    pub password_stdin: bool,
    pub token_stdin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot make an image name from {0:?}; give one with --name")]
    NoName(String),
    #[error("--insecure, --username and --token-stdin apply to registry sources only")]
    NotRegistry,
    #[error("a password for {0} is needed: pipe it with --password-stdin")]
    NoPassword(String),
    #[error("reading the {what} from stdin: {source}")]
    Stdin {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(
        "image {0} already exists (409 Conflict): pick another --name, or remove it with `bhatti image rm {0}`"
    )]
    Taken(String),
    #[error("the daemon answered without an import job: {0}")]
    NoJob(String),
    #[error("import of {what} failed: {message}{}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Failed {
        what: String,
        code: Option<String>,
        message: String,
    },
}

/// Runs the import; the imported image.
pub async fn import(ctx: &Ctx, req: Request) -> Result<Value, ImportError> {
    let (plan, src) = plan(&req.source)?;
    let name = match req.name.clone().or_else(|| default_name(&src)) {
        Some(n) => n,
        None => return Err(ImportError::NoName(req.source)),
    };
    let registry = matches!(plan, Plan::Registry(_));
    if !registry && (req.insecure || req.username.is_some() || req.token_stdin) {
        return Err(ImportError::NotRegistry);
    }
    if !registry {
        name_free(ctx, &name).await?;
    }
    let mut progress = Progress::new(ctx.json);
    let job = match plan {
        Plan::Registry(source) => {
            let body = registry_body(&req, source, &name)?;
            progress.phase("starting");
            ctx.api
                .json(Method::POST, &["images"], Some(&Value::Object(body)))
                .await?
        }
        Plan::File { path, format } => {
            upload_file(ctx, &path, format, &name, &mut progress).await?
        }
        Plan::OciDir { dir, tag } => {
            let layout = Layout::open(&dir, tag.as_deref())?;
            let len = layout.archive_len();
            let what = dir.display().to_string();
            let up = Upload::new(&what, "oci-archive", &name, Some(len));
            up.send(ctx, layout.stream(), &mut progress).await?
        }
        Plan::Rewrite { path, format, pick } => {
            let rewrite = Rewrite::open(&path, &pick)?;
            // About the file's size (one member is cut).
            let len = std::fs::metadata(&path).ok().map(|m| m.len());
            let what = path.display().to_string();
            let up = Upload::new(&what, format, &name, len);
            up.send(ctx, rewrite.stream(), &mut progress).await?
        }
    };
    let image = follow(ctx, job, &req.source, &mut progress).await;
    progress.finish();
    image
}

/// The JSON body of a registry import, credentials included.
fn registry_body(
    req: &Request,
    source: String,
    name: &str,
) -> Result<Map<String, Value>, ImportError> {
    let mut body = Map::new();
    body.insert("source".into(), json!(source));
    body.insert("name".into(), json!(name));
    if req.insecure {
        body.insert("insecure".into(), json!(true));
    }
    if req.token_stdin {
        body.insert("token".into(), json!(read_secret("registry token")?));
    }
    if let Some(user) = &req.username {
        let password = if req.password_stdin || std::io::stdin().is_terminal() {
            read_secret("password")?
        } else {
            return Err(ImportError::NoPassword(user.clone()));
        };
        body.insert("username".into(), json!(user));
        body.insert("password".into(), json!(password));
    }
    Ok(body)
}

/// A secret from stdin: a hidden prompt on a terminal, else all of stdin
/// (one trailing newline dropped).
fn read_secret(what: &'static str) -> Result<String, ImportError> {
    let err = |source| ImportError::Stdin { what, source };
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return terminal::prompt_hidden(&format!("{what}: "))
            .map(trim_newline)
            .map_err(err);
    }
    let mut s = String::new();
    stdin.lock().read_to_string(&mut s).map_err(err)?;
    Ok(trim_newline(s))
}

/// Refuses a name the caller already has before an upload starts: the
/// daemon refuses it too, but at once, while the client may still be
/// sending the body, which then ends in a broken pipe instead of the 409.
async fn name_free(ctx: &Ctx, name: &str) -> Result<(), ImportError> {
    match ctx.api.json(Method::GET, &["images", name], None).await {
        Ok(_) => Err(ImportError::Taken(name.to_owned())),
        // Not found, or anything else: the daemon's answer to the upload
        // decides.
        Err(_) => Ok(()),
    }
}

fn upload_url(ctx: &Ctx, format: &str, name: &str) -> reqwest::Url {
    let mut url = ctx.api.url(&["images"]);
    url.query_pairs_mut()
        .append_pair("format", format)
        .append_pair("name", name);
    url
}

/// `POST /images?format=…` with the file streamed as the body.
async fn upload_file(
    ctx: &Ctx,
    path: &std::path::Path,
    format: &str,
    name: &str,
    progress: &mut Progress,
) -> Result<Value, ImportError> {
    let file_err = |source| ImportError::File {
        path: path.display().to_string(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(file_err)?;
    let meta = file.metadata().await.map_err(file_err)?;
    if !meta.is_file() {
        let source = std::io::Error::other("not a regular file");
        return Err(file_err(source));
    }
    let len = meta.len();
    let bar = progress.upload(&path.display().to_string(), Some(len));
    let stream = tokio_util::io::ReaderStream::new(file).inspect(move |c| {
        if let (Some(b), Ok(c)) = (&bar, c) {
            b.inc(c.len() as u64);
        }
    });
    let rb = ctx
        .api
        .request(Method::POST, upload_url(ctx, format, name))
        .header(CONTENT_TYPE, "application/x-tar")
        .header(CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream));
    let resp = ctx.api.send(rb).await;
    progress.uploaded();
    Ok(read_json(resp?).await?)
}

/// An upload of a stream made on the fly (a layout, a cut archive).
struct Upload<'a> {
    what: &'a str,
    format: &'a str,
    name: &'a str,
    len: Option<u64>,
}

impl<'a> Upload<'a> {
    fn new(what: &'a str, format: &'a str, name: &'a str, len: Option<u64>) -> Self {
        Upload {
            what,
            format,
            name,
            len,
        }
    }

    /// `POST /images?format=…` with the chunks of `rx` as the body.
    async fn send(
        &self,
        ctx: &Ctx,
        rx: mpsc::Receiver<Chunk>,
        progress: &mut Progress,
    ) -> Result<Value, ImportError> {
        let bar = progress.upload(self.what, self.len);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
            )
            .inspect(move |c| {
                if let (Some(b), Ok(c)) = (&bar, c) {
                    b.inc(c.len() as u64);
                }
            });
        let rb = ctx
            .api
            .request(Method::POST, upload_url(ctx, self.format, self.name))
            .header(CONTENT_TYPE, "application/x-tar")
            .body(reqwest::Body::wrap_stream(stream));
        let resp = ctx.api.send(rb).await;
        progress.uploaded();
        Ok(read_json(resp?).await?)
    }
}

/// Polls `job` until it ends; its image, or its error (naming `source`
/// as the user gave it).
async fn follow(
    ctx: &Ctx,
    mut job: Value,
    source: &str,
    progress: &mut Progress,
) -> Result<Value, ImportError> {
    // A daemon that imported at once may answer with the image itself.
    if job.get("state").is_none() && job.get("name").is_some() && job.get("id").is_some() {
        return Ok(job);
    }
    let id = job["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ImportError::NoJob(job.to_string()))?;
    loop {
        progress.job(&job);
        match job["state"].as_str() {
            Some("done") => {
                return match job.get("image") {
                    Some(img) if img.is_object() => Ok(img.clone()),
                    _ => {
                        let name = job["name"].as_str().unwrap_or_default().to_owned();
                        Ok(ctx.api.get(&["images", &name]).await?)
                    }
                };
            }
            Some("failed") => {
                let err = &job["error"];
                return Err(ImportError::Failed {
                    what: source.to_owned(),
                    code: err["code"].as_str().map(str::to_owned),
                    message: err["message"]
                        .as_str()
                        .unwrap_or("no reason given")
                        .to_owned(),
                });
            }
            _ => {}
        }
        tokio::time::sleep(POLL).await;
        job = ctx.api.get(&["images", "jobs", &id]).await?;
    }
}
