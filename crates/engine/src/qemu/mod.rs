//! The QEMU driver: QMP control and (elsewhere in this module) launching.

pub mod driver;
pub mod launch;
pub mod qmp;
