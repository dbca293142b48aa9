//! Name helpers for the cluster DNS: lookup keys (lowercase, no trailing dot), the dashed
//! address labels of pods and endpoints (`10-1-2-3`, `fd00--1`), and reverse names
//! (`d.c.b.a.in-addr.arpa`, the 32 nibbles of `ip6.arpa`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// The map key of a name: lowercase, without the trailing dot.
pub(crate) fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The map key of a query name.
pub(crate) fn key_of(name: &Name) -> String {
    key(&name.to_ascii())
}

/// A fully qualified name from a key (`None` if it is not a valid DNS name).
pub(crate) fn fqdn(key: &str) -> Option<Name> {
    let mut name = Name::from_ascii(key).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// An address as one DNS label: dots (IPv4) or colons (IPv6) turned into dashes.
pub(crate) fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The address a dashed label stands for (`1-2-3-4`, `fd00--1`).
pub(crate) fn undashed(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3
        && let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// Whether a key is under the reverse zones (`in-addr.arpa`, `ip6.arpa`).
pub(crate) fn is_reverse(key: &str) -> bool {
    key.ends_with(".in-addr.arpa") || key.ends_with(".ip6.arpa")
}

/// The address a complete reverse name stands for (`None` for partial or bad names).
pub(crate) fn from_reverse(key: &str) -> Option<IpAddr> {
    if let Some(rest) = key.strip_suffix(".in-addr.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        let mut octets = [0u8; 4];
        for (i, label) in labels.iter().rev().enumerate() {
            // Leading zeros and signs are not a reverse name's form.
            if label.is_empty() || (label.len() > 1 && label.starts_with('0')) {
                return None;
            }
            octets[i] = label.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let rest = key.strip_suffix(".ip6.arpa")?;
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.len() != 32 {
        return None;
    }
    let mut value: u128 = 0;
    for label in labels.iter().rev() {
        let mut chars = label.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return None;
        };
        value = (value << 4) | u128::from(c.to_digit(16)?);
    }
    Some(IpAddr::V6(Ipv6Addr::from(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_round_trips() {
        for ip in ["10.42.0.7", "fd00::1", "2001:db8::a:1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(undashed(&dashed(ip)), Some(ip));
        }
        assert_eq!(undashed("web-0"), None);
        assert_eq!(undashed("1-2-3"), None);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            from_reverse("10.0.43.10.in-addr.arpa"),
            Some("10.43.0.10".parse().unwrap())
        );
        assert_eq!(from_reverse("43.10.in-addr.arpa"), None);
        assert_eq!(from_reverse("010.0.43.10.in-addr.arpa"), None);
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
        assert_eq!(from_reverse(v6), Some("fd00::1".parse().unwrap()));
        assert_eq!(from_reverse("x.ip6.arpa"), None);
        assert!(is_reverse("1.0.0.10.in-addr.arpa") && !is_reverse("in-addr.arpa"));
    }

    #[test]
    fn keys_are_lowercase_without_dot() {
        assert_eq!(
            key("Web.Default.SVC.cluster.local."),
            "web.default.svc.cluster.local"
        );
        let name = Name::from_ascii("A.B.").unwrap();
        assert_eq!(key_of(&name), "a.b");
        assert!(fqdn("a.b").unwrap().is_fqdn());
    }
}
