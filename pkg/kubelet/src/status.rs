//! Pod status as the kubelet writes it, from what the runtime reports: phase (kubelet's
//! getPhase), container, init container and ephemeral container statuses, IPs, QoS class;
//! the conditions are in conditions.rs.

use k8s_openapi::api::core::v1::{
    Container as Spec, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodIP, PodStatus, VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::conditions;
use crate::runtime::{Container, PodState, Probed, State};

/// A time as the API keeps it: whole seconds.
fn time(t: &Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(*t))
}

/// The API form of a state; `id` is the container's ("" when it never ran).
fn state(s: &State, id: &str) -> ContainerState {
    match s {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
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
            message,
            started,
            finished,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                message: message.clone().filter(|m| !m.is_empty()),
                started_at: Some(time(started)),
                finished_at: Some(time(finished)),
                container_id: (!id.is_empty()).then(|| id.to_string()),
                signal: None,
            }),
            ..Default::default()
        },
    }
}

/// Whether an init container is a sidecar (restartPolicy Always).
pub fn is_sidecar(spec: &Spec) -> bool {
    spec.restart_policy.as_deref() == Some("Always")
}

/// The volume mounts a container status lists (RecursiveReadOnlyMounts).
fn volume_mounts(spec: Option<&Spec>) -> Option<Vec<VolumeMountStatus>> {
    let mounts = spec?.volume_mounts.as_ref()?;
    Some(
        mounts
            .iter()
            .map(|m| {
                let read_only = m.read_only.unwrap_or(false);
                VolumeMountStatus {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    // A false readOnly is omitted, as the kubelet's JSON omits it.
                    read_only: read_only.then_some(true),
                    recursive_read_only: read_only.then(|| "Disabled".to_string()),
                    ..Default::default()
                }
            })
            .collect(),
    )
}

/// Which of the pod's lists a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Init,
    App,
    Ephemeral,
}

/// The status of container `c`; `spec` is its spec, `list` the list it is in.
/// A running container is started once its startup probe passed (at once without one),
/// and ready once started and its readiness probe passes (at once without one); a regular
/// init container is ready once it exited 0. An ephemeral container is never ready and
/// says nothing of being started (the kubelet's prober sets neither for them).
fn container_status(
    c: &Container,
    spec: Option<&Spec>,
    list: List,
    probed: Option<&Probed>,
) -> ContainerStatus {
    let running = matches!(c.state, State::Running { .. });
    let sidecar = spec.is_some_and(is_sidecar);
    let probed = probed.copied().unwrap_or_default();
    let started = running && probed.started.unwrap_or(true);
    let ready = match list {
        List::Init if !sidecar => matches!(c.state, State::Terminated { exit_code: 0, .. }),
        List::Init | List::App => started && probed.ready.unwrap_or(true),
        List::Ephemeral => false,
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: (!c.id.is_empty()).then(|| c.id.clone()),
        state: Some(state(&c.state, &c.id)),
        last_state: Some(
            c.last
                .as_ref()
                .map(|l| state(l, &c.last_id))
                .unwrap_or_default(),
        ),
        ready,
        started: (list != List::Ephemeral).then_some(started),
        restart_count: c.restart_count,
        volume_mounts: volume_mounts(spec),
        ..Default::default()
    }
}

