//! What an eviction does to a pod, as kubelet's evictPod and rejectPod do: a Warning
//! event (reason Evicted) on the pod; the status Failed with reason Evicted, the message,
//! and (for an eviction) a DisruptionTarget condition of reason TerminationByKubelet;
//! then its containers killed with the grace period given (0 for hard thresholds) and its
//! emptyDir volumes emptied, as kubelet's volume manager tears down the volumes of a pod
//! that terminated.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use minik_controllers::Store;
use minik_controllers::events::{Kind, Recorder};
use serde_json::json;

use crate::runtime::ContainerRuntime;

/// kubelet's eviction reason.
pub const REASON: &str = "Evicted";

/// How long to wait for the pod workers' cache to see the Failed phase before killing the
/// containers (so the workers do not restart them).
const SETTLE: Duration = Duration::from_secs(5);

async fn fail(
    client: &kube::Client,
    pod: &Pod,
    status: serde_json::Value,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(&json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Refuse a pod the node will not run ("Pod was rejected: <message>").
pub async fn reject(
    client: &kube::Client,
    recorder: &Recorder,
    pod: &Pod,
    message: &str,
) -> Result<(), kube::Error> {
    tracing::info!(
        pod = pod.name_any(),
        namespace = pod.namespace(),
        message,
        "rejecting a pod under node pressure"
    );
    recorder.event(pod, Kind::Warning, REASON, message);
    let status = json!({
        "phase": "Failed",
        "reason": REASON,
        "message": format!("Pod was rejected: {message}"),
        "qosClass": crate::status::qos_class(pod),
    });
    fail(client, pod, status).await
}

/// Where a pod's emptyDir volumes are.
pub fn empty_dirs(data_dir: &std::path::Path, uid: &str) -> PathBuf {
    crate::embedded::layout::Layout::new(data_dir, data_dir)
        .volumes(uid)
        .join(crate::embedded::layout::Plugin::EmptyDir.dir())
}

/// Remove what each emptyDir volume of the pod holds (the volumes stay, empty).
fn empty(dir: &std::path::Path) {
    let Ok(volumes) = std::fs::read_dir(dir) else {
        return;
    };
    for v in volumes.filter_map(Result::ok) {
        let Ok(entries) = std::fs::read_dir(v.path()) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let gone = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = gone {
                tracing::warn!(path = %path.display(), error = %e, "emptying an evicted pod's volume");
            }
        }
    }
}

/// What one eviction needs.
pub struct Eviction<'a, R> {
    pub client: &'a kube::Client,
    pub recorder: &'a Recorder,
    pub runtime: &'a R,
    /// The node's pods, as the pod workers see them.
    pub pods: &'a Store<Pod>,
    pub data_dir: &'a std::path::Path,
}

impl<R: ContainerRuntime> Eviction<'_, R> {
    /// Evict `pod` (runtime uid `uid`): event, Failed status with the DisruptionTarget
    /// condition, containers killed after `grace`, emptyDir volumes emptied.
    pub async fn evict(
        &self,
        pod: &Pod,
        uid: &str,
        message: &str,
        grace: Duration,
    ) -> Result<(), kube::Error> {
        let name = pod.name_any();
        let ns = pod.namespace().unwrap_or_default();
        tracing::warn!(pod = name, namespace = ns, message, "evicting a pod");
        self.recorder.event(pod, Kind::Warning, REASON, message);
        let status = json!({
            "phase": "Failed",
            "reason": REASON,
            "message": message,
            "conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": message,
                "lastTransitionTime": Timestamp::now().to_string(),
            }],
        });
        fail(self.client, pod, status).await?;
        let key = ObjectRef::new(&name).within(&ns);
        let failed = || {
            self.pods.get(&key).is_none_or(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
            })
        };
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !failed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = self.runtime.kill_pod(uid, grace).await {
            tracing::warn!(pod = name, namespace = ns, error = %e, "killing an evicted pod");
        }
        let dir = empty_dirs(self.data_dir, uid);
        let _ = tokio::task::spawn_blocking(move || empty(&dir)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emptying_keeps_the_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("cache");
        std::fs::create_dir_all(v.join("sub")).unwrap();
        std::fs::write(v.join("sub/f"), b"x").unwrap();
        std::fs::write(v.join("g"), b"y").unwrap();
        empty(dir.path());
        assert!(v.is_dir());
        assert_eq!(std::fs::read_dir(&v).unwrap().count(), 0);
        assert!(empty_dirs(dir.path(), "u").ends_with("u/volumes/kubernetes.io~empty-dir"));
    }
}
