//! Pod sandboxes through RunPodSandbox, StopPodSandbox and RemovePodSandbox, named by the
//! pod's uid (the `minik.io/pod-uid` label finds them again after a restart). As
//! kubelet does, the pod's log directory is made before the sandbox, and the pod's cgroup
//! (the sandbox's cgroup parent) is removed after it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use minik_cri::proto::PodSandboxFilter;
use minik_runtime::{Error, Result, Sandbox, SandboxConfig};

use super::convert::{self, MINIK_POD_UID};
use super::{Cri, cri_error, relist};

impl Cri {
    /// Create pod `config.id`'s sandbox, or return the ready one it has; a stopped one is
    /// replaced by a new attempt.
    pub(super) async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        let uid = &config.id;
        if uid.is_empty() {
            return Err(Error::Invalid("a sandbox needs the pod's uid".into()));
        }
        let existing = self
            .lock()
            .sandbox(uid)
            .map(|(_, e)| (e.ready, e.attempt(), e.sandbox.clone()));
        let mut attempt = 0;
        if let Some((ready, last, sandbox)) = existing {
            if ready {
                let same = |c: &SandboxConfig| (c.host_network, c.host_ipc, c.host_pid);
                if same(&sandbox.config) != same(config) {
                    return Err(Error::Invalid(format!(
                        "sandbox {uid} exists with other namespaces"
                    )));
                }
                return Ok(sandbox);
            }
            tracing::info!(sandbox = %uid, "replacing a stopped sandbox");
            self.delete_sandbox(uid).await?;
            attempt = last + 1;
        }
        let cri_config = convert::sandbox_config(config, &self.layout, attempt);
        let log_dir = PathBuf::from(&cri_config.log_directory);
        std::fs::create_dir_all(&log_dir)
            .map_err(Error::io(format!("creating {}", log_dir.display())))?;
        tracing::debug!(sandbox = %uid, attempt, "CRI RunPodSandbox");
        let cri_id = self
            .client
            .run_pod_sandbox(cri_config, "")
            .await
            .map_err(|e| cri_error(format!("creating sandbox {uid}"), e))?;
        let entry = relist::sandbox_entry(&self.client, &self.layout, &cri_id)
            .await?
            .ok_or_else(|| {
                Error::Failed(format!("sandbox {uid} ({cri_id}) vanished once created"))
            })?;
        let sandbox = Sandbox {
            config: config.clone(),
            ..entry.sandbox.clone()
        };
        let cri_config = convert::sandbox_config(config, &self.layout, attempt);
        self.lock().put_sandbox(
            &cri_id,
            super::cache::SandboxEntry {
                sandbox: sandbox.clone(),
                config: cri_config,
                ..entry
            },
        );
        tracing::info!(
            sandbox = %uid,
            id = %cri_id,
            host_network = config.host_network,
            netns = ?sandbox.netns,
            "sandbox created"
        );
        Ok(sandbox)
    }

    /// Stop and remove every sandbox of pod `uid` (with what is left in them) and the
    /// pod's cgroup. Sandboxes already gone are removed.
    pub(super) async fn delete_sandbox(&self, uid: &str) -> Result<()> {
        let mut ids: BTreeSet<String> = self.lock().sandbox_ids(uid).into_iter().collect();
        let filter = PodSandboxFilter {
            label_selector: HashMap::from([(MINIK_POD_UID.to_string(), uid.to_string())]),
            ..Default::default()
        };
        match self.client.list_pod_sandbox(Some(filter)).await {
            Ok(listed) => ids.extend(listed.into_iter().map(|s| s.id)),
            Err(e) => tracing::debug!(sandbox = uid, error = %e, "listing the pod's sandboxes"),
        }
        for cri_id in ids {
            tracing::debug!(sandbox = uid, id = %cri_id, "CRI StopPodSandbox");
            match self.client.stop_pod_sandbox(&cri_id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(cri_error(format!("stopping sandbox {uid}"), e)),
            }
            tracing::debug!(sandbox = uid, id = %cri_id, "CRI RemovePodSandbox");
            match self.client.remove_pod_sandbox(&cri_id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(cri_error(format!("removing sandbox {uid}"), e)),
            }
            self.lock().remove_sandbox(&cri_id, uid);
            tracing::info!(sandbox = uid, id = %cri_id, "sandbox removed");
        }
        remove_cgroup(Path::new(CGROUP_ROOT), &self.layout.pod_cgroup(uid));
        Ok(())
    }
}

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Remove cgroup `path` (relative to each hierarchy's root) from every hierarchy mounted
/// under `root` (the v2 tree, v1 controllers, a hybrid's unified tree), deepest first; a
/// cgroup still in use stays.
pub(super) fn remove_cgroup(root: &Path, path: &str) {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let mut roots: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    roots.push(root.to_path_buf());
    for dir in roots.iter().map(|r| r.join(rel)).filter(|d| d.is_dir()) {
        remove_tree(&dir);
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for c in children.filter_map(|c| c.ok()) {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&c.path());
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        tracing::debug!(cgroup = %dir.display(), error = %e, "removing a pod cgroup");
    }
}
