//! The QEMU driver: QMP control and (elsewhere in this module) launching.

pub mod qmp;
