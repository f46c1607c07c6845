//! Listening TCP ports of a guest, read from its `/proc/net/tcp{,6}`
//! through the agent (one buffered exec), without the agent's own ports.
//!
//! # Threads, locks, I/O
//! One agent exec, made with no engine lock held (see [`super::ops`]).

use bhatti_proto::{CONTROL_PORT, FORWARD_PORT};

/// The command that prints the guest's TCP tables.
pub(super) const COMMAND: [&str; 3] = ["cat", "/proc/net/tcp", "/proc/net/tcp6"];

/// TCP state code of a listening socket in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// Parses `/proc/net/tcp` and `/proc/net/tcp6` text into the sorted,
/// de-duplicated listening ports, leaving out lohar's ports. Malformed
/// lines are skipped.
pub fn parse_listening(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?;
            let local = fields.next()?;
            let _remote = fields.next()?;
            let state = fields.next()?;
            if state != LISTEN {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .filter(|p| *p != CONTROL_PORT && *p != FORWARD_PORT)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_are_parsed_and_agent_ports_dropped() {
        let text = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0400 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 00000000:0401 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 3 1
   3: 020DD50A:0400 010DD50A:B3A2 01 00000000:00000000 00:00000000 00000000     0        0 4 1
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0
garbage
   9: zz:zz 00000000:0000 0A
";
        assert_eq!(parse_listening(text), vec![22, 8080]);
        assert!(parse_listening("").is_empty());
    }
}
