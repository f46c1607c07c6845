//! The scripted agent the client tests talk to: the other end of a real
//! Unix socket pair, speaking real frames (each test binary uses what it
//! needs of it).
#![allow(dead_code)]

use std::sync::Mutex;

use bhatti_agent::{BoxStream, Client, Connector, connector::ConnectFuture};
use bhatti_proto::{Frame, FrameType, async_io};
use tokio::net::UnixStream;

/// Hands out the client ends of prepared socket pairs, one per connect.
#[derive(Debug, Default)]
pub struct PairConnector {
    ends: Mutex<Vec<UnixStream>>,
}

impl Connector for PairConnector {
    fn connect(&self, _port: u16) -> ConnectFuture<'_> {
        let s = self.ends.lock().unwrap().pop();
        Box::pin(async move {
            s.map(|s| Box::new(s) as BoxStream)
                .ok_or_else(|| std::io::Error::other("no more scripted connections"))
        })
    }
}

/// A client (with `token`, if any) whose single connection is served by
/// `script`.
pub fn scripted_with<F, Fut>(
    token: Option<&str>,
    script: F,
) -> (Client, tokio::task::JoinHandle<()>)
where
    F: FnOnce(UnixStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (client_end, agent_end) = UnixStream::pair().unwrap();
    let conn = PairConnector {
        ends: Mutex::new(vec![client_end]),
    };
    let mut c = Client::new(conn);
    if let Some(t) = token {
        c = c.with_token(t);
    }
    (c, tokio::spawn(script(agent_end)))
}

/// A client (no token) whose first `n` connections, in the order it makes
/// them, are served by `script`.
pub fn scripted_conns<F, Fut>(n: usize, script: F) -> (Client, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Vec<UnixStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (mut client_ends, agent_ends): (Vec<_>, Vec<_>) =
        (0..n).map(|_| UnixStream::pair().unwrap()).unzip();
    // Handed out from the back.
    client_ends.reverse();
    let conn = PairConnector {
        ends: Mutex::new(client_ends),
    };
    (Client::new(conn), tokio::spawn(script(agent_ends)))
}

/// [`scripted_with`] without a token.
pub fn scripted<F, Fut>(script: F) -> (Client, tokio::task::JoinHandle<()>)
where
    F: FnOnce(UnixStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    scripted_with(None, script)
}

pub async fn recv(s: &mut UnixStream) -> Frame {
    async_io::read_frame(s).await.unwrap().expect("a frame")
}

pub async fn send(s: &mut UnixStream, kind: FrameType, payload: &[u8]) {
    async_io::write_frame(s, kind, payload).await.unwrap();
}
