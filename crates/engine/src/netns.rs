//! Named network namespaces (`/run/netns/<name>`, the `ip netns` convention).
//!
//! Sandboxes live in a network namespace the daemon owns; VM tests create
//! their own. This module is the only place that enters one:
//!
//! - [`NetNs::create`] / [`NetNs::open`] / [`NetNs::delete`]: `ip netns
//!   add/del`; a created handle deletes its namespace on drop (RAII), an
//!   opened one does not.
//! - [`NetNs::run`]: runs a closure on a fresh thread that has joined the
//!   namespace with `setns(CLONE_NEWNET)`; the caller's threads never change
//!   namespace. Sockets created there keep that namespace for their whole
//!   life, which is what [`NetNs::connect_tcp`] relies on.
//! - [`NetNs::command`]: a `std::process::Command` whose child joins the
//!   namespace between fork and exec (used to spawn the VMM so that its TAP
//!   device is found).
//! - [`NetNs::add_tap`], [`NetNs::ip`]: `ip -n <name> ...` configuration;
//!   [`NetNs::sysctl`]: per-namespace `/proc/sys/net` settings.
//!
//! # Threads, locks, I/O
//! No shared state and no locks. `run` and `connect_tcp` block the calling
//! thread until the helper thread finishes (call them from
//! `tokio::task::spawn_blocking` in async code). Every operation needs
//! `CAP_SYS_ADMIN` (root) and the `ip` binary from iproute2.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Directory where `ip netns` keeps its namespace bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// Longest namespace name accepted (it becomes a file name; keep it short).
pub const MAX_NAME_LEN: usize = 64;

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Errors from network namespace operations.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid network namespace name {0:?} (1-64 chars of [A-Za-z0-9_.-])")]
    InvalidName(String),
    #[error("invalid interface name {0:?} (1-15 chars of [A-Za-z0-9_.-])")]
    InvalidIfName(String),
    #[error("network namespace {0:?} does not exist")]
    NotFound(String),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("could not run `{command}` (is iproute2 installed?)")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("could not open network namespace {name:?}")]
    Open {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("could not enter network namespace {name:?}")]
    Enter {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("could not start a thread for network namespace {name:?}")]
    Thread {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid sysctl name {0:?}")]
    InvalidSysctl(String),
    #[error("cannot set sysctl {key}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("the thread running inside network namespace {0:?} panicked")]
    Panicked(String),
    #[error("TCP connect to {addr} inside network namespace {name:?} failed")]
    Connect {
        name: String,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A named network namespace. Created handles delete the namespace on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    owned: bool,
}

impl NetNs {
    /// Creates namespace `name` (`ip netns add`) and brings its loopback up.
    /// The namespace is deleted when the handle is dropped.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        validate_name(name, MAX_NAME_LEN).map_err(|()| NetnsError::InvalidName(name.into()))?;
        run_ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle to an existing namespace; dropping it leaves the namespace.
    pub fn open(name: &str) -> Result<Self, NetnsError> {
        validate_name(name, MAX_NAME_LEN).map_err(|()| NetnsError::InvalidName(name.into()))?;
        let ns = Self {
            name: name.to_owned(),
            owned: false,
        };
        if !ns.path().exists() {
            return Err(NetnsError::NotFound(name.into()));
        }
        Ok(ns)
    }

    /// Whether namespace `name` exists.
    pub fn exists(name: &str) -> bool {
        validate_name(name, MAX_NAME_LEN).is_ok() && PathBuf::from(NETNS_DIR).join(name).exists()
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Deletes the namespace now (`ip netns del`), reporting errors that
    /// drop would swallow.
    pub fn delete(mut self) -> Result<(), NetnsError> {
        self.owned = false;
        run_ip(&["netns", "del", &self.name])
    }

    /// Runs `ip -n <name> <args...>`, e.g. `ns.ip(&["link", "set", "lo", "up"])`.
    pub fn ip(&self, args: &[&str]) -> Result<(), NetnsError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ip(&full)
    }

    /// Creates a persistent TAP device `ifname` inside the namespace with
    /// `addr_cidr` (e.g. `"10.0.2.1/24"`; `None` for no address) and brings
    /// it up. A VMM spawned with [`NetNs::command`] opens it by name.
    pub fn add_tap(&self, ifname: &str, addr_cidr: Option<&str>) -> Result<(), NetnsError> {
        validate_name(ifname, MAX_IFNAME_LEN)
            .map_err(|()| NetnsError::InvalidIfName(ifname.into()))?;
        self.ip(&["tuntap", "add", "dev", ifname, "mode", "tap"])?;
        if let Some(addr) = addr_cidr {
            self.ip(&["addr", "add", addr, "dev", ifname])?;
        }
        self.ip(&["link", "set", ifname, "up"])
    }

    /// Deletes interface `ifname` inside the namespace.
    pub fn del_link(&self, ifname: &str) -> Result<(), NetnsError> {
        validate_name(ifname, MAX_IFNAME_LEN)
            .map_err(|()| NetnsError::InvalidIfName(ifname.into()))?;
        self.ip(&["link", "del", ifname])
    }

    /// Sets a per-namespace sysctl, e.g. `ns.sysctl("net.ipv4.ip_forward",
    /// "1")` (written to `/proc/sys/...` from a thread inside).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let valid = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty()
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            });
        if !valid {
            return Err(NetnsError::InvalidSysctl(key.to_owned()));
        }
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value))?
            .map_err(|source| NetnsError::Sysctl {
                key: key.to_owned(),
                source,
            })
    }

    /// Runs `f` on a fresh thread that has joined this namespace, and waits
    /// for its result. The calling thread's namespace is untouched.
    pub fn run<F, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file = self.open_file()?;
        let name = &self.name;
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name(format!("netns-{name}"))
                .spawn_scoped(s, move || {
                    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                        .map_err(|e| NetnsError::Enter {
                            name: name.clone(),
                            source: e.into(),
                        })?;
                    Ok(f())
                })
                .map_err(|source| NetnsError::Thread {
                    name: name.clone(),
                    source,
                })?;
            handle
                .join()
                .map_err(|_| NetnsError::Panicked(name.clone()))?
        })
    }

    /// Opens a TCP connection to `addr` from inside the namespace. The
    /// returned socket stays in the namespace and can be used from any
    /// thread (or handed to tokio with `set_nonblocking(true)` and
    /// `tokio::net::TcpStream::from_std`).
    pub fn connect_tcp(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpStream, NetnsError> {
        let stream = self
            .run(|| TcpStream::connect_timeout(&addr, timeout))?
            .map_err(|source| NetnsError::Connect {
                name: self.name.clone(),
                addr,
                source,
            })?;
        // Best effort: small request/response frames.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// A command whose child process joins this namespace before `exec`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command, NetnsError> {
        let file = self.open_file()?;
        let mut cmd = Command::new(program);
        // SAFETY: the closure runs in the forked child before exec and only
        // calls setns(2) on an fd opened before the fork (no allocation, no
        // locks), which is async-signal-safe. The `File` is moved into the
        // closure, so the fd stays open until the Command is dropped.
        unsafe {
            cmd.pre_exec(move || {
                move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                    .map_err(io::Error::from)
            });
        }
        Ok(cmd)
    }

    fn open_file(&self) -> Result<File, NetnsError> {
        File::open(self.path()).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                NetnsError::NotFound(self.name.clone())
            } else {
                NetnsError::Open {
                    name: self.name.clone(),
                    source,
                }
            }
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.owned {
            // Best effort: drop cannot report; `delete` can.
            let _ = run_ip(&["netns", "del", &self.name]);
        }
    }
}

