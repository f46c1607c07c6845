//! The Engine trait and the VM drivers (qemu, firecracker)
//!
//! Filled in by later work; see `../shared/DESIGN.md` (layers).
