//! Files, secrets, volumes, templates, ports, `setup` and destroying
//! many sandboxes at once.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::support::daemon::{self, Daemon};
use crate::{ensure, text};

#[allow(clippy::too_many_lines)] // one scenario against the shared daemon, step by step
pub fn files_secrets_and_destroy_many(d: &Daemon) -> Result<(), String> {
    let o = d.run_with_stdin(&["secret", "set", "TOKEN_A"], b"s3cret\n");
    ensure(o.status.success(), || {
        format!("secret set: {}", text(&o.stderr))
    })?;
    let list = d.json(&["secret", "list"])?;
    ensure(
        list.as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == "TOKEN_A"))
            && !list.to_string().contains("s3cret"),
        || format!("secret list: {list}"),
    )?;

    let local = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(local.path(), "config-data").map_err(|e| e.to_string())?;
    let spec = format!("{}:/etc/app.conf", local.path().display());
    let name = "fs-box";
    d.json(&[
        "create", "--name", name, "--memory", "256", "--secret", "TOKEN_A", "--file", &spec,
    ])?;
    let o = d.ok(&["exec", name, "--", "sh", "-c", "echo $TOKEN_A"])?;
    ensure(o == "s3cret\n", || format!("secret in env: {o:?}"))?;
    let o = d.ok(&["file", "read", name, "/etc/app.conf"])?;
    ensure(o == "config-data", || format!("--file: {o:?}"))?;

    // Upload from a pipe (spooled) and from a regular file (streamed).
    let o = d.run_with_stdin(&["file", "write", name, "/tmp/piped.txt"], b"l1\nl2\nl3\n");
    ensure(o.status.success(), || {
        format!("write pipe: {}", text(&o.stderr))
    })?;
    let blob: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut f = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    f.write_all(&blob).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(f.path()).map_err(|e| e.to_string())?;
    let o = d
        .cmd(&["file", "write", name, "/tmp/blob", "--mode", "0600"])
        .stdin(Stdio::from(file))
        .output()
        .map_err(|e| e.to_string())?;
    ensure(o.status.success(), || {
        format!("write file: {}", text(&o.stderr))
    })?;
    let o = d.run(&["file", "read", name, "/tmp/blob"]);
    ensure(o.status.success() && o.stdout == blob, || {
        format!(
            "blob read back: {} bytes, {}",
            o.stdout.len(),
            text(&o.stderr)
        )
    })?;

    let o = d.ok(&[
        "file",
        "read",
        name,
        "/tmp/piped.txt",
        "--offset",
        "2",
        "--limit",
        "1",
    ])?;
    ensure(o == "l2\n", || format!("offset/limit: {o:?}"))?;
    let o = d.ok(&["file", "read", name, "/tmp/piped.txt", "--max-bytes", "4"])?;
    ensure(o == "l1\nl", || format!("max-bytes: {o:?}"))?;
    let v = d.json(&["file", "read", name, "/tmp/piped.txt"])?;
    ensure(v["size"] == 9 && v["content_b64"] == "bDEKbDIKbDMK", || {
        format!("read --json: {v}")
    })?;
    let ls = d.json(&["file", "ls", name, "/tmp"])?;
    let entry = ls
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == "blob"))
        .cloned()
        .unwrap_or(Value::Null);
    ensure(entry["size"] == 300_000 && entry["mode"] == "0600", || {
        format!("ls: {ls}")
    })?;
    let o = d.run(&["file", "read", name, "/no/such/file"]);
    ensure(o.status.code() == Some(1), || {
        format!("missing file: {:?}", o.status)
    })?;

    let ps = d.json(&["ps", name])?;
    ensure(ps.is_array(), || format!("ps: {ps}"))?;

    d.json(&["secret", "delete", "TOKEN_A"])?;
    let list = d.json(&["secret", "list"])?;
    ensure(!list.to_string().contains("TOKEN_A"), || {
        format!("after delete: {list}")
    })?;
    let o = d.run(&["secret", "delete", "TOKEN_A"]);
    ensure(o.status.code() == Some(1), || {
        "deleting a missing secret must fail".into()
    })?;

    // Several at once; one missing: the others still go, exit 1.
    let o = d.run(&["rm", name, "never-existed"]);
    ensure(o.status.code() == Some(1), || format!("rm: {:?}", o.status))?;
    ensure(text(&o.stdout) == format!("destroyed {name}\n"), || {
        text(&o.stdout)
    })?;
    ensure(text(&o.stderr).contains("never-existed"), || {
        text(&o.stderr)
    })
}

