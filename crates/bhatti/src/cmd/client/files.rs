//! `bhatti file read|write|ls`. `read` streams the body to stdout as it
//! arrives; `write` streams stdin as the request body — a regular file on
//! stdin is sent as is, a pipe is first spooled to an anonymous temp file
//! because the API needs the length up front. Reads and writes happen on
//! the command's runtime (the file side through tokio's blocking pool).
//! `ls` prints v1's lines ([`ls_line`]); `--wide` a table with ages.
//! `write --user` names the file's owner (`?user=`; default the sandbox's
//! user, else `lohar` as in v1).

use std::io::{IsTerminal, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use base64::Engine as _;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use reqwest::header::CONTENT_LENGTH;
use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::args::Global;
use super::http::{read_json, root_cause};
use super::{Ctx, Outcome, render};

#[derive(Debug, Args)]
pub struct FileArgs {
    #[command(subcommand)]
    pub action: FileAction,
    #[command(flatten)]
    pub g: Global,
}

#[derive(Debug, Subcommand)]
pub enum FileAction {
    /// Print a file, or a window of its lines, to stdout.
    Read {
        /// Sandbox name or id
        sandbox: String,
        /// Path in the sandbox
        path: String,
        /// Start at this line (1-based)
        #[arg(long, value_name = "LINE", value_parser = clap::value_parser!(u64).range(1..))]
        offset: Option<u64>,
        /// Print at most this many lines
        #[arg(long, value_name = "LINES", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Print at most this many bytes (may cut a line)
        #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
        max_bytes: Option<u64>,
    },
    /// Write stdin to a file (atomically; created or replaced).
    Write {
        /// Sandbox name or id
        sandbox: String,
        /// Path in the sandbox
        path: String,
        /// Permission bits of the file
        #[arg(long, default_value = "0644")]
        mode: String,
        /// Owner of the written file: a guest user name or a uid [default:
        /// the sandbox's user, else lohar]
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// List a directory: one line per entry, `d0755     4096 name` (type,
    /// mode, size, name); a table with -o wide.
    #[command(visible_alias = "list")]
    Ls {
        /// Sandbox name or id
        sandbox: String,
        /// Directory in the sandbox
        #[arg(default_value = "/")]
        path: String,
        #[command(flatten)]
        wide: render::Wide,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("invalid mode {0:?}: expected octal permission bits such as 0644")]
    Mode(String),
    #[error(
        "stdin is a terminal; pipe or redirect the content, e.g. `bhatti file write box /tmp/x < local-file`"
    )]
    StdinTerminal,
    #[error("reading stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("reading the file from the daemon: {0}")]
    Body(String),
    #[error("writing stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

fn files_url(ctx: &Ctx, sandbox: &str, query: &[(&str, String)]) -> Url {
    let mut u = ctx.api.url(&["sandboxes", sandbox, "files"]);
    u.query_pairs_mut().extend_pairs(query);
    u
}

/// Valid octal permission bits (at most 4 digits, at most 07777).
pub fn valid_mode(m: &str) -> bool {
    !m.is_empty() && m.len() <= 4 && u32::from_str_radix(m, 8).is_ok_and(|v| v <= 0o7777)
}

pub async fn run(a: FileArgs) -> anyhow::Result<Outcome> {
    match a.action {
        FileAction::Read {
            sandbox,
            path,
            offset,
            limit,
            max_bytes,
        } => {
            let ctx = Ctx::new(&a.g)?;
            let window = [
                ("offset", offset),
                ("limit", limit),
                ("max_bytes", max_bytes),
            ];
            read(&ctx, &sandbox, path, &window).await?;
        }
        FileAction::Write {
            sandbox,
            path,
            mode,
            user,
        } => {
            if !valid_mode(&mode) {
                return Err(FileError::Mode(mode).into());
            }
            let mut q = vec![("path", path.clone()), ("mode", mode)];
            q.extend(user.map(|u| ("user", u)));
            write(&Ctx::new(&a.g)?, &sandbox, path, &q).await?;
        }
        FileAction::Ls {
            sandbox,
            path,
            wide,
        } => ls(&Ctx::new(&a.g)?, &sandbox, path, wide.on()).await?,
    }
    Ok(Outcome::Success)
}

/// `file read`: the content to stdout as it streams in, or with `--json`
/// one object with the content in base64.
async fn read(
    ctx: &Ctx,
    sandbox: &str,
    path: String,
    window: &[(&str, Option<u64>)],
) -> anyhow::Result<()> {
    let mut q = vec![("path", path.clone())];
    q.extend(
        window
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v.to_string()))),
    );
    let url = files_url(ctx, sandbox, &q);
    let resp = ctx.api.send(ctx.api.request(Method::GET, url)).await?;
    let size = resp
        .headers()
        .get("x-file-size")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    if ctx.json {
        let body = resp
            .bytes()
            .await
            .map_err(|e| FileError::Body(root_cause(&e)))?;
        render::json(&json!({
            "path": path,
            "size": size,
            "content_b64": base64::engine::general_purpose::STANDARD.encode(&body),
        }));
        return Ok(());
    }
    let mut stream = resp.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| FileError::Body(root_cause(&e)))?;
        out.write_all(&chunk).map_err(FileError::Stdout)?;
    }
    out.flush().map_err(FileError::Stdout)?;
    Ok(())
}

