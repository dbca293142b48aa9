//! The node as this machine describes it, the way kubelet (with cAdvisor) does: its name
//! (`--node-name`, else the host name lowercased, `--with-node-id` appending a persistent
//! random id as k3s does), capacity (online CPUs, MemTotal, the data dir's filesystem, 110
//! pods, no huge pages), allocatable (capacity less the hard eviction thresholds),
//! node info (uname, os-release, machine and boot ids), its addresses (`--node-ip`, else
//! the IPv4 address of the interface holding the default route) and the labels and taints
//! it registers with (`--node-label`, `--node-taint`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{NodeSystemInfo, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::kubelet_args::{Eviction, KubeletArgs, Threshold};

/// Why the machine could not be described.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> MachineError {
    let context = context.into();
    move |source| MachineError::Io { context, source }
}

/// What the user said about the node.
#[derive(Debug, Clone, Default)]
pub struct MachineOptions {
    /// The node's name (already resolved by `node_name`).
    pub name: String,
    /// `--node-ip`.
    pub node_ip: Option<IpAddr>,
    /// `--node-label`s.
    pub labels: BTreeMap<String, String>,
    /// `--node-taint`s.
    pub taints: Vec<Taint>,
    /// The kubelet's data directory: its filesystem is the node's ephemeral storage.
    pub data_dir: PathBuf,
    /// `--kubelet-arg`s: eviction thresholds, max pods.
    pub kubelet: KubeletArgs,
}

/// The node as the machine describes it.
#[derive(Debug, Clone)]
pub struct Machine {
    pub name: String,
    /// InternalIP.
    pub address: IpAddr,
    pub capacity: BTreeMap<String, Quantity>,
    pub allocatable: BTreeMap<String, Quantity>,
    pub node_info: NodeSystemInfo,
    /// The labels it registers with: kubelet's own and the `--node-label`s.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub data_dir: PathBuf,
    /// The hard eviction thresholds (pressure conditions).
    pub eviction: Eviction,
    /// The port the kubelet server listens on (status.daemonEndpoints), once bound.
    pub kubelet_port: u16,
}

/// `x86_64` -> `amd64`, as Go names architectures.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A byte count as a Kubernetes binary-SI quantity in canonical form, as Go's
/// `resource.NewQuantity(n, BinarySI)` prints it: the largest power of 1024 that divides
/// it exactly ("24684092Ki", "16Gi", "1536").
pub fn binary_si(bytes: u64) -> Quantity {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut n = bytes;
    let mut suffix = "";
    if n != 0 {
        for s in SUFFIXES {
            if !n.is_multiple_of(1024) {
                break;
            }
            n /= 1024;
            suffix = s;
        }
    }
    Quantity(format!("{n}{suffix}"))
}

/// A `KEY:` line of /proc/meminfo, in bytes.
pub fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// A value of /etc/os-release (quotes removed).
pub fn os_release(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// The interface of the default IPv4 route with the lowest metric, from /proc/net/route.
pub fn default_route_interface(route: &str) -> Option<String> {
    route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            // RTF_UP, destination and mask 0.0.0.0: the default route.
            let default = flags & 1 == 1 && *dest == "00000000" && *mask == "00000000";
            default.then(|| (metric.parse::<u32>().unwrap_or(u32::MAX), iface.to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The first global IPv4 address of `iface`.
fn interface_ipv4(iface: &str) -> Option<Ipv4Addr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    addrs
        .filter(|a| a.interface_name == iface)
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified())
}

/// `--node-ip`, else the primary IPv4 address of the default route's interface, else
/// 127.0.0.1.
pub fn node_address(node_ip: Option<IpAddr>) -> IpAddr {
    if let Some(ip) = node_ip {
        return ip;
    }
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    default_route_interface(&route)
        .and_then(|iface| interface_ipv4(&iface))
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4)
}

/// The machine's host name, lowercased (as kubelet and k3s name the node).
pub fn hostname() -> Result<String, MachineError> {
    let name = nix::unistd::gethostname()
        .map_err(|e| io("reading the host name")(e.into()))?
        .to_string_lossy()
        .to_lowercase();
    Ok(name)
}

/// The node's name: `requested` or the host name, lowercased; with `with_node_id`, a
/// random id kept in `id_file` is appended ("-" and 8 hex digits), as k3s does.
pub fn node_name(
    requested: Option<&str>,
    with_node_id: bool,
    id_file: &Path,
) -> Result<String, MachineError> {
    let mut name = match requested.filter(|n| !n.is_empty()) {
        Some(n) => n.to_lowercase(),
        None => hostname()?,
    };
    if with_node_id {
        name = format!("{name}-{}", node_id(id_file)?);
    }
    Ok(name)
}

fn node_id(file: &Path) -> Result<String, MachineError> {
    if let Ok(id) = std::fs::read_to_string(file)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let mut bytes = [0u8; 4];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io("reading /dev/urandom"))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(file, format!("{id}\n")).map_err(io(format!("writing {}", file.display())))?;
    Ok(id)
}

/// A filesystem's size, free space and inodes (statvfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub capacity: u64,
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

