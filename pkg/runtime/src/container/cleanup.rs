//! Tearing a stopped node's runtime down (`minik stop --all`): every container stopped
//! (SIGTERM, then SIGKILL of its whole cgroup after the grace period) and removed with its
//! overlay root, every sandbox removed with its namespace files, /dev/shm and pod cgroups,
//! and whatever else is still mounted under the node's directories unmounted.
//!
//! Opening for teardown sets nothing up: unlike `Runtime::open`, sandboxes whose namespaces
//! are gone (after a reboot) are not made again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nix::mount::{MntFlags, umount2};

use super::{Inner, Runtime};
use crate::cgroups::{self, Cgroups};
use crate::sandbox::Sandboxes;
use crate::types::{ContainerState, Result};

/// What `stop_all` did and what it could not do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// Ids of the sandboxes removed (the pods' uids, for the kubelet's runtime).
    pub sandboxes: Vec<String>,
    /// Containers removed.
    pub containers: usize,
    /// What failed, one message each.
    pub errors: Vec<String>,
}

impl Runtime {
    /// The runtime state under `state` (`<data-dir>/agent/containers`) and `run`
    /// (/run/minik), to tear it down; None when there is none.
    pub fn open_for_teardown(state: &Path, run: &Path) -> Result<Option<Runtime>> {
        if !state.join("containers").is_dir() && !state.join("sandboxes").is_dir() {
            return Ok(None);
        }
        let containers = state.join("containers");
        std::fs::create_dir_all(&containers).map_err(crate::types::Error::io(format!(
            "creating {}",
            containers.display()
        )))?;
        Ok(Some(Runtime {
            inner: Arc::new(Inner {
                containers,
                libcontainer_root: run.join("containers"),
                // This very program's shim, though teardown starts no container.
                shim: vec!["/proc/self/exe".into(), "shim".into()],
                sandboxes: Sandboxes::new(state, run)?,
                cgroups: Cgroups::detect(),
                records: RwLock::new(HashMap::new()),
            }),
        }))
    }

    /// Stop and remove every container and sandbox; `progress` is told each step.
    pub async fn stop_all(&self, grace: Duration, progress: &(dyn Fn(String) + Sync)) -> Teardown {
        let mut report = Teardown::default();
        let containers = self.containers();
        let mut stops = tokio::task::JoinSet::new();
        for container in &containers {
            let config = &container.config;
            match container.state {
                ContainerState::Running { pid, .. } => {
                    progress(format!(
                        "stopping container {} ({}, pid {pid})",
                        config.name,
                        short(&config.id)
                    ));
                    let (runtime, id) = (self.clone(), config.id.clone());
                    stops.spawn(async move {
                        let result = runtime.stop_container(&id, grace).await;
                        (id, result)
                    });
                }
                // A shim that was starting it, or died before recording anything.
                ContainerState::Created => {
                    if let Some(record) = self.record(&config.id) {
                        self.inner.cgroups.kill_all(&record.cgroup);
                    }
                }
                _ => {}
            }
        }
        while let Some(joined) = stops.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((id, Err(e))) => report.errors.push(format!("stopping {}: {e}", short(&id))),
                Err(e) => report.errors.push(format!("stopping a container: {e}")),
            }
        }
        for container in &containers {
            let id = &container.config.id;
            // A killed shim leaves libcontainer's cgroup and state behind.
            if let Some(record) = self.record(id) {
                self.remove_container_cgroup(&record.cgroup);
            }
            let _ = std::fs::remove_dir_all(self.inner.libcontainer_root.join(id));
            match self.remove_container(id) {
                Ok(()) => report.containers += 1,
                Err(e) => report
                    .errors
                    .push(format!("removing container {}: {e}", short(id))),
            }
        }
        for sandbox in self.sandboxes() {
            let id = sandbox.config.id;
            match self.remove_sandbox(&id) {
                Ok(()) => {
                    progress(format!("removed pod sandbox {id}"));
                    report.sandboxes.push(id);
                }
                Err(e) => report.errors.push(format!("removing sandbox {id}: {e}")),
            }
        }
        report
    }

    /// Remove a container's cgroup directories (empty once its processes are gone).
    fn remove_container_cgroup(&self, path: &str) {
        let relative = path.trim_start_matches('/');
        let roots = match &self.inner.cgroups {
            Cgroups::V2 { root } => vec![root.clone()],
            Cgroups::V1 { mounts, .. } => mounts.clone(),
        };
        for root in roots {
            let dir = root.join(relative);
            if dir.starts_with(root.join(cgroups::PARENT)) {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// Unmount every mount point below one of `dirs` (not `dirs` themselves, which may be
/// mounted by their owner), deepest first and lazily; each mount point with the outcome.
pub fn unmount_under(dirs: &[PathBuf]) -> Vec<(PathBuf, Result<()>)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mount_points(&mountinfo)
        .into_iter()
        .filter(|p| dirs.iter().any(|d| p.starts_with(d) && p != d))
        .collect();
    // Deeper first; one path mounted twice is unmounted once per mount.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
        .into_iter()
        .map(|point| {
            let result = match umount2(&point, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
                Err(e) => Err(crate::types::Error::Failed(format!(
                    "unmounting {}: {e}",
                    point.display()
                ))),
            };
            (point, result)
        })
        .collect()
}

/// The mount points of a mountinfo table, in mount order (octal escapes decoded).
fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_escaped_mount_points() {
        let table = "\
22 1 0:21 / /proc rw - proc proc rw
90 22 0:50 / /var/lib/minik\\040x/agent/pods/u/volumes rw - tmpfs tmpfs rw
";
        assert_eq!(
            mount_points(table),
            [
                PathBuf::from("/proc"),
                PathBuf::from("/var/lib/minik x/agent/pods/u/volumes")
            ]
        );
    }

    #[test]
    fn nothing_to_tear_down_without_state() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::open_for_teardown(&dir.path().join("state"), dir.path());
        assert!(runtime.unwrap().is_none());
        assert!(!dir.path().join("state").exists(), "nothing is created");
    }

    #[test]
    fn unmounting_under_an_unmounted_directory_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(unmount_under(&[dir.path().to_path_buf()]).is_empty());
    }
}
