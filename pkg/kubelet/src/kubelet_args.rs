//! `--kubelet-arg key=value`, as k3s passes flags through to its kubelet, for the settings
//! minik's kubelet has: `eviction-hard` (the hard eviction thresholds: when the node is
//! under memory or disk pressure, and what allocatable holds back), `max-pods`, and where
//! the kubelet's HTTPS server listens (`port`, 10250 by default, 0 for any free port;
//! `address`, 0.0.0.0 by default), and the static pods' `pod-manifest-path`. Garbage
//! collection and log rotation settings (`image-gc-high-threshold`, ...) are read by
//! gc/policy.rs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// One threshold: an amount, or a fraction of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Bytes(u64),
    /// A percentage as kubelet keeps it (a float32 fraction).
    Fraction(f32),
}

impl Threshold {
    /// The amount this threshold is of `capacity` (computed as kubelet does, through the
    /// float32 fraction).
    pub fn of(self, capacity: u64) -> u64 {
        match self {
            Threshold::Bytes(b) => b,
            Threshold::Fraction(f) => (capacity as f64 * f64::from(f)) as u64,
        }
    }
}

/// The hard eviction signals minik watches, and their thresholds (`<`).
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    pub memory_available: Option<Threshold>,
    pub nodefs_available: Option<Threshold>,
    pub nodefs_inodes_free: Option<Threshold>,
    /// Images live on the node filesystem (the data dir), so imagefs signals measure it.
    pub imagefs_available: Option<Threshold>,
    pub imagefs_inodes_free: Option<Threshold>,
    /// pid.available (none by default, as in kubelet).
    pub pid_available: Option<Threshold>,
}

impl Default for Eviction {
    /// k3s's defaults, which its agent passes to every kubelet:
    /// `imagefs.available<5%,nodefs.available<5%`. As in kubelet, a signal an eviction-hard
    /// does not name has no threshold, so there is no memory.available one (plain
    /// kubelet's defaults would be memory.available<100Mi, nodefs.available<10%,
    /// imagefs.available<15% and inodesFree<5%; `--kubelet-arg eviction-hard=...` sets them).
    fn default() -> Self {
        Eviction {
            memory_available: None,
            nodefs_available: Some(Threshold::Fraction(0.05)),
            nodefs_inodes_free: None,
            imagefs_available: Some(Threshold::Fraction(0.05)),
            imagefs_inodes_free: None,
            pid_available: None,
        }
    }
}

/// What `--kubelet-arg`s set.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletArgs {
    pub eviction: Eviction,
    pub max_pods: u32,
    /// The kubelet server's port (0: any free one).
    pub port: u16,
    /// The kubelet server's bind address.
    pub address: IpAddr,
    /// The static pods' manifests directory (`pod-manifest-path`; None: k3s's
    /// `<data-dir>/agent/pod-manifests`).
    pub pod_manifest_path: Option<std::path::PathBuf>,
    /// Image garbage collection and container log rotation.
    pub gc: crate::gc::policy::Policy,
}

impl Default for KubeletArgs {
    fn default() -> Self {
        KubeletArgs {
            eviction: Eviction::default(),
            max_pods: 110,
            port: 10250,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            pod_manifest_path: None,
            gc: crate::gc::policy::Policy::default(),
        }
    }
}

fn threshold(value: &str) -> Option<Threshold> {
    if let Some(p) = value.strip_suffix('%') {
        let p: f32 = p.trim().parse().ok()?;
        return (0.0..=100.0)
            .contains(&p)
            .then_some(Threshold::Fraction(p / 100.0));
    }
    if value.trim().parse::<f64>().is_ok_and(|v| v.fract() != 0.0) {
        return None;
    }
    let milli = minik_api::quantity::parse(value)?;
    u64::try_from(milli / 1000).ok().map(Threshold::Bytes)
}

