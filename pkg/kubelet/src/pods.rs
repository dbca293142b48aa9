//! The pod workers: for each pod bound to a node this process runs, start it in the
//! runtime, restart exited containers per restartPolicy (with CrashLoopBackOff's doubling
//! delay), write the status when it changes, and finish pods being deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use minik_controllers::Store;
use serde_json::json;

use crate::runtime::{ContainerRuntime, State};
use crate::status;

/// A node whose pods this process runs.
pub struct NodeHandle {
    pub name: String,
    pub host_ip: String,
    /// Acts as the node (`system:node:<name>`).
    pub client: kube::Client,
    /// Hands out pod addresses.
    pub ipam: Box<dyn Fn() -> Option<String> + Send + Sync>,
}

/// The earlier of two wake-ups.
fn soonest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long an exited container waits before its restart number `n` (10 s doubling to 5 min).
pub fn crash_backoff(restarts: i32) -> Duration {
    let secs = 10u64.saturating_mul(1 << restarts.clamp(0, 5));
    Duration::from_secs(secs.min(300))
}

pub struct Workers<R> {
    pub runtime: Arc<R>,
    pub nodes: HashMap<String, Arc<NodeHandle>>,
    pub pods: Store<Pod>,
    /// Containers waiting out their back-off: (uid, container) -> restart time.
    pub backoff: Mutex<HashMap<(String, String), Timestamp>>,
    /// Pods this node runs: key -> uid (to stop those deleted behind its back).
    pub known: Mutex<HashMap<String, String>>,
    /// Whether node pressure refuses new pods (the eviction manager's admission).
    pub admission: crate::eviction::Admission,
    /// The status last written for each pod (by uid), with the pod's resourceVersion it
    /// was computed from (kubelet's status manager keeps the same).
    pub written: Mutex<HashMap<String, (String, PodStatus)>>,
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl<R: ContainerRuntime> Workers<R> {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, PodStatus)>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pod `key` is no longer this node's: forget it.
    fn forget(&self, key: &str) -> Option<String> {
        let uid = self.known().remove(key)?;
        self.written().remove(&uid);
        Some(uid)
    }

