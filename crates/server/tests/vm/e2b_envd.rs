//! The daemon's envd (Connect-JSON under `/e2b`) against a real VM, spoken
//! by hand — no SDK, so it runs wherever the VM tests run: a sandbox from
//! the E2B control plane, then server streams (Start: start, stdout and
//! stderr data, end; keepalives in a silence), unary calls (Stat, List, SendSignal of an unknown
//! pid), an upload and download through `/files`, and the errors of a
//! wrong token and a stream for an unknown process. The SDK's view is
//! `tests/e2b/test_{commands,files,pty}.py` (trial `e2b::python_sdk`).
//!
//! `kept_across_restart`: a command started through envd outlives a
//! SIGKILLed daemon (the agent keeps it, protocol version 5); the
//! restarted daemon adopts it at start (its sandbox stays hot), lists it, Connect streams its further output (not
//! what was sent before), SendInput reaches its stdin, and its end comes
//! with its exit code. Then CloseStdin and a SIGTERM after it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libtest_mimic::Trial;
use serde_json::{Value, json};

use crate::support::{TestDaemon, TestResult, Timers, ensure, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![
        trial("e2b_envd::connect_protocol", connect_protocol),
        trial("e2b_envd::kept_across_restart", kept_across_restart),
    ]
}

/// One Connect envelope around `msg`.
fn envelope(msg: &Value) -> Vec<u8> {
    let json = msg.to_string().into_bytes();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&json);
    out
}

/// The (flags, message) envelopes of a stream's body.
fn envelopes(mut body: &[u8]) -> Result<Vec<(u8, Value)>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err(format!("{} stray bytes", body.len()));
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let msg = body.get(5..5 + len).ok_or("short envelope")?;
        let v = serde_json::from_slice(msg).map_err(|e| e.to_string())?;
        out.push((body[0], v));
        body = &body[5 + len..];
    }
    Ok(out)
}

/// A sandbox request's builder: the sandbox header and its token.
struct Envd<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    id: String,
    token: String,
}

impl Envd<'_> {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/e2b{path}", self.url))
            .header("E2b-Sandbox-Id", &self.id)
            .header("X-Access-Token", &self.token)
    }

    async fn stream(&self, method: &str, msg: &Value) -> Result<Vec<(u8, Value)>, String> {
        self.stream_with(method, msg, "50").await
    }

    /// A stream whose silences are broken by keepalives every `ping` s.
    async fn stream_with(
        &self,
        method: &str,
        msg: &Value,
        ping: &str,
    ) -> Result<Vec<(u8, Value)>, String> {
        let r = self
            .post(method)
            .header("Keepalive-Ping-Interval", ping)
            .header("Content-Type", "application/connect+json")
            .header("Connect-Timeout-Ms", "120000")
            .body(envelope(msg))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("stream status {}", r.status()));
        }
        envelopes(&r.bytes().await.map_err(|e| e.to_string())?)
    }

    async fn unary(&self, method: &str, msg: &Value) -> Result<(u16, Value), String> {
        let r = self
            .post(method)
            .json(msg)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.map_err(|e| e.to_string())?))
    }
}

/// A sandbox made through E2B's control plane: its id and envd token.
async fn create(
    http: &reqwest::Client,
    url: &str,
    key: &str,
) -> Result<(String, String), libtest_mimic::Failed> {
    let created: Value = http
        .post(format!("{url}/e2b/sandboxes"))
        .header("X-API-Key", key)
        .json(&json!({"timeout": 600}))
        .send()
        .await?
        .json()
        .await?;
    let field = |k: &str| created[k].as_str().unwrap_or_default().to_owned();
    let (id, token) = (field("sandboxID"), field("envdAccessToken"));
    ensure(!id.is_empty(), || format!("create: {created}"))?;
    Ok((id, token))
}

fn connect_protocol() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let (id, token) = create(&d.http, &d.url, &d.key).await?;
        let envd = Envd {
            http: &d.http,
            url: &d.url,
            id,
            token,
        };
        start_stream(&envd).await?;
        unary_calls(&envd).await?;
        files(&envd).await?;
        errors(&envd).await?;
        d.finish().await
    })
}

