//! One module per command family.

pub mod client;
pub mod serve;
pub mod user;
