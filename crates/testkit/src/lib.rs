//! Dev-only support shared by bhatti's test tiers and benches. Never a
//! normal dependency: every crate lists it under `[dev-dependencies]`.
//!
//! - [`host`]: "can this host run it?" — each prerequisite a test or bench
//!   needs is a [`Need`]; [`skip_reason`] returns the first one missing as
//!   a typed [`Skip`] whose message says how to get it.
//! - [`trial`]: a `libtest-mimic` trial that is reported as ignored, with
//!   `SKIPPED: <reason>` printed, when the host lacks a [`Need`] — also
//!   when run with `--include-ignored`, so a skipped VM test never passes
//!   by pretending. (There is no CI override: a missing prerequisite is a
//!   skip everywhere, as it was before this crate.)
//! - [`files`]: the repository's file-length rule (no `.rs` file over
//!   [`files::MAX_LINES`] lines), checked by this crate's own test.

pub mod files;
pub mod host;
pub mod trial;

pub use host::{DAEMON, Need, Skip, VM, skip_reason};
pub use trial::trial;
