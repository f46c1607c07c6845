//! TTY sessions: create, relay, resize, exit, list, kill, ids, init
//! session, concurrency, activity.
#![allow(clippy::unwrap_used)]

mod common;

use bhatti_agent::{ErrorCode, ShellOptions};
use bhatti_proto::config::GuestConfig;
use common::{
    Lohar, Options, SOON, alive, contains, eventually, read_to_exit, read_until, wait_file,
};

#[tokio::test]
async fn tty_create_relay_resize_exit() {
    let l = Lohar::start().await;
    let mut s = l
        .client
        .shell(&ShellOptions::new(["/bin/sh"]).size(30, 100))
        .await
        .unwrap();
    assert!(s.id().starts_with('s'), "id {}", s.id());
    assert!(s.info.tty && s.info.running && s.info.attached);
    assert_eq!(s.info.exit_code, None);
    assert_eq!(s.info.argv, "/bin/sh");

    s.write(b"stty size; tty\n").await.unwrap();
    let out = read_until(&mut s.events, |o| {
        contains(o, "30 100\r\n") && contains(o, "/dev/pts/")
    })
    .await;
    assert!(contains(&out, "30 100"));

    s.resize(40, 120).await.unwrap();
    s.write(b"stty size\n").await.unwrap();
    read_until(&mut s.events, |o| contains(o, "40 120\r\n")).await;

    s.write(b"echo sum-$((40+2))\n").await.unwrap();
    read_until(&mut s.events, |o| contains(o, "sum-42")).await;

    s.write(b"exit 5\n").await.unwrap();
    let (_, code) = read_to_exit(&mut s.events).await;
    assert_eq!(code, 5);
}

