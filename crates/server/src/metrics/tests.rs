use prometheus_parse::{Scrape, Value};

use super::*;

/// `text` parsed by `prometheus-parse`, whose line pattern ends a label
/// set at the first `}`: braces inside label values (route templates)
/// are shown to it as parentheses.
pub fn parse(text: &str) -> Scrape {
    let mut tame = String::with_capacity(text.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in text.chars() {
        let c = match c {
            '{' if quoted => '(',
            '}' if quoted => ')',
            '\\' if quoted && !escaped => {
                escaped = true;
                tame.push(c);
                continue;
            }
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
        escaped = false;
        tame.push(c);
    }
    Scrape::parse(tame.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<Value> {
    s.samples
        .iter()
        .find(|x| {
            x.metric == name
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(k).is_some_and(|have| have == *v))
        })
        .map(|x| x.value.clone())
}

#[tokio::test]
async fn requests_are_labelled_by_route_template_never_by_raw_path() {
    use axum::Router;
    use axum::routing::get;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = Router::new()
        .route("/sandboxes/{id}", get(|| async { "ok" }))
        .nest_service("/e2b", get(|| async { "e2b" }))
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                s2.lock().expect("lock").push(route_of(&req));
                next.run(req)
            },
        ));
    for uri in ["/sandboxes/web", "/e2b/sandboxes/x", "/nothing/here"] {
        let req = axum::http::Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .expect("request");
        tower::ServiceExt::oneshot(app.clone(), req)
            .await
            .expect("call");
    }
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, ["/sandboxes/{id}", "/e2b/*", "unmatched"]);
}

#[test]
fn renders_what_was_recorded_in_the_prometheus_text_format() {
    let m = Metrics::new();
    let ms = Duration::from_millis(3);
    m.request("GET", "/sandboxes/{id}", 200, ms);
    m.request("GET", "/sandboxes/{id}", 200, ms);
    m.request("POST", "/sandboxes", 429, ms);
    m.created(Duration::from_secs(2), false);
    m.woke("cold", ms);
    let mut snap = Snapshot::default();
    snap.sandboxes.insert(("running", "hot"), 2);
    snap.sandboxes.insert(("stopped", "cold"), 0);
    snap.vmms.push(collect::Vmm {
        sandbox: "sb-1".into(),
        name: "web".into(),
        rss_bytes: 1 << 20,
        cpu_seconds: 1.5,
    });
    let text = m.render(snap, false).expect("render");
    let s = parse(&text);
    let get = |name, labels: &[(&str, &str)]| value(&s, name, labels);
    let route = [
        ("method", "GET"),
        ("route", "/sandboxes/(id)"),
        ("status", "200"),
    ];
    assert_eq!(
        get("bhatti_http_requests_total", &route),
        Some(Value::Counter(2.0))
    );
    assert_eq!(
        get("bhatti_http_requests_total", &[("status", "429")]),
        Some(Value::Counter(1.0))
    );
    let created = get(
        "bhatti_sandbox_create_duration_seconds",
        &[("source", "boot")],
    );
    assert!(
        matches!(&created, Some(Value::Histogram(h)) if h.iter().any(|b| b.less_than >= 2.0 && b.count == 1.0)),
        "{created:?}\n{text}"
    );
    let hot = [("status", "running"), ("thermal", "hot")];
    assert_eq!(get("bhatti_sandboxes", &hot), Some(Value::Gauge(2.0)));
    let vmm = [("sandbox", "sb-1"), ("name", "web")];
    assert_eq!(
        get("bhatti_vmm_resident_memory_bytes", &vmm),
        Some(Value::Gauge(1_048_576.0))
    );
    assert_eq!(
        get("bhatti_vmm_cpu_seconds_total", &vmm),
        Some(Value::Counter(1.5))
    );
    let om = m.render(Snapshot::default(), true).expect("openmetrics");
    assert!(om.ends_with("# EOF\n"), "{om}");
}

#[test]
fn errors_by_kind_and_agent_reconnects_by_kind() {
    let m = Metrics::new();
    m.error("bad_request");
    m.error("bad_request");
    m.error(crate::error::ApiError::BadGateway("guest port 80".into()).kind());
    let snap = Snapshot {
        reconnects: [("session", 3), ("redial", 1)],
        ..Snapshot::default()
    };
    let s = parse(&m.render(snap, false).expect("render"));
    let get = |name, kind| value(&s, name, &[("kind", kind)]);
    let errors = "bhatti_errors_total";
    assert_eq!(get(errors, "bad_request"), Some(Value::Counter(2.0)));
    assert_eq!(get(errors, "bad_gateway"), Some(Value::Counter(1.0)));
    let reconnects = "bhatti_agent_reconnects_total";
    assert_eq!(get(reconnects, "session"), Some(Value::Counter(3.0)));
    assert_eq!(get(reconnects, "redial"), Some(Value::Counter(1.0)));
}

#[test]
fn an_error_reply_carries_its_kind_for_the_middleware() {
    use axum::response::IntoResponse;
    let resp = crate::error::ApiError::NotFound("sandbox x".into()).into_response();
    assert_eq!(
        resp.extensions().get::<crate::error::ErrorKind>(),
        Some(&crate::error::ErrorKind("not_found"))
    );
}
