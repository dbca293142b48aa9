//! The probes of a pod's containers as the embedded runtime runs them: after each sync,
//! workers for the running containers (probes/), results of exited ones forgotten; the
//! results are read into the pod's state by container name.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Pod;
use minik_runtime::ContainerState;

use super::EmbeddedRuntime;
use crate::runtime::Probed;

/// The pod's running containers (latest run of each name) and its other containers' ids.
fn split(rt: &EmbeddedRuntime, uid: &str) -> (HashMap<String, String>, Vec<String>) {
    let mut latest: HashMap<String, minik_runtime::Container> = HashMap::new();
    let mut others = Vec::new();
    for c in rt.containers_of(uid) {
        match latest.remove(&c.config.name) {
            Some(old) if old.config.attempt > c.config.attempt => {
                others.push(c.config.id.clone());
                latest.insert(old.config.name.clone(), old);
            }
            Some(old) => {
                others.push(old.config.id.clone());
                latest.insert(c.config.name.clone(), c);
            }
            None => {
                latest.insert(c.config.name.clone(), c);
            }
        }
    }
    let mut running = HashMap::new();
    for (name, c) in latest {
        if matches!(c.state, ContainerState::Running { .. }) {
            running.insert(name, c.config.id);
        } else {
            others.push(c.config.id);
        }
    }
    (running, others)
}

/// Start probe workers for the pod's running containers; forget the exited ones.
pub(super) fn sync(rt: &EmbeddedRuntime, pod: &Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let (running, exited) = split(rt, &uid);
    let endpoint = super::hooks::endpoint(rt, &uid);
    rt.probes
        .sync(&rt.runtime, &rt.recorder, pod, &running, &endpoint, &exited);
}

/// Stop probing all containers of the pod (it is being removed).
pub(super) fn forget(rt: &EmbeddedRuntime, uid: &str) {
    let ids: Vec<String> = rt
        .containers_of(uid)
        .into_iter()
        .map(|c| c.config.id)
        .collect();
    rt.probes.forget(&ids);
}

/// What the probes say of the pod's running containers, by name.
pub(super) fn results(
    rt: &EmbeddedRuntime,
    runs: &[minik_runtime::Container],
) -> BTreeMap<String, Probed> {
    runs.iter()
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
        .filter_map(|c| Some((c.config.name.clone(), rt.probes.probed(&c.config.id)?)))
        .collect()
}
