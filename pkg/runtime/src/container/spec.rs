//! The OCI runtime spec (the bundle's config.json) of a container, built from its
//! ContainerConfig the way containerd's CRI plugin builds it: containerd's default
//! capabilities, mounts, masked and read-only paths; new pid and mount namespaces (or the
//! pid namespace of a target container, joined by path, for an ephemeral container with
//! targetContainerName); the sandbox's network, IPC and UTS namespaces joined by path; the
//! sandbox's /dev/shm and
//! /etc/hostname; cgroup limits at a cgroupfs path under kubepods.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use super::seccomp;
use crate::sandbox::SandboxDir;
use crate::types::{ContainerConfig, Error, Result, SandboxConfig};

/// The PATH containerd gives a process whose environment has none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set.
const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux knows (privileged containers get them all).
const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths containerd hides from unprivileged containers.
const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
    "/proc/interrupts",
];

/// Paths containerd makes read-only in unprivileged containers.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the spec needs besides the container's config.
pub(crate) struct SpecInput<'a> {
    pub config: &'a ContainerConfig,
    pub sandbox: &'a SandboxConfig,
    pub sandbox_dir: &'a SandboxDir,
    pub rootfs: &'a Path,
    pub cgroup: &'a str,
    pub cgroup_v2: bool,
    /// The host pid of the init of the container whose pid namespace this one joins
    /// (`config.target_pid_ns`, resolved by the caller).
    pub target_pid: Option<i32>,
}

/// The config.json of a container.
pub(crate) fn build(input: &SpecInput<'_>) -> Result<Value> {
    let config = input.config;
    let security = &config.security;
    let privileged = security.privileged;
    let capabilities = capabilities(config)?;
    let mut linux = json!({
        "namespaces": namespaces(input),
        "cgroupsPath": input.cgroup,
        "resources": resources(config),
    });
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        if security.seccomp_default {
            linux["seccomp"] = seccomp::default_profile(&capabilities);
        }
    }
    let mut process = json!({
            "terminal": config.tty,
            "user": {
                "uid": security.uid,
                "gid": security.gid,
                "additionalGids": security.supplemental_groups,
            },
            "args": config.args,
            "env": environment(config, &input.sandbox.hostname),
            "cwd": if config.working_dir.is_empty() { "/" } else { config.working_dir.as_str() },
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
    });
    // Present only when true: libcontainer 0.7 loads seccomp before dropping capabilities
    // only when the field is absent (with `false` it loads it after, without privilege,
    // and fails).
    if security.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {
            "path": input.rootfs,
            "readonly": security.readonly_rootfs,
        },
        "mounts": mounts(input),
        "linux": linux,
    }))
}

/// The environment, with containerd's defaults (PATH, HOSTNAME, and TERM=xterm with a
/// terminal) where it has none.
fn environment(config: &ContainerConfig, hostname: &str) -> Vec<String> {
    let mut env = config.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    env
}

/// The capability set: containerd's defaults, or all when privileged; then "ALL" adds or
/// drops everything, then single capabilities are added and dropped.
fn capabilities(config: &ContainerConfig) -> Result<Vec<String>> {
    let security = &config.security;
    if security.privileged {
        return Ok(ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect());
    }
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let mut set: BTreeSet<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if security.add_capabilities.iter().any(is_all) {
        set = ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    if security.drop_capabilities.iter().any(is_all) {
        set.clear();
    }
    for name in security.add_capabilities.iter().filter(|c| !is_all(c)) {
        set.insert(capability_name(name)?);
    }
    for name in security.drop_capabilities.iter().filter(|c| !is_all(c)) {
        set.remove(&capability_name(name)?);
    }
    // Keep the kernel's numbering order, as containerd lists them.
    Ok(ALL_CAPABILITIES
        .iter()
        .filter(|c| set.contains(**c))
        .map(|c| c.to_string())
        .collect())
}

/// "net_admin" or "CAP_NET_ADMIN" -> "CAP_NET_ADMIN"; unknown names are an error.
fn capability_name(name: &str) -> Result<String> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::Invalid(format!("unknown capability {name:?}")))
    }
}

fn namespaces(input: &SpecInput<'_>) -> Vec<Value> {
    let sandbox = input.sandbox;
    let dir = input.sandbox_dir;
    let mut namespaces = vec![json!({"type": "mount"})];
    if !sandbox.host_pid {
        match input.target_pid {
            Some(pid) => {
                namespaces.push(json!({"type": "pid", "path": format!("/proc/{pid}/ns/pid")}))
            }
            None => namespaces.push(json!({"type": "pid"})),
        }
    }
    if !sandbox.host_network {
        namespaces.push(json!({"type": "network", "path": dir.net()}));
        namespaces.push(json!({"type": "uts", "path": dir.uts()}));
    }
    if !sandbox.host_ipc {
        namespaces.push(json!({"type": "ipc", "path": dir.ipc()}));
    }
    if input.cgroup_v2 {
        namespaces.push(json!({"type": "cgroup"}));
    }
    namespaces
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": destination, "type": kind, "source": source, "options": options})
}

fn mounts(input: &SpecInput<'_>) -> Vec<Value> {
    let config = input.config;
    let privileged = config.security.privileged;
    let ro_or_rw = |ro: bool| if ro { "ro" } else { "rw" };
    let sys_mode = if privileged { "rw" } else { "ro" };
    let taken: BTreeSet<&str> = config
        .mounts
        .iter()
        .map(|m| m.destination.as_str())
        .collect();
    let shm = if input.sandbox.host_ipc {
        Path::new("/dev/shm").to_path_buf()
    } else {
        input.sandbox_dir.shm()
    };
    let hostname = input.sandbox_dir.hostname();
    let defaults = [
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
        mount(
            "/dev/shm",
            "bind",
            &shm.to_string_lossy(),
            &["rbind", "rprivate", "rw"],
        ),
        mount(
            "/etc/hostname",
            "bind",
            &hostname.to_string_lossy(),
            &[
                "rbind",
                "rprivate",
                ro_or_rw(config.security.readonly_rootfs),
            ],
        ),
    ];
    let mut mounts: Vec<Value> = defaults
        .into_iter()
        .filter(|m| !taken.contains(m["destination"].as_str().unwrap_or_default()))
        .collect();
    for m in &config.mounts {
        mounts.push(mount(
            &m.destination,
            "bind",
            &m.source.to_string_lossy(),
            &["rbind", "rprivate", ro_or_rw(m.readonly)],
        ));
    }
    mounts
}

fn resources(config: &ContainerConfig) -> Value {
    let r = &config.resources;
    let device_rule = json!([{"allow": config.security.privileged, "access": "rwm"}]);
    let mut resources = json!({"devices": device_rule});
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = r.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = r.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(period) = r.cpu_period {
        cpu.insert("period".into(), json!(period));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = r.memory_limit {
        resources["memory"] = json!({"limit": limit});
    }
    if let Some(limit) = r.pids_limit {
        resources["pids"] = json!({"limit": limit});
    }
    resources
}

#[cfg(test)]
mod tests;
