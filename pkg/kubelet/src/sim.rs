//! Simulated nodes, like kwok: N Nodes registered and heartbeating, whose pods "run" in the
//! fake runtime. They go through the same pod workers as a real node, so the control plane
//! sees ordinary kubelets; tests and benchmarks use them to exercise it at scale. The node
//! annotation `simulation.minik.io/heartbeat: "stop"` silences a node (no Lease renewal, no
//! status), so the node lifecycle controller finds it unreachable; removing it resumes.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use minik_api::usage::UsageStore;
use minik_controllers::Store;
use minik_controllers::{Informer, Metrics, Queue, Reconcile};
use tokio_util::sync::CancellationToken;

use crate::fake::{FakeRuntime, HEARTBEAT};
use crate::node::{self, NodeInfo};
use crate::pods::{NodeHandle, Workers};

/// The name of simulated node `i`.
pub fn node_name(i: usize) -> String {
    format!("sim-{i}")
}

/// A made-up address for simulated node `i` (never routed; 172.31.0.0/16).
fn node_address(i: usize) -> String {
    let i = u32::try_from(i).unwrap_or(0);
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 31, 0, 1)) + i).to_string()
}

/// Pod addresses from the node's podCIDR (once the node IPAM controller gave one), else
/// from 10.244.<i>.0/24.
fn ipam(
    nodes: Store<Node>,
    name: String,
    i: usize,
) -> Box<dyn Fn() -> Option<String> + Send + Sync> {
    let next = AtomicU32::new(0);
    Box::new(move || {
        let cidr = nodes
            .get(&ObjectRef::new(&name))
            .and_then(|n| n.spec.as_ref()?.pod_cidr.clone());
        let base = cidr
            .as_deref()
            .and_then(|c| c.split('/').next()?.parse::<Ipv4Addr>().ok())
            .unwrap_or_else(|| {
                let i = u32::try_from(i).unwrap_or(0);
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + (i % 65536) * 256)
            });
        let host = next.fetch_add(1, Ordering::Relaxed) % 253 + 2;
        Some(Ipv4Addr::from(u32::from(base) + host).to_string())
    })
}

/// A simulated node whose `simulation.minik.io/heartbeat` annotation is "stop" neither
/// renews its Lease nor reports its status, as a node that went away.
fn heartbeat_stopped(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HEARTBEAT))
        .is_some_and(|v| v == "stop")
}

struct SimWorkers(Workers<FakeRuntime>);

impl Reconcile for SimWorkers {
    async fn reconcile(&self, key: String) -> minik_controllers::Result<Option<Duration>> {
        Ok(self.0.sync(&key).await?)
    }
}

/// Register `count` simulated nodes and run their pods until `stop`, reporting their usage
/// into `usage`. `client_for(node)` gives a client that authenticates as that node.
pub async fn run(
    count: usize,
    client_for: impl Fn(&str) -> kube::Client,
    metrics: Metrics,
    usage: UsageStore,
    stop: CancellationToken,
) -> Result<(), kube::Error> {
    if count == 0 {
        return Ok(());
    }
    let infos: Vec<(NodeInfo, kube::Client)> = (0..count)
        .map(|i| {
            let name = node_name(i);
            let capacity = [
                ("cpu", "32"),
                ("memory", "256Gi"),
                ("pods", "110"),
                ("ephemeral-storage", "100Gi"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let labels = [("type".to_string(), "simulated".to_string())]
                .into_iter()
                .collect();
            let client = client_for(&name);
            (
                NodeInfo {
                    name,
                    address: node_address(i),
                    labels,
                    capacity,
                },
                client,
            )
        })
        .collect();
    let registered: Vec<Result<(), kube::Error>> = futures::stream::iter(infos.clone())
        .map(|(info, client)| async move { node::register(&client, &info).await })
        .buffer_unordered(32)
        .collect()
        .await;
    if let Some(Err(e)) = registered.into_iter().find(Result::is_err) {
        return Err(e);
    }
    tracing::info!(count, "simulated nodes registered");
    let watcher = infos[0].1.clone();
    let pods: Arc<Informer<Pod>> = Informer::new(Api::all(watcher.clone()));
    let nodes: Arc<Informer<Node>> = Informer::new(Api::all(watcher));
    for (i, (info, client)) in infos.iter().enumerate() {
        let (client, info, stop) = (client.clone(), info.clone(), stop.clone());
        let store = nodes.store().clone();
        // Spread the heartbeats over the renew interval.
        let delay = node::RENEW.mul_f64(i as f64 / count as f64);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            node::heartbeat(client, info, store, heartbeat_stopped, stop).await;
        });
    }
    let handles: HashMap<String, Arc<NodeHandle>> = infos
        .iter()
        .enumerate()
        .map(|(i, (info, client))| {
            (
                info.name.clone(),
                Arc::new(NodeHandle {
                    name: info.name.clone(),
                    host_ip: info.address.clone(),
                    client: client.clone(),
                    ipam: ipam(nodes.store().clone(), info.name.clone(), i),
                }),
            )
        })
        .collect();
    let queue = Queue::new("simulated-kubelet", metrics.clone());
    let q = queue.clone();
    let mine: Arc<std::collections::HashSet<String>> = Arc::new(handles.keys().cloned().collect());
    pods.on(move |pod: &Pod, _| {
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if bound.is_some_and(|n| mine.contains(n)) {
            q.add(minik_controllers::util::key(pod));
        }
    });
    let runtime = Arc::new(FakeRuntime::default());
    let names: Vec<String> = handles.keys().cloned().collect();
    let workers = SimWorkers(Workers {
        runtime: runtime.clone(),
        nodes: handles,
        pods: pods.store().clone(),
        backoff: Mutex::default(),
        known: Mutex::default(),
        admission: Default::default(),
        written: Default::default(),
    });
    tokio::spawn(pods.clone().run(stop.clone()));
    tokio::spawn(nodes.clone().run(stop.clone()));
    pods.synced().await;
    let store = pods.store().clone();
    tokio::spawn(crate::stats::run(
        runtime,
        names,
        store,
        usage,
        stop.clone(),
    ));
    minik_controllers::spawn_workers("simulated-kubelet", &queue, 16, Arc::new(workers), &metrics);
    stop.cancelled().await;
    queue.shut_down();
    Ok(())
}
