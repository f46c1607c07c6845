//! The HTTP layer's cost against the engine called directly, in the same
//! run, on a real VM (QEMU engine, busybox tier):
//! - exec `true`: through `POST /exec` vs `Engine::exec` and vs the
//!   engine path the handler takes (`exec_stream` + `Supervised`; target:
//!   the HTTP layer adds at most 0.3 ms at p50 over it), with
//!   `GET /health` as the bare HTTP round trip;
//! - `GET /sandboxes/{id}` (auth and lookup, answered from the store's
//!   cache; target: at most 0.3 ms at p50) vs `GET /health` in the same
//!   loop;
//! - `GET /sandboxes` with 100 sandboxes (store records) vs the store query;
//! - 20 parallel execs: p99 through HTTP vs through the engine;
//! - a warm (paused) sandbox woken by a proxied request vs the same
//!   request to a hot one;
//! - exec `true` through the unmodified E2B Python SDK vs `POST /exec` of
//!   the same guest command from the same Python process ([`e2b`]).
//!
//! Needs root, QEMU and the images; prints the reason and exits 0 when the
//! host lacks them. `BENCH_QUICK=1` for a smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benchkit::{Summary, Target, iterations, report, target};
use bhatti_agent::Supervised;
use bhatti_engine::engine::{Engine, ExecOptions, ExecRequest, SandboxId};
use bhatti_engine::image::ImagePaths;
use bhatti_engine::netns::{NetNs, unique_name};
use bhatti_server::config::{Egress, EngineKind, ServerConfig};
use bhatti_server::daemon::{Daemon, DaemonEngine};
use bhatti_server::state::AppState;
use bhatti_store::sandboxes::{Sandbox, Status, Thermal};
use bhatti_store::users::Limits;
use serde_json::json;

#[path = "api/e2b.rs"]
mod e2b;

type BenchResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn main() {
    if let Some(r) = bhatti_testkit::skip_reason(bhatti_testkit::DAEMON) {
        println!("SKIPPED: server api bench: {r}");
        return;
    }
    let dir = match tempfile::Builder::new().prefix("bhatti-bench-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tempdir: {e}");
            std::process::exit(1);
        }
    };
    let netns = unique_name("btb");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt.block_on(bench(dir.path(), &netns));
    bhatti_engine::sandbox::orphans::kill_all(&dir.path().join("sandboxes"));
    if let Ok(ns) = NetNs::open(&netns) {
        let _ = ns.delete();
    }
    if let Err(e) = res {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

fn summary(v: &[Duration]) -> Summary {
    Summary::of(v).expect("samples")
}

/// The daemon under test and a client of it, with one busybox sandbox `b`.
struct Bench {
    url: String,
    key: String,
    user_id: String,
    http: reqwest::Client,
    state: Arc<AppState<DaemonEngine>>,
    id: SandboxId,
}

impl Bench {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
    }
}

async fn bench(dir: &std::path::Path, netns: &str) -> BenchResult {
    let cfg = ServerConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse()?,
        engine: EngineKind::Qemu,
        egress: Egress::None,
        netns: netns.to_owned(),
        warm_after_secs: 3600,
        cold_after_secs: 7200,
        tick_secs: 60,
        image: "busybox".into(),
        public_domain: None,
        ..ServerConfig::default()
    };
    let daemon = Daemon::start(&cfg, ImagePaths::from_env()).await?;
    let url = format!("http://{}", daemon.listener.local_addr()?);
    let state = daemon.state.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daemon.serve(async move {
        let _ = rx.await;
    }));
    let limits = Limits {
        max_sandboxes: 200,
        ..Limits::default()
    };
    let user = bhatti_server::users::create(&state.store, "bench", limits, 0)?;
    let http = reqwest::Client::new();
    let sb: serde_json::Value = http
        .post(format!("{url}/sandboxes"))
        .bearer_auth(&user.key)
        .json(&json!({"name": "b", "memory_mb": 256}))
        .send()
        .await?
        .json()
        .await?;
    let b = Bench {
        id: sb["id"].as_str().unwrap_or_default().parse()?,
        url,
        key: user.key.clone(),
        user_id: user.user.id.clone(),
        http,
        state,
    };

    exec_true(&b).await?;
    e2b::e2b_exec(&b).await?;
    parallel_execs(&b).await?;
    list(&b).await?;
    proxy_wake(&b).await?;
    // Last: the user's read budget (1200/min) is shared with the above.
    get_sandbox(&b).await?;
    service_path(&b).await?;

    let engine = &b.state.engine;
    for info in engine.list().await {
        let _ = engine.destroy(&info.id).await;
    }
    let _ = tx.send(());
    server.await??;
    Ok(())
}

