//! Support for the CLI tests against a real daemon: a `bhatti serve`
//! process on a loopback port with its own temp data dir and network
//! namespace, a user made with `bhatti user create --json`, and a
//! pseudo-terminal driver for `shell`, and a local image registry.

#![allow(dead_code)]

pub mod daemon;
pub mod pty;
pub mod registry;
