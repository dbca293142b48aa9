//! The runtime of simulated nodes: containers "run" without processes. Pod annotations
//! drive them, for tests: `simulation.minik.io/exit-after: "<seconds>"` makes containers
//! exit that long after they start, with `simulation.minik.io/exit-code` (default 0). On a
//! simulated Node, `simulation.minik.io/heartbeat: "stop"` stops its Lease renewals and
//! status reports until the annotation is removed (see sim.rs).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::runtime::{Container, ContainerRuntime, ContainerStats, PodState, RuntimeError, State};

pub const EXIT_AFTER: &str = "simulation.minik.io/exit-after";
pub const EXIT_CODE: &str = "simulation.minik.io/exit-code";
/// A Node annotation: "stop" silences a simulated node.
pub const HEARTBEAT: &str = "simulation.minik.io/heartbeat";
pub const CPU_USAGE: &str = "simulation.minik.io/cpu-usage";
pub const MEMORY_USAGE: &str = "simulation.minik.io/memory-usage";
/// What containers use without annotations: 1m of cpu, 4Mi of memory (thousandths).
const DEFAULT_CPU_MILLI: i128 = 1;
const DEFAULT_MEMORY_MILLI: i128 = 4 * 1024 * 1024 * 1000;

#[derive(Debug, Clone)]
struct Sim {
    container: Container,
    exit_after: Option<SignedDuration>,
    exit_code: i32,
    cpu_nanocores: u64,
    memory_bytes: u64,
}

/// The usage an annotation gives `container` (in thousandths of the unit): `"200m"` for
/// every container, or `"web=200m,sidecar=10m"`; `default` when it says nothing valid.
fn annotated_usage(value: Option<&String>, container: &str, default: i128) -> i128 {
    let Some(value) = value else { return default };
    let quantity = if value.contains('=') {
        value.split(',').find_map(|part| {
            let (name, q) = part.split_once('=')?;
            (name.trim() == container).then_some(q.trim())
        })
    } else {
        Some(value.trim())
    };
    quantity
        .and_then(minik_api::quantity::parse)
        .filter(|q| *q >= 0)
        .unwrap_or(default)
}

/// uid -> (pod address, init containers (all completed at once), containers).
type Pods = HashMap<String, (Option<String>, Vec<Container>, Vec<Sim>)>;

/// A pod's init containers as the fake runs them: each exited 0 as soon as it started.
fn completed_init_containers(pod: &Pod, now: Timestamp) -> Vec<Container> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            Container {
                name: c.name.clone(),
                image_id: digest(&image),
                image,
                id: format!("sim://{uid}/{}", c.name),
                state: State::Terminated {
                    exit_code: 0,
                    reason: "Completed".into(),
                    message: None,
                    started: now,
                    finished: now,
                },
                last: None,
                last_id: String::new(),
                restart_count: 0,
            }
        })
        .collect()
}

#[derive(Default)]
pub struct FakeRuntime {
    pods: Mutex<Pods>,
}

fn digest(s: &str) -> String {
    // A stable fake digest per image name (FNV-1a, widened).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sha256:{h:016x}{h:016x}{h:016x}{h:016x}")
}

impl FakeRuntime {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pods> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The state of `sim` at `now`: running until its exit time, then terminated.
fn current(sim: &Sim, now: Timestamp) -> State {
    match (&sim.container.state, sim.exit_after) {
        (State::Running { started }, Some(after)) if *started + after <= now => State::Terminated {
            exit_code: sim.exit_code,
            reason: if sim.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .into(),
            message: None,
            started: *started,
            finished: *started + after,
        },
        (s, _) => s.clone(),
    }
}

impl ContainerRuntime for FakeRuntime {
    /// Nothing is pulled: containers run from the first sync, and its one status write says
    /// so (no second sync that may see the pod before that write and repeat it).
    fn images_present(&self, _pod: &Pod) -> bool {
        true
    }

    async fn start_pod(&self, pod: &Pod, ip: Option<String>) -> Result<(), RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let exit_after = annotations
            .get(EXIT_AFTER)
            .and_then(|v| v.parse::<f64>().ok())
            .map(SignedDuration::from_secs_f64);
        let exit_code = annotations
            .get(EXIT_CODE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let now = Timestamp::now();
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| {
                let image = c.image.clone().unwrap_or_default();
                let cpu = annotated_usage(annotations.get(CPU_USAGE), &c.name, DEFAULT_CPU_MILLI);
                let memory =
                    annotated_usage(annotations.get(MEMORY_USAGE), &c.name, DEFAULT_MEMORY_MILLI);
                Sim {
                    container: Container {
                        name: c.name.clone(),
                        image_id: digest(&image),
                        image,
                        id: format!("sim://{uid}/{}", c.name),
                        state: State::Running { started: now },
                        last: None,
                        last_id: String::new(),
                        restart_count: 0,
                    },
                    exit_after,
                    exit_code,
                    // thousandths of a core -> nanocores; thousandths of a byte -> bytes
                    cpu_nanocores: u64::try_from(cpu.saturating_mul(1_000_000)).unwrap_or(0),
                    memory_bytes: u64::try_from(memory / 1000).unwrap_or(0),
                }
            })
            .collect();
        let init = completed_init_containers(pod, now);
        self.lock().insert(uid, (ip, init, containers));
        Ok(())
    }

