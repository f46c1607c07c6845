//! The drivers this build has, as one type: [`AnyDriver`] is an enum over
//! them that implements [`Driver`] by dispatching each method to the
//! driver it holds, and [`AnyVm`] is the matching enum of VM handles. The
//! daemon runs `VmEngine<AnyDriver>` and picks the variant from its config
//! ([`AnyDriver::select`]).
//!
//! Every driver is listed once, in the `drivers!` invocation below: its
//! variant name, its type, and the name the config uses. Adding a driver
//! is that one line plus its own module (see [`crate::driver`], "How to
//! add a driver"). `auto` picks the first listed driver whose
//! [`Driver::check_host`] passes (only `qemu` exists in this build).
//!
//! # Threads, locks, I/O
//! None of its own: a dispatch is a `match` and a call. [`AnyDriver::select`]
//! builds drivers (QEMU probes KVM once per process) and, for `auto`, runs
//! their host checks; it blocks, so call it before serving.

use std::path::Path;

use crate::driver::{Adopted, AgentTransport, Driver, DriverError, HostError, Snapshot, VmConfig};
use crate::qemu::driver::QemuDriver;

/// Why no driver could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no driver named {name:?} in this build (available: {})", AnyDriver::NAMES.join(", "))]
    Unknown { name: String },
    #[error("no driver can run on this host: {0}")]
    NoneRuns(#[source] HostError),
}

