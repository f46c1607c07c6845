//! One subscriber's view of the hub: the events of one user, first those
//! it asked to resume from (the ring), then live ones.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::{Event, Events};

/// What a feed yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Arc<Event>),
    /// Events were lost (the subscriber fell behind, or asked to resume
    /// from an event the ring no longer holds); `missed` counts the
    /// events of every user lost, when known.
    Lagged {
        missed: Option<u64>,
    },
}

/// The events of one user, in `seq` order (see [`Events::subscribe`]).
#[derive(Debug)]
pub struct Feed {
    pub(super) user_id: String,
    pub(super) backlog: VecDeque<Item>,
    pub(super) rx: Receiver<Arc<Event>>,
    closed: watch::Receiver<bool>,
}

impl Events {
    /// A feed of `user_id`'s events from now on; with `after` (a
    /// `Last-Event-ID`), first the recent events after it that the ring
    /// still holds, or a [`Item::Lagged`] when some of them are gone (or
    /// `after` is from an earlier daemon run).
    pub fn subscribe(&self, user_id: &str, after: Option<u64>) -> Feed {
        // Subscribing under the lock: nothing published falls between
        // the ring's copy and the channel.
        let (rx, backlog) = self.with(|i| {
            let rx = self.tx.subscribe();
            let mut backlog = VecDeque::new();
            if let Some(after) = after {
                let oldest = i.ring.front().map_or(i.next, |e| e.seq);
                if after >= i.next || after.saturating_add(1) < oldest {
                    backlog.push_back(Item::Lagged { missed: None });
                }
                if after < i.next {
                    backlog.extend(
                        i.ring
                            .iter()
                            .filter(|e| e.seq > after)
                            .map(|e| Item::Event(e.clone())),
                    );
                }
            }
            (rx, backlog)
        });
        Feed {
            user_id: user_id.to_owned(),
            backlog,
            rx,
            closed: self.closed.subscribe(),
        }
    }
}

impl Feed {
    /// The next item of this user; `None` once the daemon stops.
    pub async fn next(&mut self) -> Option<Item> {
        loop {
            let item = match self.backlog.pop_front() {
                Some(item) => item,
                None => self.recv().await?,
            };
            match &item {
                Item::Event(e) if e.user_id != self.user_id => {}
                _ => return Some(item),
            }
        }
    }

    async fn recv(&mut self) -> Option<Item> {
        if *self.closed.borrow() {
            return None;
        }
        tokio::select! {
            r = self.rx.recv() => match r {
                Ok(e) => Some(Item::Event(e)),
                Err(RecvError::Lagged(n)) => Some(Item::Lagged { missed: Some(n) }),
                Err(RecvError::Closed) => None,
            },
            _ = self.closed.wait_for(|c| *c) => None,
        }
    }
}