async fn start_stream(envd: &Envd<'_>) -> TestResult {
    let start = json!({
        "process": {"cmd": "/bin/sh", "args": ["-c", "echo out; echo err >&2; exit 3"]},
        "stdin": false
    });
    let msgs = envd.stream("/process.Process/Start", &start).await?;
    let events: Vec<&Value> = msgs.iter().map(|(_, m)| &m["event"]).collect();
    ensure(events[0]["start"]["pid"].as_u64().is_some(), || {
        format!("first event: {:?}", msgs.first())
    })?;
    let data = |k: &str| -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| e["data"][k].as_str())
            .flat_map(|b| STANDARD.decode(b).unwrap_or_default())
            .collect()
    };
    ensure(data("stdout") == b"out\n", || format!("stdout of {msgs:?}"))?;
    ensure(data("stderr") == b"err\n", || format!("stderr of {msgs:?}"))?;
    let end = events
        .iter()
        .find_map(|e| e.get("end"))
        .ok_or("no end event")?;
    ensure(end["exitCode"] == 3 && end["exited"] == true, || {
        format!("end: {end}")
    })?;
    let last = msgs.last().ok_or("empty stream")?;
    ensure(last.0 == 2 && last.1 == json!({}), || {
        format!("end of stream: {last:?}")
    })?;
    // A silent command's stream carries keepalives.
    let quiet = json!({"process": {"cmd": "/bin/sh", "args": ["-c", "sleep 3"]}});
    let msgs = envd
        .stream_with("/process.Process/Start", &quiet, "1")
        .await?;
    ensure(
        msgs.iter()
            .any(|(_, m)| m["event"].get("keepalive").is_some()),
        || format!("no keepalive in {msgs:?}"),
    )
}

async fn unary_calls(envd: &Envd<'_>) -> TestResult {
    let (status, stat) = envd
        .unary("/filesystem.Filesystem/Stat", &json!({"path": "/etc"}))
        .await?;
    ensure(status == 200, || format!("stat: {status} {stat}"))?;
    ensure(stat["entry"]["type"] == "FILE_TYPE_DIRECTORY", || {
        format!("stat: {stat}")
    })?;
    let (status, list) = envd.unary("/process.Process/List", &json!({})).await?;
    ensure(status == 200 && list.get("processes").is_some(), || {
        format!("list: {status} {list}")
    })?;
    let kill = json!({"process": {"pid": 999_999}, "signal": "SIGNAL_SIGKILL"});
    let (status, err) = envd.unary("/process.Process/SendSignal", &kill).await?;
    ensure(status == 404 && err["code"] == "not_found", || {
        format!("signal to nobody: {status} {err}")
    })
}

async fn files(envd: &Envd<'_>) -> TestResult {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = envd
        .post("/files?path=/tmp/envd/blob")
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await?;
    let status = r.status();
    let written: Value = r.json().await?;
    ensure(
        status == 200 && written[0]["path"] == "/tmp/envd/blob",
        || format!("upload: {status} {written}"),
    )?;
    let back = envd
        .http
        .get(format!("{}/e2b/files?path=/tmp/envd/blob", envd.url))
        .header("E2b-Sandbox-Id", &envd.id)
        .header("X-Access-Token", &envd.token)
        .send()
        .await?
        .bytes()
        .await?;
    ensure(back[..] == data[..], || {
        format!("downloaded {} bytes", back.len())
    })
}

async fn errors(envd: &Envd<'_>) -> TestResult {
    let wrong = Envd {
        http: envd.http,
        url: envd.url,
        id: envd.id.clone(),
        token: "0".repeat(64),
    };
    let (status, err) = wrong
        .unary("/filesystem.Filesystem/Stat", &json!({"path": "/"}))
        .await?;
    ensure(status == 401 && err["code"] == "unauthenticated", || {
        format!("wrong token: {status} {err}")
    })?;
    let msgs = envd
        .stream(
            "/process.Process/Connect",
            &json!({"process": {"pid": 999_999}}),
        )
        .await?;
    let last = msgs.last().ok_or("empty stream")?;
    ensure(
        msgs.len() == 1 && last.0 == 2 && last.1["error"]["code"] == "not_found",
        || format!("connect to nobody: {msgs:?}"),
    )
}

/// A stream's envelopes read as they come: (flags, message).
struct Reader {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Reader {
    async fn open(envd: &Envd<'_>, method: &str, msg: &Value) -> Result<Self, String> {
        let resp = envd
            .post(method)
            .header("Content-Type", "application/connect+json")
            .header("Connect-Timeout-Ms", "120000")
            .body(envelope(msg))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("{method}: status {}", resp.status()));
        }
        Ok(Self {
            resp,
            buf: Vec::new(),
        })
    }

    /// The next envelope; `None` at the end of the body.
    async fn next(&mut self) -> Result<Option<(u8, Value)>, String> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let end = 5 + len as usize;
                if self.buf.len() >= end {
                    let v = serde_json::from_slice(&self.buf[5..end]).map_err(|e| e.to_string())?;
                    let flags = self.buf[0];
                    self.buf.drain(..end);
                    return Ok(Some((flags, v)));
                }
            }
            match self.resp.chunk().await.map_err(|e| e.to_string())? {
                Some(c) => self.buf.extend_from_slice(&c),
                None => return Ok(None),
            }
        }
    }

    /// Stdout until it contains `needle` (and the pid of a start event).
    async fn until(&mut self, needle: &str) -> Result<(String, Option<u64>), String> {
        let (mut out, mut pid) = (String::new(), None);
        while !out.contains(needle) {
            let Some((_, m)) = self.next().await? else {
                return Err(format!("stream ended before {needle:?}; got {out:?}"));
            };
            let ev = &m["event"];
            pid = pid.or(ev["start"]["pid"].as_u64());
            if let Some(b) = ev["data"]["stdout"].as_str() {
                out.push_str(&String::from_utf8_lossy(
                    &STANDARD.decode(b).unwrap_or_default(),
                ));
            }
            if ev.get("end").is_some() || m.get("error").is_some() {
                return Err(format!("ended before {needle:?}: {m}; got {out:?}"));
            }
        }
        Ok((out, pid))
    }
}