/// Exec `true` through HTTP and the engine, interleaved so that drift
/// hits both alike, with `GET /health` as the bare round trip and
/// `GET /sandboxes/b` (auth and lookup) in the same loop (a request right
/// after an exec competes with the VM for the CPU). Two engine
/// paths: [`Engine::exec`] (buffered) and what the handler runs
/// (`exec_stream` + [`Supervised`], stdin closed); the HTTP layer is
/// `POST /exec` minus the latter.
async fn exec_true(b: &Bench) -> BenchResult {
    let engine = &b.state.engine;
    let n = iterations(300, 30);
    let mut t: [Vec<Duration>; 5] = Default::default();
    let body = json!({"cmd": ["true"]});
    let handler_path = || async {
        let req = ExecRequest {
            argv: vec!["true".into()],
            stdin_closed: true,
            ..ExecRequest::default()
        };
        let stream = engine.exec_stream(&b.id, req).await?;
        Supervised::new(stream, None).await.collect(1 << 20).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    let http_exec = || async {
        let r = b.post("/sandboxes/b/exec").json(&body).send().await?;
        let ok = r.status().is_success();
        r.bytes().await?;
        if !ok {
            return Err("POST /exec failed".into());
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    for _ in 0..n / 10 {
        engine.exec(&b.id, ExecOptions::new(["true"])).await?;
        handler_path().await?;
        http_exec().await?;
    }
    for i in 0..n {
        // Rotated order: an exec right after another one competes with
        // the guest's tail of it; every path gets each position alike.
        for k in 0..3 {
            let which = (i + k) % 3;
            let s = Instant::now();
            match which {
                0 => drop(engine.exec(&b.id, ExecOptions::new(["true"])).await?),
                1 => handler_path().await?,
                _ => http_exec().await?,
            }
            t[which].push(s.elapsed());
        }
        let s = Instant::now();
        b.http
            .get(format!("{}/health", b.url))
            .send()
            .await?
            .bytes()
            .await?;
        t[3].push(s.elapsed());
        let s = Instant::now();
        b.get("/sandboxes/b").send().await?.bytes().await?;
        t[4].push(s.elapsed());
    }
    let [d, sv, h, g, look] = t.map(|v| summary(&v));
    println!("== exec `true` (one VM, TCG)");
    report("GET /health (bare HTTP round trip)", &g, None);
    report("GET /sandboxes/b (auth + lookup)", &look, Some(&g));
    report("exec true: Engine::exec", &d, None);
    report("exec true: exec_stream+Supervised", &sv, Some(&d));
    report("exec true: POST /exec", &h, Some(&sv));
    let ms = |a: &Summary, b: &Summary| (a.p50.as_secs_f64() - b.p50.as_secs_f64()) * 1e3;
    println!(
        "{:<40} {:.3} ms",
        "POST /exec - Engine::exec at p50",
        ms(&h, &d)
    );
    target(
        "HTTP layer added at p50 (ms)",
        ms(&h, &sv),
        Target::AtMost,
        0.3,
    );
    Ok(())
}

/// `GET /sandboxes/{id}` (by id and by name) against `GET /health` (no
/// auth, no lookup) and an unknown route (a 404 from the router's
/// fallback: every layer, no handler), interleaved.
async fn get_sandbox(b: &Bench) -> BenchResult {
    // 2n + n/10 reads: within the user's 1200/min with the sections before.
    let n = iterations(200, 50);
    let mut t = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let timed = |r: reqwest::RequestBuilder, want: u16| async move {
        let s = Instant::now();
        let r = r.send().await?;
        let status = r.status().as_u16();
        r.bytes().await?;
        if status != want {
            return Err(format!("GET: {status}, wanted {want}").into());
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(s.elapsed())
    };
    let public = |path: &str| b.http.get(format!("{}{path}", b.url));
    let by_id = format!("/sandboxes/{}", b.id);
    for _ in 0..n / 10 {
        timed(b.get(&by_id), 200).await?;
        timed(public("/health"), 200).await?;
    }
    for _ in 0..n {
        t[0].push(timed(public("/no-such-route"), 404).await?);
        t[1].push(timed(public("/health"), 200).await?);
        t[2].push(timed(b.get(&by_id), 200).await?);
        t[3].push(timed(b.get("/sandboxes/b"), 200).await?);
    }
    let [none, health, id, name] = t.map(|v| summary(&v));
    println!("== GET /sandboxes/{{id}} (hot path: auth + lookup)");
    report("GET unknown route (404, no auth)", &none, None);
    report("GET /health (no auth)", &health, Some(&none));
    report("GET /sandboxes/{id}", &id, Some(&none));
    report("GET /sandboxes/{name}", &name, Some(&none));
    target(
        "GET /sandboxes/{id} p50 (ms)",
        id.p50.as_secs_f64() * 1e3,
        Target::AtMost,
        0.3,
    );
    Ok(())
}

/// The request's own work without HTTP: authentication (key hash and
/// user lookup), the sandbox lookup, and the lookup plus wake of a hot
/// sandbox that every exec does.
async fn service_path(b: &Bench) -> BenchResult {
    let n = iterations(2000, 200);
    let st = &b.state;
    let mut t = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..n {
        let s = Instant::now();
        let user = bhatti_server::users::authenticate(&st.store, &b.key)?.ok_or("no user")?;
        t[0].push(s.elapsed());
        let s = Instant::now();
        st.find(&user, "b")?;
        t[1].push(s.elapsed());
        let s = Instant::now();
        st.live(&user, "b").await?;
        t[2].push(s.elapsed());
    }
    let [auth, find, live] = t.map(|v| summary(&v));
    println!("== service path, no HTTP");
    report("authenticate (hash + user lookup)", &auth, None);
    report("AppState::find", &find, None);
    report("AppState::live (find + wake, hot)", &live, None);
    Ok(())
}

/// 20 parallel execs: p99 through HTTP vs through the engine.
async fn parallel_execs(b: &Bench) -> BenchResult {
    let rounds = iterations(15, 3);
    let body = json!({"cmd": ["true"]});
    let (mut par_http, mut par_direct) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut hs = Vec::new();
        for _ in 0..20 {
            let r = b.post("/sandboxes/b/exec").json(&body);
            hs.push(tokio::spawn(async move {
                let t = Instant::now();
                let ok = r.send().await.map(|r| r.status().is_success());
                (t.elapsed(), ok)
            }));
        }
        for h in hs {
            let (dt, ok) = h.await?;
            if !ok.unwrap_or(false) {
                return Err("parallel exec failed".into());
            }
            par_http.push(dt);
        }
        let mut hs = Vec::new();
        for _ in 0..20 {
            let (e, id) = (Arc::clone(&b.state.engine), b.id.clone());
            hs.push(tokio::spawn(async move {
                let t = Instant::now();
                e.exec(&id, ExecOptions::new(["true"]))
                    .await
                    .map(|_| t.elapsed())
            }));
        }
        for h in hs {
            par_direct.push(h.await??);
        }
    }
    println!("== 20 parallel execs");
    let (pd, ph) = (summary(&par_direct), summary(&par_http));
    report("20 parallel: engine direct", &pd, None);
    report("20 parallel: POST /exec", &ph, Some(&pd));
    println!(
        "{:<40} p99 ratio {:.2}x",
        "",
        ph.p99.as_secs_f64() / pd.p99.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// `GET /sandboxes` with 100 sandboxes (99 stopped records + the live
/// one) vs the store query.
async fn list(b: &Bench) -> BenchResult {
    let state = &b.state;
    for i in 0..99 {
        state.store.insert_sandbox(&Sandbox {
            id: format!("sb-rec{i:04}"),
            user_id: b.user_id.clone(),
            name: format!("rec-{i}"),
            status: Status::Stopped,
            thermal: Thermal::Cold,
            status_reason: None,
            ip: None,
            cpus: 1,
            memory_mb: 256,
            keep_hot: false,
            template_id: None,
            image: "busybox".into(),
            spec: json!({}),
            created_at: i,
            stopped_at: Some(i),
            destroyed_at: None,
            labels: Default::default(),
            expires_at: None,
            on_expire: Default::default(),
        })?;
    }
    let n = iterations(300, 30);
    let (mut store_q, mut list_http) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let rows = state.store.list_sandboxes(&b.user_id)?;
        store_q.push(t.elapsed());
        if rows.len() != 100 {
            return Err(format!("{} sandboxes listed", rows.len()).into());
        }
        let t = Instant::now();
        b.get("/sandboxes").send().await?.bytes().await?;
        list_http.push(t.elapsed());
    }
    println!("== list with 100 sandboxes");
    let (sq, lh) = (summary(&store_q), summary(&list_http));
    report("store query", &sq, None);
    report("GET /sandboxes", &lh, Some(&sq));
    Ok(())
}

/// A warm (paused) sandbox woken by a proxied request vs the same request
/// to a hot one (busybox httpd in the guest, serving a directory the
/// sandbox user may write).
async fn proxy_wake(b: &Bench) -> BenchResult {
    let started: serde_json::Value = b
        .post("/sandboxes/b/exec")
        .json(&json!({"cmd": ["sh", "-c", "mkdir -p /tmp/srv && echo ok > /tmp/srv/i && busybox httpd -p 8080 -h /tmp/srv"]}))
        .send()
        .await?
        .json()
        .await?;
    if started["exit_code"] != 0 {
        return Err(format!("starting httpd in the guest: {started}").into());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = iterations(40, 5);
    let (mut hot, mut warm) = (Vec::new(), Vec::new());
    let get = || async {
        let t = Instant::now();
        let r = b.get("/sandboxes/b/proxy/8080/i").send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        if !status.is_success() || body.as_ref() != b"ok\n" {
            return Err(format!("proxied request: {status} {body:?}").into());
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(t.elapsed())
    };
    for _ in 0..n {
        hot.push(get().await?);
        b.state.engine.pause(&b.id).await?;
        warm.push(get().await?);
    }
    println!("== proxy");
    let (ho, wa) = (summary(&hot), summary(&warm));
    report("proxy GET, hot sandbox", &ho, None);
    report("proxy GET, warm sandbox (wake)", &wa, Some(&ho));
    Ok(())
}
