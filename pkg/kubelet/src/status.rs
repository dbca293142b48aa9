//! Pod status as the kubelet writes it, from what the runtime reports: phase, conditions,
//! container statuses, IPs, QoS class.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::runtime::{Container, PodState, State};

/// A time as the API keeps it: whole seconds.
fn time(t: &Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(*t))
}

fn state(s: &State) -> ContainerState {
    match s {
        State::Waiting { reason } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: None,
            }),
            ..Default::default()
        },
        State::Running { started } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(started)),
            }),
            ..Default::default()
        },
        State::Terminated {
            exit_code,
            reason,
            started,
            finished,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                started_at: Some(time(started)),
                finished_at: Some(time(finished)),
                container_id: None,
                message: None,
                signal: None,
            }),
            ..Default::default()
        },
    }
}

fn container_status(c: &Container) -> ContainerStatus {
    let running = matches!(c.state, State::Running { .. });
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: Some(c.id.clone()),
        state: Some(state(&c.state)),
        last_state: Some(c.last.as_ref().map(state).unwrap_or_default()),
        ready: running,
        started: Some(running),
        restart_count: c.restart_count,
        ..Default::default()
    }
}

/// The pod's phase: Running while any container runs (or will restart), else Succeeded
/// when every container exited 0, else Failed.
pub fn phase(pod: &Pod, state: &PodState) -> &'static str {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let mut all_zero = true;
    for c in &state.containers {
        // Waiting to restart after it ran (CrashLoopBackOff) counts as its last run.
        let seen = match (&c.state, &c.last) {
            (State::Waiting { .. }, Some(last @ State::Terminated { .. })) => last,
            (now, _) => now,
        };
        match seen {
            State::Running { .. } => return "Running",
            State::Waiting { .. } => return "Pending",
            State::Terminated { exit_code, .. } => {
                let restarts = policy == "Always" || (policy == "OnFailure" && *exit_code != 0);
                if restarts {
                    return "Running";
                }
                all_zero &= *exit_code == 0;
            }
        }
    }
    if state.containers.is_empty() {
        "Pending"
    } else if all_zero {
        "Succeeded"
    } else {
        "Failed"
    }
}

/// Guaranteed, Burstable or BestEffort, from the containers' requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let r = c.resources.as_ref();
        let requests = r.and_then(|r| r.requests.as_ref());
        let limits = r.and_then(|r| r.limits.as_ref());
        for res in ["cpu", "memory"] {
            let req = requests.and_then(|m| m.get(res));
            let lim = limits.and_then(|m| m.get(res));
            any |= req.is_some() || lim.is_some();
            guaranteed &= lim.is_some() && req.is_none_or(|q| Some(q) == lim);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn condition(old: Option<&PodStatus>, type_: &str, ok: bool, reason: Option<&str>) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let before = old
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
        last_transition_time: Some(since),
        ..Default::default()
    }
}

/// The whole status of a pod that the runtime runs on a node at `host_ip`.
pub fn pod_status(pod: &Pod, state: &PodState, host_ip: &str) -> PodStatus {
    let old = pod.status.as_ref();
    let phase = phase(pod, state);
    let running = state
        .containers
        .iter()
        .all(|c| matches!(c.state, State::Running { .. }));
    let ready = phase == "Running" && running;
    let not_ready = (!ready).then_some(if phase == "Succeeded" || phase == "Failed" {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    });
    let ips = state.ip.iter().map(|ip| PodIP { ip: ip.clone() }).collect();
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![
            condition(old, "PodReadyToStartContainers", true, None),
            condition(old, "Initialized", true, None),
            condition(old, "Ready", ready, not_ready),
            condition(old, "ContainersReady", ready, not_ready),
            condition(old, "PodScheduled", true, None),
        ]),
        container_statuses: Some(state.containers.iter().map(container_status).collect()),
        host_ip: Some(host_ip.into()),
        host_ips: Some(vec![HostIP { ip: host_ip.into() }]),
        pod_ip: state.ip.clone(),
        pod_ips: Some(ips),
        start_time: old
            .and_then(|s| s.start_time.clone())
            .or_else(|| Some(Time(Timestamp::now()))),
        qos_class: Some(qos_class(pod).into()),
        ..Default::default()
    }
}

/// Whether the fields the kubelet writes are the same in both (other writers' fields and
/// transition times aside), so an unchanged status is not written again.
pub fn same(a: &PodStatus, b: &PodStatus) -> bool {
    let ours = |s: &PodStatus| {
        let mut conditions: Vec<(String, String, Option<String>)> = s
            .conditions
            .iter()
            .flatten()
            .filter(|c| KUBELET_CONDITIONS.contains(&c.type_.as_str()))
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect();
        // Their order is the API server's business.
        conditions.sort();
        (
            s.phase.clone(),
            conditions,
            s.container_statuses.clone(),
            s.host_ip.clone(),
            s.pod_ip.clone(),
            s.qos_class.clone(),
        )
    };
    ours(a) == ours(b)
}

const KUBELET_CONDITIONS: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn with(state: State, last: Option<State>) -> PodState {
        PodState {
            ip: None,
            containers: vec![Container {
                name: "c".into(),
                image: "busybox".into(),
                image_id: String::new(),
                id: String::new(),
                state,
                last,
                restart_count: 1,
            }],
        }
    }

    #[test]
    fn a_crash_looping_pod_is_running() {
        let now = Timestamp::now();
        let waiting = || State::Waiting {
            reason: "CrashLoopBackOff".into(),
        };
        let exited = State::Terminated {
            exit_code: 1,
            reason: "Error".into(),
            started: now,
            finished: now,
        };
        let pod = Pod::default();
        assert_eq!(phase(&pod, &with(waiting(), Some(exited))), "Running");
        assert_eq!(phase(&pod, &with(waiting(), None)), "Pending");
    }
}
