//! The kernel command line: the options lohar reads from it.
//!
//! - `bhatti.config=<device>`: the config drive (default `/dev/vdb`).
//! - `ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>`:
//!   the kernel's IP autoconfig argument; lohar uses the device name (to
//!   bring it up), and the address, gateway and DNS servers to finish the
//!   job when the kernel did not.

use std::net::Ipv4Addr;

/// Default config drive device.
pub const DEFAULT_CONFIG_DEVICE: &str = "/dev/vdb";

/// What lohar takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub config_device: String,
    pub ip: Option<IpConfig>,
}

/// The parts of `ip=` lohar uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpConfig {
    pub client: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub device: Option<String>,
    pub dns: Vec<Ipv4Addr>,
}

impl Cmdline {
    /// Parses a command line (space-separated words; no quoting needed for
    /// the options lohar reads).
    pub fn parse(line: &str) -> Self {
        let mut config_device = DEFAULT_CONFIG_DEVICE.to_owned();
        let mut ip = None;
        for word in line.split_whitespace() {
            if let Some(v) = word.strip_prefix("bhatti.config=") {
                if !v.is_empty() {
                    config_device = v.to_owned();
                }
            } else if let Some(v) = word.strip_prefix("ip=") {
                ip = IpConfig::parse(v);
            }
        }
        Self { config_device, ip }
    }

    /// Reads `/proc/cmdline` (defaults when unreadable).
    pub fn read() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }

    /// The network device to bring up besides `lo`.
    pub fn net_device(&self) -> String {
        self.ip
            .as_ref()
            .and_then(|i| i.device.clone())
            .unwrap_or_else(|| "eth0".to_owned())
    }
}

impl IpConfig {
    /// `None` for the keyword forms (`off`, `dhcp`, …) that carry no
    /// static configuration.
    fn parse(v: &str) -> Option<Self> {
        if !v.contains(':') {
            return None;
        }
        let f: Vec<&str> = v.split(':').collect();
        let addr = |i: usize| f.get(i).and_then(|s| s.parse::<Ipv4Addr>().ok());
        let device = f.get(5).filter(|s| !s.is_empty()).map(|s| (*s).to_owned());
        let dns = [7, 8].iter().filter_map(|i| addr(*i)).collect();
        Some(Self {
            client: addr(0),
            gateway: addr(2),
            netmask: addr(3),
            device,
            dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Cmdline::parse("console=ttyS0 quiet");
        assert_eq!(c.config_device, "/dev/vdb");
        assert_eq!(c.ip, None);
        assert_eq!(c.net_device(), "eth0");
    }

    #[test]
    fn config_device_and_full_ip() {
        let c = Cmdline::parse(
            "console=ttyS0 bhatti.config=/dev/vdc ip=10.0.0.5::10.0.0.1:255.255.255.0:box:eth1:off:1.1.1.1:8.8.8.8 rw",
        );
        assert_eq!(c.config_device, "/dev/vdc");
        let ip = c.ip.clone().expect("ip");
        assert_eq!(ip.client, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(ip.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(ip.netmask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(ip.device.as_deref(), Some("eth1"));
        assert_eq!(
            ip.dns,
            [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]
        );
        assert_eq!(c.net_device(), "eth1");
    }

    #[test]
    fn short_and_keyword_ip_forms() {
        let c = Cmdline::parse("ip=10.0.0.9::10.0.0.1:255.255.0.0");
        let ip = c.ip.expect("ip");
        assert_eq!(ip.client, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(ip.device, None);
        assert!(ip.dns.is_empty());
        assert_eq!(Cmdline::parse("ip=dhcp").ip, None);
        assert_eq!(Cmdline::parse("bhatti.config=").config_device, "/dev/vdb");
    }
}