fn policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The pod's phase, as kubelet's getPhase computes it from its containers.
pub fn phase(pod: &Pod, state: &PodState) -> &'static str {
    let policy = policy(pod);
    let empty = Vec::new();
    let (init_specs, specs) = pod.spec.as_ref().map_or((&empty, &empty), |s| {
        (s.init_containers.as_ref().unwrap_or(&empty), &s.containers)
    });
    let find = |list: &'_ [Container], name: &str| list.iter().find(|c| c.name == name).cloned();
    let (mut pending_init, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for spec in init_specs {
        let Some(c) = find(&state.init_containers, &spec.name) else {
            if is_sidecar(spec) {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        let last_exit = match &c.last {
            Some(State::Terminated { exit_code, .. }) => Some(*exit_code),
            _ => None,
        };
        match (&c.state, is_sidecar(spec)) {
            (State::Running { .. }, true) => running += 1,
            (State::Running { .. }, false) => pending_init += 1,
            (State::Terminated { .. }, true) => {}
            (State::Terminated { exit_code, .. }, false) => {
                failed_init += i32::from(*exit_code != 0)
            }
            (State::Waiting { .. }, true) if last_exit.is_none() => {
                pending_sidecars += 1;
                waiting += 1;
            }
            (State::Waiting { .. }, true) => {}
            (State::Waiting { .. }, false) => match last_exit {
                Some(code) => failed_init += i32::from(code != 0),
                None => pending_init += 1,
            },
        }
    }
    let mut initialized = false;
    for spec in specs {
        let Some(c) = find(&state.containers, &spec.name) else {
            unknown += 1;
            continue;
        };
        initialized |= !c.id.is_empty();
        match (&c.state, &c.last) {
            (State::Running { .. }, _) => running += 1,
            (State::Terminated { exit_code, .. }, _) => {
                stopped += 1;
                succeeded += i32::from(*exit_code == 0);
            }
            (State::Waiting { .. }, Some(State::Terminated { .. })) => stopped += 1,
            (State::Waiting { .. }, _) => waiting += 1,
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && !initialized) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        return match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

/// The phase of a pod being deleted once its containers are stopped, as kubelet's getPhase
/// gives it for a terminal pod (1.27+): Succeeded when every app container exited 0,
/// otherwise Failed; None while a container still runs.
pub fn stopped_phase(state: &PodState) -> Option<&'static str> {
    let mut exits = state.containers.iter().map(|c| match c.state {
        State::Terminated { exit_code, .. } => Some(exit_code),
        _ => None,
    });
    let all_zero = exits.try_fold(true, |ok, code| Some(ok && code? == 0))?;
    (!state.containers.is_empty()).then_some(if all_zero { "Succeeded" } else { "Failed" })
}

/// Guaranteed, Burstable or BestEffort, from the containers' requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
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

/// The statuses of `containers` (in spec order) for the specs given.
fn statuses(
    containers: &[Container],
    specs: &[Spec],
    list: List,
    probes: &std::collections::BTreeMap<String, Probed>,
) -> Vec<ContainerStatus> {
    containers
        .iter()
        .map(|c| {
            let spec = specs.iter().find(|s| s.name == c.name);
            container_status(c, spec, list, probes.get(&c.name))
        })
        .collect()
}

/// The whole status of a pod that the runtime runs on a node at `host_ip`.
pub fn pod_status(pod: &Pod, state: &PodState, host_ip: &str) -> PodStatus {
    let old = pod.status.as_ref();
    let mut phase = phase(pod, state);
    // Pods never leave a terminal phase.
    if let Some(p @ ("Succeeded" | "Failed")) = old.and_then(|s| s.phase.as_deref()) {
        phase = if p == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let (init_specs, specs) = pod.spec.as_ref().map_or((&[][..], &[][..]), |s| {
        (
            s.init_containers.as_deref().unwrap_or_default(),
            &s.containers[..],
        )
    });
    let init_statuses = statuses(
        &state.init_containers,
        init_specs,
        List::Init,
        &state.probes,
    );
    let container_statuses = statuses(&state.containers, specs, List::App, &state.probes);
    let ephemeral_specs = crate::ephemeral::specs(pod);
    let ephemeral_statuses = statuses(
        &state.ephemeral_containers,
        &ephemeral_specs,
        List::Ephemeral,
        &state.probes,
    );
    let ips = state.ip.iter().map(|ip| PodIP { ip: ip.clone() }).collect();
    let conditions = conditions::generate(
        pod,
        state.sandbox_ready,
        &init_statuses,
        &container_statuses,
        phase,
    );
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        init_container_statuses: (!init_specs.is_empty()).then_some(init_statuses),
        container_statuses: Some(container_statuses),
        // Runtimes that do not run ephemeral containers report none.
        ephemeral_container_statuses: (!ephemeral_statuses.is_empty())
            .then_some(ephemeral_statuses),
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

/// The status as a strategic merge patch sends it: the kubelet's conditions with an
/// explicit null reason and message when they have none, so stale ones are cleared.
pub fn patch_value(status: &PodStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(conditions) = value.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in conditions.iter_mut().filter_map(|c| c.as_object_mut()) {
            for field in ["reason", "message"] {
                c.entry(field).or_insert(serde_json::Value::Null);
            }
        }
    }
    value
}

/// Whether the fields the kubelet writes are the same in both (other writers' fields and
/// transition times aside), so an unchanged status is not written again.
pub fn same(a: &PodStatus, b: &PodStatus) -> bool {
    type Condition = (String, String, Option<String>, Option<String>);
    let ours = |s: &PodStatus| {
        let mut conditions: Vec<Condition> = s
            .conditions
            .iter()
            .flatten()
            .filter(|c| conditions::KUBELET.contains(&c.type_.as_str()))
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                )
            })
            .collect();
        // Their order is the API server's business.
        conditions.sort();
        (
            s.phase.clone(),
            conditions,
            s.container_statuses.clone(),
            s.init_container_statuses.clone().filter(|i| !i.is_empty()),
            s.ephemeral_container_statuses
                .clone()
                .filter(|e| !e.is_empty()),
            s.host_ip.clone(),
            s.pod_ip.clone(),
            s.qos_class.clone(),
        )
    };
    ours(a) == ours(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn container(name: &str, state: State, last: Option<State>) -> Container {
        Container {
            name: name.into(),
            image: "busybox".into(),
            image_id: String::new(),
            id: "minik://1".into(),
            state,
            last,
            last_id: String::new(),
            restart_count: 1,
        }
    }

    fn with(state: State, last: Option<State>) -> PodState {
        PodState {
            sandbox_ready: true,
            containers: vec![container("c", state, last)],
            ..Default::default()
        }
    }

    fn exited(code: i32) -> State {
        let now = Timestamp::now();
        State::Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started: now,
            finished: now,
        }
    }

    fn pod(policy: &str, init: &[(&str, bool)]) -> Pod {
        let spec = |name: &str| Spec {
            name: name.into(),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                containers: vec![spec("c")],
                init_containers: Some(
                    init.iter()
                        .map(|(n, sidecar)| Spec {
                            restart_policy: sidecar.then(|| "Always".into()),
                            ..spec(n)
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_crash_looping_pod_is_running() {
        let p = pod("Always", &[]);
        let waiting = || State::waiting("CrashLoopBackOff");
        assert_eq!(phase(&p, &with(waiting(), Some(exited(1)))), "Running");
        assert_eq!(phase(&p, &with(waiting(), None)), "Pending");
        assert_eq!(
            phase(&pod("Never", &[]), &with(exited(0), None)),
            "Succeeded"
        );
        assert_eq!(phase(&pod("Never", &[]), &with(exited(2), None)), "Failed");
        assert_eq!(
            phase(&pod("OnFailure", &[]), &with(exited(2), None)),
            "Running"
        );
    }

    #[test]
    fn init_containers_gate_the_phase() {
        let p = pod("Never", &[("init", false)]);
        let mut s = with(State::waiting("PodInitializing"), None);
        s.init_containers = vec![container(
            "init",
            State::Running {
                started: Timestamp::now(),
            },
            None,
        )];
        assert_eq!(phase(&p, &s), "Pending");
        s.init_containers[0].state = exited(1);
        assert_eq!(phase(&p, &s), "Failed");
        let p = pod("Always", &[("init", false)]);
        assert_eq!(phase(&p, &s), "Pending");
        s.init_containers[0].state = exited(0);
        s.containers[0].state = State::Running {
            started: Timestamp::now(),
        };
        assert_eq!(phase(&p, &s), "Running");
        // A running sidecar keeps a finished pod Running until it is stopped.
        let p = pod("Never", &[("sidecar", true)]);
        s.init_containers = vec![container(
            "sidecar",
            State::Running {
                started: Timestamp::now(),
            },
            None,
        )];
        s.containers[0].state = exited(0);
        assert_eq!(phase(&p, &s), "Running");
        let status = pod_status(&p, &s, "10.0.0.1");
        let init = status.init_container_statuses.unwrap_or_default();
        assert!(init[0].ready && init[0].started == Some(true));
        s.init_containers[0].state = exited(137);
        assert_eq!(phase(&p, &s), "Succeeded");
    }
}