/// A namespace name unique to this process and call, with `prefix`
/// (at most 40 chars), e.g. for tests: `unique_name("bt")` → `bt-4242-7`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix: String = prefix.chars().take(40).collect();
    format!("{prefix}-{}-{n}", std::process::id())
}

fn validate_name(name: &str, max: usize) -> Result<(), ()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok { Ok(()) } else { Err(()) }
}

fn run_ip(args: &[&str]) -> Result<(), NetnsError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("bt-1.x_y", MAX_NAME_LEN).is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ä"] {
            assert!(validate_name(bad, MAX_NAME_LEN).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"x".repeat(16), MAX_IFNAME_LEN).is_err());
        assert!(matches!(
            NetNs::open("../etc"),
            Err(NetnsError::InvalidName(_))
        ));
    }

    #[test]
    fn unique_names_differ_and_are_valid() {
        let a = unique_name(&"p".repeat(100));
        let b = unique_name(&"p".repeat(100));
        assert_ne!(a, b);
        assert!(validate_name(&a, MAX_NAME_LEN).is_ok());
    }

    #[test]
    fn missing_namespace_is_not_found() {
        let name = unique_name("absent");
        assert!(matches!(NetNs::open(&name), Err(NetnsError::NotFound(_))));
        assert!(!NetNs::exists(&name));
    }
}
