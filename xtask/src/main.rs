//! xtask — builds guest images and runs the test tiers.
fn main() {}
