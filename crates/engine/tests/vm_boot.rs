//! Real microVM boot tests (filled in next).
fn main() {}
