//! Real microVM boots: the busybox tier under QEMU `-M microvm` with a TAP
//! inside a test-created network namespace, driven through the host agent
//! client. Each trial boots its own VM in its own temp dir and namespace.
//! Without root, QEMU or the built images (`cargo xtask images`), trials
//! are reported as ignored with `SKIPPED: <reason>`.
//!
//! One file per theme: `host`, `agent`, `guest`, `dev` (the dev tier);
//! the trial list here.

#[path = "../support/mod.rs"]
mod support;

mod agent;
mod dev;
mod guest;
mod host;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bhatti_agent::{Error as AgentError, Event, ExecOptions, ReadOptions, ShellOptions};
use bhatti_engine::image::Tier;
use bhatti_engine::qemu::launch::{
    Accel, BootFailure, Drive, LaunchSpec, clock, kvm_is_pvm, probe_runs_guest,
};
use bhatti_proto::config::{GuestConfig, GuestFile, GuestUser, GuestVolume};
use libtest_mimic::{Arguments, Failed};
use support::vm::{TestVm, VmOptions, default_config, run_ok, run_ok_as, runtime};
use support::{Need, ensure, trial};

fn main() {
    let args = Arguments::from_args();
    let vm = &[Need::Root, Need::Qemu, Need::Images];
    let trials = vec![
        trial(
            "accel_probe_runs_guest_code",
            &[Need::Qemu],
            host::accel_probe,
        ),
        trial(
            "auto_accel_picks_kvm_only_where_it_boots_the_kernel",
            vm,
            host::auto_accel_matches_kvm,
        ),
        trial("bare_kernel_boots_trivial_init", vm, host::bare_kernel_boot),
        trial("exec_runs_as_root_or_as_uid_1000", vm, agent::exec_as_user),
        trial(
            "guest_clock_is_fine_grained_and_on_time",
            vm,
            host::guest_clock,
        ),
        trial(
            "config_drive_env_hostname_files",
            vm,
            guest::config_drive_applied,
        ),
        trial("init_session_output", vm, agent::init_session),
        trial("file_write_then_read", vm, agent::file_round_trip),
        trial("tty_session", vm, agent::tty_session),
        trial("volume_mounted_at_its_path", vm, guest::volume_mounted),
        trial("token_required", vm, agent::token_required),
        trial("sigterm_powers_off_cleanly", vm, guest::sigterm_powers_off),
        trial(
            "corrupt_rootfs_error_has_console_tail",
            vm,
            host::corrupt_rootfs,
        ),
        trial(
            "minimal_tier_tools_and_sudo",
            &[Need::Root, Need::Qemu, Need::Images, Need::MinimalImage],
            guest::minimal_tier,
        ),
        trial(
            "dev_tier_tools_sudo_and_zsh",
            &[Need::Root, Need::Qemu, Need::Images, Need::DevImage],
            dev::dev_tier,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
