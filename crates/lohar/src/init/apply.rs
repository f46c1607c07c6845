//! Applies `config.json` to a root directory: hostname files, DNS, files
//! with their modes and owners, volume mount points. Everything takes the
//! root as a parameter so it can be tested against a temp directory; the
//! syscalls that only make sense in the VM (sethostname, mount) are in
//! [`super`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use bhatti_proto::config::{GuestConfig, GuestFile};
use bhatti_proto::messages::parse_mode;

/// Why one config item could not be applied (boot goes on regardless).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{path}: path must be absolute and must not contain '..'")]
    BadPath { path: String },
    #[error("{path}: invalid base64 content: {msg}")]
    Base64 { path: String, msg: String },
    #[error("{path}: invalid mode {mode:?}")]
    Mode { path: String, mode: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `path` (absolute, no `..`) re-rooted under `root`.
pub fn under(root: &Path, path: &str) -> Result<PathBuf, ApplyError> {
    let p = Path::new(path);
    let bad = || ApplyError::BadPath {
        path: path.to_owned(),
    };
    if !p.is_absolute() {
        return Err(bad());
    }
    let mut out = root.to_path_buf();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    Ok(out)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError + '_ {
    move |source| ApplyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `/etc/hostname` and makes `/etc/hosts` resolve the hostname: an
/// existing `127.0.1.1` line is replaced (a renamed sandbox, e.g. a fork
/// child, drops its old name), else one is added unless another line
/// already names the host.
pub fn write_hostname(root: &Path, hostname: &str) -> Result<(), ApplyError> {
    let etc = root.join("etc");
    fs::create_dir_all(&etc).map_err(io_err(&etc))?;
    let hn = etc.join("hostname");
    fs::write(&hn, format!("{hostname}\n")).map_err(io_err(&hn))?;
    let hosts = etc.join("hosts");
    let current = fs::read_to_string(&hosts).unwrap_or_default();
    let own_line = format!("127.0.1.1\t{hostname}\n");
    let mut text = String::with_capacity(current.len() + own_line.len());
    let (mut localhost, mut named) = (false, false);
    for l in current.lines() {
        let mut words = l.split_whitespace();
        let addr = words.next().filter(|a| !a.starts_with('#'));
        if addr == Some("127.0.1.1") && !named {
            text.push_str(&own_line);
            named = true;
            continue;
        }
        let names: Vec<&str> = words.collect();
        localhost |= names.contains(&"localhost");
        named |= addr.is_some() && names.contains(&hostname);
        text.push_str(l);
        text.push('\n');
    }
    if !localhost {
        text.push_str("127.0.0.1\tlocalhost\n");
    }
    if !named {
        text.push_str(&own_line);
    }
    if text != current {
        fs::write(&hosts, text).map_err(io_err(&hosts))?;
    }
    Ok(())
}

/// Writes `/etc/resolv.conf` with one `nameserver` line per server
/// (replacing a symlink rather than writing through it).
pub fn write_resolv_conf(root: &Path, servers: &[String]) -> Result<(), ApplyError> {
    let path = root.join("etc/resolv.conf");
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let text: String = servers
        .iter()
        .map(|s| format!("nameserver {s}\n"))
        .collect();
    let _ = fs::remove_file(&path);
    fs::write(&path, text).map_err(io_err(&path))
}

/// Writes one config file: decoded content, mode (default 0644), owner
/// `owner` unless `root_owned` (then root). Missing parent directories are
/// created with the same owner as the file.
pub fn write_file(root: &Path, f: &GuestFile, owner: (u32, u32)) -> Result<(), ApplyError> {
    let path = under(root, &f.path)?;
    let content = base64::engine::general_purpose::STANDARD
        .decode(f.content_b64.trim())
        .map_err(|e| ApplyError::Base64 {
            path: f.path.clone(),
            msg: e.to_string(),
        })?;
    let mode = match f.mode.as_str() {
        "" => 0o644,
        m => parse_mode(m).ok_or_else(|| ApplyError::Mode {
            path: f.path.clone(),
            mode: m.to_owned(),
        })?,
    };
    let (uid, gid) = if f.root_owned { (0, 0) } else { owner };
    if let Some(parent) = path.parent() {
        create_dirs_owned(parent, (uid, gid))?;
    }
    let _ = fs::remove_file(&path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    file.write_all(&content).map_err(io_err(&path))?;
    chown_if_needed(&path, uid, gid)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(&path))?;
    Ok(())
}

/// Creates `dir` and its missing ancestors, owned by `owner`.
pub fn create_dirs_owned(dir: &Path, owner: (u32, u32)) -> Result<(), ApplyError> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    for d in missing.iter().rev() {
        chown_if_needed(d, owner.0, owner.1)?;
    }
    Ok(())
}

/// chown unless it already has that owner (so tests as non-root work).
fn chown_if_needed(path: &Path, uid: u32, gid: u32) -> Result<(), ApplyError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(io_err(path))?;
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err(path))
}

