//! v1 files and the one user rule, on one sandbox: exec runs as root,
//! `"user":"lohar"` runs as uid 1000, a file put through the API into
//! `/root` is read by the next exec and owned by lohar; `GET`/`PUT`/`HEAD`
//! with v1's headers (`X-File-Size`, `X-File-Mode` `0644`,
//! `X-File-IsDir`), ranges, a `PUT` without `Content-Length` (400 or
//! 411), `ls=true` entries `{name,size,mode,is_dir,mtime}` and the cap of
//! 10,000 entries with its sentinel; a missing file is a 404 with
//! `{"error"}` (v1 said 500; a v1 client reads both as an error).

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

use super::{Rows, exec, is_error, is_text, is_uint, send};
use crate::support::{TestDaemon, TestResult, Timers, run};

const ROW: &str = "files";

pub fn files_and_user_rule() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let mut rows = Rows::default();
        d.create("fs").await?;
        users(&d, &mut rows).await?;
        read_write_stat(&d, &mut rows).await?;
        listing(&d, &mut rows).await?;
        d.finish().await?;
        rows.done()
    })
}

fn f(q: &str) -> String {
    format!("/sandboxes/fs/files?{q}")
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn users(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let row = "users in the guest";
    let (code, out) = exec(d, "fs", "id -u", json!({})).await?;
    rows.check(row, code == 0 && out == "0\n", || {
        format!("exec must run as root by default: `id -u` → {code} {out:?}")
    });
    let (code, out) = exec(d, "fs", "id -u", json!({"user": "lohar"})).await?;
    rows.check(row, code == 0 && out == "1000\n", || {
        format!("exec with \"user\":\"lohar\" must run as 1000: `id -u` → {code} {out:?}")
    });
    let (code, out) = exec(d, "fs", "id -u", json!({"user": "root"})).await?;
    rows.check(row, code == 0 && out == "0\n", || {
        format!("exec with \"user\":\"root\" must run as 0: `id -u` → {code} {out:?}")
    });
    // An unknown field in an exec body is ignored.
    let (code, out) = exec(d, "fs", "echo ok", json!({"tty": false, "stream": false})).await?;
    rows.check(
        "unknown JSON fields in requests",
        code == 0 && out == "ok\n",
        || format!("exec with unknown fields tty/stream: {code} {out:?}"),
    );
    let (s, v) = d
        .call(
            d.req(Method::PUT, &f("path=/root/v1.txt"))
                .body("from-api\n"),
        )
        .await?;
    rows.check(row, s == 200, || format!("PUT /root/v1.txt: {s} {v}"));
    let (code, out) = exec(d, "fs", "cat /root/v1.txt", json!({})).await?;
    rows.check(row, code == 0 && out == "from-api\n", || {
        format!("a file the API put in /root must be readable by the next exec: {code} {out:?}")
    });
    let (code, out) = exec(d, "fs", "stat -c %u /root/v1.txt", json!({})).await?;
    rows.check(row, code == 0 && out == "1000\n", || {
        format!("a file written through the API must be owned by lohar (1000): {code} {out:?}")
    });
    // The per-request `user` of a file write.
    let (s, v) = d
        .call(
            d.req(Method::PUT, &f("path=/tmp/rootfile&user=root"))
                .body("r\n"),
        )
        .await?;
    let (code, out) = exec(d, "fs", "stat -c %u /tmp/rootfile", json!({})).await?;
    rows.check(row, s == 200 && code == 0 && out == "0\n", || {
        format!("PUT ?user=root must write a file owned by 0: PUT {s} {v}, owner {code} {out:?}")
    });
    let (code, out) = exec(
        d,
        "fs",
        "grep '^lohar:' /etc/passwd | cut -d: -f3,6; stat -c %u /workspace",
        json!({}),
    )
    .await?;
    rows.check(row, code == 0 && out == "1000:/home/lohar\n1000\n", || {
        format!("lohar is uid 1000 with home /home/lohar and owns /workspace: {code} {out:?}")
    });
    Ok(())
}

#[allow(clippy::too_many_lines)] // one request after another, each checked
async fn read_write_stat(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let text = "hello v1\n";
    let (s, v) = d
        .call(
            d.req(Method::PUT, &f("path=/tmp/v1/a.txt&mode=0644"))
                .body(text),
        )
        .await?;
    rows.check(ROW, s == 200, || format!("PUT ?path=&mode=0644: {s} {v}"));

    // A whole read: the body, X-File-Size and Content-Length.
    let r = d.req(Method::GET, &f("path=/tmp/v1/a.txt")).send().await?;
    let (s, h) = (r.status().as_u16(), r.headers().clone());
    let body = r.text().await?;
    rows.check(ROW, s == 200 && body == text, || {
        format!("GET: {s} {body:?}")
    });
    rows.check(
        ROW,
        header(&h, "x-file-size") == Some("9") && header(&h, "content-length") == Some("9"),
        || format!("a whole GET has X-File-Size and Content-Length 9: {h:?}"),
    );
    // Part reads: X-File-Size, no Content-Length.
    for (q, want) in [("offset=1&limit=1", ""), ("max_bytes=3", "hel")] {
        let r = d
            .req(Method::GET, &f(&format!("path=/tmp/v1/a.txt&{q}")))
            .send()
            .await?;
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        let body = r.text().await?;
        rows.check(ROW, s == 200 && (want.is_empty() || body == want), || {
            format!("GET {q}: {s} {body:?}")
        });
        rows.check(
            ROW,
            header(&h, "x-file-size") == Some("9") && h.get("content-length").is_none(),
            || format!("GET {q} has X-File-Size 9 and no Content-Length: {h:?}"),
        );
    }
    // HEAD of a file and of a directory.
    for (path, size, dir) in [
        ("/tmp/v1/a.txt", Some("9"), "false"),
        ("/tmp/v1", None, "true"),
    ] {
        let r = d
            .req(Method::HEAD, &f(&format!("path={path}")))
            .send()
            .await?;
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        rows.check(
            ROW,
            s == 200
                && header(&h, "x-file-size").is_some_and(|v| size.is_none_or(|w| v == w))
                && header(&h, "x-file-mode").is_some_and(|m| m.len() == 4 && m.starts_with('0'))
                && header(&h, "x-file-isdir") == Some(dir),
            || {
                format!(
                    "HEAD {path}: want X-File-Size, X-File-Mode 0NNN, X-File-IsDir {dir}: {s} {h:?}"
                )
            },
        );
        if dir == "false" {
            rows.check(ROW, header(&h, "x-file-mode") == Some("0644"), || {
                format!("HEAD {path}: X-File-Mode must be \"0644\": {h:?}")
            });
        }
    }
    // mode= sets the mode.
    d.call(
        d.req(Method::PUT, &f("path=/tmp/v1/run.sh&mode=0755"))
            .body("#!/bin/sh\n"),
    )
    .await?;
    let r = d
        .req(Method::HEAD, &f("path=/tmp/v1/run.sh"))
        .send()
        .await?;
    rows.check(
        ROW,
        header(r.headers(), "x-file-mode") == Some("0755"),
        || format!("PUT ?mode=0755 then HEAD: {:?}", r.headers()),
    );
    // PUT without Content-Length: 400 in v1, 411 here.
    let chunked =
        reqwest::Body::wrap_stream(futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
            bytes::Bytes::from_static(b"x"),
        )]));
    let (s, e) = d
        .call(d.req(Method::PUT, &f("path=/tmp/v1/chunked")).body(chunked))
        .await?;
    rows.check(ROW, (s == 400 || s == 411) && is_error(&e), || {
        format!("PUT without Content-Length: want 400 or 411 {{\"error\"}}, got {s} {e}")
    });
    // A missing file: 404 {"error"} (v1: 500; both are errors to a v1 client).
    let (s, e) = send(d, Method::GET, &f("path=/tmp/v1/missing"), None).await?;
    rows.check("errors", s == 404 && is_error(&e), || {
        format!("GET of a missing file: want 404 {{\"error\":string}}, got {s} {e}")
    });
    Ok(())
}

