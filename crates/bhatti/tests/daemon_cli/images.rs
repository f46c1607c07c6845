//! `bhatti image import|list|inspect|save|rm` and `create --image`
//! against the daemon: a bare busybox image built here with umoci (a
//! file, a config with env, working dir and command) imported as a
//! `docker-archive:` file made by `skopeo copy`, as an `oci:DIR:TAG`
//! layout the CLI streams as an oci-archive, from archives naming the
//! image (`oci-archive:FILE:TAG`, `docker-archive:FILE:REF|@N`) and as a
//! `rootfs:` tarball;
//! listed, inspected, booted,
//! saved from the sandbox, refused deletion while used, deleted. Nothing
//! leaves the machine (no registry). Passes with a note on stderr when
//! umoci or skopeo is missing (scripts/setup.sh installs both).

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use crate::support::daemon::Daemon;
use crate::{ensure, text};

fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    ensure(out.status.success(), || {
        format!("{what} failed: {}", text(&out.stderr))
    })
}

/// An OCI layout `tmp/lay` with the image `t` (busybox, `/hello`, a
/// config) and beside it `d.tar`, the same image as a docker-archive.
pub fn build_image(tmp: &Path) -> Result<(), String> {
    let root = tmp.join("root");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::fs::copy("/bin/busybox", bin.join("busybox")).map_err(|e| format!("busybox: {e}"))?;
    for applet in ["sh", "cat", "echo", "ls"] {
        symlink("busybox", bin.join(applet)).map_err(|e| e.to_string())?;
    }
    std::fs::write(root.join("hello"), "from the image\n").map_err(|e| e.to_string())?;
    let lay = tmp.join("lay");
    let (lay, image) = (lay.display().to_string(), format!("{}:t", lay.display()));
    run(
        "umoci init",
        Command::new("umoci").args(["init", "--layout", &lay]),
    )?;
    run(
        "umoci new",
        Command::new("umoci").args(["new", "--image", &image]),
    )?;
    // unpack, add the files, repack: one clean layer (umoci 0.4's `insert`
    // writes an entry `/`, or a single file without its tar padding).
    let bundle = tmp.join("bundle");
    run(
        "umoci unpack",
        Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle),
    )?;
    run(
        "cp",
        Command::new("cp")
            .arg("-a")
            .arg(root.join("."))
            .arg(bundle.join("rootfs")),
    )?;
    run(
        "umoci repack",
        Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle),
    )?;
    run(
        "umoci config",
        Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--config.env",
            "GREETING=namaste",
            "--config.workingdir",
            "/tmp",
            "--config.cmd",
            "/bin/sh",
        ]),
    )?;
    let archive = format!("docker-archive:{}:test/bare:1", tmp.join("d.tar").display());
    run(
        "skopeo copy",
        Command::new("skopeo").args(["copy", &format!("oci:{image}"), &archive]),
    )
}

pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn image_commands(d: &Daemon) -> Result<(), String> {
    if !have("umoci") || !have("skopeo") {
        eprintln!("image_commands: skipped the imports: umoci or skopeo is not installed");
        return Ok(());
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    build_image(tmp.path())?;
    let src = format!("docker-archive:{}", tmp.path().join("d.tar").display());
    // Piped stderr: one line per phase, the result on stdout.
    let out = d.run(&["image", "import", &src]);
    ensure(out.status.success(), || {
        format!("import {src}: {}", text(&out.stderr))
    })?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    ensure(
        stdout.starts_with("imported d (id ") && stderr.contains("uploading"),
        || format!("import output: {stdout:?} / {stderr:?}"),
    )?;
    let img = d.json(&["image", "inspect", "d"])?;
    ensure(
        img["config"]["env"]["GREETING"] == "namaste"
            && img["config"]["working_dir"] == "/tmp"
            && img["config"]["cmd"][0] == "/bin/sh"
            && img["builtin"] == false,
        || format!("image inspect --json: {img}"),
    )?;
    let shown = d.ok(&["image", "inspect", "d"])?;
    ensure(
        shown.contains("GREETING=namaste") && shown.contains(r#"["/bin/sh"]"#),
        || format!("image inspect: {shown}"),
    )?;
    let oci = d.json(&[
        "image",
        "import",
        &format!("oci:{}:t", tmp.path().join("lay").display()),
        "--name",
        "from-layout",
    ])?;
    ensure(
        oci["name"] == "from-layout" && oci["config"] == img["config"],
        || format!("oci:DIR:t import (the same image): {oci} vs {img}"),
    )?;
    let table = d.ok(&["image", "list"])?;
    ensure(
        table.starts_with("NAME") && table.contains("from-layout") && table.contains("builtin"),
        || format!("image list: {table}"),
    )?;
    archive_picks(d, tmp.path())?;
    bad_imports(d, tmp.path())?;
    rootfs_import(d, tmp.path())?;
    boot_save_and_remove(d)
}

/// An image named inside an archive: `oci-archive:FILE:TAG` and
/// `docker-archive:FILE:REF` (the CLI cuts the archive's image list).
fn archive_picks(d: &Daemon, tmp: &Path) -> Result<(), String> {
    let oci = tmp.join("o.tar");
    run(
        "skopeo copy",
        Command::new("skopeo").args([
            "copy",
            &format!("oci:{}:t", tmp.join("lay").display()),
            &format!("oci-archive:{}:t", oci.display()),
        ]),
    )?;
    let d_tar = tmp.join("d.tar").display().to_string();
    for (src, name) in [
        (format!("oci-archive:{}:t", oci.display()), "o-t"),
        (format!("docker-archive:{d_tar}:test/bare:1"), "d-ref"),
        (format!("docker-archive:{d_tar}:@0"), "d-0"),
    ] {
        let img = d.json(&["image", "import", &src, "--name", name])?;
        ensure(img["config"]["env"]["GREETING"] == "namaste", || {
            format!("import {src}: {img}")
        })?;
    }
    let out = d.run(&[
        "image",
        "import",
        &format!("docker-archive:{d_tar}:other:2"),
    ]);
    ensure(
        out.status.code() == Some(1) && text(&out.stderr).contains("test/bare:1"),
        || format!("a tag not in the archive: {}", text(&out.stderr)),
    )?;
    d.ok(&["image", "rm", "o-t", "d-ref", "d-0"]).map(drop)
}

/// Failures say why and exit non-zero.
fn bad_imports(d: &Daemon, tmp: &Path) -> Result<(), String> {
    let junk = tmp.join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 4096]).map_err(|e| e.to_string())?;
    let out = d.run(&[
        "image",
        "import",
        &format!("docker-archive:{}", junk.display()),
    ]);
    ensure(
        out.status.code() == Some(1) && text(&out.stderr).contains("failed"),
        || format!("a junk archive: {:?} {}", out.status, text(&out.stderr)),
    )?;
    let out = d.run(&[
        "image",
        "import",
        &format!("oci:{}:nope", tmp.join("lay").display()),
    ]);
    ensure(
        !out.status.success() && text(&out.stderr).contains("\"nope\""),
        || format!("a missing tag: {}", text(&out.stderr)),
    )?;
    // A name taken: refused before the upload is read (HTTP 409), and
    // the client reports the daemon's answer, not a broken upload.
    let again = format!("docker-archive:{}", tmp.join("d.tar").display());
    let out = d.run(&["image", "import", &again]);
    ensure(
        out.status.code() == Some(1) && text(&out.stderr).contains("409"),
        || format!("a taken name: {}", text(&out.stderr)),
    )?;
    let out = d.run(&["image", "import", "rootfs:x.tar", "--insecure"]);
    ensure(
        out.status.code() == Some(1) && text(&out.stderr).contains("registry sources only"),
        || format!("--insecure with a file: {}", text(&out.stderr)),
    )?;
    Ok(())
}

/// `rootfs:FILE.tar.gz`: a plain tarball, named after the file, no config.
fn rootfs_import(d: &Daemon, tmp: &Path) -> Result<(), String> {
    let file = tmp.join("plain-root.tar.gz");
    run(
        "tar",
        Command::new("tar")
            .arg("-czf")
            .arg(&file)
            .arg("-C")
            .arg(tmp.join("root"))
            .arg("."),
    )?;
    let img = d.json(&["image", "import", &format!("rootfs:{}", file.display())])?;
    ensure(
        img["name"] == "plain-root"
            && img["config"]["entrypoint"]
                .as_array()
                .is_some_and(Vec::is_empty),
        || format!("rootfs import: {img}"),
    )?;
    d.ok(&["image", "rm", "plain-root"]).map(drop)
}

/// `create --image`, `image save`, `rm` refused while used, then done.
fn boot_save_and_remove(d: &Daemon) -> Result<(), String> {
    d.ok(&["create", "--image", "d", "--name", "img-box"])?;
    let hello = d.ok(&["exec", "img-box", "--", "cat", "/hello"])?;
    ensure(hello == "from the image\n", || format!("/hello: {hello:?}"))?;
    d.ok(&["exec", "img-box", "--", "sh", "-c", "echo saved > /kept"])?;
    let saved = d.json(&["image", "save", "img-box", "saved"])?;
    ensure(saved["name"] == "saved", || format!("image save: {saved}"))?;
    // `from-layout` is another name for the same image: it goes; then
    // `d`, the last name of what img-box runs, is refused (409, exit 1).
    let gone = d.ok(&["image", "rm", "from-layout"])?;
    ensure(gone == "deleted image from-layout\n", || {
        format!("image rm: {gone:?}")
    })?;
    let busy = d.run(&["image", "rm", "d"]);
    ensure(
        busy.status.code() == Some(1) && text(&busy.stderr).contains("img-box"),
        || format!("rm of a used image: {}", text(&busy.stderr)),
    )?;
    d.ok(&["create", "--image", "saved", "--name", "img-saved"])?;
    let kept = d.ok(&["exec", "img-saved", "--", "cat", "/kept"])?;
    ensure(kept == "saved\n", || format!("/kept: {kept:?}"))?;
    d.ok(&["destroy", "img-box", "img-saved"])?;
    let gone = d.json(&["image", "rm", "d", "saved"])?;
    ensure(
        gone.as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|r| r["status"] == "deleted")),
        || format!("image rm --json: {gone}"),
    )?;
    let left = names(&d.json(&["image", "list"])?);
    ensure(
        !left
            .iter()
            .any(|n| ["d", "from-layout", "saved"].contains(&n.as_str())),
        || format!("image list after rm: {left:?}"),
    )
}
