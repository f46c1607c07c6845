//! The guest IP pool of one /24 bridge subnet: `.1` is the bridge (the
//! gateway), guests get `.2`–`.254`.
//!
//! Allocation hands out the lowest free address, so a released address is
//! reused first. On recovery the engine re-marks the addresses of existing
//! sandboxes with [`IpPool::mark_in_use`] before allocating anything.
//!
//! # Threads, locks, I/O
//! Plain data, no I/O; the owner ([`super::Network`]) keeps it behind a
//! short-lived `std::sync::Mutex` (never held across an await).

use std::net::Ipv4Addr;

/// First and last guest host numbers.
pub const FIRST_HOST: u8 = 2;
pub const LAST_HOST: u8 = 254;

/// Errors from the IP pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("no free guest address left in {0}/24")]
    Exhausted(Ipv4Addr),
    #[error("{ip} is not a guest address of {subnet}/24 (.2-.254)")]
    OutOfRange { ip: Ipv4Addr, subnet: Ipv4Addr },
    #[error("{0} is already in use")]
    InUse(Ipv4Addr),
    #[error("{0} is not allocated")]
    NotAllocated(Ipv4Addr),
}

/// Guest addresses of one /24.
#[derive(Debug, Clone)]
pub struct IpPool {
    subnet: Ipv4Addr,
    used: [bool; 256],
}

impl IpPool {
    /// A pool for `subnet` (its last octet is ignored: always a /24).
    pub fn new(subnet: Ipv4Addr) -> Self {
        let [a, b, c, _] = subnet.octets();
        Self {
            subnet: Ipv4Addr::new(a, b, c, 0),
            used: [false; 256],
        }
    }

    /// The subnet's network address (`x.y.z.0`).
    pub fn subnet(&self) -> Ipv4Addr {
        self.subnet
    }

    /// The bridge's address (`x.y.z.1`), the guests' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// Takes the lowest free guest address.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, PoolError> {
        let n = (FIRST_HOST..=LAST_HOST)
            .find(|&n| !self.used[usize::from(n)])
            .ok_or(PoolError::Exhausted(self.subnet))?;
        self.used[usize::from(n)] = true;
        Ok(self.host(n))
    }

    /// Returns `ip` to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) -> Result<(), PoolError> {
        let n = self.index(ip)?;
        if !self.used[n] {
            return Err(PoolError::NotAllocated(ip));
        }
        self.used[n] = false;
        Ok(())
    }

    /// Marks `ip` taken (recovery of an existing sandbox).
    pub fn mark_in_use(&mut self, ip: Ipv4Addr) -> Result<(), PoolError> {
        let n = self.index(ip)?;
        if self.used[n] {
            return Err(PoolError::InUse(ip));
        }
        self.used[n] = true;
        Ok(())
    }

    /// Whether `ip` is currently allocated.
    pub fn is_in_use(&self, ip: Ipv4Addr) -> bool {
        self.index(ip).is_ok_and(|n| self.used[n])
    }

    /// How many guest addresses are allocated.
    pub fn in_use(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }

    fn host(&self, n: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet.octets();
        Ipv4Addr::new(a, b, c, n)
    }

    fn index(&self, ip: Ipv4Addr) -> Result<usize, PoolError> {
        let [a, b, c, d] = ip.octets();
        if Ipv4Addr::new(a, b, c, 0) != self.subnet || !(FIRST_HOST..=LAST_HOST).contains(&d) {
            return Err(PoolError::OutOfRange {
                ip,
                subnet: self.subnet,
            });
        }
        Ok(usize::from(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> IpPool {
        IpPool::new(Ipv4Addr::new(10, 99, 0, 7))
    }

    #[test]
    fn allocates_from_two_upwards_and_gateway_is_one() {
        let mut p = pool();
        assert_eq!(p.subnet(), Ipv4Addr::new(10, 99, 0, 0));
        assert_eq!(p.gateway(), Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(p.allocate(), Ok(Ipv4Addr::new(10, 99, 0, 2)));
        assert_eq!(p.allocate(), Ok(Ipv4Addr::new(10, 99, 0, 3)));
        assert_eq!(p.in_use(), 2);
    }

    #[test]
    fn released_address_is_reused_first() {
        let mut p = pool();
        let a = p.allocate();
        let b = p.allocate();
        let _c = p.allocate();
        assert_eq!(b, Ok(Ipv4Addr::new(10, 99, 0, 3)));
        assert_eq!(p.release(Ipv4Addr::new(10, 99, 0, 3)), Ok(()));
        assert!(!p.is_in_use(Ipv4Addr::new(10, 99, 0, 3)));
        assert_eq!(p.allocate(), b);
        assert_eq!(a, Ok(Ipv4Addr::new(10, 99, 0, 2)));
    }

    #[test]
    fn exhausts_after_253_and_recovers_on_release() {
        let mut p = pool();
        for _ in FIRST_HOST..=LAST_HOST {
            assert!(p.allocate().is_ok());
        }
        assert_eq!(p.allocate(), Err(PoolError::Exhausted(p.subnet())));
        assert_eq!(p.release(Ipv4Addr::new(10, 99, 0, 200)), Ok(()));
        assert_eq!(p.allocate(), Ok(Ipv4Addr::new(10, 99, 0, 200)));
    }

    #[test]
    fn mark_in_use_reserves_for_recovery() {
        let mut p = pool();
        assert_eq!(p.mark_in_use(Ipv4Addr::new(10, 99, 0, 2)), Ok(()));
        assert_eq!(p.mark_in_use(Ipv4Addr::new(10, 99, 0, 4)), Ok(()));
        assert_eq!(
            p.mark_in_use(Ipv4Addr::new(10, 99, 0, 4)),
            Err(PoolError::InUse(Ipv4Addr::new(10, 99, 0, 4)))
        );
        assert_eq!(p.allocate(), Ok(Ipv4Addr::new(10, 99, 0, 3)));
        assert_eq!(p.allocate(), Ok(Ipv4Addr::new(10, 99, 0, 5)));
    }

    #[test]
    fn bad_addresses_are_rejected() {
        let mut p = pool();
        for bad in [
            Ipv4Addr::new(10, 99, 1, 5),
            Ipv4Addr::new(10, 99, 0, 0),
            Ipv4Addr::new(10, 99, 0, 1),
            Ipv4Addr::new(10, 99, 0, 255),
        ] {
            assert!(matches!(
                p.mark_in_use(bad),
                Err(PoolError::OutOfRange { .. })
            ));
            assert!(matches!(p.release(bad), Err(PoolError::OutOfRange { .. })));
        }
        assert_eq!(
            p.release(Ipv4Addr::new(10, 99, 0, 9)),
            Err(PoolError::NotAllocated(Ipv4Addr::new(10, 99, 0, 9)))
        );
    }
}