/// `file write`: stdin streamed to `path`, with the query `q` (the path,
/// its permission bits and maybe its owner).
async fn write(ctx: &Ctx, sandbox: &str, path: String, q: &[(&str, String)]) -> anyhow::Result<()> {
    let (file, len) = tokio::task::spawn_blocking(stdin_as_file).await??;
    let url = files_url(ctx, sandbox, q);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let rb = ctx
        .api
        .request(Method::PUT, url)
        .header(CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream));
    let res = read_json(ctx.api.send(rb).await?).await?;
    if ctx.json {
        let mut v = if res.is_object() { res } else { json!({}) };
        v["path"] = json!(path);
        v["size"] = json!(len);
        render::json(&v);
    } else {
        println!("wrote {len} bytes to {path}");
    }
    Ok(())
}

/// One `file ls` line as v1 printed it: `d` or `-`, the mode's octal
/// digits, the size right-aligned in 8 columns, the name
/// (`d0755     4096 name`).
pub fn ls_line(f: &Value) -> String {
    let kind = if f.get("is_dir").and_then(Value::as_bool) == Some(true) {
        'd'
    } else {
        '-'
    };
    let size = render::raw(f, "size");
    format!(
        "{kind}{} {size:>8} {}",
        render::raw(f, "mode"),
        render::raw(f, "name")
    )
}

/// `file ls`: v1's lines ([`ls_line`]), a table with `--wide`, or JSON.
async fn ls(ctx: &Ctx, sandbox: &str, path: String, wide: bool) -> anyhow::Result<()> {
    let url = files_url(ctx, sandbox, &[("path", path), ("ls", "true".into())]);
    let items = read_json(ctx.api.send(ctx.api.request(Method::GET, url)).await?).await?;
    if ctx.json {
        render::json(&items);
        return Ok(());
    }
    let entries = items.as_array().map(Vec::as_slice).unwrap_or_default();
    if !wide {
        for f in entries {
            println!("{}", ls_line(f));
        }
        return Ok(());
    }
    let rows = entries
        .iter()
        .map(|f| {
            let mut name = render::cell(f, "name");
            if f.get("is_dir").and_then(Value::as_bool) == Some(true) {
                name.push('/');
            }
            vec![
                render::cell(f, "mode"),
                render::cell(f, "size"),
                render::age_cell(f, "mtime"),
                name,
            ]
        })
        .collect::<Vec<_>>();
    render::table(&["MODE", "SIZE", "MODIFIED", "NAME"], &rows);
    Ok(())
}

/// Stdin as a seekable file positioned at its content, and the length to
/// send: a regular file is used directly (from its current position), a
/// pipe or socket is copied to an anonymous temp file first.
fn stdin_as_file() -> Result<(std::fs::File, u64), FileError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(FileError::StdinTerminal);
    }
    let fd = stdin
        .as_fd()
        .try_clone_to_owned()
        .map_err(FileError::Stdin)?;
    let mut f = std::fs::File::from(fd);
    let meta = f.metadata().map_err(FileError::Stdin)?;
    if meta.is_file() {
        let pos = f.stream_position().map_err(FileError::Stdin)?;
        return Ok((f, meta.len().saturating_sub(pos)));
    }
    let mut spool = tempfile::tempfile().map_err(FileError::Stdin)?;
    let len = std::io::copy(&mut stdin.lock(), &mut spool).map_err(FileError::Stdin)?;
    spool.seek(SeekFrom::Start(0)).map_err(FileError::Stdin)?;
    Ok((spool, len))
}

#[cfg(test)]
mod tests {
    use super::{ls_line, valid_mode};

    #[test]
    fn v1_ls_lines() {
        let d = serde_json::json!({"name": "src", "size": 4096, "mode": "0755", "is_dir": true, "mtime": 1});
        assert_eq!(ls_line(&d), "d0755     4096 src");
        let f = serde_json::json!({"name": "a b.txt", "size": 123_456_789, "mode": "0644", "is_dir": false});
        assert_eq!(ls_line(&f), "-0644 123456789 a b.txt");
    }

    #[test]
    fn modes() {
        for ok in ["0644", "755", "0", "7777"] {
            assert!(valid_mode(ok), "{ok}");
        }
        for bad in ["", "0999", "10000", "rw", "-1", "17777"] {
            assert!(!valid_mode(bad), "{bad}");
        }
    }
}
