//! The Engine trait and the VM drivers: [`driver::Driver`] is what a VMM
//! must do, [`qemu`] implements it, [`drivers::AnyDriver`] chooses among
//! the drivers built in.
//!
//! See `DESIGN.md` (layers, engines, network, thermal states).
//!
//! # Performance
//! `docs/performance.md` (in this crate) traces a TCG boot and breaks an
//! in-guest exec of `true` down (host → agent round trip, spawn, child,
//! `sync()`, lohar's own path), from the `boot` and `guest_exec` benches.
//! One-vCPU TCG guests boot with `noapictimer`
//! ([`qemu::launch::TCG_BOOT_ARGS`]), which skips ~250 ms of APIC timer
//! calibration.

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
pub mod snapshot;
pub mod state;
