//! bhatti — CLI and daemon.
fn main() {}
