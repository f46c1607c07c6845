//! Network interfaces: bring `lo` and the guest NIC up, and assign the
//! `ip=` address and default route when the kernel's autoconfig did not;
//! for an identify ([`crate::identify`]), set the NIC's MAC and replace
//! its address and default route.
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
    #[error("prefix length {0} is over 32")]
    Prefix(u8),
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
    set_address(&fd, iface, client, ip.netmask)?;
    bring_up(iface)?;
    if let Some(gw) = ip.gateway {
        add_default_route(&fd, iface, gw)?;
    }
    Ok(())
}

/// Replaces `iface`'s IPv4 address and netmask (`prefix_len` bits) and
/// adds the default route via `gateway` again (replacing the address drops
/// the routes through it). The same address and mask again change nothing.
pub fn replace_address(
    iface: &str,
    ip: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    let mask = netmask(prefix_len).ok_or(NetError::Prefix(prefix_len))?;
    let fd = socket()?;
    set_address(&fd, iface, ip, Some(mask))?;
    bring_up(iface)?;
    add_default_route(&fd, iface, gateway)
}

/// The netmask of a prefix length, `None` over 32.
pub fn netmask(prefix_len: u8) -> Option<Ipv4Addr> {
    match prefix_len {
        0 => Some(Ipv4Addr::UNSPECIFIED),
        1..=32 => Some(Ipv4Addr::from(u32::MAX << (32 - prefix_len))),
        _ => None,
    }
}

fn set_address(
    fd: &OwnedFd,
    iface: &str,
    ip: Ipv4Addr,
    mask: Option<Ipv4Addr>,
) -> Result<(), NetError> {
    let mut req = ifreq(iface)?;
    req.ifr_ifru.ifru_addr = sockaddr(ip);
    ioctl(fd, libc::SIOCSIFADDR, &mut req, iface, "set address")?;
    if let Some(mask) = mask {
        let mut req = ifreq(iface)?;
        req.ifr_ifru.ifru_netmask = sockaddr(mask);
        ioctl(fd, libc::SIOCSIFNETMASK, &mut req, iface, "set netmask")?;
    }
    Ok(())
}

/// Adds the default route via `gw`; one already there is fine.
fn add_default_route(fd: &OwnedFd, iface: &str, gw: Ipv4Addr) -> Result<(), NetError> {
    // SAFETY: rtentry is plain old data; all-zero is valid.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr(gw);
    rt.rt_flags = (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort;
    // SAFETY: `rt` is a valid rtentry for SIOCADDRT, which only reads it.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCADDRT, std::ptr::from_mut(&mut rt)) };
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
    Ok(())
}

/// Sets `iface`'s MAC address. Live when the driver allows it (virtio-net
/// does); a driver that answers EBUSY gets it with the link down for the
/// moment.
pub fn set_mac(iface: &str, mac: [u8; 6]) -> Result<(), NetError> {
    let fd = socket()?;
    let mut req = ifreq(iface)?;
    let mut data = [0 as libc::c_char; 14];
    for (d, b) in data.iter_mut().zip(mac) {
        *d = b as libc::c_char;
    }
    req.ifr_ifru.ifru_hwaddr = libc::sockaddr {
        sa_family: libc::ARPHRD_ETHER,
        sa_data: data,
    };
    let set = |req: &mut libc::ifreq| ioctl(&fd, libc::SIOCSIFHWADDR, req, iface, "set MAC");
    match set(&mut req) {
        Err(NetError::Ioctl { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            set_up(&fd, iface, false)?;
            let res = set(&mut req);
            set_up(&fd, iface, true)?;
            res
        }
        other => other,
    }
}

/// Sets or clears IFF_UP on `iface`.
fn set_up(fd: &OwnedFd, iface: &str, up: bool) -> Result<(), NetError> {
    let mut req = ifreq(iface)?;
    ioctl(fd, libc::SIOCGIFFLAGS, &mut req, iface, "get flags")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let up_flag = libc::IFF_UP as libc::c_short;
    req.ifr_ifru.ifru_flags = if up {
        flags | up_flag
    } else {
        flags & !up_flag
    };
    ioctl(fd, libc::SIOCSIFFLAGS, &mut req, iface, "set flags")
}

#[cfg(test)]
mod netns_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_of_prefix_lengths() {
        assert_eq!(netmask(24), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(netmask(32), Some(Ipv4Addr::BROADCAST));
        assert_eq!(netmask(1), Some(Ipv4Addr::new(128, 0, 0, 0)));
        assert_eq!(netmask(0), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(netmask(33), None);
        assert_eq!(netmask(255), None);
    }
}
