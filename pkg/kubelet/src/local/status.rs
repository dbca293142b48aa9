//! The real node's Node object: registration (create, or on a later start refresh the
//! labels kubelet owns), and the status kubelet computes every 10 s — pressure conditions
//! as the eviction manager sees them (eviction/), Ready, capacity, addresses, node info and
//! the images the store holds — posted when it changed or every 5 min (kubelet's
//! nodeStatusUpdateFrequency and nodeStatusReportFrequency), and at once when the node
//! lifecycle controller marked it not Ready.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::kubelet_args::Eviction;
use crate::machine::{self, Machine};

/// How often the status is computed, and how often it is posted unchanged.
pub const UPDATE: Duration = Duration::from_secs(10);
pub const REPORT: Duration = Duration::from_secs(300);
/// At most this many images, largest first, with at most 5 names each (kubelet's limits).
const MAX_IMAGES: usize = 50;
const MAX_NAMES: usize = 5;

/// Which hard eviction thresholds are crossed now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// memory.available.
    pub memory: bool,
    /// nodefs or imagefs available space or free inodes.
    pub disk: bool,
    /// pid.available.
    pub pid: bool,
}

/// The pressure on the machine now: the hard thresholds the eviction manager's signals
/// meet (eviction/signals.rs: the data dir is the node filesystem, the image store the
/// image filesystem).
pub fn pressure(eviction: &Eviction, data_dir: &Path) -> Pressure {
    use crate::eviction::signals;
    let images = minik_runtime::images::store_root(data_dir);
    let met = signals::met(eviction, &signals::observe(data_dir, &images));
    let on = signals::conditions(&met);
    Pressure {
        memory: on.contains(&"MemoryPressure"),
        disk: on.contains(&"DiskPressure"),
        pid: on.contains(&"PIDPressure"),
    }
}

/// The node's conditions; a condition whose status is as `previous` had it keeps its
/// transition time.
pub fn conditions(
    p: Pressure,
    previous: &[NodeCondition],
    network: Result<(), String>,
) -> Vec<NodeCondition> {
    let now = Time(Timestamp::now());
    let make = |type_: &str, on: bool, yes: (&str, &str), no: (&str, &str)| {
        let status = if on { "True" } else { "False" };
        let (reason, message) = if on { yes } else { no };
        let message = match (&network, type_) {
            (Err(e), "Ready") => format!(
                "container runtime network not ready: NetworkReady=false \
                 reason:NetworkPluginNotReady message:Network plugin returns error: {e}"
            ),
            _ => message.to_string(),
        };
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(since),
        }
    };
    vec![
        make(
            "MemoryPressure",
            p.memory,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        make(
            "DiskPressure",
            p.disk,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        make(
            "PIDPressure",
            p.pid,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
        make(
            "Ready",
            network.is_ok(),
            ("KubeletReady", "kubelet is posting ready status"),
            ("KubeletNotReady", "kubelet is not ready"),
        ),
    ]
}

/// The images of the node's status: largest first, names being digests then tags.
pub fn images(mut list: Vec<minik_runtime::Image>) -> Vec<ContainerImage> {
    list.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
    list.into_iter()
        .take(MAX_IMAGES)
        .map(|i| {
            let names: Vec<String> = i
                .repo_digests
                .into_iter()
                .chain(i.repo_tags)
                .take(MAX_NAMES)
                .collect();
            ContainerImage {
                names: Some(names),
                size_bytes: i64::try_from(i.size).ok(),
            }
        })
        .collect()
}

/// The whole status of the node.
pub fn node_status(
    machine: &Machine,
    conditions: Vec<NodeCondition>,
    images: Vec<ContainerImage>,
) -> NodeStatus {
    NodeStatus {
        capacity: Some(machine.capacity.clone()),
        allocatable: Some(machine.allocatable.clone()),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: machine.address.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: machine.name.clone(),
            },
        ]),
        node_info: Some(machine.node_info.clone()),
        images: Some(images),
        // Where the API server reaches the kubelet server.
        daemon_endpoints: (machine.kubelet_port != 0).then(|| NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(machine.kubelet_port),
            }),
        }),
        ..Default::default()
    }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Create the Node with its labels and taints; when it exists (a later start), only
