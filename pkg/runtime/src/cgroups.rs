//! Containers' cgroups, the cgroupfs way (no systemd): where they are (v1 hierarchies or the
//! v2 unified tree), what they used (CPU time, memory working set), whether the kernel
//! OOM-killed a process in them, and killing everything in one.
//!
//! libcontainer creates and removes the container cgroups themselves; this module only
//! reads them, kills through them, and removes the per-pod parents it leaves behind.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The parent of every pod's cgroup, as the kubelet's cgroupfs driver names it.
pub(crate) const PARENT: &str = "kubepods";

/// The cgroup path (relative to a hierarchy's root) of a container of a pod.
pub(crate) fn container_path(sandbox_id: &str, container_id: &str) -> String {
    format!("/{PARENT}/pod{sandbox_id}/{container_id}")
}

/// The cgroup path of a pod.
fn pod_path(sandbox_id: &str) -> String {
    format!("/{PARENT}/pod{sandbox_id}")
}

/// How this host mounts cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cgroups {
    /// The unified hierarchy at its root (cgroup.controllers present).
    V2 { root: PathBuf },
    /// v1 hierarchies by controller name ("memory", "cpuacct", ...), plus every v1 or v2
    /// mount point (a hybrid host's unified tree too), for removing pod directories.
    V1 {
        controllers: BTreeMap<String, PathBuf>,
        mounts: Vec<PathBuf>,
    },
}

impl Cgroups {
    /// Detect this host's layout from /sys/fs/cgroup and /proc/self/mountinfo.
    pub(crate) fn detect() -> Cgroups {
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            return Cgroups::V2 { root: root.into() };
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Cgroups::from_mountinfo(&mountinfo)
    }

