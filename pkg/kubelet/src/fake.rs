//! The runtime of simulated nodes: containers "run" without processes. Pod annotations
//! drive them, for tests: `simulation.minik.io/exit-after: "<seconds>"` makes containers
//! exit that long after they start, with `simulation.minik.io/exit-code` (default 0).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::runtime::{Container, ContainerRuntime, PodState, RuntimeError, State};

pub const EXIT_AFTER: &str = "simulation.minik.io/exit-after";
pub const EXIT_CODE: &str = "simulation.minik.io/exit-code";

#[derive(Debug, Clone)]
struct Sim {
    container: Container,
    exit_after: Option<SignedDuration>,
    exit_code: i32,
}

/// uid -> (pod address, containers).
type Pods = HashMap<String, (Option<String>, Vec<Sim>)>;

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
            started: *started,
            finished: *started + after,
        },
        (s, _) => s.clone(),
    }
}

impl ContainerRuntime for FakeRuntime {
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
                Sim {
                    container: Container {
                        name: c.name.clone(),
                        image_id: digest(&image),
                        image,
                        id: format!("sim://{uid}/{}", c.name),
                        state: State::Running { started: now },
                        last: None,
                        restart_count: 0,
                    },
                    exit_after,
                    exit_code,
                }
            })
            .collect();
        self.lock().insert(uid, (ip, containers));
        Ok(())
    }

    fn pod_state(&self, uid: &str) -> Option<PodState> {
        let now = Timestamp::now();
        let pods = self.lock();
        let (ip, sims) = pods.get(uid)?;
        Some(PodState {
            ip: ip.clone(),
            containers: sims
                .iter()
                .map(|s| Container {
                    state: current(s, now),
                    ..s.container.clone()
                })
                .collect(),
        })
    }

    async fn restart_container(&self, uid: &str, name: &str) -> Result<(), RuntimeError> {
        let now = Timestamp::now();
        let mut pods = self.lock();
        let (_, sims) = pods
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
        let (_, sims) = pods.get(uid)?;
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