/// the labels kubelet owns are set again (`--node-label` and `--node-taint` apply at
/// registration, as in k3s).
pub async fn register(api: &Api<Node>, machine: &Machine) -> Result<(), kube::Error> {
    let annotations: BTreeMap<String, String> = [(
        "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
        "true".to_string(),
    )]
    .into_iter()
    .collect();
    let node = Node {
        metadata: ObjectMeta {
            name: Some(machine.name.clone()),
            labels: Some(machine.labels.clone()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!machine.taints.is_empty()).then(|| machine.taints.clone()),
            ..Default::default()
        }),
        status: None,
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {
            tracing::info!(node = machine.name, "node registered");
            Ok(())
        }
        Err(e) if code(&e) == Some(409) => {
            let patch = json!({"metadata": {"labels": machine::default_labels(&machine.name)}});
            api.patch(
                &machine.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            tracing::info!(node = machine.name, "node registered again");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// What the status says apart from heartbeat times, to tell whether it changed.
fn essence(s: &NodeStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(cs) = v["conditions"].as_array_mut() {
        for c in cs {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastHeartbeatTime");
            }
        }
    }
    v
}

/// Computes the status and decides when to post it.
pub struct Reporter {
    last: Option<(NodeStatus, Instant)>,
    /// The eviction manager's view of the pressure (None: measured at each tick).
    pressure: Option<crate::eviction::Admission>,
    /// The pod network, whose readiness is the node's (None: always ready).
    network: Option<std::sync::Arc<dyn minik_network::PodNetwork>>,
}

impl Reporter {
    pub fn new() -> Reporter {
        Reporter {
            last: None,
            pressure: None,
            network: None,
        }
    }

    /// The node is Ready only while `network` can attach pods.
    pub fn with_network(
        mut self,
        network: Option<std::sync::Arc<dyn minik_network::PodNetwork>>,
    ) -> Reporter {
        self.network = network;
        self
    }

    /// Whether the pod network can attach pods (the reason when not).
    pub fn network_ready(&self) -> Result<(), String> {
        match &self.network {
            Some(n) => n.network_ready().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// A reporter whose pressure conditions are the eviction manager's (which keeps a
    /// condition for kubelet's pressure transition period after the pressure ends).
    pub fn with_pressure(pressure: crate::eviction::Admission) -> Reporter {
        Reporter {
            last: None,
            pressure: Some(pressure),
            network: None,
        }
    }

    /// Compute the status and post it when it changed, when `REPORT` passed since the
    /// last post, or when `current` (the Node as the API has it) is not Ready.
    pub async fn tick(
        &mut self,
        api: &Api<Node>,
        machine: &Machine,
        images_now: Vec<ContainerImage>,
        current: Option<&Node>,
    ) -> Result<(), kube::Error> {
        let previous: Vec<NodeCondition> = match &self.last {
            Some((s, _)) => s.conditions.clone().unwrap_or_default(),
            None => current
                .and_then(|n| n.status.as_ref()?.conditions.clone())
                .unwrap_or_default(),
        };
        let pressure = match &self.pressure {
            Some(admission) => {
                let on = admission.conditions();
                Pressure {
                    memory: on.contains(&"MemoryPressure"),
                    disk: on.contains(&"DiskPressure"),
                    pid: on.contains(&"PIDPressure"),
                }
            }
            None => pressure(&machine.eviction, &machine.data_dir),
        };
        let conditions = conditions(pressure, &previous, self.network_ready());
        let status = node_status(machine, conditions, images_now);
        let not_ready = current.is_some_and(|n| {
            !n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        let due = match &self.last {
            None => true,
            Some((s, at)) => essence(s) != essence(&status) || at.elapsed() >= REPORT,
        };
        // The node lifecycle controller marked it not Ready while it is: say so at once.
        let ready_now = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !(due || (not_ready && ready_now)) {
            return Ok(());
        }
        let patch = json!({"status": status});
        api.patch_status(
            &machine.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        self.last = Some((status, Instant::now()));
        Ok(())
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, size: u64, tags: &[&str]) -> minik_runtime::Image {
        minik_runtime::Image {
            id: id.into(),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: vec![format!("docker.io/library/x@sha256:{id}")],
            size,
        }
    }

    #[test]
    fn images_are_listed_largest_first_with_digests_then_tags() {
        let list = images(vec![
            image("a", 10, &["docker.io/library/busybox:latest"]),
            image(
                "b",
                30,
                &["docker.io/minik/httpd:latest", "t2", "t3", "t4", "t5"],
            ),
        ]);
        assert_eq!(list[0].size_bytes, Some(30));
        let names = list[0].names.clone().unwrap();
        assert_eq!(names.len(), 5);
        assert!(names[0].contains("@sha256:b"));
        assert_eq!(names[1], "docker.io/minik/httpd:latest");
        assert_eq!(
            list[1].names.clone().unwrap()[1],
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let first = conditions(Pressure::default(), &[], Ok(()));
        let ready = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        let mut old = first.clone();
        let t = Time(Timestamp::from_second(1_000_000).unwrap());
        for c in &mut old {
            c.last_transition_time = Some(t.clone());
        }
        let again = conditions(
            Pressure {
                memory: true,
                disk: false,
                pid: false,
            },
            &old,
            Ok(()),
        );
        let mem = again.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(mem.status, "True");
        assert_ne!(mem.last_transition_time, Some(t.clone()));
        let disk = again.iter().find(|c| c.type_ == "DiskPressure").unwrap();
        assert_eq!(disk.last_transition_time, Some(t));
    }

    #[test]
    fn a_node_whose_network_cannot_attach_pods_is_not_ready() {
        let down = conditions(Pressure::default(), &[], Err("no podCIDR".into()));
        let ready = down.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        let message = ready.message.as_deref().unwrap();
        assert!(
            message.starts_with("container runtime network not ready: NetworkReady=false")
                && message.ends_with("no podCIDR"),
            "{message}"
        );
        // Pressure conditions keep their own messages.
        let mem = down.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(
            mem.message.as_deref(),
            Some("kubelet has sufficient memory available")
        );
    }
}
