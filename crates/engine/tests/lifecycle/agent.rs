//! Agent operations (exec, files, sessions, ports) through the engine;
//! `exec_if_hot` never wakes a sandbox.

use super::*;

#[allow(clippy::too_many_lines)] // TODO(issue 10): split
pub(crate) fn agent_operations_through_the_engine() -> TestResult {
    run(async {
        let t = TestEngine::start(ImagePaths::from_env()).await?;
        let e = t.engine.clone();
        let sb = id("ops")?;
        e.create(sb.clone(), small()).await?;

        // Files: write, read, truncated read, stat, ls.
        e.write_file(
            &sb,
            "/workspace/k.txt",
            0o600,
            14,
            Box::new(std::io::Cursor::new(b"one\ntwo\nthree\n".to_vec())),
        )
        .await?;
        let all = e
            .read_file(&sb, "/workspace/k.txt", ReadOptions::default())
            .await?
            .read_all()
            .await?;
        ensure(all == b"one\ntwo\nthree\n", || format!("read {all:?}"))?;
        let first = e
            .read_file(
                &sb,
                "/workspace/k.txt",
                ReadOptions {
                    limit: Some(1),
                    ..ReadOptions::default()
                },
            )
            .await?
            .read_all()
            .await?;
        ensure(first == b"one\n", || format!("truncated read {first:?}"))?;
        let st = e.stat(&sb, "/workspace/k.txt").await?;
        ensure(st.size == 14 && st.mode == "0600", || {
            format!("stat {st:?}")
        })?;
        let names: Vec<String> = e
            .ls(&sb, "/workspace")
            .await?
            .into_iter()
            .map(|f| f.name)
            .collect();
        ensure(names.contains(&"k.txt".to_owned()), || {
            format!("ls {names:?}")
        })?;

        // Ten concurrent execs.
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (e, sb) = (e.clone(), sb.clone());
                tokio::spawn(async move {
                    e.exec(&sb, ExecOptions::new(["sh", "-c", &format!("echo {i}")]))
                        .await
                        .map(|r| (i, r.stdout))
                })
            })
            .collect();
        for task in tasks {
            let (i, out) = task.await??;
            ensure(out == format!("{i}\n").into_bytes(), || {
                format!("exec {i}: {out:?}")
            })?;
        }

        // Sessions: start, list, attach, kill.
        let session = e.shell(&sb, ShellOptions::new(["sh"])).await?;
        let sid = session.id().to_owned();
        session.detach();
        let list = e.list_sessions(&sb).await?;
        ensure(
            list.iter().any(|s| s.session_id == sid && s.running),
            || format!("sessions {list:?}"),
        )?;
        let mut again = e.attach(&sb, &sid).await?;
        again.write(b"echo attached-$((40+2))\n").await?;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&seen).contains("attached-42") {
            match tokio::time::timeout_at(deadline, again.next()).await {
                Ok(Ok(Some(Event::Stdout(b)))) => seen.extend(b),
                Ok(Ok(Some(_))) => {}
                other => return Err(format!("session output {other:?}, saw {seen:?}").into()),
            }
        }
        drop(again);
        e.kill_session(&sb, &sid).await?;
        let mut gone = false;
        for _ in 0..50 {
            let list = e.list_sessions(&sb).await?;
            if list.iter().all(|s| s.session_id != sid || !s.running) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure(gone, || "session still running after kill".into())?;

        // Streaming exec: output arrives as events, then the exit code.
        let req = ExecRequest {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
            ..ExecRequest::default()
        };
        let mut stream = e.exec_stream(&sb, req).await?;
        let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
        while let Some(ev) = stream.next().await? {
            match ev {
                Event::Stdout(b) => out.extend(b),
                Event::Stderr(b) => err.extend(b),
                Event::Exit(c) => code = Some(c),
                Event::Error(m) => return Err(m.into()),
            }
        }
        ensure(
            out == b"out\n" && err == b"err\n" && code == Some(3),
            || format!("stream: {out:?} {err:?} {code:?}"),
        )?;

        // A tunnel to a guest port.
        sh(
            &e,
            &sb,
            "mkdir -p /tmp/www && echo tunnelled > /tmp/www/index.html && httpd -p 8081 -h /tmp/www",
        )
        .await?;
        let ports = e.listening_ports(&sb).await?;
        ensure(ports.contains(&8081), || {
            format!("listening ports {ports:?}")
        })?;
        let mut tunnel = e.tunnel(&sb, 8081).await?;
        tunnel.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), tunnel.read_to_end(&mut resp)).await??;
        let resp = String::from_utf8_lossy(&resp);
        ensure(resp.ends_with("tunnelled\n"), || {
            format!("tunnel read {resp:?}")
        })?;

        // exec_if_hot runs on a hot sandbox; a warm one it leaves warm.
        let r = e.exec_if_hot(&sb, ExecOptions::new(["true"])).await?;
        ensure(r.is_some_and(|r| r.exit_code == 0), || {
            "exec_if_hot on a hot sandbox".into()
        })?;
        e.pause(&sb).await?;
        let r = e.exec_if_hot(&sb, ExecOptions::new(["true"])).await?;
        let state = e.status(&sb).await?.state;
        ensure(r.is_none() && state == SandboxState::Warm, || {
            format!(
                "exec_if_hot on a warm sandbox: ran {}, now {state:?}",
                r.is_some()
            )
        })?;

        // Activity moved with all of this.
        let act = e.activity(&sb).await?;
        ensure(act.last_activity_unix > 0, || format!("activity {act:?}"))?;
        Ok(())
    })
}