/// Applies the file-system parts of `config` under `root`, logging each
/// failure and going on. Returns how many items failed.
pub fn apply_files(root: &Path, config: &GuestConfig) -> usize {
    let owner = (config.user.uid, config.user.gid);
    let mut failed = 0;
    let mut report = |r: Result<(), ApplyError>| {
        if let Err(e) = r {
            crate::log!("config: {e}");
            failed += 1;
        }
    };
    if !config.hostname.is_empty() {
        report(write_hostname(root, &config.hostname));
    }
    if !config.dns.is_empty() {
        report(write_resolv_conf(root, &config.dns));
    }
    if config.user.uid != 0 && !config.user.home.is_empty() {
        report(under(root, &config.user.home).and_then(|h| create_dirs_owned(&h, owner)));
    }
    for f in &config.files {
        report(write_file(root, f, owner));
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn me() -> (u32, u32) {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    }

    #[test]
    fn paths_stay_under_the_root() {
        let r = Path::new("/r");
        assert_eq!(under(r, "/etc/x").expect("ok"), Path::new("/r/etc/x"));
        assert!(under(r, "etc/x").is_err());
        assert!(under(r, "/etc/../../x").is_err());
    }

    #[test]
    fn applies_hostname_dns_and_files() {
        let root = tempfile::tempdir().expect("tempdir");
        let (uid, gid) = me();
        let config = GuestConfig {
            hostname: "box-1".into(),
            dns: vec!["10.0.0.1".into(), "1.1.1.1".into()],
            user: bhatti_proto::config::GuestUser {
                name: "u".into(),
                uid,
                gid,
                home: "/home/u".into(),
            },
            files: vec![
                GuestFile {
                    path: "/home/u/.config/app/secret".into(),
                    // "hi\n"
                    content_b64: "aGkK".into(),
                    mode: "0600".into(),
                    root_owned: false,
                },
                GuestFile {
                    path: "/etc/motd".into(),
                    content_b64: String::new(),
                    mode: String::new(),
                    root_owned: uid == 0,
                },
                GuestFile {
                    path: "/bad".into(),
                    content_b64: "!!!".into(),
                    ..GuestFile::default()
                },
            ],
            ..GuestConfig::default()
        };
        assert_eq!(apply_files(root.path(), &config), 1, "only /bad fails");
        let r = root.path();
        assert_eq!(
            fs::read_to_string(r.join("etc/hostname")).expect("hostname"),
            "box-1\n"
        );
        let hosts = fs::read_to_string(r.join("etc/hosts")).expect("hosts");
        assert!(hosts.contains("127.0.1.1\tbox-1"), "{hosts}");
        // Idempotent.
        write_hostname(r, "box-1").expect("again");
        assert_eq!(
            fs::read_to_string(r.join("etc/hosts")).expect("hosts"),
            hosts
        );
        // Renamed (a fork child): the old name's line is replaced.
        write_hostname(r, "child-2").expect("rename");
        let renamed = fs::read_to_string(r.join("etc/hosts")).expect("hosts");
        assert!(renamed.contains("127.0.1.1\tchild-2\n"), "{renamed}");
        assert!(!renamed.contains("box-1"), "{renamed}");
        assert_eq!(renamed.matches("localhost").count(), 1, "{renamed}");
        write_hostname(r, "box-1").expect("back");
        assert_eq!(
            fs::read_to_string(r.join("etc/hosts")).expect("hosts"),
            hosts
        );
        assert_eq!(
            fs::read_to_string(r.join("etc/resolv.conf")).expect("resolv"),
            "nameserver 10.0.0.1\nnameserver 1.1.1.1\n"
        );
        let secret = r.join("home/u/.config/app/secret");
        assert_eq!(fs::read(&secret).expect("secret"), b"hi\n");
        let meta = fs::metadata(&secret).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        let motd = fs::metadata(r.join("etc/motd")).expect("motd");
        assert_eq!(motd.permissions().mode() & 0o7777, 0o644);
        assert_eq!(motd.len(), 0);
    }
}