pub fn fs_stats(path: &Path) -> Result<FsStats, MachineError> {
    let s = nix::sys::statvfs::statvfs(path)
        .map_err(|e| io(format!("statvfs {}", path.display()))(e.into()))?;
    let frsize = s.fragment_size() as u64;
    Ok(FsStats {
        capacity: s.blocks() as u64 * frsize,
        available: s.blocks_available() as u64 * frsize,
        inodes: s.files() as u64,
        inodes_free: s.files_free() as u64,
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn node_info(boot_id: String) -> NodeSystemInfo {
    let uname = nix::sys::utsname::uname().ok();
    let kernel_version = uname
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let os_image = os_release(&read("/etc/os-release"), "PRETTY_NAME")
        .or_else(|| os_release(&read("/usr/lib/os-release"), "PRETTY_NAME"))
        .unwrap_or_else(|| "Linux".into());
    let version = format!("{}+minik", minik_version::KUBERNETES_VERSION);
    NodeSystemInfo {
        architecture: go_arch().into(),
        operating_system: "linux".into(),
        os_image,
        kernel_version,
        kubelet_version: version.clone(),
        kube_proxy_version: version,
        container_runtime_version: format!("minik://{}", minik_version::MINIK_VERSION),
        machine_id: read("/etc/machine-id"),
        system_uuid: read("/sys/class/dmi/id/product_uuid"),
        boot_id,
        ..Default::default()
    }
}

/// The labels kubelet sets on its own Node (and keeps set on every start), plus what k3s
/// adds for the instance type.
pub fn default_labels(name: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", go_arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", go_arch()),
        ("node.kubernetes.io/instance-type", "minik"),
        ("beta.kubernetes.io/instance-type", "minik"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Machine {
    /// Describe this machine as the node `options` names.
    pub fn probe(options: &MachineOptions) -> Result<Machine, MachineError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo_text =
            std::fs::read_to_string("/proc/meminfo").map_err(io("reading /proc/meminfo"))?;
        let memory = meminfo(&meminfo_text, "MemTotal")
            .ok_or_else(|| MachineError::Invalid("/proc/meminfo has no MemTotal".into()))?;
        let fs = fs_stats(&options.data_dir)?;
        let mut capacity: BTreeMap<String, Quantity> = BTreeMap::new();
        capacity.insert("cpu".into(), Quantity(cpus.to_string()));
        capacity.insert("memory".into(), binary_si(memory));
        capacity.insert("ephemeral-storage".into(), binary_si(fs.capacity));
        capacity.insert(
            "pods".into(),
            Quantity(options.kubelet.max_pods.to_string()),
        );
        capacity.insert("hugepages-1Gi".into(), Quantity("0".into()));
        capacity.insert("hugepages-2Mi".into(), Quantity("0".into()));
        // Allocatable holds back the hard eviction thresholds of memory and the node
        // filesystem (kubelet's hardEvictionReservation).
        let eviction = options.kubelet.eviction.clone();
        let held = |t: Option<Threshold>, capacity: u64| t.map_or(0, |t| t.of(capacity));
        let mut allocatable = capacity.clone();
        allocatable.insert(
            "memory".into(),
            binary_si(memory.saturating_sub(held(eviction.memory_available, memory))),
        );
        allocatable.insert(
            "ephemeral-storage".into(),
            binary_si(
                fs.capacity
                    .saturating_sub(held(eviction.nodefs_available, fs.capacity)),
            ),
        );
        let mut labels = default_labels(&options.name);
        for (k, v) in &options.labels {
            labels.insert(k.clone(), v.clone());
        }
        Ok(Machine {
            name: options.name.clone(),
            address: node_address(options.node_ip),
            capacity,
            allocatable,
            node_info: node_info(read("/proc/sys/kernel/random/boot_id")),
            labels,
            taints: options.taints.clone(),
            data_dir: options.data_dir.clone(),
            eviction,
            kubelet_port: options.kubelet.port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical_binary_si() {
        assert_eq!(binary_si(24_684_092 * 1024).0, "24684092Ki");
        assert_eq!(binary_si(16 << 30).0, "16Gi");
        assert_eq!(binary_si(1536).0, "1536");
        assert_eq!(binary_si(0).0, "0");
    }

    #[test]
    fn proc_files_are_read() {
        let m = "MemTotal:       24684092 kB\nMemFree:  100 kB\n";
        assert_eq!(meminfo(m, "MemTotal"), Some(24_684_092 * 1024));
        assert_eq!(meminfo(m, "MemAvailable"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_release(os, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth1\t00000000\t010200C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_interface(route).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn node_names_are_lowercase_and_ids_persist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent/node-id");
        assert_eq!(node_name(Some("Web-1"), false, &file).unwrap(), "web-1");
        let first = node_name(Some("web"), true, &file).unwrap();
        let (base, id) = first.split_once('-').unwrap();
        assert_eq!(base, "web");
        assert_eq!(id.len(), 8);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(node_name(Some("web"), true, &file).unwrap(), first);
    }

    #[test]
    fn this_machine_is_described() {
        let dir = tempfile::tempdir().unwrap();
        let m = Machine::probe(&MachineOptions {
            name: "n".into(),
            data_dir: dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.capacity["pods"].0, "110");
        assert_eq!(m.capacity["hugepages-2Mi"].0, "0");
        // k3s's default eviction-hard has no memory.available threshold: nothing held back.
        assert_eq!(m.capacity["memory"], m.allocatable["memory"]);
        assert_ne!(
            m.capacity["ephemeral-storage"],
            m.allocatable["ephemeral-storage"]
        );
        assert_eq!(m.labels["kubernetes.io/hostname"], "n");
        assert_eq!(m.node_info.operating_system, "linux");
        assert!(!m.node_info.kernel_version.is_empty());
        assert!(
            m.node_info
                .container_runtime_version
                .starts_with("minik://v")
        );
    }
}
