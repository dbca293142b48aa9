//! One sync of a pod (kubelet's SyncPod over computePodActions): volumes set up, then
//! refreshed every minute; each ephemeral container not yet created (never restarted,
//! started even while init containers run, not once the pod is finished or terminating);
//! init containers one at a time, each after the one before exited 0 (sidecars started in
//! order and left running); then every app container not yet created. Containers that
//! could not be created are retried when their back-off ends. A finished pod's remaining
//! containers (sidecars) are stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container as Spec, Pod};
use minik_controllers::events::Kind;
use minik_runtime::ContainerState;

use super::api::Lookups;
use super::start::{self, Failure, Role};
use super::volumes::{SetUp, Volumes};
use super::{EmbeddedRuntime, Entry, Waiting};
use crate::runtime::RuntimeError;
use crate::status::is_sidecar;

/// How often configMap, secret, downwardAPI and projected volumes are rewritten.
const REFRESH: Duration = Duration::from_secs(60);
/// How soon a volume that could not be set up is tried again.
const MOUNT_RETRY: Duration = Duration::from_secs(5);
/// How soon a container still being started is looked at again.
const STARTING: Duration = Duration::from_secs(1);

fn soonest(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Each container name's latest run.
fn latest(rt: &EmbeddedRuntime, uid: &str) -> HashMap<String, minik_runtime::Container> {
    let mut out: HashMap<String, minik_runtime::Container> = HashMap::new();
    for c in rt.containers_of(uid) {
        let newer = out
            .get(&c.config.name)
            .is_none_or(|o| c.config.attempt >= o.config.attempt);
        if newer {
            out.insert(c.config.name.clone(), c);
        }
    }
    out
}

/// Remove runs of `name` older than the one before the latest (their logs too).
async fn prune(rt: &EmbeddedRuntime, uid: &str, name: &str) {
    let mut runs: Vec<_> = rt
        .containers_of(uid)
        .into_iter()
        .filter(|c| c.config.name == name)
        .collect();
    runs.sort_by_key(|c| c.config.attempt);
    let keep = runs.len().saturating_sub(2);
    for old in &runs[..keep] {
        if let Err(e) = rt.remove_container(uid, old, Duration::ZERO).await {
            tracing::warn!(container = old.config.id, error = %e, "removing an old container");
        }
        let _ = std::fs::remove_file(rt.layout.termination_log(uid, name, &old.config.id));
    }
}

/// Start run `attempt` of `spec`, recording why it is waiting if it cannot start.
async fn launch(
    rt: &EmbeddedRuntime,
    entry: &Entry,
    pod: &Pod,
    spec: &Spec,
    role: Role,
    attempt: u32,
    volumes: &Volumes,
) -> Result<(), Failure> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ip = entry.shared().ip.clone();
    match start::start(rt, pod, spec, role, attempt, volumes, ip).await {
        Ok(()) => {
            entry.shared().waiting.remove(&spec.name);
            prune(rt, &uid, &spec.name).await;
            Ok(())
        }
        Err(f) => {
            tracing::info!(pod = ?pod.metadata.name, container = spec.name, reason = f.reason, message = f.message, "container not started");
            let waiting = Waiting {
                reason: f.reason.clone(),
                message: Some(f.message.clone()),
                retry: Instant::now() + f.retry,
            };
            entry.shared().waiting.insert(spec.name.clone(), waiting);
            Err(f)
        }
    }
}

