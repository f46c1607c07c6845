//! Booting test VMs (filled in below).
