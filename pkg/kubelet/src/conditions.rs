//! The pod conditions the kubelet owns, as kubelet's status generators write them:
//! PodReadyToStartContainers, Initialized, Ready (with readiness gates), ContainersReady
//! and PodScheduled, each keeping its lastTransitionTime while its status stays.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::status::is_sidecar;

/// The condition types the kubelet writes.
pub const KUBELET: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// A condition of `type_`, keeping the old transition time while its status is the same.
fn condition(
    pod: &Pod,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let before = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_));
    let since = before
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(Timestamp::now()));
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        message: message.filter(|m| !m.is_empty()),
        last_transition_time: Some(since),
        ..Default::default()
    }
}

/// "containers with unknown status: [a], containers with incomplete status: [b]".
fn listing(groups: &[(&str, &[String])]) -> String {
    groups
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("containers with {what} status: [{}]", names.join(" ")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// Initialized: every regular init container exited 0 and every sidecar started.
fn initialized(pod: &Pod, init: &[ContainerStatus], phase: &str) -> PodCondition {
    let (mut unknown, mut incomplete) = (Vec::new(), Vec::new());
    for spec in pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
    {
        let Some(status) = find(init, &spec.name) else {
            unknown.push(spec.name.clone());
            continue;
        };
        let done = if is_sidecar(spec) {
            status.started == Some(true)
        } else {
            status.ready
        };
        if !done {
            incomplete.push(spec.name.clone());
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition(pod, "Initialized", true, Some("PodCompleted"), None);
    }
    let message = listing(&[("unknown", &unknown), ("incomplete", &incomplete)]);
    if message.is_empty() {
        condition(pod, "Initialized", true, None, None)
    } else {
        condition(
            pod,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(message),
        )
    }
}

/// ContainersReady: every app container and every sidecar is ready. (status, reason, message)
fn containers_ready(
    pod: &Pod,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
    phase: &str,
) -> (bool, Option<&'static str>, Option<String>) {
    let (mut unknown, mut unready) = (Vec::new(), Vec::new());
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| is_sidecar(c))
        .map(|c| (c, init));
    let apps = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .map(|c| (c, containers));
    for (c, statuses) in sidecars.chain(apps) {
        match find(statuses, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.clone()),
            Some(_) => {}
            None => unknown.push(c.name.clone()),
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return (false, Some("PodCompleted"), None);
    }
    if phase == "Failed" {
        return (false, Some("PodFailed"), None);
    }
    let message = listing(&[("unknown", &unknown), ("unready", &unready)]);
    if message.is_empty() {
        (true, None, None)
    } else {
        (false, Some("ContainersNotReady"), Some(message))
    }
}

/// Readiness gates not met, from the conditions other writers set.
fn gates(pod: &Pod) -> Vec<String> {
    let current = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    pod.spec
        .iter()
        .flat_map(|s| s.readiness_gates.iter().flatten())
        .filter_map(|g| {
            let t = &g.condition_type;
            match current.and_then(|c| c.iter().find(|c| &c.type_ == t)) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{t}\" does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
        .collect()
}

/// Every kubelet condition of a pod in `phase` with these statuses.
pub fn generate(
    pod: &Pod,
    sandbox_ready: bool,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
    phase: &str,
) -> Vec<PodCondition> {
    let (ready, reason, message) = containers_ready(pod, init, containers, phase);
    let unmet = gates(pod);
    let pod_ready = if !ready {
        condition(pod, "Ready", false, reason, message.clone())
    } else if !unmet.is_empty() {
        condition(
            pod,
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(unmet.join(", ")),
        )
    } else {
        condition(pod, "Ready", true, None, None)
    };
    vec![
        condition(pod, "PodReadyToStartContainers", sandbox_ready, None, None),
        initialized(pod, init, phase),
        pod_ready,
        condition(pod, "ContainersReady", ready, reason, message),
        condition(pod, "PodScheduled", true, None, None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodReadinessGate, PodSpec};

    fn pod() -> Pod {
        let c = |name: &str, policy: Option<&str>| Container {
            name: name.into(),
            restart_policy: policy.map(str::to_string),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![c("init", None), c("sidecar", Some("Always"))]),
                containers: vec![c("app", None)],
                readiness_gates: Some(vec![PodReadinessGate {
                    condition_type: "example.com/gate".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn status(name: &str, ready: bool, started: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            started: Some(started),
            ..Default::default()
        }
    }

    fn get<'a>(conditions: &'a [PodCondition], t: &str) -> &'a PodCondition {
        conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn conditions_say_which_containers_hold_the_pod_back() {
        let p = pod();
        let init = [status("init", false, true), status("sidecar", false, false)];
        let c = generate(&p, true, &init, &[status("app", false, false)], "Pending");
        let i = get(&c, "Initialized");
        assert_eq!(i.status, "False");
        assert_eq!(i.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(
            i.message.as_deref(),
            Some("containers with incomplete status: [init sidecar]")
        );
        let r = get(&c, "ContainersReady");
        assert_eq!(
            r.message.as_deref(),
            Some("containers with unready status: [sidecar app]")
        );
        let init = [status("init", true, false), status("sidecar", true, true)];
        let c = generate(&p, true, &init, &[status("app", true, true)], "Running");
        assert_eq!(get(&c, "Initialized").status, "True");
        assert_eq!(get(&c, "ContainersReady").status, "True");
        let ready = get(&c, "Ready");
        assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some(
                "corresponding condition of pod readiness gate \"example.com/gate\" does not exist."
            )
        );
        let c = generate(&p, true, &init, &[status("app", false, false)], "Failed");
        assert_eq!(get(&c, "Ready").reason.as_deref(), Some("PodFailed"));
    }
}
