//! `posix_spawn` of piped user commands, also when they run as another
//! user.
//!
//! std's `Command` falls back to `fork` + `exec` whenever a uid/gid is set,
//! and, in a static binary (lohar's), whenever a working directory is set
//! (it cannot find `posix_spawn_file_actions_addchdir_np` at run time). A
//! fork copies the agent's page tables and leaves it with copy-on-write
//! faults; under TCG that is about 2 ms of every exec. `posix_spawn`
//! (`CLONE_VM | CLONE_VFORK`) copies nothing.
//!
//! `posix_spawn` has no credential switch, but a child takes the
//! credentials of the *thread* that spawns it, and Linux keeps them per
//! thread (only libc's `setuid` family broadcasts to every thread; the
//! raw syscalls do not). So for a user command the calling thread, with
//! raw syscalls, takes the user's groups, gid and uid while keeping root as
//! its *saved* ids, spawns, and goes back to root. The child is born with
//! real and effective ids of the user and saved ids of root; its `execve`
//! copies the effective ids into the saved ones and, neither real nor
//! effective uid being 0, leaves it no capabilities. What runs between the
//! clone and the exec is libc's own child code only.
//!
//! # Threads, locks, I/O
//! Piped execs call [`spawn_piped`] on a [`crate::spawner`] thread (so
//! that concurrent execs spawn in parallel and the runtime's thread never
//! stalls in the vfork), under the shared spawn gate of
//! [`crate::children`]; TTY sessions call [`with_creds`] on the runtime's
//! thread. Either way the switch, the spawn and the switch back happen
//! inside one synchronous call on one thread, so no other agent code runs
//! with the user's credentials: other threads keep root, because the
//! raw syscalls change only the calling thread.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::pipe::{PipeFlags, pipe_with};

use crate::command::UserCommand;
use crate::env::Creds;

/// A child's stdin with `stdin_null` (protocol version 7).
const DEV_NULL: &std::ffi::CStr = c"/dev/null";

/// The agent's ends of a spawned child's stdio pipes.
#[derive(Debug)]
pub struct Stdio {
    /// `None` when the child's stdin is `/dev/null`.
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Spawns `cmd` in a new process group with piped stdio (stdin from
/// `/dev/null` instead when `stdin_null`); returns its pid.
/// Call it under [`crate::children`]'s spawn gate (via
/// `children::spawn_with`) so that no reap can take the child before its
/// waiter exists.
pub fn spawn_piped(cmd: &UserCommand, stdin_null: bool) -> io::Result<(i32, Stdio)> {
    let program = cstring(cmd.program.as_os_str().as_bytes())?;
    let argv = cmd
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let envp = env_strings(&cmd.env)?;
    let cwd = cmd
        .cwd
        .as_deref()
        .map(|d| cstring(d.as_os_str().as_bytes()))
        .transpose()?;

    // Ours: stdin's write end, stdout's and stderr's read ends. All the
    // descriptors are close-on-exec; the child gets dup2'd copies.
    let stdin = if stdin_null {
        None
    } else {
        Some(pipe_with(PipeFlags::CLOEXEC)?)
    };
    let (out_r, out_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (err_r, err_w) = pipe_with(PipeFlags::CLOEXEC)?;

    let mut actions = FileActions::new()?;
    match &stdin {
        Some((in_r, _)) => actions.dup2(in_r, 0)?,
        None => actions.open_read(0, DEV_NULL)?,
    }
    actions.dup2(&out_w, 1)?;
    actions.dup2(&err_w, 2)?;
    if let Some(dir) = &cwd {
        actions.chdir(dir)?;
    }
    let attrs = Attrs::new()?;

    let mut args: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    args.push(std::ptr::null_mut());
    let mut vars: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    vars.push(std::ptr::null_mut());

    let spawn = || {
        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer is valid for the call: `program` and the
        // NULL-terminated `args`/`vars` arrays point into CStrings that
        // outlive it, and `actions`/`attrs` are initialised objects.
        let r = unsafe {
            libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &actions.0,
                &attrs.0,
                args.as_ptr(),
                vars.as_ptr(),
            )
        };
        if r == 0 {
            Ok(pid)
        } else {
            Err(io::Error::from_raw_os_error(r))
        }
    };
    let pid = with_creds(cmd.switch_to.as_ref(), spawn)?;
    Ok((
        pid,
        Stdio {
            stdin: stdin.map(|(_, w)| w),
            stdout: out_r,
            stderr: err_r,
        },
    ))
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
}

fn env_strings(env: &BTreeMap<String, String>) -> io::Result<Vec<CString>> {
    env.iter()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect()
}

/// Runs `f` (which spawns one child) with this thread's credentials
/// switched to `creds`, or unchanged when `None`. A child forked or
/// spawned inside `f` is born with them (module docs); so is a TTY
/// session's std `Command`, whose fork copies the calling thread's
/// credentials.
pub fn with_creds<T>(creds: Option<&Creds>, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match creds {
        Some(c) => as_user(c, f),
        None => f(),
    }
}

/// Runs `f` with this thread's credentials switched to `creds` (saved
/// ids staying root) and restores root and its groups afterwards.
fn as_user<T>(creds: &Creds, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let (uid, gid) = (creds.uid, creds.gid);
    let saved = groups()?;
    let groups: Vec<libc::gid_t> = if creds.groups.is_empty() {
        vec![gid]
    } else {
        creds.groups.clone()
    };
    // Order: groups and gid while still root, then the uid.
    raw(
        libc::SYS_setgroups,
        [
            groups.len() as libc::c_long,
            groups.as_ptr() as libc::c_long,
            0,
        ],
    )?;
    if let Err(e) = raw(libc::SYS_setresgid, [gid.into(), gid.into(), 0])
        .and_then(|()| raw(libc::SYS_setresuid, [uid.into(), uid.into(), 0]))
    {
        restore_root(&saved);
        return Err(e);
    }
    let out = f();
    restore_root(&saved);
    out
}

/// This thread's supplementary groups.
fn groups() -> io::Result<Vec<libc::gid_t>> {
    // SAFETY: a count query (size 0) writes nothing.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut v = vec![0 as libc::gid_t; usize::try_from(n).map_err(|_| io::Error::last_os_error())?];
    // SAFETY: `v` has room for `n` gids.
    let m = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
    v.truncate(usize::try_from(m).map_err(|_| io::Error::last_os_error())?);
    Ok(v)
}

/// Back to root on this thread: allowed because the saved uid stayed 0;
/// the effective capabilities come back from the permitted set.
fn restore_root(groups: &[libc::gid_t]) {
    let ok = raw(libc::SYS_setresuid, [0, 0, 0]).is_ok()
        && raw(libc::SYS_setresgid, [0, 0, 0]).is_ok()
        && raw(
            libc::SYS_setgroups,
            [
                groups.len() as libc::c_long,
                groups.as_ptr() as libc::c_long,
                0,
            ],
        )
        .is_ok();
    if !ok {
        // Cannot happen with root saved ids; if it ever did, this thread
        // would run the agent as the user. Better to stop (as PID 1 that
        // ends the VM, and the host sees the sandbox fail) than to serve
        // with the wrong identity.
        crate::log!("cannot restore root credentials after a spawn; aborting");
        std::process::abort();
    }
}

/// A raw thread-directed credential syscall with three arguments.
fn raw(nr: libc::c_long, args: [libc::c_long; 3]) -> io::Result<()> {
    // SAFETY: setgroups/setresgid/setresuid take plain integers (and, for
    // setgroups, a pointer to `args[0]` gids that the caller keeps alive).
    let r = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: an all-zero value is a valid placeholder that init
        // overwrites before any other use.
        let mut a = FileActions(unsafe { std::mem::zeroed() });
        // SAFETY: `a.0` is writable storage for the object.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut a.0) })?;
        Ok(a)
    }

    fn dup2(&mut self, fd: &OwnedFd, to: libc::c_int) -> io::Result<()> {
        // SAFETY: `self.0` is initialised; `fd` stays open until the spawn.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, fd.as_raw_fd(), to) })
    }

    /// Opens `path` read-only as `to` in the child.
    fn open_read(&mut self, to: libc::c_int, path: &std::ffi::CStr) -> io::Result<()> {
        // SAFETY: `self.0` is initialised; glibc copies the path.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(
                &mut self.0,
                to,
                path.as_ptr(),
                libc::O_RDONLY,
                0,
            )
        })
    }

    fn chdir(&mut self, dir: &CString) -> io::Result<()> {
        // SAFETY: `self.0` is initialised; glibc copies the path.
        check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut self.0, dir.as_ptr()) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// `posix_spawnattr_t`: new process group, empty signal mask, and SIGPIPE
