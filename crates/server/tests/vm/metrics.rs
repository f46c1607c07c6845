//! `GET /metrics` and `GET /sandboxes/{id}/stats` against a real daemon
//! and real VMs. Scrapes are parsed with the `prometheus-parse` crate and
//! compared with the actions the test took: a route's request counter
//! grows by exactly the requests made, the create and exec histograms
//! count one each, sandboxes by state follow a create and a stop, the
//! VMM's RSS and CPU are there while it runs and gone once stopped; the
//! stats of a hot sandbox show its memory, a stopped one zeros; the
//! error replies the test provoked are counted by kind, and a shell
//! reattached as an agent reconnect. Without a key `/metrics` is 401,
//! unless `metrics_auth: none`.

use bhatti_server::config::MetricsAuth;
use libtest_mimic::{Failed, Trial};
use prometheus_parse::{Scrape, Value};
use reqwest::Method;
use serde_json::json;

use crate::support::{TestDaemon, TestResult, Timers, ensure, run, trial};

pub fn trials() -> Vec<Trial> {
    vec![
        trial("metrics::scrape_matches_actions", scrape_matches_actions),
        trial("metrics::auth_none", auth_none),
    ]
}

/// `text` parsed by `prometheus-parse`, whose line pattern ends a label
/// set at the first `}`: braces inside label values (route templates)
/// are shown to it as parentheses.
fn parse(text: &str) -> Result<Scrape, Failed> {
    let mut tame = String::with_capacity(text.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        let out = match c {
            '{' if quoted => '(',
            '}' if quoted => ')',
            '"' if !escaped => {
                quoted = !quoted;
                c
            }
            '\n' => {
                quoted = false;
                c
            }
            c => c,
        };
        escaped = quoted && c == '\\' && !escaped;
        tame.push(out);
    }
    Ok(Scrape::parse(tame.lines().map(|l| Ok(l.to_owned())))?)
}

/// The first sample of `name` whose labels include `labels`, as a number
/// (a histogram: its count).
fn num(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let x = s.samples.iter().find(|x| {
        x.metric == name
            && labels
                .iter()
                .all(|(k, v)| x.labels.get(k).is_some_and(|have| have == *v))
    })?;
    match &x.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(h) => h.iter().map(|b| b.count).reduce(f64::max),
        Value::Summary(_) => None,
    }
}

async fn scrape(d: &TestDaemon) -> Result<Scrape, Failed> {
    let resp = d.req(Method::GET, "/metrics").send().await?;
    ensure(resp.status() == 200, || {
        format!("/metrics: {}", resp.status())
    })?;
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure(ct.starts_with("text/plain; version=0.0.4"), || {
        format!("content type {ct}")
    })?;
    parse(&resp.text().await?)
}

const GET_ONE: [(&str, &str); 3] = [
    ("method", "GET"),
    ("route", "/sandboxes/(id)"),
    ("status", "200"),
];

pub fn scrape_matches_actions() -> TestResult {
    run(async {
        let d = TestDaemon::start(Timers::default()).await?;
        let (s, _) = d.call(d.req_as("", Method::GET, "/metrics")).await?;
        ensure(s == 401, || format!("no key: {s}"))?;
        let before = scrape(&d).await?;
        let count = |s: &Scrape, name, l: &[(&str, &str)]| num(s, name, l).unwrap_or(0.0);
        let boot = [("source", "boot")];
        let create = "bhatti_sandbox_create_duration_seconds";
        let sb = d.create("m1").await?;
        let id = sb["id"].as_str().unwrap_or_default().to_owned();
        for _ in 0..3 {
            d.expect(d.req(Method::GET, "/sandboxes/m1"), 200).await?;
        }
        d.sh("m1", "echo hi").await?;
        let after = scrape(&d).await?;
        let delta = count(&after, "bhatti_http_requests_total", &GET_ONE)
            - count(&before, "bhatti_http_requests_total", &GET_ONE);
        ensure(delta == 3.0, || {
            format!("GET /sandboxes/{{id}} grew by {delta}")
        })?;
        let scrapes = [("route", "/metrics"), ("status", "200")];
        let n = count(&after, "bhatti_http_requests_total", &scrapes);
        ensure(n == 1.0, || format!("/metrics 200 counted {n}"))?;
        let denied = [("route", "/metrics"), ("status", "401")];
        let n = count(&after, "bhatti_http_requests_total", &denied);
        ensure(n == 1.0, || format!("/metrics 401 counted {n}"))?;
        let created = count(&after, create, &boot) - count(&before, create, &boot);
        ensure(created == 1.0, || {
            format!("create histogram grew by {created}")
        })?;
        let execs = count(&after, "bhatti_exec_duration_seconds", &[]);
        ensure(execs == 1.0, || format!("exec histogram counts {execs}"))?;
        let hot = [("status", "running"), ("thermal", "hot")];
        let g = num(&after, "bhatti_sandboxes", &hot);
        ensure(g == Some(1.0), || format!("running/hot: {g:?}"))?;
        let vmm = [("sandbox", id.as_str()), ("name", "m1")];
        let rss = count(&after, "bhatti_vmm_resident_memory_bytes", &vmm);
        let cpu = count(&after, "bhatti_vmm_cpu_seconds_total", &vmm);
        ensure(rss > 1e6 && cpu > 0.0, || {
            format!("vmm rss {rss} cpu {cpu}")
        })?;

        let st = d
            .expect(d.req(Method::GET, "/sandboxes/m1/stats"), 200)
            .await?;
        let n = |k: &str| st[k].as_f64().unwrap_or(-1.0);
        ensure(
            n("memory_bytes") > 1e6
                && n("memory_mb") == 256.0
                && n("disk_used_bytes") > 0.0
                && n("cpu_percent") >= 0.0
                && st["thermal"] == "hot"
                && st["sampled_at"].is_string(),
            || format!("hot stats: {st}"),
        )?;

        errors_and_reconnects(&d).await?;
        d.expect(d.req(Method::POST, "/sandboxes/m1/stop"), 200)
            .await?;
        let st = d
            .expect(d.req(Method::GET, "/sandboxes/m1/stats"), 200)
            .await?;
        ensure(
            st["memory_bytes"] == 0 && st["cpu_percent"] == 0.0 && st["status"] == "stopped",
            || format!("stopped stats: {st}"),
        )?;
        let stopped = scrape(&d).await?;
        let g = |l: &[(&str, &str)]| num(&stopped, "bhatti_sandboxes", l);
        let cold = [("status", "stopped"), ("thermal", "cold")];
        ensure(g(&cold) == Some(1.0) && g(&hot) == Some(0.0), || {
            format!("after stop: {:?} {:?}", g(&cold), g(&hot))
        })?;
        let gone = num(&stopped, "bhatti_vmm_resident_memory_bytes", &vmm);
        ensure(gone.is_none(), || format!("stopped vmm rss {gone:?}"))?;
        d.finish().await
    })
}

