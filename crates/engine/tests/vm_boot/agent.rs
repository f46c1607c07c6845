//! lohar over the TAP: exec as root (the default) and as the sandbox
//! user, sessions (plain and tty), file round trips, and the token it
//! requires.

use super::*;

pub(crate) fn exec_as_user() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        let c = t.ready_client().await?;
        let root = run_ok(&c, &["sh", "-c", "id -u; echo $HOME; pwd"]).await?;
        ensure(root == "0\n/root\n/root\n", || {
            format!("exec runs as root by default: {root:?}")
        })?;
        let ids = run_ok_as(
            &c,
            Some("lohar"),
            &[
                "sh",
                "-c",
                "id -u; id -g; echo $HOME; pwd; id -G; \
                 grep -E '^(Uid|Gid|CapPrm|CapEff):' /proc/self/status",
            ],
        )
        .await?;
        let lines: Vec<String> = ids
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        // Real, effective, saved and filesystem ids all the user's, only
        // the user's group, and no capabilities left.
        ensure(
            lines
                == [
                    "1000",
                    "1000",
                    "/home/lohar",
                    "/home/lohar",
                    "1000",
                    "Uid: 1000 1000 1000 1000",
                    "Gid: 1000 1000 1000 1000",
                    "CapPrm: 0000000000000000",
                    "CapEff: 0000000000000000",
                ],
            || format!("unexpected identity: {lines:?}"),
        )
    })
}

pub(crate) fn init_session() -> Result<(), Failed> {
    let cfg = GuestConfig {
        init: Some("echo INIT-RAN-$((40 + 2)) as $(id -u)".into()),
        ..default_config()
    };
    let t = TestVm::boot_with(cfg)?;
    runtime()?.block_on(async {
        let c = t.ready_client().await?;
        let mut s = c.attach("init").await?;
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&out).contains("INIT-RAN-42 as 1000") {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.next()).await {
                Ok(Ok(Some(Event::Stdout(b)))) => out.extend_from_slice(&b),
                Ok(Ok(Some(_) | None)) | Err(_) => break,
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        let text = String::from_utf8_lossy(&out);
        ensure(text.contains("INIT-RAN-42 as 1000"), || {
            format!("init session output: {text:?}")
        })
    })
}

pub(crate) fn file_round_trip() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        let c = t.ready_client().await?;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        c.write_file("/workspace/blob.bin", 0o640, data.len() as u64, &data[..])
            .await?;
        let back = c
            .read_file("/workspace/blob.bin", ReadOptions::default())
            .await?
            .read_all()
            .await?;
        ensure(back == data, || {
            format!("read {} bytes, wrote {}", back.len(), data.len())
        })?;
        let st = run_ok(&c, &["stat", "-c", "%a %u %s", "/workspace/blob.bin"]).await?;
        ensure(st.trim() == "640 1000 300000", || format!("stat: {st:?}"))
    })
}

pub(crate) fn tty_session() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        let c = t.ready_client().await?;
        let mut s = c
            .shell(&ShellOptions::new(["/bin/sh"]).size(30, 100))
            .await?;
        s.write(b"tty; stty size; echo TTY-$((6 * 7))\n").await?;
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&out).contains("TTY-42") {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.next()).await {
                Ok(Ok(Some(Event::Stdout(b)))) => out.extend_from_slice(&b),
                Ok(Ok(other)) => return Err(format!("session ended early: {other:?}").into()),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        ensure(text.contains("/dev/pts/"), || {
            format!("no pty in: {text:?}")
        })?;
        ensure(text.contains("30 100"), || {
            format!("window size not applied: {text:?}")
        })?;
        ensure(text.contains("TTY-42"), || format!("no output: {text:?}"))?;
        s.write(b"exit 3\n").await?;
        let code = tokio::time::timeout(Duration::from_secs(30), s.wait()).await??;
        ensure(code == 3, || format!("shell exit code {code}"))
    })
}

pub(crate) fn token_required() -> Result<(), Failed> {
    let t = TestVm::boot(VmOptions::default())?;
    runtime()?.block_on(async {
        t.ready_client().await?;
        for (label, client) in [
            ("wrong token", t.client_with_token("not-the-token")),
            ("no token", t.client_with_token("")),
        ] {
            let r = client.exec(ExecOptions::new(["true"])).await;
            ensure(matches!(r, Err(AgentError::AuthRefused(_))), || {
                format!("{label} was not refused: {r:?}")
            })?;
        }
        run_ok(&t.client(), &["true"]).await.map(drop)
    })
}
