//! Files through HTTP: upload (Content-Length required, mode), full and
//! truncated reads with their headers, stat, list, errors, and a large
//! file streamed both ways.

use reqwest::Method;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run};

#[allow(clippy::too_many_lines)] // one scenario on one daemon, step by step
pub fn files_over_http() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        d.create("fs").await?;
        let f = |q: &str| format!("/sandboxes/fs/files?{q}");

        let text = "one\ntwo\nthree\nfour\n";
        let v = d
            .expect(
                d.req(Method::PUT, &f("path=/tmp/d/n.txt&mode=0600"))
                    .body(text),
                200,
            )
            .await?;
        ensure(v["status"] == "ok", || format!("put: {v}"))?;
        // Full read: Content-Length and X-File-Size.
        let r = d.req(Method::GET, &f("path=/tmp/d/n.txt")).send().await?;
        let h = r.headers().clone();
        let body = r.text().await?;
        ensure(body == text, || format!("read {body:?}"))?;
        ensure(
            h.get("x-file-size").is_some_and(|v| v == "19")
                && h.get("content-length").is_some_and(|v| v == "19")
                && h.get("x-file-mode").is_some_and(|v| v == "0600"),
            || format!("full read headers: {h:?}"),
        )?;
        // Truncated reads: size of the whole file, no Content-Length.
        for (q, want) in [
            ("offset=2&limit=2", "two\nthree\n"),
            ("max_bytes=5", "one\nt"),
            ("offset=9", ""),
        ] {
            let r = d
                .req(Method::GET, &f(&format!("path=/tmp/d/n.txt&{q}")))
                .send()
                .await?;
            let h = r.headers().clone();
            let body = r.text().await?;
            ensure(body == want, || format!("{q}: {body:?}"))?;
            ensure(
                h.get("x-file-size").is_some_and(|v| v == "19")
                    && h.get("content-length").is_none(),
                || format!("{q} headers: {h:?}"),
            )?;
        }
        // Stat and list.
        let r = d.req(Method::HEAD, &f("path=/tmp/d/n.txt")).send().await?;
        let h = r.headers();
        ensure(
            r.status() == 200
                && h.get("x-file-size").is_some_and(|v| v == "19")
                && h.get("x-file-isdir").is_some_and(|v| v == "false"),
            || format!("head: {} {h:?}", r.status()),
        )?;
        let r = d
            .req(Method::HEAD, &f("path=/tmp/d/missing"))
            .send()
            .await?;
        ensure(r.status() == 404, || {
            format!("head missing: {}", r.status())
        })?;
        let ls = d
            .expect(d.req(Method::GET, &f("path=/tmp/d&ls=true")), 200)
            .await?;
        ensure(
            ls.as_array().is_some_and(|a| {
                a.len() == 1 && a[0]["name"] == "n.txt" && a[0]["is_dir"] == false
            }),
            || format!("ls: {ls}"),
        )?;
        // Errors.
        let e = d
            .expect(d.req(Method::GET, &f("path=/tmp/d/missing")), 404)
            .await?;
        ensure(
            e["error"]
                .as_str()
                .is_some_and(|m| m.contains("no such file")),
            || format!("{e}"),
        )?;
        d.expect(d.req(Method::GET, &f("path=/tmp/d")), 400).await?;
        d.expect(d.req(Method::GET, &f("path=relative")), 400)
            .await?;
        d.expect(
            d.req(Method::PUT, &f("path=/tmp/x&mode=999")).body("x"),
            400,
        )
        .await?;
        let chunked =
            reqwest::Body::wrap_stream(futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
                bytes::Bytes::from_static(b"x"),
            )]));
        d.expect(d.req(Method::PUT, &f("path=/tmp/x")).body(chunked), 411)
            .await?;
        // An upload declared over 100 MiB is refused before any byte is read.
        let head = format!(
            "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
            f("path=/tmp/x"),
            d.key,
            101u64 << 20
        );
        let status = crate::support::raw_status(&d.url, head.as_bytes()).await?;
        ensure(status.contains(" 413 "), || {
            format!("101 MiB declared: {status}")
        })?;

        // 24 MiB both ways, compared by checksum inside and outside.
        let data: Vec<u8> = (0..24u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        d.expect(
            d.req(Method::PUT, &f("path=/tmp/big.bin"))
                .body(data.clone()),
            200,
        )
        .await?;
        let size = d.sh("fs", "wc -c < /tmp/big.bin").await?;
        ensure(size.trim() == data.len().to_string(), || {
            format!("guest size {size}")
        })?;
        let back = d
            .req(Method::GET, &f("path=/tmp/big.bin"))
            .send()
            .await?
            .bytes()
            .await?;
        ensure(back.len() == data.len() && back[..] == data[..], || {
            format!("read back {} bytes", back.len())
        })?;
        d.finish().await
    })
}
