//! The kernel features and host tools a minik node needs (what `minik check-config` reports,
//! and what a node checks before it starts): namespaces, cgroups (v1 or v2) with the cpu,
//! memory and pids controllers, overlayfs, nftables, bridges and veth pairs, IP forwarding,
//! seccomp, and the `ip` and `nft` programs.
//!
//! A feature counts as present when it is loaded (/sys/module), built in or available as a
//! module (the kernel's config at /proc/config.gz or /boot, or
//! /lib/modules/<release>/modules.builtin and modules.dep), or, for network devices, when
//! one can be made in a throwaway network namespace. Nothing on the host is changed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod cgroups;

use cgroups::cgroup_layout;

/// One checked feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    /// Whether minik cannot run without it.
    pub required: bool,
    pub ok: bool,
    /// What was found (or what to do about it).
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, required: bool, (ok, detail): (bool, String)) -> Check {
        Check {
            name,
            required,
            ok,
            detail,
        }
    }
}

/// Every check, in report order.
pub fn check_all() -> Vec<Check> {
    let host = Host::probe();
    let mut checks = Vec::new();
    for (name, ns, required) in [
        ("mount namespace", "mnt", true),
        ("pid namespace", "pid", true),
        ("network namespace", "net", true),
        ("ipc namespace", "ipc", true),
        ("uts namespace", "uts", true),
        ("cgroup namespace", "cgroup", true),
        ("user namespace", "user", false),
    ] {
        let path = Path::new("/proc/self/ns").join(ns);
        let found = (path.exists(), path.display().to_string());
        checks.push(Check::new(name, required, found));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").ok();
    let cgroups = cgroup_layout(&mountinfo, v2.as_deref());
    checks.push(Check::new("cgroups", true, cgroups.describe()));
    for (name, controller) in [
        ("cgroup cpu controller", "cpu"),
        ("cgroup memory controller", "memory"),
        ("cgroup pids controller", "pids"),
    ] {
        checks.push(Check::new(name, true, cgroups.controller(controller)));
    }
    let overlay = if host.filesystem("overlay") {
        (true, "in /proc/filesystems".to_string())
    } else {
        host.feature("overlay", "CONFIG_OVERLAY_FS", None)
    };
    checks.push(Check::new("overlay filesystem", true, overlay));
    checks.push(Check::new("nftables", true, host.nftables()));
    checks.push(Check::new(
        "bridge",
        true,
        host.feature("bridge", "CONFIG_BRIDGE", Some("bridge")),
    ));
    checks.push(Check::new(
        "veth",
        true,
        host.feature("veth", "CONFIG_VETH", Some("veth peer name minik-probe1")),
    ));
    let br_netfilter = if Path::new("/proc/sys/net/bridge").exists() {
        (true, "/proc/sys/net/bridge".to_string())
    } else {
        host.feature("br_netfilter", "CONFIG_BRIDGE_NETFILTER", None)
    };
    checks.push(Check::new("br_netfilter", false, br_netfilter));
    checks.push(Check::new(
        "dummy interface",
        false,
        host.feature("dummy", "CONFIG_DUMMY", Some("dummy")),
    ));
    checks.push(Check::new("ip forwarding", true, ip_forward()));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    checks.push(Check::new("seccomp", true, seccomp(&status)));
    for (name, program, required) in [
        ("ip (iproute2)", "ip", true),
        ("conntrack", "conntrack", false),
    ] {
        let found = match which(program) {
            Some(path) => (true, path.display().to_string()),
            None => (false, format!("`{program}` is not on PATH")),
        };
        checks.push(Check::new(name, required, found));
    }
    let root = if host.root {
        (true, "running as root".to_string())
    } else {
        (
            false,
            "not root: a node (kubelet, containers, network) needs root".to_string(),
        )
    };
    checks.push(Check::new("root", false, root));
    checks
}

/// The required checks that failed.
pub fn missing_required() -> Vec<Check> {
    check_all()
        .into_iter()
        .filter(|c| c.required && !c.ok)
        .collect()
}

/// What the checks read from the host once.
struct Host {
    release: String,
    /// The kernel's build configuration, if published.
    config: Option<String>,
    filesystems: String,
    root: bool,
}

impl Host {
    fn probe() -> Host {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        Host {
            config: kernel_config(&release),
            filesystems: std::fs::read_to_string("/proc/filesystems").unwrap_or_default(),
            root: nix::unistd::geteuid().is_root(),
            release,
        }
    }

    fn filesystem(&self, name: &str) -> bool {
        self.filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some(name))
    }

    /// Whether kernel module `module` (config symbol `symbol`) is loaded, built in or
    /// available; `link` is the `ip link add` type that makes such a device, tried in a
    /// throwaway network namespace when nothing else tells.
    fn feature(&self, module: &str, symbol: &str, link: Option<&str>) -> (bool, String) {
        if Path::new("/sys/module").join(module).exists() {
            return (true, format!("module {module} loaded"));
        }
        match self.config.as_deref().and_then(|c| config_value(c, symbol)) {
            Some("y") => return (true, format!("built in ({symbol}=y)")),
            Some("m") => return (true, format!("module {module} ({symbol}=m)")),
            _ => {}
        }
        let modules = Path::new("/lib/modules").join(&self.release);
        if listed(&modules.join("modules.builtin"), module) {
            return (true, "built in (modules.builtin)".to_string());
        }
        if listed(&modules.join("modules.dep"), module) {
            return (true, format!("module {module} available"));
        }
        if let Some(kind) = link
            && self.root
            && can_make_link(kind)
        {
            return (true, "a device could be made".to_string());
        }
        (
            false,
            format!(
                "not loaded, not built in, and no {module} module for kernel {}",
                self.release
            ),
        )
    }

    /// `nft list tables` works (root), else the nf_tables module.
    fn nftables(&self) -> (bool, String) {
        let Some(nft) = which("nft") else {
            return (false, "`nft` is not on PATH: install nftables".to_string());
        };
        let listed = Command::new(&nft)
            .args(["list", "tables"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if listed {
            return (true, format!("{} list tables works", nft.display()));
        }
        self.feature("nf_tables", "CONFIG_NF_TABLES", None)
    }
}

/// The kernel's build configuration: /proc/config.gz or /boot/config-<release>.
fn kernel_config(release: &str) -> Option<String> {
    if let Ok(file) = std::fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        if gunzip(file, &mut text) {
            return Some(text);
        }
    }
    std::fs::read_to_string(format!("/boot/config-{release}")).ok()
}

/// Decompress a gzip stream with the system's `gzip` (no compression library needed).
fn gunzip(mut file: std::fs::File, out: &mut String) -> bool {
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return false;
    }
    let Ok(mut child) = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let writer = child
        .stdin
        .take()
        .map(|mut stdin| std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes)));
    let Ok(output) = child.wait_with_output() else {
        return false;
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    match String::from_utf8(output.stdout) {
        Ok(text) if output.status.success() => {
            *out = text;
            true
        }
        _ => false,
    }
}

