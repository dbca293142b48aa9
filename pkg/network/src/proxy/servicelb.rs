//! ServiceLB as k3s does it, as a controller: every LoadBalancer Service (without a
//! loadBalancerClass) gets the addresses of the Ready nodes as its status.loadBalancer.ingress
//! (ExternalIP, else InternalIP; with externalTrafficPolicy Local only nodes holding a ready
//! endpoint). The proxy then serves those addresses like the cluster IP. A node address
//! serves a port for one service only: the oldest one asking.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use minik_controllers::Informer;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{ProxyError, wake_on};

/// How long a failed status patch waits before every service is looked at again.
const RETRY: Duration = Duration::from_secs(1);

/// Keep every LoadBalancer Service's ingress equal to the ready nodes' addresses until
/// `stop`; `client` may patch services/status.
pub async fn run_servicelb(
    client: kube::Client,
    stop: CancellationToken,
) -> Result<(), ProxyError> {
    let services = Informer::new(Api::<Service>::all(client.clone()));
    let nodes = Informer::new(Api::<Node>::all(client.clone()));
    let slices = Informer::new(Api::<EndpointSlice>::all(client.clone()));
    let wake = Arc::new(Notify::new());
    wake_on(&services, &wake);
    wake_on(&nodes, &wake);
    wake_on(&slices, &wake);
    let watches = stop.child_token();
    let _stop_watches = watches.clone().drop_guard();
    tokio::spawn(services.clone().run(watches.clone()));
    tokio::spawn(nodes.clone().run(watches.clone()));
    tokio::spawn(slices.clone().run(watches));
    let synced = async {
        services.synced().await;
        nodes.synced().await;
        slices.synced().await;
    };
    tokio::select! {
        () = stop.cancelled() => return Ok(()),
        () = synced => {}
    }
    wake.notify_one();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = wake.notified() => {}
        }
        let services = services.store().state();
        let nodes = nodes.store().state();
        let slices = slices.store().state();
        let mut failed = false;
        for (svc, want) in assign(&services, &nodes, &slices) {
            if current(&svc) == want {
                continue;
            }
            if let Err(e) = patch(&client, &svc, &want).await {
                tracing::warn!(error = %e, service = ?svc.metadata.name, "servicelb status");
                failed = true;
            }
        }
        if failed {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(RETRY) => wake.notify_one(),
            }
        }
    }
}

/// The ingress IPs each service ServiceLB manages should have (a service that is no longer
/// a LoadBalancer: none). As k3s's per-node load balancer binds each port on the node, a node
/// address goes to the oldest service using a port on it; a younger one does not get that
/// address.
pub(super) fn assign(
    services: &[Arc<Service>],
    nodes: &[Arc<Node>],
    slices: &[Arc<EndpointSlice>],
) -> Vec<(Arc<Service>, BTreeSet<String>)> {
    let mut managed: Vec<&Arc<Service>> = services
        .iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .is_some_and(|spec| spec.load_balancer_class.is_none())
        })
        .collect();
    managed.sort_by_key(|s| {
        let m = &s.metadata;
        (
            m.creation_timestamp.as_ref().map(|t| t.0),
            m.namespace.clone(),
            m.name.clone(),
        )
    });
    let mut claimed: HashSet<(String, String, i32)> = HashSet::new();
    let mut out = Vec::new();
    for svc in managed {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() != Some("LoadBalancer") {
            out.push((svc.clone(), BTreeSet::new()));
            continue;
        }
        let ports: Vec<(String, i32)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
            .collect();
        let mut ips = candidates(svc, spec, nodes, slices);
        ips.retain(|ip| {
            let free = ports
                .iter()
                .all(|(proto, port)| !claimed.contains(&(ip.clone(), proto.clone(), *port)));
            if free {
                claimed.extend(
                    ports
                        .iter()
                        .map(|(proto, port)| (ip.clone(), proto.clone(), *port)),
                );
            }
            free
        });
        out.push((svc.clone(), ips));
    }
    out
}

/// The addresses of the ready nodes that may serve `svc` (with externalTrafficPolicy Local,
/// those holding a ready endpoint).
fn candidates(
    svc: &Service,
    spec: &ServiceSpec,
    nodes: &[Arc<Node>],
    slices: &[Arc<EndpointSlice>],
) -> BTreeSet<String> {
    let local_only = spec.external_traffic_policy.as_deref() == Some("Local");
    let with_endpoints = local_only.then(|| endpoint_nodes(svc, slices));
    nodes
        .iter()
        .filter(|n| ready(n))
        .filter(|n| match &with_endpoints {
            Some(set) => n
                .metadata
                .name
                .as_ref()
                .is_some_and(|name| set.contains(name)),
            None => true,
        })
        .filter_map(|n| address(n))
        .collect()
}

/// The ingress IPs a service has now.
pub(super) fn current(svc: &Service) -> BTreeSet<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

fn ready(node: &Node) -> bool {
    minik_controllers::util::node_ready(node)
}

/// A node's ExternalIP, else its InternalIP.
fn address(node: &Node) -> Option<String> {
    let addrs = node.status.as_ref()?.addresses.as_ref()?;
    let of = |t: &str| {
        addrs
            .iter()
            .find(|a| a.type_ == t)
            .map(|a| a.address.clone())
    };
    of("ExternalIP").or_else(|| of("InternalIP"))
}

/// The nodes holding a ready endpoint of `svc`.
fn endpoint_nodes(svc: &Service, slices: &[Arc<EndpointSlice>]) -> BTreeSet<String> {
    let ns = svc.metadata.namespace.as_deref();
    let name = svc.metadata.name.as_deref();
    slices
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == ns)
        .filter(|s| {
            let labels: Option<&BTreeMap<String, String>> = s.metadata.labels.as_ref();
            labels
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str)
                == name
        })
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

/// Set the service's ingress to `ips` (none: remove the field).
async fn patch(
    client: &kube::Client,
    svc: &Service,
    ips: &BTreeSet<String>,
) -> Result<(), kube::Error> {
    let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
        return Ok(());
    };
    let ingress: Value = if ips.is_empty() {
        Value::Null
    } else {
        ips.iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect()
    };
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let body = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    tracing::info!(namespace = %ns, service = %name, ingress = ?ips, "servicelb status");
    Ok(())
}
