//! One module per command family.

pub mod client;
pub mod user;
