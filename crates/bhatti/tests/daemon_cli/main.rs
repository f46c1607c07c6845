//! The CLI against a real `bhatti serve` with the QEMU engine: one daemon
//! for this binary (temp data dir, loopback port, `--egress none`, its own
//! network namespace), a user from `bhatti user create --json`, then the
//! client commands as real processes, their `--json` output parsed, exit
//! codes and streams checked, and `shell` driven through a pseudo-terminal.
//! The trials live in [`events`], [`exec`], [`images`], [`images_registry`], [`resources`], [`shell`], [`users`] and [`v1`] (a
//! v1 user: the daemon runs from a v1 config file, the client reads a v1
//! `~/.bhatti/config.yaml`, v1 flags and output).
//!
//! Skips (reported ignored, with the reason on stderr) without root, QEMU,
//! iproute2 or the guest images (`cargo xtask images`): the checks are
//! `bhatti-testkit`'s.

mod events;
mod exec;
mod images;
mod images_registry;
mod lifetime;
mod resources;
mod shell;
mod snapshots;
mod support;
mod users;
mod v1;

use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed};
use support::daemon::Daemon;

static DAEMON: Mutex<Option<Result<Arc<Daemon>, String>>> = Mutex::new(None);

/// The shared daemon, started by the first trial that needs it.
fn daemon() -> Result<Arc<Daemon>, Failed> {
    let mut slot = DAEMON.lock().map_err(|_| "daemon lock poisoned")?;
    let d = slot.get_or_insert_with(|| Daemon::start().map(Arc::new));
    d.clone().map_err(Failed::from)
}

type Body = fn(&Daemon) -> Result<(), String>;

fn main() {
    let args = Arguments::from_args();
    let tests: [(&str, Body); 12] = [
        ("lifecycle_exec_and_json", exec::lifecycle_exec_and_json),
        ("exec_output_is_live", exec::exec_output_is_live),
        (
            "volumes_templates_ports_setup",
            resources::volumes_templates_ports_setup,
        ),
        (
            "files_secrets_and_destroy_many",
            resources::files_secrets_and_destroy_many,
        ),
        (
            "shell_through_a_pty_detach_and_reattach",
            shell::shell_through_a_pty,
        ),
        ("v1_config_flags_and_output", v1::v1_config_flags_and_output),
        ("user_flags", users::user_flags),
        ("ttl_and_label_flags", lifetime::ttl_and_label_flags),
        ("snapshot_commands", snapshots::snapshot_commands),
        ("events_command", events::events_command),
        ("image_commands", images::image_commands),
        (
            "image_import_from_registry",
            images_registry::import_from_registry,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            bhatti_testkit::trial(name, bhatti_testkit::DAEMON, move || {
                let d = daemon()?;
                f(&d).map_err(|e| {
                    Failed::from(format!("{e}\n--- daemon log ---\n{}", tail(&d.log())))
                })
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop the daemon (and remove its namespace) before exiting.
    if let Ok(mut slot) = DAEMON.lock() {
        slot.take();
    }
    conclusion.exit();
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
