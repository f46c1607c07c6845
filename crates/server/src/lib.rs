//! The daemon as a library: everything `bhatti serve` runs, and the
//! operator commands that work on the data directory directly.
//!
//! Built so far (engine-independent parts):
//! - [`config`]: `config.yaml` in the data dir, defaults, validation;
//! - [`keys`]: API keys (`bht_` + 64 hex), SHA-256 hashing, ids;
//! - [`users`]: operator user management over the store;
//! - [`secrets`]: age encryption of secret values at rest;
//! - [`ratelimit`]: per-user token buckets;
//! - [`error`]: the API error type and its one status mapping.
//!
//! The HTTP routes, thermal manager, proxy and recovery build on these and
//! on the engine.

pub mod config;
pub mod error;
pub mod keys;
pub mod ratelimit;
pub mod secrets;
pub mod users;
