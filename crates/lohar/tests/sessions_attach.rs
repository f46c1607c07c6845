//! Detach, reattach, scrollback replay (including ring wrap and order) and
//! displacement of an attached client.
#![allow(clippy::unwrap_used)]

mod common;

use bhatti_agent::{Event, ShellOptions};
use common::{Lohar, SOON, contains, eventually, read_to_exit, read_until};

/// A session that prints `before`, waits for `gate`, prints
/// `while-detached`, touches `written`, then echoes its input.
fn gated(l: &Lohar) -> ShellOptions {
    let script = format!(
        "echo before; while [ ! -e '{g}' ]; do sleep 0.01; done; echo while-detached; touch '{w}'; exec cat",
        g = l.path("gate").display(),
        w = l.path("written").display()
    );
    ShellOptions::new(["/bin/sh", "-c", &script])
}

#[tokio::test]
async fn reattach_replays_scrollback_before_live_output() {
    let l = Lohar::start().await;
    let mut s = l.client.shell(&gated(&l)).await.unwrap();
    read_until(&mut s.events, |o| contains(o, "before")).await;
    let id = s.id().to_owned();
    drop(s); // detach

    std::fs::write(l.path("gate"), b"").unwrap();
    let written = l.path("written");
    assert!(eventually(SOON, || written.exists()).await);

    let mut s = l.client.attach(&id).await.unwrap();
    assert_eq!(s.info.session_id, id);
    assert!(s.info.running && s.info.attached);
    // First event: the whole scrollback, in order, as one frame.
    let first = match tokio::time::timeout(SOON, s.next()).await.unwrap().unwrap() {
        Some(Event::Stdout(b)) => b,
        other => panic!("expected scrollback, got {other:?}"),
    };
    let text = String::from_utf8_lossy(&first).into_owned();
    let b = text
        .find("before")
        .expect("scrollback has pre-detach output");
    let d = text
        .find("while-detached")
        .expect("scrollback has output made while detached");
    assert!(b < d, "scrollback out of order: {text:?}");

    s.write(b"live-line\n").await.unwrap();
    let live = read_until(&mut s.events, |o| contains(o, "live-line\r\nlive-line")).await;
    assert!(!contains(&live, "before"), "scrollback replayed twice");
    l.client.kill_session(&id).await.unwrap();
}

#[tokio::test]
async fn second_attach_displaces_the_first() {
    let l = Lohar::start().await;
    let mut first = l
        .client
        .shell(&ShellOptions::new(["/bin/cat"]))
        .await
        .unwrap();
    let id = first.id().to_owned();
    let mut second = l.client.attach(&id).await.unwrap();
    assert!(second.info.attached);
    // The displaced client gets EXIT.
    let ended = tokio::time::timeout(SOON, async {
        loop {
            match first.next().await {
                Ok(Some(Event::Exit(_))) => return true,
                Ok(Some(Event::Stdout(_))) => continue,
                _ => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(ended, "displaced client did not get EXIT");
    // The new one drives the session.
    second.write(b"ping-2\n").await.unwrap();
    read_until(&mut second.events, |o| contains(o, "ping-2\r\nping-2")).await;
    l.client.kill_session(&id).await.unwrap();
}

#[tokio::test]
async fn attach_to_an_exited_session_replays_then_exits() {
    let l = Lohar::start().await;
    let mut s = l
        .client
        .shell(&ShellOptions::new([
            "/bin/sh",
            "-c",
            "echo last-words; exit 9",
        ]))
        .await
        .unwrap();
    let id = s.id().to_owned();
    let (_, code) = read_to_exit(&mut s.events).await;
    assert_eq!(code, 9);
    drop(s);
    let mut s = l.client.attach(&id).await.unwrap();
    assert!(!s.info.running);
    assert_eq!(s.info.exit_code, Some(9));
    let (out, code) = read_to_exit(&mut s.events).await;
    assert!(contains(&out, "last-words"));
    assert_eq!(code, 9);
}

#[tokio::test]
async fn ring_buffer_keeps_the_last_64k_in_order() {
    let l = Lohar::start().await;
    let done = l.path("done");
    // 6000 numbered lines of 32 bytes (+CR on the TTY): ~198 KB > 64 KiB.
    let script = format!(
        "seq -f '%08g-ring-buffer-line-padding' 1 6000; touch '{}'; exec sleep 30",
        done.display()
    );
    let s = l
        .client
        .shell(&ShellOptions::new(["/bin/sh", "-c", &script]))
        .await
        .unwrap();
    let id = s.id().to_owned();
    drop(s);
    assert!(eventually(SOON, || done.exists()).await);
    let mut s = l.client.attach(&id).await.unwrap();
    let ring = match tokio::time::timeout(SOON, s.next()).await.unwrap().unwrap() {
        Some(Event::Stdout(b)) => b,
        other => panic!("expected scrollback, got {other:?}"),
    };
    assert!(
        ring.len() <= 64 * 1024,
        "scrollback of {} bytes",
        ring.len()
    );
    assert!(
        ring.len() >= 60 * 1024,
        "scrollback of {} bytes after wrap",
        ring.len()
    );
    let text = String::from_utf8_lossy(&ring);
    // Drop the first (possibly cut) line; the rest is consecutive and ends
    // with the last line printed.
    let nums: Vec<u32> = text
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.strip_suffix("-ring-buffer-line-padding")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("garbled line {l:?}"))
        })
        .collect();
    assert_eq!(nums.last(), Some(&6000));
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "lines out of order"
    );
    assert!(nums.len() > 1800, "only {} lines kept", nums.len());
    l.client.kill_session(&id).await.unwrap();
}
