//! `bhatti image import` from a registry (a local `docker-registry` with
//! a password, plain HTTP: `--insecure`) and on a terminal: no
//! credentials and a wrong password fail with the job's reason
//! (`unauthorized`, exit 1); the password from `--password-stdin`
//! imports it under its default name; on a pseudo-terminal `-u` prompts
//! for the password without echo and the progress is drawn there.
//! Passes with a note when umoci, skopeo or docker-registry is missing.

use std::process::Command;
use std::time::Duration;

use crate::images::{build_image, have, names};
use crate::support::daemon::Daemon;
use crate::support::pty::Pty;
use crate::support::registry::{self, Registry};
use crate::{ensure, text};

const USER: &str = "tester";
const PASSWORD: &str = "s3cret-pw";

pub fn import_from_registry(d: &Daemon) -> Result<(), String> {
    if !have("umoci") || !have("skopeo") || !std::path::Path::new(registry::BIN).exists() {
        eprintln!("import_from_registry: skipped: umoci, skopeo or docker-registry is missing");
        return Ok(());
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    build_image(tmp.path())?;
    let reg = Registry::start(USER, PASSWORD)?;
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .arg(format!("--dest-creds={USER}:{PASSWORD}"))
        .arg(format!("oci:{}:t", tmp.path().join("lay").display()))
        .arg(format!("docker://{}/test/bare:1", reg.addr))
        .output()
        .map_err(|e| format!("skopeo: {e}"))?;
    ensure(out.status.success(), || {
        format!("skopeo push: {}\n{}", text(&out.stderr), reg.log())
    })?;
    let reference = format!("{}/test/bare:1", reg.addr);
    let import = ["image", "import", &reference, "--insecure"];

    let anon = d.run(&import);
    ensure(
        anon.status.code() == Some(1) && text(&anon.stderr).contains("unauthorized"),
        || format!("no credentials: {:?} {}", anon.status, text(&anon.stderr)),
    )?;
    let with_pw = [&import[..], &["-u", USER, "--password-stdin"]].concat();
    let wrong = d.run_with_stdin(&with_pw, b"not-it\n");
    ensure(
        wrong.status.code() == Some(1) && text(&wrong.stderr).contains("unauthorized"),
        || format!("a wrong password: {}", text(&wrong.stderr)),
    )?;
    let good = d.run_with_stdin(&with_pw, format!("{PASSWORD}\n").as_bytes());
    ensure(
        good.status.success() && text(&good.stdout).starts_with("imported bare-1 (id "),
        || format!("import with --password-stdin: {}", text(&good.stderr)),
    )?;
    let img = d.json(&["image", "inspect", "bare-1"])?;
    ensure(
        img["source"]
            .as_str()
            .is_some_and(|s| s.contains("test/bare:1")),
        || format!("source of bare-1: {img}"),
    )?;

    on_a_terminal(d, &reference)?;
    d.ok(&["image", "rm", "bare-1", "via-tty"])?;
    let left = names(&d.json(&["image", "list"])?);
    ensure(
        !left.iter().any(|n| n == "bare-1" || n == "via-tty"),
        || format!("image list after rm: {left:?}"),
    )
}

/// `-u` without `--password-stdin` on a terminal: a prompt with echo
/// off; the result line after the progress.
fn on_a_terminal(d: &Daemon, reference: &str) -> Result<(), String> {
    let cmd = d.cmd(&[
        "image",
        "import",
        reference,
        "--insecure",
        "-u",
        USER,
        "--name",
        "via-tty",
    ]);
    let mut pty = Pty::spawn(cmd)?;
    pty.expect_after(0, "password: ", Duration::from_secs(30))?;
    pty.send(format!("{PASSWORD}\n").as_bytes())?;
    let st = pty.wait(Duration::from_secs(300))?;
    let out = pty.output();
    ensure(
        st.success() && out.contains("imported via-tty (id ") && !out.contains(PASSWORD),
        || format!("import on a terminal ({st}): {out:?}"),
    )
}
