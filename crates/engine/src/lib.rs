//! The Engine trait and the VM drivers (qemu, firecracker)
//!
//! See `DESIGN.md` (layers, engines, network, thermal states).

pub mod agent_link;
pub mod cgroup;
pub mod driver;
pub mod engine;
pub mod image;
pub mod netns;
pub mod network;
pub mod qemu;
pub mod sandbox;
pub mod state;