/// Declares [`AnyDriver`] and [`AnyVm`] over the listed drivers and
/// implements [`Driver`] for [`AnyDriver`] by dispatch.
macro_rules! drivers {
    ($($variant:ident($driver:ty) = $name:literal),+ $(,)?) => {
        /// One of the drivers this build has.
        #[derive(Debug, Clone)]
        pub enum AnyDriver {
            $($variant($driver),)+
        }

        /// The VM handle of an [`AnyDriver`]: the same variant as the
        /// driver that made it.
        #[derive(Debug)]
        pub enum AnyVm {
            $($variant(<$driver as Driver>::Vm),)+
        }

        impl AnyDriver {
            /// The names the config accepts besides `auto`, in `auto`'s
            /// order of preference.
            pub const NAMES: &[&str] = &[$($name),+];

            /// The driver called `name`, with its default settings.
            pub fn named(name: &str) -> Result<Self, SelectError> {
                match name {
                    $($name => Ok(Self::$variant(<$driver>::default())),)+
                    _ => Err(SelectError::Unknown { name: name.to_owned() }),
                }
            }

            fn vm_name(vm: &AnyVm) -> &'static str {
                match vm {
                    $(AnyVm::$variant(_) => $name,)+
                }
            }
        }

        impl Driver for AnyDriver {
            type Vm = AnyVm;

            fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(d) => d.name(),)+
                }
            }

            fn check_host(&self) -> Result<(), HostError> {
                match self {
                    $(Self::$variant(d) => d.check_host(),)+
                }
            }

            fn guest_init(&self) -> &str {
                match self {
                    $(Self::$variant(d) => d.guest_init(),)+
                }
            }

            fn saved_snapshot(&self, run_dir: &Path) -> Option<Snapshot> {
                match self {
                    $(Self::$variant(d) => d.saved_snapshot(run_dir),)+
                }
            }

            fn snapshot_problem(&self, snapshot: &Snapshot) -> Option<String> {
                match self {
                    $(Self::$variant(d) => d.snapshot_problem(snapshot),)+
                }
            }

            fn discard_snapshot(&self, run_dir: &Path, keep: Option<&Snapshot>) {
                match self {
                    $(Self::$variant(d) => d.discard_snapshot(run_dir, keep),)+
                }
            }

            async fn adopt(&self, config: &VmConfig) -> Result<Option<Adopted<AnyVm>>, DriverError> {
                match self {
                    $(Self::$variant(d) => Ok(d.adopt(config).await?.map(|a| Adopted {
                        vm: AnyVm::$variant(a.vm),
                        paused: a.paused,
                    })),)+
                }
            }

            fn exit_fd(&self, vm: &AnyVm) -> Option<std::os::fd::OwnedFd> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.exit_fd(vm),)+
                    _ => None,
                }
            }

            fn agent_transport(&self, config: &VmConfig) -> Option<AgentTransport> {
                match self {
                    $(Self::$variant(d) => d.agent_transport(config),)+
                }
            }

            async fn spawn(&self, config: &VmConfig) -> Result<AnyVm, DriverError> {
                match self {
                    $(Self::$variant(d) => d.spawn(config).await.map(AnyVm::$variant),)+
                }
            }

            async fn pause(&self, vm: &mut AnyVm) -> Result<(), DriverError> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.pause(vm).await,)+
                    (d, vm) => Err(d.foreign(vm)),
                }
            }

            async fn resume(&self, vm: &mut AnyVm) -> Result<(), DriverError> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.resume(vm).await,)+
                    (d, vm) => Err(d.foreign(vm)),
                }
            }

            async fn snapshot(&self, vm: AnyVm, config: &VmConfig) -> Result<Snapshot, DriverError> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.snapshot(vm, config).await,)+
                    (d, vm) => Err(d.foreign(&vm)),
                }
            }

            async fn restore(
                &self,
                config: &VmConfig,
                snapshot: &Snapshot,
            ) -> Result<AnyVm, DriverError> {
                match self {
                    $(Self::$variant(d) => d.restore(config, snapshot).await.map(AnyVm::$variant),)+
                }
            }

            async fn capture(&self, vm: &mut AnyVm, dest: &Path) -> Result<Snapshot, DriverError> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.capture(vm, dest).await,)+
                    (d, vm) => Err(d.foreign(vm)),
                }
            }

            async fn restore_clone(
                &self,
                config: &VmConfig,
                snapshot: &Snapshot,
            ) -> Result<AnyVm, DriverError> {
                match self {
                    $(Self::$variant(d) => d.restore_clone(config, snapshot).await.map(AnyVm::$variant),)+
                }
            }

            async fn send_identity(&self, vm: &mut AnyVm, line: &[u8]) -> Result<(), DriverError> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.send_identity(vm, line).await,)+
                    (d, vm) => Err(d.foreign(vm)),
                }
            }

            fn release(&self, vm: AnyVm) {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.release(vm),)+
                    // A foreign handle is dropped (and so ended) by its own type.
                    _ => {}
                }
            }

            async fn kill(&self, vm: AnyVm) -> Result<(), DriverError> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.kill(vm).await,)+
                    (d, vm) => Err(d.foreign(&vm)),
                }
            }

            fn exited(&self, vm: &mut AnyVm) -> Option<String> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.exited(vm),)+
                    (d, vm) => Some(d.foreign(vm).to_string()),
                }
            }

            fn pid(&self, vm: &AnyVm) -> Option<u32> {
                #[allow(unreachable_patterns)]
                match (self, vm) {
                    $((Self::$variant(d), AnyVm::$variant(vm)) => d.pid(vm),)+
                    _ => None,
                }
            }

            fn console_tail(&self, config: &VmConfig, lines: usize) -> String {
                match self {
                    $(Self::$variant(d) => d.console_tail(config, lines),)+
                }
            }
        }
    };
}

drivers! {
    Qemu(QemuDriver) = "qemu",
}

impl AnyDriver {
    /// The driver the config's `engine:` names: a name from [`Self::NAMES`],
    /// or `auto` for the first of them whose host check passes (the error
    /// then is the first driver's).
    pub fn select(name: &str) -> Result<Self, SelectError> {
        if name != "auto" {
            return Self::named(name);
        }
        let mut first_err = None;
        for name in Self::NAMES {
            let d = Self::named(name)?;
            match d.check_host() {
                Ok(()) => return Ok(d),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.map_or_else(
            || SelectError::Unknown {
                name: name.to_owned(),
            },
            SelectError::NoneRuns,
        ))
    }

    /// The error for a VM handle that another kind of driver made.
    fn foreign(&self, vm: &AnyVm) -> DriverError {
        DriverError::ForeignVm {
            driver: self.name(),
            vm: Self::vm_name(vm),
        }
    }
}

#[cfg(test)]
mod tests;