/// Stop the pod's running containers (sidecars of a finished pod, everything of a pod
/// that turned Succeeded or Failed), the last init container first. They are stopped in
/// the background, so the pod's status keeps being written during their grace period.
fn stop_running(rt: &EmbeddedRuntime, entry: &Arc<Entry>, pod: &Pod, only: Option<&[String]>) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut running: Vec<_> = rt
        .containers_of(&uid)
        .into_iter()
        .filter(|c| {
            matches!(
                c.state,
                ContainerState::Running { .. } | ContainerState::Created
            )
        })
        .filter(|c| only.is_none_or(|names| names.contains(&c.config.name)))
        .filter(|c| entry.shared().stopping.insert(c.config.id.clone()))
        .collect();
    if running.is_empty() {
        return;
    }
    running.reverse();
    for c in &running {
        rt.recorder.event(
            pod,
            Kind::Normal,
            "Killing",
            &format!("Stopping container {}", c.config.name),
        );
    }
    let (runtime, entry, grace) = (
        rt.runtime.clone(),
        entry.clone(),
        crate::runtime::termination_grace(pod),
    );
    tokio::spawn(async move {
        for c in running {
            if let Err(e) = runtime.stop_container(&c.config.id, grace).await {
                tracing::warn!(container = c.config.id, error = %e, "stopping a container");
            }
            entry.shared().stopping.remove(&c.config.id);
        }
    });
}

/// Set up or refresh the volumes; None when they are not usable yet.
async fn volumes(rt: &EmbeddedRuntime, pod: &Pod, work: &mut super::Work) -> Option<Volumes> {
    let due = work.volumes.is_none() || work.refreshed.is_none_or(|t| t.elapsed() >= REFRESH);
    if due {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut lookups = Lookups::new(rt.client.clone(), namespace);
        let facts = rt
            .node
            .facts()
            .await
            .unwrap_or_else(|_| rt.node.known().unwrap_or_default());
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let addresses = super::fieldpath::Addresses {
            host_ips: facts.addresses.clone(),
            pod_ips: if host_network {
                facts.addresses.clone()
            } else {
                Vec::new()
            },
        };
        let mut set_up = SetUp {
            layout: &rt.layout,
            client: &rt.client,
            pod,
            addresses: &addresses,
            allocatable: &facts.allocatable,
            tokens: &mut work.tokens,
        };
        work.refreshed = Some(Instant::now());
        match set_up.run(&mut lookups).await {
            Ok(v) => {
                work.volumes = Some(v);
                work.mount_error = None;
            }
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(pod = ?pod.metadata.name, error = message, "setting up volumes");
                if work.mount_error.as_ref() != Some(&message) {
                    rt.recorder
                        .event(pod, Kind::Warning, "FailedMount", &message);
                    work.mount_error = Some(message);
                }
            }
        }
    }
    work.volumes.clone()
}

/// One sync of a pod the runtime has: when to look again.
pub(super) async fn sync(
    rt: &EmbeddedRuntime,
    pod: &Pod,
) -> Result<Option<Duration>, RuntimeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let entry = rt.entry_for(pod, None);
    let mut work = entry.work.lock().await;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        stop_running(rt, &entry, pod, None);
        return Ok(None);
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(volumes) = volumes(rt, pod, &mut work).await else {
        return Ok(Some(MOUNT_RETRY));
    };
    drop(work);
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let inits = spec.init_containers.clone().unwrap_or_default();
    let mut next = Some(REFRESH);
    let now = Instant::now();
    let runs = latest(rt, &uid);
    let exit_of = |name: &str| match runs.get(name).map(|c| &c.state) {
        Some(ContainerState::Exited { exit_code, .. }) => Some(*exit_code),
        _ => None,
    };
    // A finished pod's sidecars go once its app containers are done for good.
    let apps_done = !spec.containers.is_empty()
        && spec.containers.iter().all(|c| match exit_of(&c.name) {
            Some(code) => policy == "Never" || (policy == "OnFailure" && code == 0),
            None => false,
        });
    if apps_done && policy != "Always" {
        let sidecars: Vec<String> = inits
            .iter()
            .filter(|c| is_sidecar(c))
            .map(|c| c.name.clone())
            .collect();
        stop_running(rt, &entry, pod, Some(&sidecars));
        return Ok(None);
    }
    let due = Due {
        entry: &entry,
        pod,
        runs: &runs,
        volumes: &volumes,
        now,
    };
    // Ephemeral containers may start before the pod is initialized.
    let ephemeral = crate::ephemeral::specs(pod);
    next = due.start(rt, &ephemeral, Role::Ephemeral, next).await;
    // What is waiting to be retried, and when.
    let waiting = |name: &str| entry.shared().waiting.get(name).map(|w| w.retry);
    let initialized = spec.containers.iter().any(|c| runs.contains_key(&c.name));
    if !initialized {
        for c in &inits {
            let mut run = runs.get(&c.name).cloned();
            let retry = waiting(&c.name);
            if let Some(at) = retry.filter(|at| *at > now) {
                return Ok(soonest(next, at - now));
            }
            if run.is_none() || retry.is_some() {
                let attempt = run.as_ref().map_or(0, |r| r.config.attempt + 1);
                if let Err(f) = launch(rt, &entry, pod, c, Role::Init, attempt, &volumes).await {
                    return Ok(soonest(next, f.retry));
                }
                run = latest(rt, &uid).remove(&c.name);
            }
            match run.map(|r| r.state) {
                Some(ContainerState::Running { .. }) if is_sidecar(c) => continue,
                Some(ContainerState::Exited { exit_code: 0, .. }) if !is_sidecar(c) => continue,
                Some(ContainerState::Created) | None => return Ok(soonest(next, STARTING)),
                // Running to completion, or exited and waiting to be restarted.
                _ => return Ok(next),
            }
        }
    }
    Ok(due.start(rt, &spec.containers, Role::App, next).await)
}

