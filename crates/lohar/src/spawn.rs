//! Spawning piped user commands without a fork, also when they run as
//! another user.
//!
//! std's `Command` falls back to `fork` + `exec` whenever a uid/gid is set,
//! and, in a static binary (lohar's), whenever a working directory is set
//! (it cannot find `posix_spawn_file_actions_addchdir_np` at run time). A
//! fork copies the agent's page tables and leaves it with copy-on-write
//! faults; under TCG that is about 2 ms of every exec. A
//! `CLONE_VM | CLONE_VFORK` clone copies nothing: [`crate::vfork`] does
//! that clone and the few steps before the exec (glibc's `posix_spawn`
//! did the same clone until it, with a walk over every signal number that
//! cost 0.28 ms in a TCG guest).
//!
//! A clone has no credential switch, but a child takes the
//! credentials of the *thread* that spawns it, and Linux keeps them per
//! thread (only libc's `setuid` family broadcasts to every thread; the
//! raw syscalls do not). So for a user command the calling thread, with
//! raw syscalls, takes the user's groups, gid and uid while keeping root as
//! its *saved* ids, spawns, and goes back to root. The child is born with
//! real and effective ids of the user and saved ids of root; its `execve`
//! copies the effective ids into the saved ones and, neither real nor
//! effective uid being 0, leaves it no capabilities. What runs between the
//! clone and the exec is [`crate::vfork`]'s child code only, which touches
//! no credentials.
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
use crate::vfork;

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

    let mut args: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    args.push(std::ptr::null_mut());
    let mut vars: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    vars.push(std::ptr::null_mut());
    let plan = vfork::Plan {
        program: &program,
        argv: &args,
        envp: &vars,
        stdin: stdin.as_ref().map(|(r, _)| r.as_raw_fd()),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        cwd: cwd.as_deref(),
    };
    let pid = with_creds(cmd.switch_to.as_ref(), || vfork::spawn(&plan))?;
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
