//! Forward: raw relay to a loopback TCP port, half-close, refused port.
#![allow(clippy::unwrap_used)]

mod common;

use bhatti_agent::Error;
use common::{Lohar, SOON};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An echo server on 127.0.0.1 that echoes until EOF, then writes `bye`
/// and closes (so half-close must be relayed both ways).
async fn echo_server() -> u16 {
    let ln = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ln.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = ln.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.write_all(b"bye").await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn relays_raw_bytes_and_half_close() {
    let l = Lohar::start().await;
    let port = echo_server().await;
    let mut s = l.client.forward(port).await.unwrap();
    // Bytes that look like frames must pass through untouched.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 256) as u8).collect();
    let (mut r, mut w) = tokio::io::split(&mut s);
    let writer = async {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap(); // half-close towards the server
    };
    let reader = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let (_, got) = tokio::time::timeout(SOON, async { tokio::join!(writer, reader) })
        .await
        .expect("relay finished");
    assert_eq!(got.len(), data.len() + 3);
    assert!(got[..data.len()] == data[..], "relayed bytes differ");
    assert_eq!(
        &got[data.len()..],
        b"bye",
        "server's reply after our half-close"
    );
}

#[tokio::test]
async fn several_tunnels_at_once() {
    let l = Lohar::start().await;
    let port = echo_server().await;
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let c = l.client.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.forward(port).await.unwrap();
            let msg = vec![i; 10_000];
            s.write_all(&msg).await.unwrap();
            s.shutdown().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(&got[..10_000], &msg[..]);
        }));
    }
    for t in tasks {
        tokio::time::timeout(SOON, t).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn refused_port_is_an_error() {
    let l = Lohar::start().await;
    // Bind then drop to get a port nobody listens on.
    let port = {
        let ln = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        ln.local_addr().unwrap().port()
    };
    let err = l.client.forward(port).await.unwrap_err();
    match err {
        Error::Agent(m) => assert!(m.contains("refused"), "{m}"),
        other => panic!("expected an agent error, got {other:?}"),
    }
}
