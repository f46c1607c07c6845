//! The Engine trait and the VM drivers: [`driver::Driver`] is what a VMM
//! must do, [`qemu`] implements it, [`drivers::AnyDriver`] chooses among
//! the drivers built in.
//!
//! See `DESIGN.md` (layers, engines, network, thermal states).

pub mod agent_link;
pub mod cgroup;
pub mod driver;
pub mod drivers;
pub mod engine;
pub mod image;
pub mod netns;
pub mod network;
pub mod qemu;
pub mod sandbox;
pub mod state;
