//! The pod workers: for each pod bound to a node this process runs, start it in the
//! runtime, restart exited containers per restartPolicy (with CrashLoopBackOff's doubling
//! delay), write the status when it changes, and finish pods being deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
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

    /// Bring one pod ("namespace/name") in line; when to look again.
    pub async fn sync(&self, key: &str) -> Result<Option<Duration>, kube::Error> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            // Gone from the API (deleted at once): nothing of it may keep running.
            let gone = self.known().remove(key);
            if let Some(uid) = gone {
                let _ = self.runtime.stop_pod(&uid, Duration::ZERO).await;
            }
            return Ok(None);
        };
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
            let _ = self
                .runtime
                .stop_pod(&uid, Duration::from_secs(u64::try_from(grace).unwrap_or(0)))
                .await;
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..Default::default()
            };
            self.known().remove(key);
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
        let Some(mut state) = self.runtime.pod_state(&uid) else {
            if terminal {
                return Ok(None);
            }
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .or_else(|| (node.ipam)());
            self.runtime
                .start_pod(&pod, ip)
                .await
                .map_err(|e| kube::Error::Service(e.to_string().into()))?;
            return Ok(Some(Duration::ZERO));
        };
        let next = self.restart_exited(&pod, &uid, &mut state).await;
        let status = status::pod_status(&pod, &state, &node.host_ip);
        if pod
            .status
            .as_ref()
            .is_none_or(|old| !status::same(old, &status))
        {
            // Strategic: conditions merge by type, keeping other writers' (PodScheduled,
            // DisruptionTarget).
            let patch = json!({"status": status});
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e) == Some(404) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        if status
            .phase
            .as_deref()
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
        {
            // Its exited containers stay (for status) until the pod is deleted.
            return Ok(None);
        }
        Ok(next)
    }

    /// Restart containers whose back-off is over; when the next one is due (or a running
    /// container's simulated exit), look again.
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
        let now = Timestamp::now();
        let mut next: Option<Duration> = None;
        let mut soonest = |d: Duration| next = Some(next.map_or(d, |n| n.min(d)));
        for c in &mut state.containers {
            let State::Terminated { exit_code, .. } = c.state else {
                continue;
            };
            let restart = policy == "Always" || (policy == "OnFailure" && exit_code != 0);
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
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
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

    #[test]
    fn crash_loop_backoff_doubles_to_five_minutes() {
        assert_eq!(crash_backoff(0), Duration::from_secs(10));
        assert_eq!(crash_backoff(1), Duration::from_secs(20));
        assert_eq!(crash_backoff(4), Duration::from_secs(160));
        assert_eq!(crash_backoff(9), Duration::from_secs(300));
    }
}
