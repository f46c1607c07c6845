//! One user rule in the guest (v1's, `docs/protocol.md` "user"): exec as
//! root, files written through the agent owned by the sandbox user
//! `lohar`, a per-request `user`, and the sandbox's `exec_user` (also
//! after a boot from disk).

use super::*;

/// This file's trials (each needs `vm`).
pub(crate) fn trials(vm: &[Need]) -> Vec<libtest_mimic::Trial> {
    vec![
        trial(
            "one_user_rule_default_and_request_user",
            vm,
            default_rule_and_request_user,
        ),
        trial(
            "one_user_rule_sandbox_exec_user",
            vm,
            sandbox_exec_user_is_the_default,
        ),
    ]
}

/// Runs `script` as `user` and returns its stdout (exit 0 required).
async fn sh_as(
    e: &VmEngine<AnyDriver>,
    sb: &SandboxId,
    user: &str,
    script: &str,
) -> Result<String, Failed> {
    let r = e
        .exec(sb, ExecOptions::new(["sh", "-c", script]).user(user))
        .await?;
    ensure(r.exit_code == 0, || {
        format!(
            "`{script}` as {user} exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        )
    })?;
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

fn source(bytes: &'static [u8]) -> bhatti_engine::engine::FileSource {
    Box::new(std::io::Cursor::new(bytes))
}

pub(crate) fn default_rule_and_request_user() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("users")?;
        e.create(sb.clone(), small()).await?;

        let who = sh(e, &sb, "id -u; echo $HOME $USER").await?;
        ensure(who == "0\n/root root\n", || {
            format!("default exec must be root: {who:?}")
        })?;
        // A file the API puts in /root is the sandbox user's and the next
        // (root) exec reads it.
        e.write_file(&sb, "/root/api.txt", 0o600, 5, source(b"hello"))
            .await?;
        let got = sh(
            e,
            &sb,
            "cat /root/api.txt; echo; stat -c %u:%g /root/api.txt",
        )
        .await?;
        ensure(got == "hello\n1000:1000\n", || {
            format!("file written into /root: {got:?}")
        })?;
        let who = sh_as(e, &sb, "lohar", "id -u; echo $HOME $USER; pwd").await?;
        ensure(who == "1000\n/home/lohar lohar\n/home/lohar\n", || {
            format!("exec as lohar: {who:?}")
        })?;
        // A write naming a user gives the file to it.
        e.write_file_as(&sb, "/tmp/r.txt", 0o644, 1, source(b"x"), Some("root"))
            .await?;
        let owner = sh(e, &sb, "stat -c %u /tmp/r.txt").await?;
        ensure(owner == "0\n", || format!("write as root: owner {owner:?}"))?;
        // A session as lohar.
        let mut s = e
            .shell(
                &sb,
                ShellOptions::new(["sh", "-c", "echo uid=$(id -u)"]).user("lohar"),
            )
            .await?;
        let mut out = Vec::new();
        while let Some(ev) = tokio::time::timeout(Duration::from_secs(30), s.next()).await?? {
            match ev {
                Event::Stdout(b) => out.extend_from_slice(&b),
                Event::Exit(_) => break,
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&out);
        ensure(text.contains("uid=1000"), || format!("session: {text:?}"))?;
        // An unknown user is a clear error, for exec and for writes.
        let err = e
            .exec(&sb, ExecOptions::new(["true"]).user("nosuchuser"))
            .await
            .err()
            .ok_or("exec as an unknown user succeeded")?;
        let unknown = |err: &EngineError| match err {
            EngineError::Agent(a) => {
                a.agent_code() == Some(bhatti_agent::ErrorCode::InvalidRequest)
                    && a.to_string().contains("unknown user")
            }
            _ => false,
        };
        ensure(unknown(&err), || format!("exec error: {err}"))?;
        let err = e
            .write_file_as(&sb, "/tmp/n", 0o644, 1, source(b"x"), Some("nosuchuser"))
            .await
            .err()
            .ok_or("write as an unknown user succeeded")?;
        ensure(unknown(&err), || format!("write error: {err}"))?;
        e.destroy(&sb).await?;
        Ok(())
    })
}

pub(crate) fn sandbox_exec_user_is_the_default() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = &t.engine;
        let sb = id("users-sb")?;
        let spec = SandboxSpec {
            exec_user: Some("lohar".into()),
            init: Some("id -u > /tmp/init-uid".into()),
            ..small()
        };
        e.create(sb.clone(), spec).await?;
        let who = sh(e, &sb, "id -u; echo $HOME").await?;
        ensure(who == "1000\n/home/lohar\n", || {
            format!("exec with exec_user lohar: {who:?}")
        })?;
        let root = sh_as(e, &sb, "root", "id -u").await?;
        ensure(root == "0\n", || format!("the request wins: {root:?}"))?;
        let mut init = String::new();
        for _ in 0..50 {
            init = sh(e, &sb, "cat /tmp/init-uid 2>/dev/null || true").await?;
            if !init.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure(init == "1000\n", || format!("init ran as {init:?}"))?;
        // A boot from disk (the snapshot is junk) rebuilds the config
        // drive from sandbox.json: exec_user is still there.
        e.stop(&sb).await?;
        std::fs::write(t.sandbox_dir(&sb).join("mem.snap"), b"junk")?;
        e.start(&sb).await?;
        let who = sh(e, &sb, "id -u").await?;
        ensure(who == "1000\n", || {
            format!("exec_user after a boot from disk: {who:?}")
        })?;
        e.destroy(&sb).await?;
        Ok(())
    })
}
