//! Address sets for peers: pod IPs and ipBlock CIDRs minus their `except` holes, kept as
//! ranges per family and written out sorted and merged as nft interval-set elements.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP family; nft matches each with its own expressions and set types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// nft's name of the address header (`ip`, `ip6`).
    pub fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// nft's type of an address (`ipv4_addr`, `ipv6_addr`).
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    /// Short name used in set and map names.
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    fn format(self, n: u128) -> String {
        match self {
            // V4 values never exceed u32::MAX (they come from Ipv4Addr or a 32-bit mask).
            Family::V4 => Ipv4Addr::from(n as u32).to_string(),
            Family::V6 => Ipv6Addr::from(n).to_string(),
        }
    }
}

fn number(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// The host part of a prefix of `len` bits in a family of `bits` bits.
fn host_mask(bits: u32, len: u32) -> u128 {
    let host = bits - len.min(bits);
    if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

/// A CIDR (`10.0.0.0/16`, `fd00::/64`; host bits are ignored) as a family and an inclusive range.
pub fn parse_cidr(cidr: &str) -> Option<(Family, u128, u128)> {
    let (addr, len) = cidr.trim().split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let family = Family::of(&ip);
    if len > family.bits() {
        return None;
    }
    let host = host_mask(family.bits(), len);
    let lo = number(&ip) & !host;
    Some((family, lo, lo | host))
}

/// Addresses of both families as inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrSet {
    ranges: Vec<(Family, u128, u128)>,
}

impl AddrSet {
    pub fn add_ip(&mut self, ip: &IpAddr) {
        let n = number(ip);
        self.ranges.push((Family::of(ip), n, n));
    }

    /// Add an ipBlock: `cidr` without the `except` CIDRs. An unparsable CIDR is an error
    /// (the API server's validation rejects those); an unparsable except is skipped.
    pub fn add_block(&mut self, cidr: &str, except: &[String]) -> Result<(), String> {
        let (family, lo, hi) = parse_cidr(cidr).ok_or_else(|| format!("bad CIDR {cidr:?}"))?;
        let mut pieces = vec![(lo, hi)];
        for hole in except.iter().filter_map(|e| parse_cidr(e)) {
            let (f, hlo, hhi) = hole;
            if f != family {
                continue;
            }
            pieces = pieces
                .into_iter()
                .flat_map(|(a, b)| {
                    let mut left = Vec::with_capacity(2);
                    if hhi < a || hlo > b {
                        left.push((a, b));
                    } else {
                        if hlo > a {
                            left.push((a, hlo - 1));
                        }
                        if hhi < b {
                            left.push((hhi + 1, b));
                        }
                    }
                    left
                })
                .collect();
        }
        self.ranges
            .extend(pieces.into_iter().map(|(a, b)| (family, a, b)));
        Ok(())
    }

    pub fn is_empty(&self, family: Family) -> bool {
        !self.ranges.iter().any(|(f, _, _)| *f == family)
    }

    /// The set's `family` addresses as nft elements: sorted, overlapping and adjacent
    /// ranges merged, each a single address, a CIDR or `lo-hi`.
    pub fn elements(&self, family: Family) -> Vec<String> {
        let mut ranges: Vec<(u128, u128)> = self
            .ranges
            .iter()
            .filter(|(f, _, _)| *f == family)
            .map(|(_, a, b)| (*a, *b))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some((_, hi)) if a <= hi.saturating_add(1) => *hi = (*hi).max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
            .into_iter()
            .map(|(a, b)| element(family, a, b))
            .collect()
    }
}

fn element(family: Family, lo: u128, hi: u128) -> String {
    if lo == hi {
        return family.format(lo);
    }
    let span = hi - lo;
    if span & span.wrapping_add(1) == 0 && lo & span == 0 {
        let len = family.bits() - span.count_ones();
        return format!("{}/{len}", family.format(lo));
    }
    format!("{}-{}", family.format(lo), family.format(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_lose_their_holes_and_ranges_merge() {
        let mut set = AddrSet::default();
        set.add_block("10.0.0.0/16", &["10.0.1.0/24".into(), "fd00::/8".into()])
            .unwrap();
        set.add_ip(&"10.0.1.7".parse().unwrap());
        set.add_ip(&"10.1.0.0".parse().unwrap());
        set.add_ip(&"fd00::1".parse().unwrap());
        assert_eq!(
            set.elements(Family::V4),
            ["10.0.0.0/24", "10.0.1.7", "10.0.2.0-10.1.0.0"]
        );
        assert_eq!(set.elements(Family::V6), ["fd00::1"]);
        assert!(set.add_block("10.0.0.0/33", &[]).is_err());
    }

    #[test]
    fn whole_spaces_and_host_bits() {
        let mut set = AddrSet::default();
        set.add_block("0.0.0.0/0", &[]).unwrap();
        set.add_block("::/0", &[]).unwrap();
        assert_eq!(set.elements(Family::V4), ["0.0.0.0/0"]);
        assert_eq!(set.elements(Family::V6), ["::/0"]);
        assert_eq!(parse_cidr("192.168.1.5/24"), {
            let lo = u128::from(u32::from(Ipv4Addr::new(192, 168, 1, 0)));
            Some((Family::V4, lo, lo + 255))
        });
        let mut holes = AddrSet::default();
        holes
            .add_block("10.0.0.0/24", &["10.0.0.0/24".into()])
            .unwrap();
        assert!(holes.is_empty(Family::V4));
    }
}
