//! `bhatti events`: the daemon's live events of your sandboxes
//! (`GET /events`, Server-Sent Events), one line each until Ctrl-C:
//! `12:00:01 web running/warm` (time in UTC), or with `--json` each
//! event's JSON object. Events lost because this client was too slow are
//! reported on stderr. The command ends (status 1) when the daemon ends
//! the stream.

use clap::Args;
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::ACCEPT;
use serde_json::Value;

use super::args::Global;
use super::{Ctx, Outcome};

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub g: Global,
}

/// One Server-Sent Event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// A Server-Sent Events parser fed with chunks of the body.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds `chunk`; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.cur));
                }
                self.cur = SseEvent::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => value.clone_into(&mut self.cur.event),
                "id" => self.cur.id = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

/// The human line of a `sandbox` event.
pub fn human(ev: &Value) -> String {
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("?");
    let time = s("at").get(11..19).unwrap_or("--:--:--");
    let name = ev
        .pointer("/sandbox/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let port = ev.get("port").and_then(Value::as_u64).unwrap_or(0);
    match s("type") {
        "created" => format!("{time} {name} created ({})", s("state")),
        "destroyed" => format!("{time} {name} destroyed"),
        "port_opened" => format!("{time} {name} port {port} opened"),
        "port_closed" => format!("{time} {name} port {port} closed"),
        "renamed" => format!("{time} {name} (renamed)"),
        _ => format!("{time} {name} {}", s("state")),
    }
}

pub async fn run(a: EventsArgs) -> anyhow::Result<Outcome> {
    let ctx = Ctx::new(&a.g)?;
    let rb = ctx
        .api
        .request(Method::GET, ctx.api.url(&["events"]))
        .header(ACCEPT, "text/event-stream");
    let resp = ctx.api.send(rb).await?;
    let mut body = resp.bytes_stream();
    let mut parser = SseParser::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.api.transport(&e))?;
        for ev in parser.feed(&chunk) {
            print_event(&ev, ctx.json);
        }
    }
    anyhow::bail!("the daemon ended the event stream")
}

fn print_event(ev: &SseEvent, json: bool) {
    match ev.event.as_str() {
        "sandbox" if json => println!("{}", ev.data),
        "sandbox" => match serde_json::from_str::<Value>(&ev.data) {
            Ok(v) => println!("{}", human(&v)),
            Err(_) => println!("{}", ev.data),
        },
        "lagged" => {
            let missed = serde_json::from_str::<Value>(&ev.data)
                .ok()
                .and_then(|v| v.get("missed").and_then(Value::as_u64));
            match missed {
                Some(n) => eprintln!("bhatti: {n} events missed (too slow); list sandboxes again"),
                None => eprintln!("bhatti: some events were missed; list sandboxes again"),
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(
            p.feed(b": keep-alive\n\nevent: sandbox\nid: 3\nda")
                .is_empty()
        );
        let evs = p.feed(b"ta: {\"a\":1}\r\n\nevent: lagged\ndata: {}\n\n");
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: "sandbox".into(),
                    id: Some("3".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "lagged".into(),
                    id: None,
                    data: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn human_lines() {
        let ev = serde_json::json!({"seq": 1, "type": "state", "state": "running/warm",
            "sandbox": {"id": "sb-1", "name": "web"}, "at": "2026-03-22T12:00:01.250Z"});
        assert_eq!(human(&ev), "12:00:01 web running/warm");
        let ev = serde_json::json!({"type": "port_opened", "state": "running/hot", "port": 8080,
            "sandbox": {"id": "sb-1", "name": "web"}, "at": "2026-03-22T12:00:02Z"});
        assert_eq!(human(&ev), "12:00:02 web port 8080 opened");
        let ev = serde_json::json!({"type": "renamed", "state": "running/hot",
            "sandbox": {"id": "sb-1", "name": "api"}, "at": "2026-03-22T12:00:03Z"});
        assert_eq!(human(&ev), "12:00:03 api (renamed)");
    }
}