#[allow(clippy::too_many_lines)] // one scenario against the shared daemon, step by step
pub fn volumes_templates_ports_setup(d: &Daemon) -> Result<(), String> {
    let v = d.json(&["volume", "create", "data1", "--size", "32"])?;
    ensure(v["name"] == "data1" && v["size_mb"] == 32, || {
        format!("volume create: {v}")
    })?;
    let vl = d.json(&["volume", "list"])?;
    ensure(vl.to_string().contains("data1"), || {
        format!("volume list: {vl}")
    })?;
    let t = d.json(&[
        "template", "create", "--name", "tpl", "--memory", "256", "--env", "TPL=yes",
    ])?;
    ensure(t["name"] == "tpl", || format!("template create: {t}"))?;
    let tl = d.ok(&["template", "list"])?;
    ensure(tl.starts_with("NAME") && tl.contains("tpl"), || tl.clone())?;

    let name = "vt-box";
    let sb = d.json(&[
        "create",
        "--name",
        name,
        "--template",
        "tpl",
        "--volume",
        "data1:/data",
    ])?;
    ensure(
        sb["memory_mb"] == 256 && sb["template_id"].is_string(),
        || format!("create from template: {sb}"),
    )?;
    let o = d.ok(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "echo $TPL; grep -c ' /data ' /proc/mounts",
    ])?;
    ensure(o == "yes\n1\n", || {
        format!("template env and volume mount: {o:?}")
    })?;
    let o = d.run(&["volume", "delete", "data1"]);
    ensure(
        o.status.code() == Some(1) && text(&o.stderr).contains("409"),
        || format!("delete in-use volume: {:?} {}", o.status, text(&o.stderr)),
    )?;

    // A listening port shows up with its proxy URL; publish/unpublish.
    d.ok(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "busybox httpd -p 8000 -h /tmp",
    ])?;
    let ports = d.json(&["ports", name])?;
    let p8000 = ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["port"] == 8000))
        .cloned()
        .unwrap_or(Value::Null);
    ensure(p8000["proxy_url"].is_string(), || format!("ports: {ports}"))?;
    let pb = d.json(&["publish", name, "8000", "--alias", "cli-web"])?;
    ensure(pb["alias"] == "cli-web" && pb["port"] == 8000, || {
        format!("publish: {pb}")
    })?;
    let up = d.json(&["unpublish", name, "8000"])?;
    ensure(up["status"] == "unpublished", || format!("unpublish: {up}"))?;

    let e = d.json(&["edit", name, "--name", "vt-renamed", "--allow-cold"])?;
    ensure(e["name"] == "vt-renamed" && e["keep_hot"] == false, || {
        format!("edit: {e}")
    })?;

    let ver = d.json(&["version"])?;
    ensure(ver["server"] == ver["client"], || format!("version: {ver}"))?;

    // setup verifies against the daemon, writes the config, later
    // commands use it with no flags or environment.
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let run_home = |args: &[&str]| {
        std::process::Command::new(daemon::bin())
            .args(args)
            .env("HOME", home.path())
            .env_remove("BHATTI_URL")
            .env_remove("BHATTI_TOKEN")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())
    };
    let o = run_home(&["setup", "--url", &d.url, "--token", "bht_wrong"])?;
    ensure(
        o.status.code() == Some(1) && text(&o.stderr).contains("rejected"),
        || format!("setup with a bad key: {}", text(&o.stderr)),
    )?;
    let o = run_home(&["setup", "--url", &d.url, "--token", &d.token])?;
    ensure(o.status.success(), || format!("setup: {}", text(&o.stderr)))?;
    let o = run_home(&["list", "--json"])?;
    let list: Value =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("list via config: {e}"))?;
    ensure(list.to_string().contains("vt-renamed"), || {
        format!("list via config: {list}")
    })?;

    d.json(&["destroy", "vt-renamed"])?;
    d.json(&["template", "delete", "tpl"])?;
    d.json(&["volume", "delete", "data1"])?;
    let vl = d.json(&["volume", "list"])?;
    ensure(!vl.to_string().contains("data1"), || {
        format!("after delete: {vl}")
    })
}