/// A shell socket on m1 asking for control messages; its session id.
async fn shell(d: &TestDaemon, query: &str) -> Result<(crate::shell::Ws, String), Failed> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/sandboxes/m1/ws?control=1&{query}",
        d.url.replace("http://", "ws://")
    );
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", d.key).parse()?);
    let mut ws = tokio_tungstenite::connect_async(req).await?.0;
    let sid = crate::shell::hello(&mut ws).await?;
    Ok((ws, sid))
}

/// `bhatti_errors_total` counts the error replies the test provoked by
/// kind (two bad requests, a 404, a 502 from a guest port nobody listens
/// on), and `bhatti_agent_reconnects_total{kind="session"}` one shell
/// reattached by its id; nothing was redialled.
async fn errors_and_reconnects(d: &TestDaemon) -> TestResult {
    let before = scrape(d).await?;
    for q in ["abc", "99999"] {
        let path = format!("/sandboxes/m1/console?lines={q}");
        d.expect(d.req(Method::GET, &path), 400).await?;
    }
    d.expect(d.req(Method::GET, "/sandboxes/nope"), 404).await?;
    d.expect(d.req(Method::GET, "/sandboxes/m1/proxy/9999/"), 502)
        .await?;
    let (ws, sid) = shell(d, "new=true").await?;
    drop(ws);
    let (mut ws, again) = shell(d, &format!("session={sid}")).await?;
    ensure(again == sid, || format!("reattached {again}, not {sid}"))?;
    let _ = futures_util::SinkExt::close(&mut ws).await;
    let after = scrape(d).await?;
    let grew = |name: &str, kind: &str| {
        let l = [("kind", kind)];
        num(&after, name, &l).unwrap_or(0.0) - num(&before, name, &l).unwrap_or(0.0)
    };
    let errors = "bhatti_errors_total";
    let got = [
        grew(errors, "bad_request"),
        grew(errors, "not_found"),
        grew(errors, "bad_gateway"),
    ];
    ensure(got == [2.0, 1.0, 1.0], || format!("errors grew by {got:?}"))?;
    let reconnects = "bhatti_agent_reconnects_total";
    let session = grew(reconnects, "session");
    let redial = num(&after, reconnects, &[("kind", "redial")]);
    ensure(session == 1.0 && redial == Some(0.0), || {
        format!("reconnects: session +{session}, redial {redial:?}")
    })
}

pub fn auth_none() -> TestResult {
    run(async {
        let d = TestDaemon::start_with(Timers::default(), |c| {
            c.metrics_auth = MetricsAuth::None;
        })
        .await?;
        let resp = d.req_as("", Method::GET, "/metrics").send().await?;
        ensure(resp.status() == 200, || {
            format!("no key: {}", resp.status())
        })?;
        let s = parse(&resp.text().await?)?;
        let g = num(&s, "bhatti_sandboxes", &[("status", "running")]);
        ensure(g == Some(0.0), || format!("running: {g:?}"))?;
        let (st, v) = d
            .call(
                d.req_as("", Method::GET, "/metrics")
                    .header("accept", "application/openmetrics-text")
                    .json(&json!({})),
            )
            .await?;
        let eof = v.as_str().is_some_and(|t| t.ends_with("# EOF\n"));
        ensure(st == 200 && eof, || format!("openmetrics: {st} {v}"))?;
        d.finish().await
    })
}
