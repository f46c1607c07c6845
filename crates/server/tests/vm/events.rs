//! `GET /events` against a real daemon and real VMs: a scripted lifecycle
//! (create, exec, a guest port listening, hot → warm → cold with short
//! timers, a wake, a rename, stop, start, destroy) arrives on the owner's
//! stream as `created`, each state change once and in order,
//! `port_opened`, `renamed` (later events carry the new name), then
//! `destroyed`; another user's stream sees none of it (and sees its own
//! sandbox); `Last-Event-ID` replays the same events; `?token=` works for
//! an `EventSource`-style request; the stream ends when the daemon stops.
//! Every wait polls with a generous deadline.

use std::time::Duration;

use bhatti_store::users::Limits;
use futures_util::StreamExt;
use libtest_mimic::{Failed, Trial};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::{TestDaemon, TestResult, Timers, ensure, eventually, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![trial("events::lifecycle_in_order", lifecycle_in_order)]
}

/// Generous: a cold restore under TCG on a loaded host.
const LONG: Duration = Duration::from_secs(120);

/// One stream of `GET /events`, read by a task: each SSE event as
/// `(event name, data)`; the channel closes when the stream ends.
struct Stream {
    rx: mpsc::UnboundedReceiver<(String, Value)>,
    content_type: String,
}

impl Stream {
    async fn open(url: &str, key: &str, last_id: Option<u64>) -> Result<Self, Failed> {
        let mut r = reqwest::Client::new()
            .get(format!("{url}/events"))
            .bearer_auth(key);
        if let Some(id) = last_id {
            r = r.header("last-event-id", id.to_string());
        }
        Self::read(r.send().await?)
    }

    fn read(resp: reqwest::Response) -> Result<Self, Failed> {
        ensure(resp.status() == 200, || {
            format!("GET /events: {}", resp.status())
        })?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let (mut buf, mut event, mut data) = (Vec::new(), String::new(), String::new());
            while let Some(Ok(chunk)) = body.next().await {
                buf.extend_from_slice(&chunk);
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else if line.is_empty() && !data.is_empty() {
                        let v = serde_json::from_str(&data).unwrap_or(Value::Null);
                        let _ = tx.send((std::mem::take(&mut event), v));
                        data.clear();
                    }
                }
            }
        });
        Ok(Self { rx, content_type })
    }

    /// The next `sandbox` event within `limit` (`None`: none came).
    async fn next(&mut self, limit: Duration) -> Result<Option<Value>, Failed> {
        match tokio::time::timeout(limit, self.rx.recv()).await {
            Err(_) => Ok(None),
            Ok(None) => Err("the event stream ended".into()),
            Ok(Some((name, v))) if name == "sandbox" => Ok(Some(v)),
            Ok(Some((name, v))) => Err(format!("unexpected {name}: {v}").into()),
        }
    }

    /// Events until one of type `kind` (included) or `limit`.
    async fn until(&mut self, kind: &str, limit: Duration) -> Result<Vec<Value>, Failed> {
        let end = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let Some(v) = self.next(left).await? else {
                return Err(format!("no {kind} within {limit:?}; got {got:?}").into());
            };
            let done = v["type"] == kind;
            got.push(v);
            if done {
                return Ok(got);
            }
        }
    }
}

/// `(type, state)` of the events that carry a state change (ports left
/// out: the scanner's timing decides when they come).
fn states(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| !e["type"].as_str().unwrap_or("").starts_with("port_"))
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("?").to_owned();
            (s("type"), s("state"))
        })
        .collect()
}

async fn thermal(d: &TestDaemon, want: &'static str) -> TestResult {
    eventually(LONG, || async {
        let v = d.expect(d.req(Method::GET, "/sandboxes/ev"), 200).await?;
        Ok((v["thermal"] == want).then_some(()))
    })
    .await
}

