//! Network interfaces: bring `lo` and the guest NIC up, and assign the
//! `ip=` address and default route when the kernel's autoconfig did not.
//! Plain ioctls on an AF_INET datagram socket (the whole interface API a
//! microVM needs; no netlink).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::cmdline::IpConfig;

/// Why an interface could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{iface}: {op}: {source}")]
    Ioctl {
        iface: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("interface name {0:?} is too long")]
    Name(String),
    #[error("socket: {0}")]
    Socket(#[source] io::Error),
}

fn socket() -> Result<OwnedFd, NetError> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(NetError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> Result<libc::ifreq, NetError> {
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() {
        return Err(NetError::Name(name.to_owned()));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn ioctl(
    fd: &OwnedFd,
    op: libc::Ioctl,
    req: &mut libc::ifreq,
    iface: &str,
    what: &'static str,
) -> Result<(), NetError> {
    // SAFETY: `req` is a valid ifreq for the SIOC* request `op`, which
    // reads and writes only within it.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), op, std::ptr::from_mut(req)) };
    if r < 0 {
        return Err(NetError::Ioctl {
            iface: iface.to_owned(),
            op: what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Sets IFF_UP on `iface`.
pub fn bring_up(iface: &str) -> Result<(), NetError> {
    let fd = socket()?;
    let mut req = ifreq(iface)?;
    ioctl(&fd, libc::SIOCGIFFLAGS, &mut req, iface, "get flags")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(&fd, libc::SIOCSIFFLAGS, &mut req, iface, "set flags")
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux and
    // sockaddr_in is a valid bit pattern for sockaddr.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Whether `iface` has an IPv4 address.
fn has_address(fd: &OwnedFd, iface: &str) -> Result<bool, NetError> {
    let mut req = ifreq(iface)?;
    match ioctl(fd, libc::SIOCGIFADDR, &mut req, iface, "get address") {
        Ok(()) => Ok(true),
        Err(NetError::Ioctl { source, .. })
            if source.raw_os_error() == Some(libc::EADDRNOTAVAIL) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Assigns the `ip=` address, netmask and default route to `iface` when it
/// has no IPv4 address yet (the kernel's autoconfig did not run).
pub fn ensure_address(iface: &str, ip: &IpConfig) -> Result<(), NetError> {
    let Some(client) = ip.client else {
        return Ok(());
    };
    let fd = socket()?;
    if has_address(&fd, iface)? {
        return Ok(());
    }
    crate::log!("{iface}: assigning {client} (kernel autoconfig did not)");
    let mut req = ifreq(iface)?;
    req.ifr_ifru.ifru_addr = sockaddr(client);
    ioctl(&fd, libc::SIOCSIFADDR, &mut req, iface, "set address")?;
    if let Some(mask) = ip.netmask {
        let mut req = ifreq(iface)?;
        req.ifr_ifru.ifru_netmask = sockaddr(mask);
        ioctl(&fd, libc::SIOCSIFNETMASK, &mut req, iface, "set netmask")?;
    }
    bring_up(iface)?;
    if let Some(gw) = ip.gateway {
        // SAFETY: rtentry is plain old data; all-zero is valid.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort;
        // SAFETY: `rt` is a valid rtentry for SIOCADDRT, which only reads it.
        let r =
            unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCADDRT, std::ptr::from_mut(&mut rt)) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(NetError::Ioctl {
                    iface: iface.to_owned(),
                    op: "add default route",
                    source: e,
                });
            }
        }
    }
    Ok(())
}