/// Parse kubelet's `--eviction-hard` (`memory.available<100Mi,nodefs.available<10%`). As
/// in kubelet, signals it does not name have no threshold.
pub fn parse_eviction(value: &str) -> Result<Eviction, String> {
    let mut e = Eviction {
        memory_available: None,
        nodefs_available: None,
        nodefs_inodes_free: None,
        imagefs_available: None,
        imagefs_inodes_free: None,
        pid_available: None,
    };
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (signal, amount) = part
            .split_once('<')
            .ok_or_else(|| format!("eviction-hard {part:?} is not signal<quantity"))?;
        let t = threshold(amount).ok_or_else(|| {
            format!("eviction-hard {part:?}: {amount:?} is not a quantity or percentage")
        })?;
        let slot = match signal.trim() {
            "memory.available" => &mut e.memory_available,
            "nodefs.available" => &mut e.nodefs_available,
            "nodefs.inodesFree" => &mut e.nodefs_inodes_free,
            "imagefs.available" => &mut e.imagefs_available,
            "imagefs.inodesFree" => &mut e.imagefs_inodes_free,
            "pid.available" => &mut e.pid_available,
            other => return Err(format!("eviction-hard: unknown signal {other:?}")),
        };
        *slot = Some(t);
    }
    Ok(e)
}

/// Parse `--kubelet-arg`s (`key=value`, a leading `--` allowed; the last of a key wins).
pub fn parse(args: &[String]) -> Result<KubeletArgs, String> {
    let mut set: BTreeMap<&str, &str> = BTreeMap::new();
    for arg in args {
        let (key, value) = arg
            .trim_start_matches('-')
            .split_once('=')
            .ok_or_else(|| format!("--kubelet-arg {arg:?} is not key=value"))?;
        set.insert(key, value);
    }
    let mut out = KubeletArgs::default();
    for (key, value) in set {
        match key {
            "eviction-hard" => out.eviction = parse_eviction(value)?,
            "max-pods" => {
                out.max_pods = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("--kubelet-arg max-pods={value:?} is not a positive number")
                })?
            }
            "port" => {
                out.port = value
                    .parse()
                    .map_err(|_| format!("--kubelet-arg port={value:?} is not a port number"))?
            }
            "address" => {
                out.address = value
                    .parse()
                    .map_err(|_| format!("--kubelet-arg address={value:?} is not an IP address"))?
            }
            "pod-manifest-path" if !value.is_empty() => out.pod_manifest_path = Some(value.into()),
            key if crate::gc::policy::KEYS.contains(&key) => out.gc.set(key, value)?,
            other => {
                return Err(format!(
                    "--kubelet-arg {other:?}: minik's kubelet takes eviction-hard, max-pods, \
                     port, address, pod-manifest-path, {}",
                    crate::gc::policy::KEYS.join(", ")
                ));
            }
        }
    }
    out.gc.validate()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_thresholds_are_read_as_kubelet_reads_them() {
        let a =
            parse(&["--eviction-hard=memory.available<200Mi,nodefs.available<5%".into()]).unwrap();
        assert_eq!(
            a.eviction.memory_available,
            Some(Threshold::Bytes(200 << 20))
        );
        assert_eq!(a.eviction.nodefs_available, Some(Threshold::Fraction(0.05)));
        // Signals not named have none.
        assert_eq!(a.eviction.imagefs_available, None);
        assert_eq!(a.max_pods, 110);
        assert_eq!(parse(&["max-pods=250".into()]).unwrap().max_pods, 250);
        assert_eq!(a.port, 10250);
        let a = parse(&["port=0".into(), "address=127.0.0.1".into()]).unwrap();
        assert_eq!((a.port, a.address.to_string().as_str()), (0, "127.0.0.1"));
        assert_eq!(Threshold::Fraction(0.1).of(100u64 << 30), 10_737_418_400);
        assert_eq!(Threshold::Bytes(5).of(1000), 5);
        for bad in [
            "eviction-hard=memory.available>1",
            "eviction-hard=disk.available<1%",
            "eviction-hard=memory.available<lots",
            "max-pods=0",
            "port=70000",
            "address=localhost",
            "cgroup-driver=systemd",
            "novalue",
        ] {
            assert!(parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert_eq!(parse(&[]).unwrap(), KubeletArgs::default());
    }
}
