//! Boot-time bench (filled in next).
fn main() {}