#[tokio::test]
async fn default_window_is_24_by_80() {
    let l = Lohar::start().await;
    let mut s = l
        .client
        .shell(&ShellOptions::new(["/bin/sh", "-c", "stty size"]))
        .await
        .unwrap();
    let (out, code) = read_to_exit(&mut s.events).await;
    assert_eq!(code, 0);
    assert!(
        contains(&out, "24 80"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test]
async fn session_env_and_cwd() {
    let l = Lohar::start().await;
    let dir = l.spath("");
    let mut s = l
        .client
        .shell(
            &ShellOptions::new(["/bin/sh", "-c", "echo \"$GREETING:$TERM:$(pwd)\""])
                .env("GREETING", "hi")
                .cwd(&dir),
        )
        .await
        .unwrap();
    let (out, _) = read_to_exit(&mut s.events).await;
    let want = format!("hi:xterm-256color:{}", dir.trim_end_matches('/'));
    assert!(contains(&out, &want), "{:?}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn kill_frame_sends_sigterm_to_the_session() {
    let l = Lohar::start().await;
    let mut s = l
        .client
        .shell(&ShellOptions::new([
            "/bin/sh",
            "-c",
            "echo up; exec sleep 30",
        ]))
        .await
        .unwrap();
    read_until(&mut s.events, |o| contains(o, "up")).await;
    s.kill().await.unwrap();
    let (_, code) = read_to_exit(&mut s.events).await;
    assert_eq!(code, 128 + 15);
}

#[tokio::test]
async fn list_shows_sessions_and_their_state() {
    let l = Lohar::start().await;
    assert!(l.client.list_sessions().await.unwrap().is_empty());
    let a = l
        .client
        .shell(&ShellOptions::new(["sleep", "30"]))
        .await
        .unwrap();
    let mut b = l
        .client
        .shell(&ShellOptions::new(["/bin/sh", "-c", "exit 3"]))
        .await
        .unwrap();
    assert_eq!(b.wait().await.unwrap(), 3);
    let a_id = a.id().to_owned();
    let b_id = b.id().to_owned();
    drop(b);
    let list = l.client.list_sessions().await.unwrap();
    let la = list
        .iter()
        .find(|s| s.session_id == a_id)
        .expect("a listed");
    assert!(la.running && la.attached && la.tty);
    assert_eq!(la.argv, "sleep 30");
    assert!(la.created_at > 1_600_000_000);
    let lb = list
        .iter()
        .find(|s| s.session_id == b_id)
        .expect("exited b still listed");
    assert!(!lb.running);
    assert_eq!(lb.exit_code, Some(3));

    drop(a);
    let detached = tokio::time::timeout(SOON, async {
        loop {
            let list = l.client.list_sessions().await.unwrap();
            if list.iter().any(|s| s.session_id == a_id && !s.attached) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    assert!(detached, "dropped client still counted as attached");
    l.client.kill_session(&a_id).await.unwrap();
}

#[tokio::test]
async fn kill_session_and_unknown_ids() {
    let l = Lohar::start().await;
    let pidfile = l.path("pid");
    let script = format!("echo $$ > '{}'; exec sleep 30", pidfile.display());
    let mut s = l
        .client
        .shell(&ShellOptions::new(["/bin/sh", "-c", &script]))
        .await
        .unwrap();
    let pid: i32 = wait_file(&pidfile).await.parse().unwrap();
    l.client.kill_session(s.id()).await.unwrap();
    let (_, code) = read_to_exit(&mut s.events).await;
    assert_eq!(code, 137, "EXEC_KILL is SIGKILL");
    assert!(eventually(SOON, || !alive(pid)).await);

    let err = l.client.kill_session("s999").await.unwrap_err();
    assert_eq!(err.agent_message(), Some("session not found"), "{err:?}");
    assert_eq!(err.agent_code(), Some(ErrorCode::SessionNotFound));
    let err = l.client.attach("nope").await.unwrap_err();
    assert_eq!(err.agent_message(), Some("session not found"), "{err:?}");
    assert_eq!(err.agent_code(), Some(ErrorCode::SessionNotFound));
}

#[tokio::test]
async fn session_ids_are_never_reused() {
    let l = Lohar::start().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut s = l
            .client
            .shell(&ShellOptions::new(["/bin/sh", "-c", "exit 0"]))
            .await
            .unwrap();
        assert_eq!(s.wait().await.unwrap(), 0);
        ids.push(s.id().to_owned());
        l.client.kill_session(s.id()).await.ok();
    }
    let nums: Vec<u64> = ids
        .iter()
        .map(|id| {
            id.strip_prefix('s')
                .and_then(|n| n.parse().ok())
                .expect("id sN")
        })
        .collect();
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "ids {ids:?}");
    assert_eq!(nums[0], 1, "first id is s1: {ids:?}");
}

#[tokio::test]
async fn idle_timer_kills_a_detached_session() {
    let l = Lohar::start().await;
    let pidfile = l.path("pid");
    let script = format!("echo $$ > '{}'; exec sleep 60", pidfile.display());
    let s = l
        .client
        .shell(&ShellOptions::new(["/bin/sh", "-c", &script]).max_idle_sec(1))
        .await
        .unwrap();
    let pid: i32 = wait_file(&pidfile).await.parse().unwrap();
    let id = s.id().to_owned();
    drop(s);
    assert!(
        eventually(SOON, || !alive(pid)).await,
        "idle detached session {id} not killed"
    );
    // The agent learns of the death from its reaper a moment after the
    // process is gone; the listing must follow (or drop the session).
    let end = std::time::Instant::now() + SOON;
    loop {
        let list = l.client.list_sessions().await.unwrap();
        match list.iter().find(|i| i.session_id == id) {
            Some(info) if info.running => {
                assert!(
                    std::time::Instant::now() < end,
                    "killed session {id} still listed as running"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            _ => break,
        }
    }
}

#[tokio::test]
async fn attached_session_is_not_idle_killed() {
    let l = Lohar::start().await;
    let mut s = l
        .client
        .shell(&ShellOptions::new(["/bin/cat"]).max_idle_sec(1))
        .await
        .unwrap();
    // Attached for longer than max_idle_sec: the timer only runs detached.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    s.write(b"still-here\n").await.unwrap();
    read_until(&mut s.events, |o| contains(o, "still-here\r\nstill-here")).await;
    l.client.kill_session(s.id()).await.unwrap();
}

#[tokio::test]
async fn init_session_runs_the_config_script() {
    let l = Lohar::start_with(Options {
        config: Some(GuestConfig {
            init: Some("echo init-$((6*7)); exec sleep 30".into()),
            ..GuestConfig::default()
        }),
        ..Options::default()
    })
    .await;
    let found = tokio::time::timeout(SOON, async {
        loop {
            let list = l.client.list_sessions().await.unwrap();
            if let Some(i) = list.into_iter().find(|i| i.session_id == "init") {
                return i;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("session `init` listed");
    assert!(found.tty);
    let mut s = l.client.attach("init").await.unwrap();
    read_until(&mut s.events, |o| contains(o, "init-42")).await;
    l.client.kill_session("init").await.unwrap();
}

#[tokio::test]
async fn concurrent_sessions_do_not_mix() {
    let l = Lohar::start().await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let c = l.client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.shell(&ShellOptions::new(["/bin/sh"])).await.unwrap();
            for round in 0..5 {
                let line = format!("echo tag-{i}-$((100+{round}))\n");
                s.write(line.as_bytes()).await.unwrap();
                let want = format!("tag-{i}-{}", 100 + round);
                let out = read_until(&mut s.events, |o| contains(o, &want)).await;
                for j in 0..6 {
                    if j != i {
                        assert!(!contains(&out, &format!("tag-{j}-")), "mixed output");
                    }
                }
            }
            s.write(b"exit\n").await.unwrap();
            read_to_exit(&mut s.events).await.1
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 0);
    }
}

#[tokio::test]
async fn activity_counts_sessions() {
    let l = Lohar::start().await;
    let before = l.client.activity().await.unwrap();
    assert_eq!(before.active_sessions, 0);
    assert_eq!(before.attached_sessions, 0);
    let s1 = l
        .client
        .shell(&ShellOptions::new(["sleep", "30"]))
        .await
        .unwrap();
    let s2 = l
        .client
        .shell(&ShellOptions::new(["sleep", "30"]))
        .await
        .unwrap();
    let (id1, id2) = (s1.id().to_owned(), s2.id().to_owned());
    drop(s2);
    let ok = tokio::time::timeout(SOON, async {
        loop {
            let a = l.client.activity().await.unwrap();
            if a.active_sessions == 2 && a.attached_sessions == 1 {
                return a;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("2 running sessions, 1 attached");
    assert!(ok.last_activity_unix >= before.last_activity_unix);
    assert!(ok.last_activity_unix > 1_600_000_000);
    l.client.kill_session(&id1).await.unwrap();
    l.client.kill_session(&id2).await.unwrap();
}
