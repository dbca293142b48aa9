//! Container probes as kubelet's prober manager runs them: one worker per running
//! container and probe (liveness, readiness, startup), each probing every period after the
//! initial delay, with success and failure thresholds. Startup gates the other two and sets
//! `started`; readiness sets `ready`; a failed liveness or startup probe kills the container
//! (its preStop hook first), and the pod worker restarts it per restartPolicy. Results are
//! read into the pod's state (`PodState::probes`), so the pod's relist notices a change
//! and syncs the pod.
//!
//! - spec.rs: timing and the threshold state machine; action.rs: the handlers;
//!   net.rs: reaching the pod's ports from its network namespace; http.rs: httpGet;
//!   grpc.rs: grpc (grpc.health.v1); worker.rs: one probe of one container.

pub mod action;
pub mod grpc;
pub mod http;
pub mod net;
pub mod spec;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{Container, Pod};
use minik_controllers::events::Recorder;

use crate::runtime::Probed;
use net::Endpoint;
use spec::Kind;

type Results = Arc<Mutex<HashMap<String, Probed>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The probe workers of a node's containers and their results, by container id.
#[derive(Default)]
pub struct Manager {
    results: Results,
    workers: Mutex<HashMap<(String, Kind), tokio::task::AbortHandle>>,
}

/// The containers of a pod that may have probes: app containers and sidecars.
fn probed_specs(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| crate::status::is_sidecar(c));
    sidecars.chain(spec.into_iter().flat_map(|s| s.containers.iter()))
}

impl Manager {
    /// What the probes of container `id` say (None: it has no startup or readiness probe).
    pub fn probed(&self, id: &str) -> Option<Probed> {
        lock(&self.results).get(id).copied()
    }

    /// Stop the workers of containers `ids` and drop their results.
    pub fn forget(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let mut results = lock(&self.results);
        let mut workers = lock(&self.workers);
        for id in ids {
            results.remove(id);
        }
        workers.retain(|(w, _), handle| {
            let keep = !ids.contains(w);
            if !keep {
                handle.abort();
            }
            keep
        });
    }

    /// Start workers for the pod's running containers that lack them; `running` are the
    /// ids of the pod's running containers by name. Workers of containers no longer
    /// running end by themselves; their results go here.
    pub fn sync(
        &self,
        runtime: &std::sync::Arc<dyn crate::backend::Backend>,
        recorder: &Recorder,
        pod: &Pod,
        running: &HashMap<String, String>,
        endpoint: &Endpoint,
        forget: &[String],
    ) {
        self.forget(forget);
        for spec in probed_specs(pod) {
            let Some(id) = running.get(&spec.name) else {
                continue;
            };
            let probes = [
                (Kind::Startup, &spec.startup_probe),
                (Kind::Liveness, &spec.liveness_probe),
                (Kind::Readiness, &spec.readiness_probe),
            ];
            lock(&self.results).entry(id.clone()).or_insert(Probed {
                started: spec.startup_probe.is_some().then_some(false),
                ready: spec.readiness_probe.is_some().then_some(false),
            });
            for (kind, probe) in probes {
                let Some(probe) = probe else {
                    continue;
                };
                let key = (id.clone(), kind);
                if lock(&self.workers).contains_key(&key) {
                    continue;
                }
                let worker = worker::Worker {
                    kind,
                    probe: probe.clone(),
                    has_startup: spec.startup_probe.is_some(),
                    runtime: runtime.clone(),
                    recorder: recorder.clone(),
                    pod: pod.clone(),
                    spec: spec.clone(),
                    id: id.clone(),
                    endpoint: endpoint.clone(),
                    results: self.results.clone(),
                };
                let handle = tokio::spawn(worker.run()).abort_handle();
                lock(&self.workers).insert(key, handle);
            }
        }
        // Workers that ended (their container stopped) are dropped from the table.
        let live: HashSet<&String> = running.values().collect();
        lock(&self.workers).retain(|(id, _), h| live.contains(id) || !h.is_finished());
    }
}
