//! The identify steps that only make sense in the VM (PID-1 mode): the
//! NIC's MAC and address ([`crate::init::net`]), the hostname, and fresh
//! entropy for the kernel's CRNG (the parent's and every sibling's
//! generator state is the same until then). Each step is tried; the
//! failures are returned as text for the result line.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use bhatti_proto::identify::Identity;

use crate::init::{apply, net};

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])` (the generic ioctl encoding
/// of x86_64 and aarch64, the guest architectures; libc does not have it).
const RNDADDENTROPY: libc::Ioctl = 0x4008_5203 as libc::Ioctl;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)` (Linux 4.17+).
const RNDRESEEDCRNG: libc::Ioctl = 0x5207 as libc::Ioctl;

/// Applies the VM steps of `id` on `iface`; returns what failed.
pub fn apply(iface: &str, id: &Identity) -> Vec<String> {
    let mut errors = Vec::new();
    let mut step = |what: &str, r: Result<(), String>| {
        if let Err(e) = r {
            crate::log!("identify: {what}: {e}");
            errors.push(format!("{what}: {e}"));
        }
    };
    step(
        "MAC",
        parse_mac(&id.mac)
            .ok_or_else(|| format!("{:?} is not a MAC address", super::printable(&id.mac)))
            .and_then(|mac| net::set_mac(iface, mac).map_err(|e| e.to_string())),
    );
    step(
        "address",
        net::replace_address(iface, id.ip, id.prefix_len, id.gateway).map_err(|e| e.to_string()),
    );
    step("hostname", set_hostname(&id.hostname));
    step(
        "entropy",
        id.entropy_bytes()
            .ok_or_else(|| "not hex".to_owned())
            .and_then(|bytes| add_entropy(&bytes).map_err(|e| e.to_string())),
    );
    errors
}

/// `aa:bb:cc:dd:ee:ff` (either case) as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Whether `name` can be a hostname: 1-64 bytes of letters, digits, `-`,
/// `.` and `_` (sandbox names may hold `_`; nothing that could break
/// `/etc/hosts`).
pub fn valid_hostname(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `sethostname`, `/etc/hostname` and `/etc/hosts`; an empty name keeps
/// the current one.
fn set_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Ok(());
    }
    if !valid_hostname(name) {
        return Err(format!(
            "{:?} is not a valid hostname",
            super::printable(name)
        ));
    }
    rustix::system::sethostname(name.as_bytes()).map_err(|e| format!("sethostname: {e}"))?;
    apply::write_hostname(Path::new("/"), name).map_err(|e| e.to_string())
}

/// Mixes `bytes` into the input pool, credited in full, then reseeds the
/// CRNG from it (kernels without `RNDRESEEDCRNG` reseed on their own
/// schedule).
fn add_entropy(bytes: &[u8]) -> io::Result<()> {
    let urandom = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let len = i32::try_from(bytes.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut info: Vec<i32> = vec![0; 2 + bytes.len().div_ceil(4)];
    info[0] = len.saturating_mul(8);
    info[1] = len;
    for (word, chunk) in info[2..].iter_mut().zip(bytes.chunks(4)) {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        *word = i32::from_ne_bytes(w);
    }
    // SAFETY: `info` is a rand_pool_info with `buf_size` bytes of buffer
    // after its two ints, which RNDADDENTROPY only reads; `urandom` is open.
    let r = unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    let r = unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG, 0) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:00:0a:00:00:05"), Some([2, 0, 0x0a, 0, 0, 5]));
        assert_eq!(
            parse_mac("AA:bb:CC:dd:EE:ff"),
            Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff])
        );
        for bad in [
            "",
            "02:00:0a:00:00",
            "02:00:0a:00:00:05:06",
            "2:00:0a:00:00:05",
            "zz:00:0a:00:00:05",
            "+2:00:0a:00:00:05",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn entropy_is_added_and_the_crng_reseeded() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: RNDADDENTROPY needs root");
            return;
        }
        // Real random bytes (the credit given to them is honest), an odd
        // length to cover the last partial word.
        let mut bytes = [0u8; 63];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").expect("urandom"),
            &mut bytes,
        )
        .expect("random bytes");
        add_entropy(&bytes).expect("RNDADDENTROPY and RNDRESEEDCRNG");
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(valid_hostname("child-1.example"));
        assert!(valid_hostname("my_box"));
        assert!(!valid_hostname(""));
        assert!(!valid_hostname("a b"));
        assert!(!valid_hostname("a#b"));
        assert!(!valid_hostname("a\n127.0.0.1 evil"));
        assert!(!valid_hostname(&"a".repeat(65)));
    }
}
