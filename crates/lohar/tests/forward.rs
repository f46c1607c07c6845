//! Forward: raw relay to a loopback TCP port, half-close, refused port,
//! and a server whose accept queue stays full for longer than the kernel
//! resends a dropped SYN in time for.
#![allow(clippy::unwrap_used)]

mod common;

use bhatti_agent::Error;
use common::{Lohar, SOON};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

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
        Error::Agent(f) => assert!(f.message.contains("refused"), "{f}"),
        other => panic!("expected an agent error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_full_accept_queue_that_drains_late_is_still_reached() {
    let l = Lohar::start().await;
    // A listener with a backlog of 1 that does not accept yet: fill its
    // accept queue until a connect gets no answer (the kernel dropped its
    // SYN), as a burst does to busybox httpd's backlog of 9.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let ln = sock.listen(1).unwrap();
    let port = ln.local_addr().unwrap().port();
    let mut queued = Vec::new();
    loop {
        let c = TcpStream::connect(("127.0.0.1", port));
        match tokio::time::timeout(std::time::Duration::from_millis(300), c).await {
            Ok(s) => queued.push(s.unwrap()),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let tunnel = tokio::spawn({
        let c = l.client.clone();
        async move { c.forward(port).await }
    });
    // The kernel resends a dropped SYN 1, 3, 7 and 15 s after the first:
    // a queue that drains at 8 s is past its 7 s resend.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    drop(queued);
    let server = tokio::spawn(async move {
        loop {
            let (mut s, _) = ln.accept().await.unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 5];
                if s.read_exact(&mut b).await.is_ok() {
                    let _ = s.write_all(&b).await;
                }
            });
        }
    });
    let mut t = tokio::time::timeout(SOON, tunnel)
        .await
        .expect("dial ended")
        .unwrap()
        .expect("tunnel to the drained server");
    t.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    tokio::time::timeout(SOON, t.read_exact(&mut got))
        .await
        .expect("echo")
        .unwrap();
    assert_eq!(&got, b"hello");
    server.abort();
}
