//! lohar — the guest agent. Filled in by the agent work.
fn main() {}
