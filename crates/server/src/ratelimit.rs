//! Per-user rate limits (API.md: creates 30/min, execs and writes 600/min,
//! reads 1200/min), one `governor` keyed limiter (GCRA, which behaves as a
//! token bucket whose burst is the per-minute limit) per class, keyed by user
//! id. A check is a sharded map lookup and some arithmetic, never an await.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Keyed};

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

    fn quota(self) -> Quota {
        Quota::per_minute(NonZeroU32::new(self.per_minute()).unwrap_or(NonZeroU32::MIN))
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

type PerUser<C> =
    Keyed<String, DashMapStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One keyed limiter per [`Class`], keyed by user id, over clock `C`
/// (the monotonic clock; tests use governor's fake clock).
#[derive(Debug)]
pub struct RateLimiter<C: Clock = MonotonicClock> {
    clock: C,
    create: PerUser<C>,
    write: PerUser<C>,
    read: PerUser<C>,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::with_clock(MonotonicClock)
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// Limiters reading the time from `clock`.
    pub fn with_clock(clock: C) -> Self {
        let keyed = |class: Class| Keyed::dashmap_with_clock(class.quota(), clock.clone());
        Self {
            create: keyed(Class::Create),
            write: keyed(Class::Write),
            read: keyed(Class::Read),
            clock,
        }
    }

    /// Takes one request of `class` from `user_id`'s allowance.
    pub fn check(&self, user_id: &str, class: Class) -> Result<(), Limited> {
        let limiter = match class {
            Class::Create => &self.create,
            Class::Write => &self.write,
            Class::Read => &self.read,
        };
        limiter
            .check_key(&user_id.to_owned())
            .map_err(|not_until| Limited {
                class: class.name(),
                limit: class.per_minute(),
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn burst_then_refill_per_user_and_class() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(clock.clone());
        for _ in 0..30 {
            rl.check("u1", Class::Create).expect("within burst");
        }
        let err = rl.check("u1", Class::Create).expect_err("31st create");
        assert_eq!(err.limit, 30);
        assert!(err.retry_after > Duration::ZERO && err.retry_after <= Duration::from_secs(2));
        // Other users and other classes are unaffected.
        rl.check("u2", Class::Create).expect("other user");
        rl.check("u1", Class::Read).expect("other class");
        // Two seconds refill one create (30/min), not two.
        clock.advance(Duration::from_secs(2));
        rl.check("u1", Class::Create).expect("refilled");
        assert!(rl.check("u1", Class::Create).is_err());
        // A long pause refills to the burst, never beyond.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..30 {
            rl.check("u1", Class::Create).expect("full bucket");
        }
        assert!(rl.check("u1", Class::Create).is_err());
    }

    #[test]
    fn limits_per_class() {
        let rl = RateLimiter::with_clock(FakeRelativeClock::default());
        for (class, n) in [(Class::Write, 600), (Class::Read, 1200)] {
            for _ in 0..n {
                rl.check("u", class).expect("within burst");
            }
            let err = rl.check("u", class).expect_err("over the limit");
            assert_eq!(err.limit, n);
        }
    }
}
