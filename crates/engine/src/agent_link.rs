//! How the engine reaches guest agents, by the transport the driver chose
//! ([`crate::driver::AgentTransport`], see [`NetnsConnector::for_transport`]).
//! TCP over the guest's TAP is the one this host implements: sockets
//! created inside the sandbox network namespace, used from the engine's own
//! tokio runtime. A vsock or host Unix-socket transport is refused at
//! connect time with [`io::ErrorKind::Unsupported`] naming it.
//!
//! A socket belongs to the namespace it was created in, whatever thread
//! later uses it. [`SocketFactory`] keeps one thread parked inside the
//! namespace whose only job is `socket(2)`: a request crosses a channel, the
//! thread creates an unconnected non-blocking TCP socket and hands the fd
//! back, and the caller connects it with tokio (`TcpSocket::connect`).
//! That costs a channel round trip per connection instead of a thread
//! spawn plus `setns` per connection.
//!
//! # Threads, locks, I/O
//! One factory thread per engine (plus the scoped thread `NetNs::run`
//! uses), blocked on a std channel; it ends when the last
//! [`SocketFactory`] clone is dropped. No locks. [`NetnsConnector`] plugs
//! into the agent client ([`bhatti_agent::Connector`]).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::mpsc;

use bhatti_agent::connector::{BoxStream, ConnectFuture, Connector};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

use crate::driver::AgentTransport;
use crate::netns::{NetNs, NetnsError};

type Reply = oneshot::Sender<io::Result<OwnedFd>>;

/// Errors starting a socket factory.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("could not start the socket thread for namespace {name:?}")]
    Thread {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Creates TCP sockets inside one network namespace. Cheap to clone.
#[derive(Clone)]
pub struct SocketFactory {
    netns: String,
    tx: mpsc::Sender<Reply>,
}

impl fmt::Debug for SocketFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketFactory")
            .field("netns", &self.netns)
            .finish()
    }
}

impl SocketFactory {
    /// Starts the factory thread inside namespace `name` (which must exist).
    pub fn start(name: &str) -> Result<Self, LinkError> {
        let ns = NetNs::open(name)?;
        let (tx, rx) = mpsc::channel::<Reply>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), NetnsError>>();
        std::thread::Builder::new()
            .name(format!("sockets-{name}"))
            .spawn(move || {
                let failed_tx = ready_tx.clone();
                let res = ns.run(move || {
                    let _ = ready_tx.send(Ok(()));
                    for reply in rx {
                        let _ = reply.send(new_socket());
                    }
                });
                if let Err(e) = res {
                    // Entering the namespace failed before the loop ran.
                    let _ = failed_tx.send(Err(e));
                }
            })
            .map_err(|source| LinkError::Thread {
                name: name.to_owned(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                netns: name.to_owned(),
                tx,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(LinkError::Thread {
                name: name.to_owned(),
                source: io::Error::other("socket thread could not enter the namespace"),
            }),
        }
    }

    /// The namespace the sockets are made in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// A new unconnected TCP socket inside the namespace.
    pub async fn socket(&self) -> io::Result<TcpSocket> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(reply)
            .map_err(|_| io::Error::other("the namespace socket thread is gone"))?;
        let fd = rx
            .await
            .map_err(|_| io::Error::other("the namespace socket thread is gone"))??;
        Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(fd)))
    }

    /// Connects to `addr` from inside the namespace.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let stream = self.socket().await?.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn new_socket() -> io::Result<OwnedFd> {
    rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(io::Error::from)
}

/// Reaches a guest agent through the sandbox namespace, by the transport
/// its driver chose.
#[derive(Debug, Clone)]
pub struct NetnsConnector {
    transport: Option<AgentTransport>,
    sockets: SocketFactory,
}

impl NetnsConnector {
    /// TCP to the agent at `ip`.
    pub fn new(ip: Ipv4Addr, sockets: SocketFactory) -> Self {
        Self::for_transport(Some(AgentTransport::Tcp(ip)), sockets)
    }

    /// The agent of a VM whose driver said `transport`
    /// ([`crate::driver::Driver::agent_transport`]). Only TCP connects
    /// here; the others fail each connect with a clear error.
    pub fn for_transport(transport: Option<AgentTransport>, sockets: SocketFactory) -> Self {
        Self { transport, sockets }
    }
}

impl Connector for NetnsConnector {
    fn connect(&self, port: u16) -> ConnectFuture<'_> {
        Box::pin(async move {
            let ip = match &self.transport {
                Some(AgentTransport::Tcp(ip)) => *ip,
                Some(other) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("agent transport {other:?} is not supported by this host"),
                    ));
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "this VM has no channel to its agent",
                    ));
                }
            };
            let s = self
                .sockets
                .connect(SocketAddr::new(IpAddr::V4(ip), port))
                .await?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}
