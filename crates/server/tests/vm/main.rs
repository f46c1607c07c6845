//! The daemon against real VMs: the QEMU engine (TCG here), the real
//! kernel, busybox rootfs and lohar, through HTTP and WebSocket on
//! loopback. Each trial starts its own daemon with its own data dir and
//! its own network namespace (egress none). Trials are reported as
//! ignored, with the reason, without root, QEMU or the images
//! (`cargo xtask images`).
//!
//! Run: `cargo test -p bhatti-server --test vm` (as root).

mod cache;
mod console;
mod crash;
mod crash_cycles;
mod cycles;
mod disk;
mod e2b;
mod e2b_envd;
mod e2b_interpreter;
mod e2b_js;
mod events;
mod exec;
mod faults;
mod files;
mod fuzz;
mod golden;
mod hygiene;
mod idempotent;
mod images;
mod images_more;
mod images_spoof;
mod isolation;
mod lifetime;
mod metrics;
mod modes;
#[path = "../../../oci/tests/support/mod.rs"]
mod oci_support;
mod ports;
mod proxy;
mod pytest;
mod recovery;
mod resources;
mod sandboxes;
mod shell;
mod snapshots;
mod snapshots_broken;
mod snapshots_restart;
mod state;
mod storage;
mod support;
mod thermal;
mod users;
mod v1;
mod web_ui;

use libtest_mimic::Arguments;
use support::{trial, trial_needing};

fn main() {
    if let Ok(path) = std::env::var(crash::CHILD_ENV) {
        crash::child(&path);
    }
    let mut args = Arguments::from_args();
    // VMs are heavy under TCG: one trial at a time unless asked.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let mut trials = core_trials();
    let more = [
        v1::trials(),
        ports::trials(),
        lifetime::trials(),
        snapshots::trials(),
        golden::trials(),
        storage::trials(),
        images::trials(),
        e2b::trials(),
        web_ui::trials(),
        e2b_envd::trials(),
        e2b_js::trials(),
        e2b_interpreter::trials(),
        idempotent::trials(),
        events::trials(),
        metrics::trials(),
        console::trials(),
    ];
    trials.extend(more.into_iter().flatten());
    libtest_mimic::run(&args, trials).exit();
}

/// The trials listed here (the newer modules list their own).
fn core_trials() -> Vec<libtest_mimic::Trial> {
    vec![
        trial_needing(
            "isolation::tenants_cannot_reach_or_impersonate_each_other",
            isolation::NEEDS,
            isolation::tenants_cannot_reach_or_impersonate_each_other,
        ),
        trial("sandboxes::crud_lifecycle", sandboxes::crud_lifecycle),
        trial(
            "cache::no_stale_key_or_sandbox",
            cache::no_stale_key_or_sandbox,
        ),
        trial(
            "sandboxes::auth_isolation_quota_bad_input",
            sandboxes::auth_isolation_quota_bad_input,
        ),
        trial("exec::buffered_and_streaming", exec::buffered_and_streaming),
        trial("files::files_over_http", files::files_over_http),
        trial(
            "modes::private_files_and_scrubbed_drive",
            modes::private_files_and_scrubbed_drive,
        ),
        trial("shell::websocket_shell", shell::websocket_shell),
        trial(
            "users::one_rule_through_the_api",
            users::one_rule_through_the_api,
        ),
        trial(
            "thermal::idle_cools_and_wakes",
            thermal::idle_cools_and_wakes,
        ),
        trial("proxy::proxy_and_publish", proxy::proxy_and_publish),
        trial(
            "state::stop_tick_and_wake_race",
            state::stop_tick_and_wake_race,
        ),
        trial(
            "hygiene::slow_clients_and_quiet_requests",
            hygiene::slow_clients_and_quiet_requests,
        ),
        trial(
            "resources::templates_secrets_volumes",
            resources::templates_secrets_volumes,
        ),
        trial(
            "recovery::sigkill_and_restart",
            recovery::sigkill_and_restart,
        ),
        trial(
            "faults::sigkill_at_every_step",
            faults::sigkill_at_every_step,
        ),
        trial(
            "crash_cycles::writes_survive_random_crashes",
            crash_cycles::writes_survive_random_crashes,
        ),
        trial(
            "cycles::stop_start_keeps_every_write",
            cycles::stop_start_keeps_every_write,
        ),
        trial(
            "disk::disk_size_from_request_and_template",
            disk::disk_size_from_request_and_template,
        ),
        fuzz::trial(),
        trial(
            "fuzz::long_input_is_not_echoed",
            fuzz::long_input_is_not_echoed,
        ),
    ]
}
