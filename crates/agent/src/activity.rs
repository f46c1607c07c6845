//! Activity and readiness: [`Client::activity`] and [`Client::wait_ready`].
//!
//! Waiting retries connect + ACTIVITY_REQ (the cheapest request) with a
//! short, doubling pause (`backon`'s exponential backoff, no jitter) until
//! the agent answers or the deadline passes. A refused token ends the wait
//! at once: retrying cannot fix it.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bhatti_proto::FrameType;
use bhatti_proto::messages::ActivityInfo;

use crate::Client;
use crate::error::{Error, Result};

/// First pause between readiness probes; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(200);

impl Client {
    /// The agent's activity info (last activity, running and attached
    /// sessions).
    pub async fn activity(&self) -> Result<ActivityInfo> {
        self.unary_json(
            FrameType::ACTIVITY_REQ,
            &[],
            FrameType::ACTIVITY_RESP,
            "activity",
        )
        .await
    }

    /// Waits until the agent answers a request, for at most `timeout`.
    /// Returns the first answer. [`Error::Timeout`] when the deadline
    /// passes; [`Error::AuthRefused`] at once if the token is refused.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<ActivityInfo> {
        let backoff = ExponentialBuilder::new()
            .with_min_delay(FIRST_PAUSE)
            .with_max_delay(MAX_PAUSE)
            .with_factor(2.0)
            .without_max_times();
        let probe = (|| self.activity())
            .retry(backoff)
            .when(|e| !matches!(e, Error::AuthRefused(_)));
        tokio::time::timeout(timeout, probe)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn an_absent_agent_is_retried_until_the_deadline() {
        let c = Client::unix("/nonexistent/bhatti/control.sock", "/nonexistent/fwd");
        let t = Duration::from_millis(300);
        let start = Instant::now();
        let r = c.wait_ready(t).await;
        let took = start.elapsed();
        assert!(matches!(r, Err(Error::Timeout(d)) if d == t), "{r:?}");
        assert!(took >= t && took < t * 4, "took {took:?}");
    }
}