/// Idle sandboxes cool after [`WARM_AFTER`] s here: one under a running
/// command must not.
const WARM_AFTER: u64 = 3;

fn kept_across_restart() -> TestResult {
    let timers = Timers {
        warm_after: WARM_AFTER,
        cold_after: 3600,
        tick: 1,
    };
    crate::crash::crash_test("bhatti-kept-", timers, |d| Box::pin(kept_scenario(d)))
}

async fn kept_scenario(d: &mut crate::crash::Crashable) -> TestResult {
    d.start(None).await?;
    let (id, token) = create(&d.http, &d.url, &d.key).await?;
    let (http, url) = (d.http.clone(), d.url.clone());
    let envd = Envd {
        http: &http,
        url: &url,
        id,
        token,
    };
    let script = "echo first; read x; echo \"got $x\"; echo last; exit 7";
    let start = json!({"process": {"cmd": "/bin/sh", "args": ["-c", script]}, "tag": "keeper"});
    let mut s = Reader::open(&envd, "/process.Process/Start", &start).await?;
    let (_, pid) = s.until("first").await?;
    let pid = pid.ok_or("no start event")?;
    drop(s);

    d.kill9()?;
    d.start(None).await?;
    // Adopted at start, before any call: the running command keeps its
    // sandbox hot, as it did before the restart (idle, it would be warm
    // by now).
    tokio::time::sleep(std::time::Duration::from_secs(4 * WARM_AFTER)).await;
    let (s, v) = d
        .call(
            reqwest::Method::GET,
            &format!("/sandboxes/{}", envd.id),
            None,
        )
        .await?;
    ensure(s == 200 && v["thermal"] == "hot", || {
        format!("a sandbox under a running command after the restart: {s} {v}")
    })?;

    let (status, list) = envd.unary("/process.Process/List", &json!({})).await?;
    let listed = list["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["pid"].as_u64() == Some(pid)).cloned())
        .ok_or_else(|| format!("pid {pid} not listed after the restart: {status} {list}"))?;
    ensure(
        listed["tag"] == "keeper" && listed["config"]["cmd"] == "/bin/sh",
        || format!("listed: {listed}"),
    )?;
    let mut c = Reader::open(
        &envd,
        "/process.Process/Connect",
        &json!({"process": {"pid": pid}}),
    )
    .await?;
    let input = json!({"process": {"pid": pid}, "input": {"stdin": STANDARD.encode("hello\n")}});
    let (status, v) = envd.unary("/process.Process/SendInput", &input).await?;
    ensure(status == 200, || format!("send input: {status} {v}"))?;
    let (out, _) = c.until("last").await?;
    ensure(out == "got hello\nlast\n", || {
        format!("output after the restart (the replay must not come again): {out:?}")
    })?;
    let end = loop {
        let (_, m) = c.next().await?.ok_or("no end event")?;
        if let Some(end) = m["event"].get("end") {
            break end.clone();
        }
    };
    ensure(end["exitCode"] == 7, || format!("end: {end}"))?;
    close_then_signal(&envd).await
}

/// CloseStdin, then SIGTERM still reaches the command (the agent's empty
/// STDIN frame leaves the connection open).
async fn close_then_signal(envd: &Envd<'_>) -> TestResult {
    let script = "cat >/dev/null; echo eof; exec sleep 60";
    let start = json!({"process": {"cmd": "/bin/sh", "args": ["-c", script]}});
    let mut s = Reader::open(envd, "/process.Process/Start", &start).await?;
    let (_, first) = s.next().await?.ok_or("empty Start stream")?;
    let pid = first["event"]["start"]["pid"].as_u64();
    let sel = json!({"process": {"pid": pid.ok_or_else(|| format!("first event: {first}"))?}});
    let (status, v) = envd.unary("/process.Process/CloseStdin", &sel).await?;
    ensure(status == 200, || format!("close stdin: {status} {v}"))?;
    s.until("eof").await?;
    let term = json!({"process": sel["process"], "signal": "SIGNAL_SIGTERM"});
    let (status, v) = envd.unary("/process.Process/SendSignal", &term).await?;
    ensure(status == 200, || {
        format!("SIGTERM after CloseStdin: {status} {v}")
    })?;
    let end = loop {
        let (_, m) = s.next().await?.ok_or("no end event")?;
        if let Some(end) = m["event"].get("end") {
            break end.clone();
        }
    };
    ensure(end["status"] == "signal: terminated", || {
        format!("end: {end}")
    })
}
