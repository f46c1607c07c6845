//! Activity and readiness: [`Client::activity`] and [`Client::wait_ready`].
//!
//! Waiting retries connect + ACTIVITY_REQ (the cheapest request) with a
//! short, growing pause until the agent answers or the deadline passes. A
//! refused token ends the wait at once: retrying cannot fix it.

use std::time::Duration;

use bhatti_proto::messages::{self, ActivityInfo};
use bhatti_proto::{CONTROL_PORT, FrameType};
use tokio::time::Instant;

use crate::Client;
use crate::error::{Error, Result};

/// First pause between readiness probes; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(200);

impl Client {
    /// The agent's activity info (last activity, running and attached
    /// sessions).
    pub async fn activity(&self) -> Result<ActivityInfo> {
        let mut c = self
            .open(CONTROL_PORT, FrameType::ACTIVITY_REQ, &[])
            .await?;
        let f = c.expect(FrameType::ACTIVITY_RESP, "activity").await?;
        Ok(messages::decode_json("ACTIVITY_RESP", &f.payload)?)
    }

    /// Waits until the agent answers a request, for at most `timeout`.
    /// Returns the first answer. [`Error::Timeout`] when the deadline
    /// passes; [`Error::AuthRefused`] at once if the token is refused.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<ActivityInfo> {
        let deadline = Instant::now() + timeout;
        let mut pause = FIRST_PAUSE;
        loop {
            match tokio::time::timeout_at(deadline, self.activity()).await {
                Err(_) => return Err(Error::Timeout(timeout)),
                Ok(Ok(info)) => return Ok(info),
                Ok(Err(e @ Error::AuthRefused(_))) => return Err(e),
                Ok(Err(_)) => {}
            }
            if Instant::now() + pause >= deadline {
                return Err(Error::Timeout(timeout));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}
