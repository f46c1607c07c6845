//! QMP client against a real QEMU (microvm, TCG, no kernel). Reported as
//! ignored, with the reason printed, where QEMU is not installed.

mod bare_qemu;

use std::future::Future;
use std::time::Duration;

use bare_qemu::{BareQemu, file_len};
use bhatti_engine::qemu::qmp::{QmpClient, QmpError, RunState, incoming_uri};
use libtest_mimic::{Arguments, Failed, Trial};

const T: Duration = Duration::from_secs(10);

type TestResult = Result<(), Failed>;
type NamedTest = (&'static str, fn() -> TestResult);

fn block_on<F: Future<Output = TestResult>>(f: F) -> TestResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

async fn connect(vm: &BareQemu) -> Result<QmpClient, Failed> {
    QmpClient::connect_retry(&vm.qmp, T)
        .await
        .map_err(|e| format!("{e}; qemu log: {}", vm.log()).into())
}

fn greeting_and_status() -> TestResult {
    block_on(async {
        let vm = BareQemu::spawn(None)?;
        let mut q = connect(&vm).await?;
        if q.version().major < 7 {
            return Err(format!("unexpected QEMU version {:?}", q.version()).into());
        }
        let st = q.query_status().await?;
        if st.state != RunState::Prelaunch || st.running {
            return Err(format!("fresh -S VM should be prelaunch, got {st:?}").into());
        }
        Ok(())
    })
}

fn stop_and_cont_change_state_and_emit_events() -> TestResult {
    block_on(async {
        let vm = BareQemu::spawn(None)?;
        let mut q = connect(&vm).await?;
        q.cont().await?;
        let st = q.query_status().await?;
        if st.state != RunState::Running || !st.running {
            return Err(format!("after cont: {st:?}").into());
        }
        q.stop().await?;
        let st = q.query_status().await?;
        if st.state != RunState::Paused || st.running {
            return Err(format!("after stop: {st:?}").into());
        }
        q.cont().await?;
        let stop = q.wait_event("STOP", T).await;
        let (events, dropped) = q.take_events();
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        if stop.is_err() || dropped != 0 || !names.contains(&"RESUME") {
            return Err(format!("events: stop={stop:?} rest={names:?} dropped={dropped}").into());
        }
        Ok(())
    })
}

fn unknown_command_is_a_typed_error() -> TestResult {
    block_on(async {
        let vm = BareQemu::spawn(None)?;
        let mut q = connect(&vm).await?;
        match q.execute("no-such-command", None).await {
            Err(QmpError::Command { class, command, .. })
                if class == "CommandNotFound" && command == "no-such-command" => {}
            other => return Err(format!("expected CommandNotFound, got {other:?}").into()),
        }
        // The session is still usable.
        q.query_status().await?;
        Ok(())
    })
}

fn late_reply_after_timeout_is_skipped() -> TestResult {
    use rustix::process::{Pid, Signal, kill_process};
    block_on(async {
        let vm = BareQemu::spawn(None)?;
        let mut q = connect(&vm).await?;
        let pid = i32::try_from(vm.child.id())
            .ok()
            .and_then(Pid::from_raw)
            .ok_or("no QEMU pid")?;
        // Freeze QEMU so the reply cannot come in time, then let it go:
        // its late reply must be skipped by the next command.
        kill_process(pid, Signal::STOP)?;
        q.set_command_timeout(Duration::from_millis(200));
        let res = q.query_status().await;
        kill_process(pid, Signal::CONT)?;
        match res {
            Err(QmpError::Timeout { .. }) => {}
            other => return Err(format!("expected a timeout, got {other:?}").into()),
        }
        q.set_command_timeout(T);
        q.cont().await?;
        let st = q.query_status().await?;
        if st.state != RunState::Running {
            return Err(format!("stale reply confused the client: {st:?}").into());
        }
        Ok(())
    })
}

fn snapshot_to_file_and_restore() -> TestResult {
    block_on(async {
        let mut src = BareQemu::spawn(None)?;
        let snap = src.path("mem.snap");
        let mut q = connect(&src).await?;
        q.cont().await?;
        q.stop().await?;
        let stats = q.migrate_to_file(&snap, T).await?;
        let st = q.query_status().await?;
        if st.state != RunState::PostMigrate {
            return Err(format!("source after migration: {st:?}").into());
        }
        q.quit().await?;
        if src.wait_exit(T).is_none() {
            return Err("source QEMU did not exit after quit".into());
        }
        let len = file_len(&snap);
        if len == 0 || stats.transferred_bytes == 0 {
            return Err(format!("empty snapshot: file {len} B, stats {stats:?}").into());
        }

        let uri = incoming_uri(&snap)?;
        let dst = BareQemu::spawn(Some(&uri))?;
        let mut q = connect(&dst).await?;
        let st = q.wait_incoming(T).await?;
        if st.state != RunState::Paused {
            return Err(format!("restored VM should be paused, got {st:?}").into());
        }
        q.cont().await?;
        let st = q.query_status().await?;
        if st.state != RunState::Running {
            return Err(format!("restored VM after cont: {st:?}").into());
        }
        Ok(())
    })
}

fn migration_to_unwritable_path_fails() -> TestResult {
    block_on(async {
        let vm = BareQemu::spawn(None)?;
        let mut q = connect(&vm).await?;
        let bad = vm.path("no/such/dir/mem.snap");
        // The client opens the file itself: the error comes before QEMU
        // is asked anything.
        match q.migrate_to_file(&bad, T).await {
            Err(QmpError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => return Err(format!("expected a NotFound I/O error, got {other:?}").into()),
        }
        match q.migrate_to_file(std::path::Path::new("rel/path"), T).await {
            Err(QmpError::BadPath(_)) => {}
            other => return Err(format!("expected BadPath, got {other:?}").into()),
        }
        q.query_status().await?;
        Ok(())
    })
}

fn restore_from_garbage_fails_cleanly() -> TestResult {
    block_on(async {
        let dir = tempfile::tempdir()?;
        let junk = dir.path().join("junk.snap");
        std::fs::write(&junk, b"not a migration stream")?;
        let uri = incoming_uri(&junk)?;
        let mut vm = BareQemu::spawn_in(dir, Some(&uri))?;
        // QEMU exits once it fails to load the stream; QMP either reports
        // a non-paused state or the connection closes.
        let res = match QmpClient::connect_retry(&vm.qmp, T).await {
            Ok(mut q) => q.wait_incoming(T).await.map(drop),
            Err(e) => Err(e),
        };
        match res {
            Err(QmpError::MigrationFailed(_) | QmpError::Closed | QmpError::Io(_)) => {}
            Err(QmpError::Connect { .. } | QmpError::Timeout { .. })
                if vm.wait_exit(T).is_some() => {}
            other => return Err(format!("expected a failed restore, got {other:?}").into()),
        }
        Ok(())
    })
}

fn quit_ends_the_process() -> TestResult {
    block_on(async {
        let mut vm = BareQemu::spawn(None)?;
        let q = connect(&vm).await?;
        q.quit().await?;
        match vm.wait_exit(T) {
            Some(st) if st.success() => Ok(()),
            other => Err(format!("QEMU after quit: {other:?}").into()),
        }
    })
}

fn garbage_peer_is_a_typed_error() -> TestResult {
    block_on(async {
        let dir = tempfile::tempdir()?;
        let sock = dir.path().join("fake.sock");
        let listener = tokio::net::UnixListener::bind(&sock)?;
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"{\"not\": \"qmp\"}\r\n").await;
            }
        });
        let res = QmpClient::connect(&sock).await;
        server.abort();
        if !matches!(res, Err(QmpError::Greeting(_))) {
            return Err(format!("expected a greeting error, got {res:?}").into());
        }
        let missing = QmpClient::connect(&dir.path().join("missing.sock")).await;
        if !matches!(missing, Err(QmpError::Connect { .. })) {
            return Err(format!("expected a connect error, got {missing:?}").into());
        }
        Ok(())
    })
}