    /// Bring one pod ("namespace/name") in line; when to look again.
    pub async fn sync(&self, key: &str) -> Result<Option<Duration>, kube::Error> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            // Gone from the API (deleted at once): nothing of it may keep running.
            if let Some(uid) = self.forget(key) {
                let _ = self.runtime.stop_pod(&uid, Duration::ZERO).await;
            }
            return Ok(None);
        };
        // A mirror pod is run from its manifest by the static pods' workers (local/static_pods).
        if crate::local::static_pods::is_mirror(&pod) {
            return Ok(None);
        }
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let Some(node) = self.nodes.get(&node_name) else {
            return Ok(None);
        };
        let uid = pod.uid().unwrap_or_default();
        self.known().insert(key.to_string(), uid.clone());
        let api: Api<Pod> = Api::namespaced(node.client.clone(), ns);
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
            let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
            // As kubelet does since 1.27: stop the containers, write the final status (how
            // each ended, a terminal phase), then remove the pod.
            let _ = self.runtime.kill_pod(&uid, grace).await;
            if let Some(state) = self.runtime.pod_state(&uid) {
                let mut status = status::pod_status(&pod, &state, &node.host_ip);
                if let Some(phase) = status::stopped_phase(&state) {
                    status.phase = Some(phase.into());
                }
                self.write_status(&api, name, &pod, &status).await?;
            }
            let _ = self.runtime.stop_pod(&uid, grace).await;
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            self.forget(key);
            return match api.delete(name, &params).await {
                Ok(_) => Ok(None),
                Err(e) if matches!(code(&e), Some(404 | 409)) => Ok(None),
                Err(e) => Err(e),
            };
        }
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let failed = |e: crate::runtime::RuntimeError| kube::Error::Service(e.to_string().into());
        let mut next;
        if self.runtime.pod_state(&uid).is_none() {
            if terminal {
                return Ok(None);
            }
            // Under node pressure a new pod fails instead of starting (kubelet's admission).
            if let Some(message) = self.admission.check(&pod) {
                let recorder =
                    minik_controllers::events::Recorder::new(node.client.clone(), "kubelet");
                crate::eviction::evict::reject(&node.client, &recorder, &pod, &message).await?;
                return Ok(None);
            }
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .or_else(|| (node.ipam)());
            self.runtime.start_pod(&pod, ip).await.map_err(failed)?;
            next = if self.runtime.images_present(&pod) {
                self.runtime.sync_pod(&pod).await.map_err(failed)?
            } else {
                // Its status now (containers being created, images pulled); they start
                // at the next sync.
                Some(Duration::ZERO)
            };
        } else {
            next = self.runtime.sync_pod(&pod).await.map_err(failed)?;
        }
        let Some(mut state) = self.runtime.pod_state(&uid) else {
            return Ok(next);
        };
        if !terminal {
            let due = self.restart_exited(&pod, &uid, &mut state).await;
            next = soonest(next, due);
        }
        let status = status::pod_status(&pod, &state, &node.host_ip);
        if !self.write_status(&api, name, &pod, &status).await? {
            return Ok(None);
        }
        if status
            .phase
            .as_deref()
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
        {
            // Its exited containers stay (for status) until the pod is deleted; the runtime
            // stops what still runs at its next sync (which this status write triggers).
            return Ok(None);
        }
        Ok(next)
    }

    /// Write the pod's status when the kubelet's fields changed; false when the pod is gone.
    /// The pod may be read from a cache that has not seen this node's last write yet: an
    /// API pod unchanged since that write, whose status would be written the same again,
    /// is left.
    async fn write_status(
        &self,
        api: &Api<Pod>,
        name: &str,
        pod: &Pod,
        status: &PodStatus,
    ) -> Result<bool, kube::Error> {
        if pod
            .status
            .as_ref()
            .is_some_and(|old| status::same(old, status))
        {
            return Ok(true);
        }
        let uid = pod.uid().unwrap_or_default();
        let version = pod.resource_version().unwrap_or_default();
        // A static pod (from its manifest, with no version) is written each time.
        let pending = !version.is_empty()
            && self
                .written()
                .get(&uid)
                .is_some_and(|(seen, last)| *seen == version && status::same(last, status));
        if pending {
            return Ok(true);
        }
        // Strategic: conditions merge by type, keeping other writers' (PodScheduled,
        // DisruptionTarget).
        let patch = json!({"status": status::patch_value(status)});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {
                if !version.is_empty() {
                    self.written().insert(uid, (version, status.clone()));
                }
                Ok(true)
            }
            Err(e) if code(&e) == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Restart containers whose back-off is over: app containers per restartPolicy, init
    /// containers that failed (unless Never), sidecars always. When the next one is due (or
    /// a running container's simulated exit), look again.
    async fn restart_exited(
        &self,
        pod: &Pod,
        uid: &str,
        state: &mut crate::runtime::PodState,
    ) -> Option<Duration> {
        let policy = pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let sidecar = |name: &str| {
            pod.spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten())
                .any(|c| c.name == name && status::is_sidecar(c))
        };
        // Once a pod that does not restart everything has its app containers done for
        // good, its sidecars are stopped, not restarted.
        let finished = policy != "Always"
            && !state.containers.is_empty()
            && state.containers.iter().all(|c| match c.state {
                State::Terminated { exit_code, .. } => policy == "Never" || exit_code == 0,
                _ => false,
            });
        let now = Timestamp::now();
        let mut next: Option<Duration> = None;
        let mut soonest = |d: Duration| next = Some(next.map_or(d, |n| n.min(d)));
        let init = state.init_containers.iter_mut().map(|c| (c, true));
        let apps = state.containers.iter_mut().map(|c| (c, false));
        for (c, is_init) in init.chain(apps) {
            let State::Terminated { exit_code, .. } = c.state else {
                continue;
            };
            let restart = if is_init && sidecar(&c.name) {
                !finished
            } else if is_init {
                exit_code != 0 && policy != "Never"
            } else {
                policy == "Always" || (policy == "OnFailure" && exit_code != 0)
            };
            if !restart {
                continue;
            }
            let key = (uid.to_string(), c.name.clone());
            let due = {
                let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                *b.entry(key.clone()).or_insert_with(|| {
                    now + k8s_openapi::jiff::SignedDuration::try_from(crash_backoff(
                        c.restart_count,
                    ))
                    .unwrap_or_default()
                })
            };
            if due <= now {
                self.backoff
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                if self.runtime.restart_container(uid, &c.name).await.is_ok()
                    && let Some(fresh) = self.runtime.pod_state(uid)
                    && let Some(f) = fresh.containers.into_iter().find(|f| f.name == c.name)
                {
                    *c = f;
                }
            } else {
                let back_off = crash_backoff(c.restart_count);
                // Waiting to restart: the run that ended is the last state.
                c.last = Some(c.state.clone());
                c.last_id = c.id.clone();
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {} restarting failed container={} pod={}_{}({uid})",
                        minik_api::quantity::go_duration(back_off),
                        c.name,
                        pod.metadata.name.as_deref().unwrap_or_default(),
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                    )),
                };
                soonest(Duration::try_from(due - now).unwrap_or_default());
            }
        }
        if let Some(d) = self.runtime.next_change(uid) {
            soonest(d);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use kube::client::Body;

    /// Workers over a client whose every request is a status patch answered with `pod`;
    /// the number of patches sent.
    fn workers(
        pod: &Pod,
    ) -> (
        Workers<crate::fake::FakeRuntime>,
        Api<Pod>,
        Arc<AtomicUsize>,
    ) {
        let patches = Arc::new(AtomicUsize::new(0));
        let (count, body) = (patches.clone(), serde_json::to_vec(pod).unwrap());
        let service = tower::service_fn(move |req: http::Request<Body>| {
            assert_eq!(req.method(), http::Method::PATCH);
            assert!(req.uri().path().ends_with("/pods/p/status"));
            count.fetch_add(1, Ordering::SeqCst);
            let response = http::Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap();
            async move { Ok::<_, Infallible>(response) }
        });
        let client = kube::Client::new(service, "default");
        let workers = Workers {
            runtime: Arc::default(),
            nodes: HashMap::new(),
            pods: Store::default(),
            backoff: Mutex::default(),
            known: Mutex::default(),
            admission: Default::default(),
            written: Mutex::default(),
        };
        (workers, Api::namespaced(client, "default"), patches)
    }

    fn pod(version: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1",
                "resourceVersion": version},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_status_is_not_written_twice_while_the_cache_lags() {
        let pending = pod("5", "Pending");
        let (workers, api, patches) = workers(&pending);
        let status = |phase: &str| PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        };
        let steps = [
            // Written.
            (pending.clone(), status("Running"), 1),
            // The cache still has the pod as it was before the write: nothing to write.
            (pending.clone(), status("Running"), 1),
            // A different status is written.
            (pending, status("Failed"), 2),
            // The pod changed since (another writer set it back): written again.
            (pod("7", "Pending"), status("Failed"), 3),
            // A static pod (no version; its mirror pod may be new) is written every time.
            (pod("", "Pending"), status("Failed"), 4),
            (pod("", "Pending"), status("Failed"), 5),
        ];
        for (i, (seen, status, sent)) in steps.into_iter().enumerate() {
            assert!(
                workers
                    .write_status(&api, "p", &seen, &status)
                    .await
                    .unwrap()
            );
            assert_eq!(patches.load(Ordering::SeqCst), sent, "step {i}");
        }
        // Once the pod is no longer the node's, what was written is forgotten.
        workers.known().insert("default/p".into(), "u1".into());
        assert_eq!(workers.forget("default/p").as_deref(), Some("u1"));
        assert!(workers.written().is_empty());
    }

    #[test]
    fn crash_loop_backoff_doubles_to_five_minutes() {
        assert_eq!(crash_backoff(0), Duration::from_secs(10));
        assert_eq!(crash_backoff(1), Duration::from_secs(20));
        assert_eq!(crash_backoff(4), Duration::from_secs(160));
        assert_eq!(crash_backoff(9), Duration::from_secs(300));
    }
}