/// The scripted lifecycle; returns the events alice's stream carried.
async fn lifecycle(d: &TestDaemon, alice: &mut Stream) -> Result<Vec<Value>, Failed> {
    let sb = d.create("ev").await?;
    let mut got = alice.until("created", LONG).await?;
    d.sh(
        "ev",
        "(busybox httpd -f -p 8080 -h /tmp </dev/null >/dev/null 2>&1 &)",
    )
    .await?;
    d.expect(d.req(Method::GET, "/sandboxes/ev/ports"), 200)
        .await?;
    got.extend(alice.until("port_opened", LONG).await?);
    thermal(d, "warm").await?;
    thermal(d, "cold").await?;
    // A wake, then no more cooling, under a new name.
    d.sh("ev", "true").await?;
    let keep = json!({"keep_hot": true, "name": "ev2"});
    d.expect(d.req(Method::PATCH, "/sandboxes/ev").json(&keep), 200)
        .await?;
    d.expect(d.req(Method::POST, "/sandboxes/ev2/stop"), 200)
        .await?;
    d.expect(d.req(Method::POST, "/sandboxes/ev2/start"), 200)
        .await?;
    d.expect(d.req(Method::DELETE, "/sandboxes/ev2"), 200)
        .await?;
    got.extend(alice.until("destroyed", LONG).await?);
    let mut name = "ev";
    for e in &got {
        if e["type"] == "renamed" {
            name = "ev2";
        }
        ensure(
            e["sandbox"]["id"] == sb["id"] && e["sandbox"]["name"] == name,
            || format!("names another sandbox or name: {e}"),
        )?;
    }
    Ok(got)
}

pub fn lifecycle_in_order() -> TestResult {
    run(async {
        let mut d = TestDaemon::start(Timers {
            warm_after: 4,
            cold_after: 8,
            tick: 1,
        })
        .await?;
        let bob = d.user("bob", Limits::default())?;
        let mut alice = Stream::open(&d.url, &d.key, None).await?;
        ensure(alice.content_type.starts_with("text/event-stream"), || {
            format!("content type {:?}", alice.content_type)
        })?;
        let mut bobs = Stream::open(&d.url, &bob, None).await?;
        let got = lifecycle(&d, &mut alice).await?;
        let st = |t: &str, s: &str| (t.to_owned(), s.to_owned());
        let want = vec![
            st("created", "running/hot"),
            st("state", "running/warm"),
            st("state", "running/cold"),
            st("state", "running/hot"),
            st("renamed", "running/hot"),
            st("state", "stopped"),
            st("state", "running/hot"),
            st("destroyed", "destroyed"),
        ];
        ensure(states(&got) == want, || format!("events: {got:#?}"))?;
        let seqs: Vec<u64> = got.iter().filter_map(|e| e["seq"].as_u64()).collect();
        ensure(seqs.windows(2).all(|w| w[0] < w[1]), || {
            format!("seqs {seqs:?}")
        })?;
        let port = got.iter().find(|e| e["type"] == "port_opened");
        ensure(port.is_some_and(|p| p["port"] == 8080), || {
            format!("{got:#?}")
        })?;

        // Bob's stream carried none of it, and carries his own sandbox.
        d.expect(
            d.req_as(&bob, Method::POST, "/sandboxes")
                .json(&json!({"name": "bobs", "memory_mb": 256})),
            201,
        )
        .await?;
        let first = bobs.next(LONG).await?;
        ensure(
            first
                .as_ref()
                .is_some_and(|e| e["sandbox"]["name"] == "bobs"),
            || format!("bob's first event: {first:?}"),
        )?;
        let more = alice.next(Duration::from_secs(2)).await?;
        ensure(more.is_none(), || format!("alice saw {more:?}"))?;

        // Resuming from before the first event replays alice's events.
        let mut again = Stream::open(&d.url, &d.key, Some(0)).await?;
        let replay = again.until("destroyed", LONG).await?;
        ensure(replay == got, || format!("replay: {replay:#?}"))?;

        // ?token= is accepted from an EventSource-style request.
        let es = reqwest::Client::new()
            .get(format!("{}/events?token={}", d.url, d.key))
            .header("accept", "text/event-stream")
            .send()
            .await?;
        let _es = Stream::read(es)?;

        // The daemon's stop ends the stream.
        d.stop_serving().await?;
        let end = tokio::time::timeout(LONG, alice.rx.recv()).await;
        ensure(matches!(end, Ok(None)), || format!("after stop: {end:?}"))?;
        Ok(())
    })
}