fn main() {
    let args = Arguments::from_args();
    let skip = bare_qemu::skip_reason();
    if let Some(reason) = &skip {
        eprintln!("skipping QEMU tests: {reason}");
    }
    let qemu_tests: [NamedTest; 8] = [
        ("greeting_and_status", greeting_and_status),
        (
            "stop_and_cont_change_state_and_emit_events",
            stop_and_cont_change_state_and_emit_events,
        ),
        (
            "unknown_command_is_a_typed_error",
            unknown_command_is_a_typed_error,
        ),
        (
            "late_reply_after_timeout_is_skipped",
            late_reply_after_timeout_is_skipped,
        ),
        ("snapshot_to_file_and_restore", snapshot_to_file_and_restore),
        (
            "migration_to_unwritable_path_fails",
            migration_to_unwritable_path_fails,
        ),
        (
            "restore_from_garbage_fails_cleanly",
            restore_from_garbage_fails_cleanly,
        ),
        ("quit_ends_the_process", quit_ends_the_process),
    ];
    let mut trials: Vec<Trial> = qemu_tests
        .into_iter()
        .map(|(name, f)| Trial::test(name, f).with_ignored_flag(skip.is_some()))
        .collect();
    trials.push(Trial::test(
        "garbage_peer_is_a_typed_error",
        garbage_peer_is_a_typed_error,
    ));
    libtest_mimic::run(&args, trials).exit();
}
