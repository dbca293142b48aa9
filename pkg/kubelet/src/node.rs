//! The Node object a kubelet registers (capacity, conditions, addresses, node info) and the
//! Lease it renews every 10 s in kube-node-lease, which the node lifecycle controller watches.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use minik_controllers::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What a node says about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// cpu, memory, pods, ephemeral-storage.
    pub capacity: BTreeMap<String, String>,
}

pub const LEASE_SECONDS: i32 = 40;
pub const RENEW: Duration = Duration::from_secs(10);

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> NodeCondition {
    let now = Time(Timestamp::now());
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// The node's status: all well, Ready.
pub fn status(info: &NodeInfo) -> NodeStatus {
    let capacity: BTreeMap<String, Quantity> = info
        .capacity
        .iter()
        .map(|(k, v)| (k.clone(), Quantity(v.clone())))
        .collect();
    NodeStatus {
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: info.address.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: info.name.clone(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
            operating_system: "linux".into(),
            os_image: "minik".into(),
            kernel_version: String::new(),
            kubelet_version: format!("{}+minik", minik_version::KUBERNETES_VERSION),
            kube_proxy_version: String::new(),
            container_runtime_version: "minik://".to_string() + minik_version::MINIK_VERSION,
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Create the Node (or, if it exists, take it over) and report it Ready.
pub async fn register(client: &kube::Client, info: &NodeInfo) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = info.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), info.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert(
        "kubernetes.io/arch".into(),
        std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64"),
    );
    let node = Node {
        metadata: ObjectMeta {
            name: Some(info.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: None,
        status: None,
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    post_status(&api, info).await
}

/// Report the node's status: all well, Ready.
async fn post_status(api: &Api<Node>, info: &NodeInfo) -> Result<(), kube::Error> {
    let patch = json!({"status": status(info)});
    api.patch_status(&info.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn ready(node: &Node) -> bool {
    minik_controllers::util::node_ready(node)
}

/// Renew the node's Lease every `RENEW` until `stop`, and report the status again when the
/// node (as `nodes` has it) is no longer Ready — after the node lifecycle controller found
/// it silent. A beat is skipped while `silent(node)` says so.
pub async fn heartbeat(
    client: kube::Client,
    info: NodeInfo,
    nodes: Store<Node>,
    silent: impl Fn(&Node) -> bool,
    stop: CancellationToken,
) {
    let name = info.name.clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let api: Api<Node> = Api::all(client);
    loop {
        let node = nodes.get(&ObjectRef::new(&name));
        if node.as_deref().is_some_and(&silent) {
            tracing::debug!(node = name, "heartbeat stopped");
        } else {
            if let Err(e) = renew(&leases, &name).await {
                tracing::debug!(node = name, error = %e, "renewing the node lease");
            }
            if node.as_deref().is_some_and(|n| !ready(n))
                && let Err(e) = post_status(&api, &info).await
            {
                tracing::debug!(node = name, error = %e, "posting the node status");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RENEW) => {}
        }
    }
}

/// Renew (or create) the node's Lease.
pub async fn renew(api: &Api<Lease>, name: &str) -> Result<(), kube::Error> {
    let spec = LeaseSpec {
        holder_identity: Some(name.into()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..Default::default()
    };
    let patch = json!({"spec": {"holderIdentity": spec.holder_identity,
        "leaseDurationSeconds": LEASE_SECONDS, "renewTime": spec.renew_time}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}
