//! Transports: how the client reaches an agent port.
//!
//! A [`Connector`] turns an agent port ([`CONTROL_PORT`], [`FORWARD_PORT`])
//! into a byte stream. It is object safe and holds no connection state, so
//! one `Arc<dyn Connector>` is shared by every operation of a client; each
//! operation opens its own connection (the protocol is one request per
//! connection), unless the client reuses them ([`crate::pool`]). Implementations here: Unix sockets (lohar's test mode) and
//! TCP. Others (TCP inside a network namespace, vsock) live with the code
//! that knows how to reach them.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;

use bhatti_proto::{CONTROL_PORT, FORWARD_PORT};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// A bidirectional byte stream to one agent port. `shutdown` must half-close
/// the write side (both `UnixStream` and `TcpStream` do).
pub trait AgentStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> AgentStream for T {}

/// A boxed [`AgentStream`], what connectors return.
pub type BoxStream = Box<dyn AgentStream>;

/// The future returned by [`Connector::connect`].
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxStream>> + Send + 'a>>;

/// Opens connections to an agent's ports.
pub trait Connector: Send + Sync + fmt::Debug {
    /// Connects to `port` of the agent.
    fn connect(&self, port: u16) -> ConnectFuture<'_>;
}

/// Reaches lohar in test mode: the control port is one Unix socket, the
/// forward port another.
#[derive(Debug, Clone)]
pub struct UnixConnector {
    control: PathBuf,
    forward: PathBuf,
}

impl UnixConnector {
    pub fn new(control: impl Into<PathBuf>, forward: impl Into<PathBuf>) -> Self {
        Self {
            control: control.into(),
            forward: forward.into(),
        }
    }
}

impl Connector for UnixConnector {
    fn connect(&self, port: u16) -> ConnectFuture<'_> {
        Box::pin(async move {
            let path = match port {
                CONTROL_PORT => &self.control,
                FORWARD_PORT => &self.forward,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("no Unix socket for agent port {other}"),
                    ));
                }
            };
            let s = UnixStream::connect(path).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}

/// Reaches an agent over TCP at `ip:port`. The agent ports map to host
/// ports one to one by default; [`TcpConnector::with_ports`] remaps them
/// (QEMU user-mode `hostfwd`, a proxy).
#[derive(Debug, Clone, Copy)]
pub struct TcpConnector {
    ip: IpAddr,
    control: u16,
    forward: u16,
}

impl TcpConnector {
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip,
            control: CONTROL_PORT,
            forward: FORWARD_PORT,
        }
    }

    /// Connects to `control` for [`CONTROL_PORT`] and to `forward` for
    /// [`FORWARD_PORT`]; other ports are used as given.
    pub fn with_ports(ip: IpAddr, control: u16, forward: u16) -> Self {
        Self {
            ip,
            control,
            forward,
        }
    }
}

impl Connector for TcpConnector {
    fn connect(&self, port: u16) -> ConnectFuture<'_> {
        let port = match port {
            CONTROL_PORT => self.control,
            FORWARD_PORT => self.forward,
            other => other,
        };
        let addr = SocketAddr::new(self.ip, port);
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}
