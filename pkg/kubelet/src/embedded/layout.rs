//! Where a pod's files go, laid out as the kubelet lays out /var/lib/kubelet/pods:
//!
//! ```text
//! <data-dir>/agent/pods/<uid>/
//!   volumes/kubernetes.io~<plugin>/<volume>/   emptyDir, configMap, secret, downwardAPI, projected
//!   containers/<container>/<id prefix>         each run's termination message file
//!   etc-hosts, resolv.conf                     mounted at /etc/hosts and /etc/resolv.conf
//! <log-dir>/<namespace>_<pod>_<uid>/<container>/<restart count>.log
//! ```

use std::path::{Path, PathBuf};

/// The volume plugins whose data lives in the pod directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    EmptyDir,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
}

impl Plugin {
    /// The directory name kubelet uses ("kubernetes.io~empty-dir", ...).
    pub fn dir(self) -> &'static str {
        match self {
            Plugin::EmptyDir => "kubernetes.io~empty-dir",
            Plugin::ConfigMap => "kubernetes.io~configmap",
            Plugin::Secret => "kubernetes.io~secret",
            Plugin::DownwardApi => "kubernetes.io~downward-api",
            Plugin::Projected => "kubernetes.io~projected",
        }
    }
}

/// The paths of one node.
#[derive(Debug, Clone)]
pub struct Layout {
    /// <data-dir>/agent/pods.
    pub pods: PathBuf,
    /// /var/log/pods.
    pub logs: PathBuf,
}

/// Whether `s` can be one path component (uids, names, volume names come from the API).
pub fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0'])
}

impl Layout {
    pub fn new(data_dir: &Path, log_dir: &Path) -> Layout {
        Layout {
            pods: data_dir.join("agent").join("pods"),
            logs: log_dir.to_path_buf(),
        }
    }

    pub fn pod(&self, uid: &str) -> PathBuf {
        self.pods.join(uid)
    }

    pub fn volumes(&self, uid: &str) -> PathBuf {
        self.pod(uid).join("volumes")
    }

    pub fn volume(&self, uid: &str, plugin: Plugin, name: &str) -> PathBuf {
        self.volumes(uid).join(plugin.dir()).join(name)
    }

    pub fn etc_hosts(&self, uid: &str) -> PathBuf {
        self.pod(uid).join("etc-hosts")
    }

    pub fn resolv_conf(&self, uid: &str) -> PathBuf {
        self.pod(uid).join("resolv.conf")
    }

    /// The termination message file of one run (container id `id`) of a container.
    pub fn termination_log(&self, uid: &str, container: &str, id: &str) -> PathBuf {
        let prefix = id.get(..8).unwrap_or(id);
        self.pod(uid)
            .join("containers")
            .join(container)
            .join(prefix)
    }

    /// <log-dir>/<namespace>_<pod>_<uid>.
    pub fn pod_logs(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.logs.join(format!("{namespace}_{name}_{uid}"))
    }

    pub fn log_file(
        &self,
        (namespace, name, uid): (&str, &str, &str),
        container: &str,
        restarts: u32,
    ) -> PathBuf {
        self.pod_logs(namespace, name, uid)
            .join(container)
            .join(format!("{restarts}.log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_kubelet_layout() {
        let l = Layout::new(Path::new("/var/lib/minik"), Path::new("/var/log/pods"));
        assert_eq!(
            l.volume("u1", Plugin::ConfigMap, "cfg"),
            Path::new("/var/lib/minik/agent/pods/u1/volumes/kubernetes.io~configmap/cfg")
        );
        assert_eq!(
            l.volume("u1", Plugin::EmptyDir, "cache"),
            Path::new("/var/lib/minik/agent/pods/u1/volumes/kubernetes.io~empty-dir/cache")
        );
        assert_eq!(
            l.log_file(("default", "web", "u1"), "nginx", 2),
            Path::new("/var/log/pods/default_web_u1/nginx/2.log")
        );
        assert_eq!(
            l.termination_log("u1", "c", "0123456789abcdef"),
            Path::new("/var/lib/minik/agent/pods/u1/containers/c/01234567")
        );
        assert_eq!(
            l.etc_hosts("u1"),
            Path::new("/var/lib/minik/agent/pods/u1/etc-hosts")
        );
        assert!(safe_component("3f2a-uid") && !safe_component("..") && !safe_component("a/b"));
    }
}
