//! The config drive read through a real loop device and ext4 mount. Needs
//! root, `mkfs.ext4` and `losetup`; skips with the reason otherwise.

use std::path::Path;
use std::process::{Command, Stdio};

use super::*;

/// Runs a helper program through the child registry (the reaper thread of
/// this test binary would otherwise race std's own wait).
fn run(cmd: &mut Command) -> Result<String, String> {
    crate::children::start_reaper_thread().map_err(|e| e.to_string())?;
    let out = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let file = out.reopen().map_err(|e| e.to_string())?;
    cmd.stdout(Stdio::from(file)).stderr(Stdio::null());
    let (_child, rx) = crate::children::spawn(cmd).map_err(|e| e.to_string())?;
    let code = rx.blocking_recv().map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(out.path()).map_err(|e| e.to_string())?;
    if code == 0 {
        Ok(text.trim().to_owned())
    } else {
        Err(format!("{cmd:?} exited {code}"))
    }
}

fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (loop device and mount)".into());
    }
    for tool in ["/sbin/mkfs.ext4", "/sbin/losetup"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} missing (e2fsprogs / util-linux)"));
        }
    }
    None
}

#[test]
fn config_drive_is_read_and_unmounted() {
    if let Some(reason) = skip_reason() {
        eprintln!("SKIPPED config_drive_is_read_and_unmounted: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let content = dir.path().join("content");
    std::fs::create_dir(&content).expect("mkdir");
    let config = GuestConfig {
        sandbox_id: "sb-1".into(),
        hostname: "box".into(),
        token: "00ff".into(),
        ..GuestConfig::default()
    };
    std::fs::write(
        content.join(bhatti_proto::config::CONFIG_FILE),
        serde_json::to_vec(&config).expect("json"),
    )
    .expect("write");
    let image = dir.path().join("config.ext4");
    let img = image.to_str().expect("utf8");
    let dflag = content.to_str().expect("utf8");
    if let Err(e) = run(Command::new("/sbin/mkfs.ext4").args(["-q", "-F", "-d", dflag, img, "4M"]))
    {
        eprintln!("SKIPPED config_drive_is_read_and_unmounted: mkfs.ext4: {e}");
        return;
    }
    let device = match run(Command::new("/sbin/losetup").args(["--find", "--show", img])) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED config_drive_is_read_and_unmounted: no loop device: {e}");
            return;
        }
    };
    let at = dir.path().join("mnt");
    let at = at.to_str().expect("utf8");
    let got = read_config_drive(&device, at);
    let _ = run(Command::new("/sbin/losetup").args(["-d", &device]));
    let drive = got.expect("read").expect("present");
    assert_eq!(drive.config, config);
    let age = crate::agent::now_unix() - drive.written_at.expect("mtime");
    assert!((0..3600).contains(&age), "config.json mtime is {age} s old");
    // Unmounted again: the mount point is an empty directory.
    assert_eq!(std::fs::read_dir(at).expect("ls").count(), 0);
    assert!(
        read_config_drive("/dev/does-not-exist", at)
            .expect("absent is fine")
            .is_none()
    );
}