    fn pod_state(&self, uid: &str) -> Option<PodState> {
        let now = Timestamp::now();
        let pods = self.lock();
        let (ip, init, sims) = pods.get(uid)?;
        Some(PodState {
            ip: ip.clone(),
            sandbox_ready: true,
            init_containers: init.clone(),
            containers: sims
                .iter()
                .map(|s| Container {
                    state: current(s, now),
                    ..s.container.clone()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn restart_container(&self, uid: &str, name: &str) -> Result<(), RuntimeError> {
        let now = Timestamp::now();
        let mut pods = self.lock();
        let (_, _, sims) = pods
            .get_mut(uid)
            .ok_or_else(|| RuntimeError::UnknownPod(uid.into()))?;
        if let Some(s) = sims.iter_mut().find(|s| s.container.name == name) {
            s.container.last = Some(current(s, now));
            s.container.state = State::Running { started: now };
            s.container.restart_count += 1;
        }
        Ok(())
    }

    async fn stop_pod(&self, uid: &str, _grace: Duration) -> Result<(), RuntimeError> {
        self.lock().remove(uid);
        Ok(())
    }

    fn next_change(&self, uid: &str) -> Option<Duration> {
        let now = Timestamp::now();
        let pods = self.lock();
        let (_, _, sims) = pods.get(uid)?;
        sims.iter()
            .filter_map(|s| match (&s.container.state, s.exit_after) {
                (State::Running { started }, Some(after)) => {
                    Duration::try_from((*started + after) - now).ok()
                }
                _ => None,
            })
            .min()
            .map(|d| d + Duration::from_millis(10))
    }

    fn pods(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Running containers have used their annotated cpu rate since they started.
    fn container_stats(&self, uid: &str) -> Option<Vec<ContainerStats>> {
        let now = Timestamp::now();
        let pods = self.lock();
        let (_, _, sims) = pods.get(uid)?;
        Some(
            sims.iter()
                .filter_map(|s| {
                    let State::Running { started } = current(s, now) else {
                        return None;
                    };
                    let ran = u128::try_from(now.duration_since(started).as_nanos()).unwrap_or(0);
                    let cpu = ran * u128::from(s.cpu_nanocores) / 1_000_000_000;
                    Some(ContainerStats {
                        name: s.container.name.clone(),
                        started,
                        timestamp: now,
                        cpu_usage_core_nanoseconds: u64::try_from(cpu).unwrap_or(u64::MAX),
                        memory_working_set_bytes: s.memory_bytes,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container as Spec, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some("u1".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Spec {
                    name: "c".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[tokio::test]
    async fn containers_run_until_their_simulated_exit() {
        let rt = FakeRuntime::default();
        rt.start_pod(&pod(&[(EXIT_AFTER, "0"), (EXIT_CODE, "3")]), None)
            .await
            .unwrap();
        let state = rt.pod_state("u1").unwrap();
        assert!(matches!(
            state.containers[0].state,
            State::Terminated { exit_code: 3, .. }
        ));
        rt.restart_container("u1", "c").await.unwrap();
        let state = rt.pod_state("u1").unwrap();
        assert_eq!(state.containers[0].restart_count, 1);
        assert!(state.containers[0].last.is_some());
        rt.stop_pod("u1", Duration::ZERO).await.unwrap();
        assert!(rt.pod_state("u1").is_none());
    }

    #[tokio::test]
    async fn running_containers_report_their_annotated_usage() {
        let rt = FakeRuntime::default();
        rt.start_pod(&pod(&[(CPU_USAGE, "c=250m"), (MEMORY_USAGE, "64Mi")]), None)
            .await
            .unwrap();
        let stats = rt.container_stats("u1").unwrap();
        assert_eq!(stats[0].name, "c");
        assert_eq!(stats[0].memory_working_set_bytes, 64 << 20);
        let ran = stats[0].timestamp.duration_since(stats[0].started);
        let expected = ran.as_nanos() * 250_000_000 / 1_000_000_000;
        assert_eq!(i128::from(stats[0].cpu_usage_core_nanoseconds), expected);
        assert_eq!(annotated_usage(None, "c", 7), 7);
        assert_eq!(annotated_usage(Some(&"other=2".into()), "c", 7), 7);
        assert_eq!(annotated_usage(Some(&"x".into()), "c", 7), 7);
        assert_eq!(annotated_usage(Some(&"a=1,c=2".into()), "c", 7), 2000);
        // Exited containers report nothing.
        let rt = FakeRuntime::default();
        rt.start_pod(&pod(&[(EXIT_AFTER, "0")]), None)
            .await
            .unwrap();
        assert_eq!(rt.container_stats("u1"), Some(vec![]));
    }

    #[tokio::test]
    async fn without_annotations_containers_keep_running() {
        let rt = FakeRuntime::default();
        rt.start_pod(&pod(&[]), Some("10.42.0.2".into()))
            .await
            .unwrap();
        let state = rt.pod_state("u1").unwrap();
        assert!(matches!(state.containers[0].state, State::Running { .. }));
        assert_eq!(state.ip.as_deref(), Some("10.42.0.2"));
    }
}