/// The containers of a list that start whenever they have no run yet, or once the back-off
/// of their last failed start ends (app containers; ephemeral ones, which never run twice).
struct Due<'a> {
    entry: &'a Entry,
    pod: &'a Pod,
    runs: &'a HashMap<String, minik_runtime::Container>,
    volumes: &'a Volumes,
    now: Instant,
}

impl Due<'_> {
    /// Start those of `specs` that are due; `next` made the soonest retry.
    async fn start(
        &self,
        rt: &EmbeddedRuntime,
        specs: &[Spec],
        role: Role,
        mut next: Option<Duration>,
    ) -> Option<Duration> {
        for c in specs {
            let run = self.runs.get(&c.name);
            let retry = self.entry.shared().waiting.get(&c.name).map(|w| w.retry);
            if let Some(at) = retry.filter(|at| *at > self.now) {
                next = soonest(next, at - self.now);
                continue;
            }
            if run.is_none() || retry.is_some() {
                let attempt = run.map_or(0, |r| r.config.attempt + 1);
                let launched =
                    launch(rt, self.entry, self.pod, c, role, attempt, self.volumes).await;
                if let Err(f) = launched {
                    next = soonest(next, f.retry);
                }
            }
        }
        next
    }
}

/// Start the next run of container `name` (its restart per restartPolicy).
pub(super) async fn restart(
    rt: &EmbeddedRuntime,
    uid: &str,
    name: &str,
) -> Result<(), RuntimeError> {
    let entry = rt
        .entry(uid)
        .ok_or_else(|| RuntimeError::UnknownPod(uid.into()))?;
    let pod = entry.shared().pod.clone();
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let (c, role) = match inits.iter().find(|c| c.name == name) {
        Some(c) => (c.clone(), Role::Init),
        None => (
            spec.containers
                .iter()
                .find(|c| c.name == name)
                .cloned()
                .ok_or_else(|| {
                    RuntimeError::Failed(format!("pod {uid} has no container {name}"))
                })?,
            Role::App,
        ),
    };
    let volumes =
        entry.work.lock().await.volumes.clone().ok_or_else(|| {
            RuntimeError::Failed(format!("the volumes of pod {uid} are not set up"))
        })?;
    let attempt = latest(rt, uid)
        .get(name)
        .map_or(0, |r| r.config.attempt + 1);
    launch(rt, &entry, &pod, &c, role, attempt, &volumes)
        .await
        .map_err(|f| RuntimeError::Failed(f.to_string()))
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
