//! `libtest-mimic` trials that say why they did not run.

use libtest_mimic::{Completion, Failed, Trial};

use crate::host::{Need, skip_reason};

/// A trial that is reported as ignored, with `SKIPPED: <name>: <reason>`
/// printed, when the host lacks one of `needs`. Run with
/// `--include-ignored`, it checks again and still reports itself ignored
/// with the reason rather than failing or pretending to pass.
pub fn trial<F>(name: &str, needs: &[Need], f: F) -> Trial
where
    F: FnOnce() -> Result<(), Failed> + Send + 'static,
{
    let reason = skip_reason(needs);
    // stderr: in `--list` mode stdout is the test runner's protocol.
    if let Some(r) = &reason {
        eprintln!("SKIPPED: {name}: {r}");
    }
    let needs = needs.to_vec();
    Trial::ignorable_test(name, move || {
        if let Some(r) = skip_reason(&needs) {
            println!("SKIPPED: {r}");
            return Ok(Completion::ignored_with(r));
        }
        f().map(|()| Completion::Completed)
    })
    .with_ignored_flag(reason.is_some())
}
