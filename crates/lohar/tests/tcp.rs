//! The client's TCP connector, through a loopback TCP → Unix proxy in front
//! of lohar's test-mode sockets (lohar listens on TCP only inside a VM);
//! and a reused connection the agent's side closed while it was idle.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bhatti_agent::{Client, ExecOptions, TcpConnector};
use common::{Lohar, SOON};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::task::JoinHandle;

type Relays = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// Accepts on a loopback port and relays each connection to `target`.
async fn proxy(target: PathBuf) -> u16 {
    cuttable_proxy(target).await.0
}

/// [`proxy`], with the relays of its open connections: aborting one
/// closes both of its sockets.
async fn cuttable_proxy(target: PathBuf) -> (u16, Relays) {
    let ln = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ln.local_addr().unwrap().port();
    let relays = Relays::default();
    let open = relays.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = ln.accept().await {
            let target = target.clone();
            let relay = tokio::spawn(async move {
                let mut unix = UnixStream::connect(&target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
            });
            open.lock().unwrap().push(relay);
        }
    });
    (port, relays)
}

/// A streamed exec, which cannot be sent again once its output is read,
/// passes over a pooled TCP connection that the agent's side closed while
/// it was idle (over TCP, unlike a Unix socket, a write to it still
/// succeeds: only a look before the write can tell).
#[tokio::test]
async fn a_streamed_exec_skips_a_pooled_connection_closed_by_the_agent() {
    let l = Lohar::start().await;
    let (control, relays) = cuttable_proxy(l.control.clone()).await;
    let forward = proxy(l.forward.clone()).await;
    let c = Client::new(TcpConnector::with_ports(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        control,
        forward,
    ))
    .with_reuse();
    c.activity().await.unwrap();
    assert_eq!(c.idle_connections(), 1);
    for relay in relays.lock().unwrap().drain(..) {
        relay.abort();
    }
    // The runtime takes in the closed connection's end of file.
    tokio::time::sleep(Duration::from_millis(100)).await;
    common::streamed_echo(&c, "hi").await;
    assert_eq!(c.stale_connections(), 1, "the closed one was passed over");
}

#[tokio::test]
async fn exec_files_and_forward_over_tcp() {
    let l = Lohar::start().await;
    let control = proxy(l.control.clone()).await;
    let forward = proxy(l.forward.clone()).await;
    let c = Client::new(TcpConnector::with_ports(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        control,
        forward,
    ));
    c.wait_ready(SOON).await.unwrap();
    let r = c
        .exec(ExecOptions::new(["echo", "over", "tcp"]))
        .await
        .unwrap();
    assert_eq!(r.stdout, b"over tcp\n");

    let data = vec![0x5au8; 3 << 20];
    let path = l.spath("tcp.bin");
    c.write_file(&path, 0o600, data.len() as u64, &data[..])
        .await
        .unwrap();
    let body = c.read_file(&path, Default::default()).await.unwrap();
    assert!(body.read_all().await.unwrap() == data);

    // A tunnel to an echo-once server on loopback.
    let ln = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ln.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = ln.accept().await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
    });
    let mut t = c.forward(port).await.unwrap();
    t.write_all(b"through two relays").await.unwrap();
    t.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(SOON, t.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"through two relays");
}
