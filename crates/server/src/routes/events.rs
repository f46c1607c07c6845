//! `GET /events`: the caller's sandbox events as Server-Sent Events
//! ([`crate::events`]).
//!
//! Each event is
//! ```text
//! event: sandbox
//! id: 12
//! data: {"seq":12,"type":"state","sandbox":{"id":"sb-…","name":"web"},"state":"running/warm","at":"2026-…Z"}
//! ```
//! with `type` one of `created`, `state`, `destroyed`, `port_opened`,
//! `port_closed` (these two carry `port`). A client that falls behind
//! gets `event: lagged` (`data: {"missed": n}`, `n` counting every user's
//! events, or `null` when unknown) and the stream goes on: it should list
//! its sandboxes again. A `Last-Event-ID` header (what `EventSource`
//! sends when it reconnects) replays the recent events after that id, or
//! begins with `lagged` if they are gone. A comment is sent every
//! [`KEEP_ALIVE`] so proxies keep the connection open. The stream ends
//! when the daemon stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use bhatti_engine::engine::Engine;
use futures_util::Stream;

use super::{RouteDef, Verb, user};
use crate::events::{Feed, Item};
use crate::extract::AuthUser;
use crate::state::Shared;

/// Interval of keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Get,
            "/events",
            "Live events of the caller's sandboxes (Server-Sent Events: created, state, destroyed, port_opened, port_closed)",
            get(events::<E>),
        )
        .reply_raw(200, "text/event-stream")
        .or_stream::<crate::events::Event>("text/event-stream"),
    ]
}

async fn events<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let feed = st.events.subscribe(&u.id, after);
    Sse::new(stream(feed)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The SSE events of a feed.
fn stream(feed: Feed) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(feed, |mut feed| async move {
        let item = feed.next().await?;
        Some((Ok(sse(&item)), feed))
    })
}

/// One item as an SSE event.
pub fn sse(item: &Item) -> SseEvent {
    match item {
        Item::Event(e) => SseEvent::default()
            .event("sandbox")
            .id(e.seq.to_string())
            .data(serde_json::to_string(&**e).unwrap_or_default()),
        Item::Lagged { missed } => SseEvent::default()
            .event("lagged")
            .data(serde_json::json!({ "missed": missed }).to_string()),
    }
}