async fn listing(d: &TestDaemon, rows: &mut Rows) -> TestResult {
    let (s, ls) = send(d, Method::GET, &f("path=/tmp/v1&ls=true"), None).await?;
    let items = ls.as_array().cloned().unwrap_or_default();
    rows.check(ROW, s == 200 && items.len() == 2, || {
        format!("ls=true of /tmp/v1 (a.txt, run.sh): {s} {ls}")
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for e in &items {
        rows.check(
            ROW,
            is_text(&e["name"])
                && is_uint(&e["size"])
                && e["mode"].as_str().is_some_and(|m| m.len() == 4)
                && e["is_dir"].is_boolean(),
            || format!("ls entry must be {{name:string,size:number,mode:\"0644\",is_dir:bool,mtime}}: {e}"),
        );
        rows.check(
            "timestamps",
            e["mtime"]
                .as_u64()
                .is_some_and(|t| t.abs_diff(now) < 86_400),
            || format!("a file entry's `mtime` stays Unix seconds: {e}"),
        );
    }
    if let Some(a) = items.iter().find(|e| e["name"] == "a.txt") {
        rows.check(
            ROW,
            a["mode"] == "0644" && a["size"] == 9 && a["is_dir"] == false,
            || format!("ls entry of a.txt: {a}"),
        );
    }
    // Over 10,000 entries: the first 10,000 and a sentinel with the total.
    let (code, out) = exec(
        d,
        "fs",
        "mkdir -p /tmp/many && cd /tmp/many && seq 10050 | xargs touch && ls | wc -l",
        json!({}),
    )
    .await?;
    if !rows.check(ROW, code == 0 && out.trim() == "10050", || {
        format!("making 10050 files: {code} {out:?}")
    }) {
        return Ok(());
    }
    let (s, ls) = send(d, Method::GET, &f("path=/tmp/many&ls=true"), None).await?;
    let items = ls.as_array().cloned().unwrap_or_default();
    let last = items.last().cloned().unwrap_or_default();
    rows.check(
        ROW,
        s == 200
            && items.len() == 10_001
            && last["size"] == 10_050
            && last["name"].as_str().is_some_and(|n| n.contains("10050")),
        || format!("ls of 10050 entries: want 10000 + a sentinel giving the total, got {s}, {} entries, last {last}", items.len()),
    );
    Ok(())
}