    /// The v1 layout described by a mountinfo table.
    pub(crate) fn from_mountinfo(mountinfo: &str) -> Cgroups {
        let mut controllers = BTreeMap::new();
        let mut mounts = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fs_type = right.next().unwrap_or_default();
            let options = right.nth(1).unwrap_or_default();
            match fs_type {
                "cgroup" => {
                    for option in options.split(',') {
                        if !matches!(option, "rw" | "ro") && !option.contains('=') {
                            controllers.insert(option.to_string(), PathBuf::from(mount_point));
                        }
                    }
                    mounts.push(PathBuf::from(mount_point));
                }
                "cgroup2" => mounts.push(PathBuf::from(mount_point)),
                _ => {}
            }
        }
        Cgroups::V1 {
            controllers,
            mounts,
        }
    }

    pub(crate) fn is_v2(&self) -> bool {
        matches!(self, Cgroups::V2 { .. })
    }

    /// The directory of cgroup `path` for a v1 controller (the one tree on v2).
    fn dir(&self, controller: &str, path: &str) -> Option<PathBuf> {
        let relative = path.trim_start_matches('/');
        match self {
            Cgroups::V2 { root } => Some(root.join(relative)),
            Cgroups::V1 { controllers, .. } => {
                controllers.get(controller).map(|m| m.join(relative))
            }
        }
    }

    /// CPU time used in nanoseconds and the memory working set in bytes (usage minus
    /// inactive file pages, as the kubelet computes it); None when the cgroup is gone.
    pub(crate) fn usage(&self, path: &str) -> Option<(u64, u64)> {
        match self {
            Cgroups::V2 { .. } => {
                let dir = self.dir("", path)?;
                let cpu = stat_value(&read(&dir.join("cpu.stat"))?, "usage_usec")? * 1000;
                let current = read(&dir.join("memory.current"))?
                    .trim()
                    .parse::<u64>()
                    .ok()?;
                let inactive = stat_value(&read(&dir.join("memory.stat"))?, "inactive_file");
                Some((cpu, current.saturating_sub(inactive.unwrap_or(0))))
            }
            Cgroups::V1 { .. } => {
                let cpu_dir = self.dir("cpuacct", path)?;
                let cpu = read(&cpu_dir.join("cpuacct.usage"))?.trim().parse().ok()?;
                let memory = self.dir("memory", path)?;
                let usage = read(&memory.join("memory.usage_in_bytes"))?
                    .trim()
                    .parse::<u64>()
                    .ok()?;
                let inactive =
                    stat_value(&read(&memory.join("memory.stat"))?, "total_inactive_file");
                Some((cpu, usage.saturating_sub(inactive.unwrap_or(0))))
            }
        }
    }

    /// Whether the kernel's OOM killer killed a process of the cgroup. `killed` says whether
    /// the container's init died of SIGKILL (v1 kernels without an oom_kill counter then
    /// count a hit memory limit).
    pub(crate) fn oom_killed(&self, path: &str, killed: bool) -> bool {
        match self {
            Cgroups::V2 { .. } => self
                .dir("", path)
                .and_then(|d| read(&d.join("memory.events")))
                .and_then(|events| stat_value(&events, "oom_kill"))
                .is_some_and(|n| n > 0),
            Cgroups::V1 { .. } => {
                let Some(dir) = self.dir("memory", path) else {
                    return false;
                };
                let control = read(&dir.join("memory.oom_control")).unwrap_or_default();
                if let Some(count) = stat_value(&control, "oom_kill") {
                    return count > 0;
                }
                killed
                    && read(&dir.join("memory.failcnt"))
                        .and_then(|c| c.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
            }
        }
    }

    /// The processes in the cgroup.
    pub(crate) fn procs(&self, path: &str) -> Vec<i32> {
        let candidates: &[&str] = match self {
            Cgroups::V2 { .. } => &[""],
            Cgroups::V1 { .. } => &["pids", "memory", "freezer", "cpu"],
        };
        for controller in candidates {
            if let Some(text) = self
                .dir(controller, path)
                .and_then(|d| read(&d.join("cgroup.procs")))
            {
                return text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            }
        }
        Vec::new()
    }

    /// SIGKILL every process in the cgroup (cgroup.kill where the kernel has it).
    pub(crate) fn kill_all(&self, path: &str) {
        if let Cgroups::V2 { .. } = self
            && let Some(dir) = self.dir("", path)
            && fs::write(dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for pid in self.procs(path) {
            if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
                tracing::debug!(pid, error = %e, "killing a container process");
            }
        }
    }

    /// Remove a pod's cgroup directories (once its containers' cgroups are gone).
    pub(crate) fn remove_pod(&self, sandbox_id: &str) {
        let relative = pod_path(sandbox_id);
        let roots: Vec<PathBuf> = match self {
            Cgroups::V2 { root } => vec![root.clone()],
            Cgroups::V1 { mounts, .. } => mounts.clone(),
        };
        for root in roots {
            let dir = root.join(relative.trim_start_matches('/'));
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "removing a pod cgroup"),
            }
        }
    }
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// The value of `key` in a "key value" per line file (memory.stat, cpu.stat, ...).
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn reads_v1_hierarchies_from_mountinfo() {
        let Cgroups::V1 {
            controllers,
            mounts,
        } = Cgroups::from_mountinfo(HYBRID)
        else {
            panic!("not v1");
        };
        assert_eq!(
            controllers["memory"],
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            controllers["cpuacct"],
            PathBuf::from("/sys/fs/cgroup/cpuacct")
        );
        assert!(!controllers.contains_key("name=systemd"));
        assert_eq!(mounts.len(), 5);
        assert!(mounts.contains(&PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn parses_stat_files() {
        let stat = "cache 10\ntotal_inactive_file 4096\noom_kill 2\n";
        assert_eq!(stat_value(stat, "total_inactive_file"), Some(4096));
        assert_eq!(stat_value(stat, "oom_kill"), Some(2));
        assert_eq!(stat_value(stat, "missing"), None);
    }

    #[test]
    fn container_paths_sit_under_kubepods() {
        assert_eq!(container_path("uid1", "c1"), "/kubepods/poduid1/c1");
    }
}
