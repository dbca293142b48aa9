//! Pod addresses from the node's podCIDR, kept on disk as host-local keeps them: one file
//! per address in use, named by the address and holding the pod's uid, created with
//! O_EXCL so two pods never get one address. Files survive a crash and a restart; `gc`
//! frees what pods that are gone still hold, so no address leaks.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::pod::NetworkError;

/// An IPv4 subnet, e.g. 10.42.0.0/24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Subnet {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Subnet, NetworkError> {
        let bad = || NetworkError::Failed(format!("{s:?} is not an IPv4 subnet like 10.42.0.0/24"));
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(NetworkError::Failed(format!(
                "{s:?}: a pod subnet must be between /8 and /30"
            )));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(Subnet {
            base: Ipv4Addr::from(u32::from(base) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Subnet {
    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// The bridge's own address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// Addresses pods may get: every host address but the gateway.
    fn pod_range(&self) -> std::ops::Range<u32> {
        let base = u32::from(self.base);
        base + 2..base + self.size() - 1
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        u32::from(ip) & mask == u32::from(self.base)
    }
}

/// The allocator of one subnet.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    subnet: Subnet,
}

const LAST: &str = "last_reserved_ip";

impl Ipam {
    /// Addresses of `subnet`, recorded under `dir` (created if missing).
    pub fn new(dir: &Path, subnet: Subnet) -> Result<Ipam, NetworkError> {
        fs::create_dir_all(dir).map_err(NetworkError::io(format!("creating {}", dir.display())))?;
        Ok(Ipam {
            dir: dir.to_path_buf(),
            subnet,
        })
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// Every address in use and the pod uid holding it (only this subnet's).
    pub fn allocated(&self) -> Vec<(Ipv4Addr, String)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(Ipv4Addr, String)> = entries
            .flatten()
            .filter_map(|e| {
                let ip: Ipv4Addr = e.file_name().to_str()?.parse().ok()?;
                let uid = fs::read_to_string(e.path()).ok()?;
                Some((ip, uid.trim().to_string()))
            })
            .filter(|(ip, _)| self.subnet.contains(*ip))
            .collect();
        out.sort();
        out
    }

    /// The pod's address: the one it holds already, else the next free one after the last
    /// handed out (so a freed address is not reused at once).
    pub fn allocate(&self, uid: &str) -> Result<Ipv4Addr, NetworkError> {
        if let Some((ip, _)) = self.allocated().into_iter().find(|(_, u)| u == uid) {
            return Ok(ip);
        }
        let range = self.subnet.pod_range();
        let count = range.end - range.start;
        let last = fs::read_to_string(self.dir.join(LAST))
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|ip| range.contains(ip))
            .map_or(0, |ip| ip - range.start + 1);
        for i in 0..count {
            let ip = Ipv4Addr::from(range.start + (last + i) % count);
            let path = self.dir.join(ip.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(uid.as_bytes())
                        .map_err(NetworkError::io(format!("writing {}", path.display())))?;
                    fs::write(self.dir.join(LAST), ip.to_string())
                        .map_err(NetworkError::io("recording the last address"))?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(NetworkError::io(format!("creating {}", path.display()))(e)),
            }
        }
        Err(NetworkError::Exhausted(self.subnet.to_string()))
    }

    /// Free what the pod holds (nothing held is fine).
    pub fn release(&self, uid: &str) -> Result<(), NetworkError> {
        for (ip, _) in self.allocated().into_iter().filter(|(_, u)| u == uid) {
            let path = self.dir.join(ip.to_string());
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(NetworkError::io(format!("removing {}", path.display()))(e)),
            }
        }
        Ok(())
    }

    /// Free every address held by a pod not in `live`; returns the uids freed.
    pub fn gc(&self, live: &HashSet<String>) -> Result<Vec<String>, NetworkError> {
        let mut freed = Vec::new();
        for (_, uid) in self.allocated() {
            if !live.contains(&uid) && !freed.contains(&uid) {
                self.release(&uid)?;
                freed.push(uid);
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(dir: &Path, subnet: &str) -> Ipam {
        Ipam::new(dir, subnet.parse().unwrap()).unwrap()
    }

    #[test]
    fn subnets_parse_and_refuse_bad_input() {
        let s: Subnet = "10.42.3.7/24".parse().unwrap();
        assert_eq!(s.to_string(), "10.42.3.0/24");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 42, 3, 1));
        assert!(s.contains(Ipv4Addr::new(10, 42, 3, 200)));
        assert!(!s.contains(Ipv4Addr::new(10, 42, 4, 1)));
        for bad in ["10.42.0.0", "10.42.0.0/31", "x/24", "10.42.0.0/abc"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_unique_stable_per_pod_and_not_reused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.42.0.0/24");
        let a = ipam.allocate("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 42, 0, 2));
        assert_eq!(ipam.allocate("a").unwrap(), a);
        let b = ipam.allocate("b").unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 42, 0, 3));
        ipam.release("a").unwrap();
        ipam.release("a").unwrap();
        // The next pod gets the next address, not the one just freed.
        assert_eq!(ipam.allocate("c").unwrap(), Ipv4Addr::new(10, 42, 0, 4));
        // A new allocator on the same directory (a restart) sees what is held.
        let again = super::Ipam::new(dir.path(), ipam.subnet()).unwrap();
        assert_eq!(again.allocate("b").unwrap(), b);
        assert_eq!(again.allocated().len(), 2);
    }

    #[test]
    fn a_full_subnet_says_so_and_gc_frees_pods_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.42.0.0/29");
        // /29: 8 addresses, minus network, gateway and broadcast.
        for i in 0..5 {
            ipam.allocate(&format!("pod{i}")).unwrap();
        }
        let err = ipam.allocate("one-more").unwrap_err();
        assert!(
            err.to_string().contains("no address left in 10.42.0.0/29"),
            "{err}"
        );
        let live: HashSet<String> = ["pod1".to_string(), "pod3".to_string()].into();
        let mut freed = ipam.gc(&live).unwrap();
        freed.sort();
        assert_eq!(freed, ["pod0", "pod2", "pod4"]);
        assert_eq!(ipam.allocated().len(), 2);
        assert!(ipam.allocate("one-more").is_ok());
    }
}
