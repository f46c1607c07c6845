//! Asynchronous QMP events: the bounded queue filled while waiting for
//! replies, and waiting for one event by name.

use std::time::Duration;

use serde_json::Value;

use super::wire::{Timestamp, stamp};
use super::{EVENT_QUEUE_LIMIT, QmpClient, QmpError, QmpEvent};

impl QmpClient {
    /// Waits for an event called `name`, first looking at queued events.
    pub async fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<QmpEvent, QmpError> {
        if let Some(pos) = self.events.iter().position(|e| e.name == name)
            && let Some(ev) = self.events.remove(pos)
        {
            return Ok(ev);
        }
        let fut = async {
            loop {
                let msg = self.read_message().await?;
                if let Some(ev) = msg.event {
                    if ev == name {
                        return Ok(QmpEvent {
                            name: ev,
                            data: msg.data,
                            timestamp_us: stamp(msg.timestamp),
                        });
                    }
                    self.push_event(ev, msg.data, msg.timestamp);
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| QmpError::Timeout {
                what: "a QMP event",
                after: timeout,
            })?
    }

    /// Drains the queued events; the count says how many were dropped
    /// because the queue was full.
    pub fn take_events(&mut self) -> (Vec<QmpEvent>, u64) {
        let dropped = std::mem::take(&mut self.dropped_events);
        (self.events.drain(..).collect(), dropped)
    }

    pub(super) fn push_event(&mut self, name: String, data: Value, ts: Option<Timestamp>) {
        if self.events.len() >= EVENT_QUEUE_LIMIT {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(QmpEvent {
            name,
            data,
            timestamp_us: stamp(ts),
        });
    }
}