/// back to its default (Rust programs ignore it, and an ignored signal
/// stays ignored across exec).
///
/// The default set also names every other signal the agent does not
/// ignore ([`to_default`]): glibc's child resets those with one
/// `sigaction` each, where for a signal outside the set it asks for the
/// disposition first and then sets it, about 120 system calls between the
/// clone and the exec instead of about 64 (each an exit to the hypervisor
/// under TCG). The child sees the same dispositions either way.
struct Attrs(libc::posix_spawnattr_t);

/// SIGPIPE and every signal this process does not ignore, asked once:
/// lohar sets its dispositions at start and never ignores a signal later.
fn to_default() -> &'static libc::sigset_t {
    static SET: std::sync::OnceLock<libc::sigset_t> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        // SAFETY: sigemptyset initialises the local set; sigaction with a
        // null new action only reads the disposition into `old`, a valid
        // local; sigaddset of a number glibc refuses (its internal
        // signals) fails harmlessly and leaves the set as it was.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in 1..libc::SIGRTMAX() + 1 {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue; // no disposition to reset
                }
                let mut old: libc::sigaction = std::mem::zeroed();
                let asked = libc::sigaction(sig, std::ptr::null(), &mut old);
                if sig == libc::SIGPIPE || (asked == 0 && old.sa_sigaction != libc::SIG_IGN) {
                    libc::sigaddset(&mut set, sig);
                }
            }
            set
        }
    })
}

impl Attrs {
    fn new() -> io::Result<Self> {
        // SAFETY: an all-zero value is a valid placeholder that init
        // overwrites before any other use.
        let mut a = Attrs(unsafe { std::mem::zeroed() });
        // SAFETY: `a.0` is writable storage for the object.
        check(unsafe { libc::posix_spawnattr_init(&mut a.0) })?;
        // SAFETY: plain sigset operations on local, initialised sets and
        // setters on the initialised attribute object.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            check(libc::posix_spawnattr_setsigmask(&mut a.0, &none))?;
            check(libc::posix_spawnattr_setsigdefault(&mut a.0, to_default()))?;
            check(libc::posix_spawnattr_setpgroup(&mut a.0, 0))?;
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(
                &mut a.0,
                flags as libc::c_short,
            ))?;
        }
        Ok(a)
    }
}

impl Drop for Attrs {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_strings_are_key_equals_value() {
        let env = BTreeMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "x=y".to_owned()),
        ]);
        let s = env_strings(&env).expect("env");
        assert_eq!(s, [c"A=1".to_owned(), c"B=x=y".to_owned()]);
        let bad = BTreeMap::from([("A".to_owned(), "a\0b".to_owned())]);
        assert_eq!(
            env_strings(&bad).expect_err("NUL").kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
