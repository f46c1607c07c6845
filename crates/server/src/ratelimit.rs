//! Per-user rate limits as token buckets (API.md: creates 30/min, execs and
//! writes 600/min, reads 1200/min). One mutex guards the bucket map; a check
//! is a hash lookup and some arithmetic, never an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What kind of request is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Create,
    /// Execs and writes.
    Write,
    Read,
}

impl Class {
    /// Requests allowed per minute (also the burst size).
    pub fn per_minute(self) -> u32 {
        match self {
            Self::Create => 30,
            Self::Write => 600,
            Self::Read => 1200,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Write => "exec/write",
            Self::Read => "read",
        }
    }
}

/// A request over the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded: {limit} {class} requests per minute; retry in {retry_after:?}")]
pub struct Limited {
    pub class: &'static str,
    pub limit: u32,
    pub retry_after: Duration,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by (user id, class).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(String, Class), Bucket>>,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one token for `user_id` in `class` at time `now`.
    pub fn check(&self, user_id: &str, class: Class, now: Instant) -> Result<(), Limited> {
        let cap = f64::from(class.per_minute());
        let per_sec = cap / 60.0;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry((user_id.to_owned(), class)).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Limited {
                class: class.name(),
                limit: class.per_minute(),
                retry_after: Duration::from_secs_f64((1.0 - b.tokens) / per_sec),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_user_and_class() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..30 {
            rl.check("u1", Class::Create, t0).expect("within burst");
        }
        let err = rl.check("u1", Class::Create, t0).expect_err("31st create");
        assert_eq!(err.limit, 30);
        assert!(err.retry_after > Duration::ZERO && err.retry_after <= Duration::from_secs(2));
        // Other users and other classes are unaffected.
        rl.check("u2", Class::Create, t0).expect("other user");
        rl.check("u1", Class::Read, t0).expect("other class");
        // Two seconds refill one create token (30/min), not two.
        let t2 = t0 + Duration::from_secs(2);
        rl.check("u1", Class::Create, t2).expect("refilled");
        assert!(rl.check("u1", Class::Create, t2).is_err());
        // A long pause refills to the cap, never beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..30 {
            rl.check("u1", Class::Create, later).expect("full bucket");
        }
        assert!(rl.check("u1", Class::Create, later).is_err());
    }
}