/// `CONFIG_X=value` in a kernel config.
fn config_value<'a>(config: &'a str, symbol: &str) -> Option<&'a str> {
    config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key == symbol).then_some(value.trim())
    })
}

/// Whether modules.builtin or modules.dep lists `<module>.ko`.
fn listed(file: &Path, module: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let wanted = format!("{module}.ko");
    text.lines().any(|line| {
        let path = line.split(':').next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        name == wanted || name.starts_with(&format!("{wanted}."))
    })
}

/// Make a device of `kind` in a new network namespace that ends with the command.
fn can_make_link(kind: &str) -> bool {
    let script = format!("ip link add name minik-probe0 type {kind}");
    Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ip_forward() -> (bool, String) {
    match std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
        Ok(v) if v.trim() == "1" => (true, "on".to_string()),
        Ok(_) => (true, "off (minik turns it on)".to_string()),
        Err(e) => (false, format!("/proc/sys/net/ipv4/ip_forward: {e}")),
    }
}

/// The kernel has seccomp when /proc/<pid>/status has a Seccomp field.
fn seccomp(status: &str) -> (bool, String) {
    match status.lines().find_map(|l| l.strip_prefix("Seccomp:")) {
        Some(mode) => (
            true,
            format!("supported (this process: mode {})", mode.trim()),
        ),
        None => (false, "no Seccomp field in /proc/self/status".to_string()),
    }
}

/// `program` on PATH.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kernel_config_and_module_lists() {
        let config = "# comment\nCONFIG_VETH=m\nCONFIG_BRIDGE=y\n";
        assert_eq!(config_value(config, "CONFIG_VETH"), Some("m"));
        assert_eq!(config_value(config, "CONFIG_BRIDGE"), Some("y"));
        assert_eq!(config_value(config, "CONFIG_DUMMY"), None);
        let dir = tempfile::tempdir().unwrap();
        let dep = dir.path().join("modules.dep");
        std::fs::write(
            &dep,
            "kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz\n",
        )
        .unwrap();
        assert!(listed(&dep, "br_netfilter"));
        assert!(
            !listed(&dep, "bridge"),
            "only the module itself, not its dependencies"
        );
        assert!(!listed(&dep, "veth"));
    }

    #[test]
    fn seccomp_needs_the_status_field() {
        assert!(seccomp("Name:\tx\nSeccomp:\t0\n").0);
        assert!(!seccomp("Name:\tx\n").0);
    }

    #[test]
    fn this_host_reports_every_check_once() {
        let checks = check_all();
        let mut names: Vec<_> = checks.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), checks.len());
        assert!(checks.iter().any(|c| c.name == "cgroups"));
    }
}
