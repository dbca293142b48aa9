//! Helpers of the benchmarks that run a real `minik server` (benches/api.rs, pods.rs, sched.rs):
//! polling until something holds, waiting for nodes, making the namespace, noting when each
//! pod is created, bound and running (through a watch), the create-to-running latencies,
//! and a process's memory.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use tokio::task::JoinHandle;

/// Poll `f` every 200 ms until it gives a value; panics naming `what` after `secs` seconds.
pub async fn wait_for<T, F: Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait (at most 120 s) until a node is Ready.
pub async fn node_ready(client: &kube::Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("the node to be Ready", 120, || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .then_some(())
    })
    .await;
}

/// Wait (at most 120 s) until `count` nodes are registered.
pub async fn nodes_registered(client: &kube::Client, count: usize) {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(&format!("{count} nodes to register"), 120, || async {
        let n = nodes.list(&ListParams::default()).await.ok()?.items.len();
        (n >= count).then_some(())
    })
    .await;
}

/// Create namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .expect("ns");
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

/// Per pod: when its create was sent, when it was first seen bound to a node, when first
/// seen running.
#[derive(Default, Clone, Copy)]
pub struct PodTimes {
    pub created: Option<Instant>,
    pub bound: Option<Instant>,
    pub running: Option<Instant>,
}

/// The times of the pods, by name.
pub type Timings = Arc<Mutex<HashMap<String, PodTimes>>>;

/// The fields of a pod the benchmarks read. Events are decoded into this, the rest of each
/// pod skipped: the harness shares the machine with the server it measures.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct PodLite {
    pub metadata: LiteMeta,
    pub spec: LiteSpec,
    pub status: LiteStatus,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LiteMeta {
    pub name: String,
    pub resource_version: String,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LiteSpec {
    pub node_name: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LiteStatus {
    pub phase: Option<String>,
    pub container_statuses: Vec<LiteContainer>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LiteContainer {
    pub started: Option<bool>,
    pub state: LiteState,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LiteState {
    pub running: Option<serde::de::IgnoredAny>,
}

/// Watch the pods of `namespace`, noting in `times` when each is first seen bound and
/// first seen running (as `running` tells); the task ends once `total` pods have been seen
/// running. Start it before creating the pods, to see each change as it happens.
pub fn watch_pods(
    client: kube::Client,
    namespace: &str,
    times: Timings,
    total: usize,
    running: fn(&PodLite) -> bool,
) -> JoinHandle<()> {
    let pods = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/pods"));
    tokio::spawn(async move {
        let mut seen = 0;
        // From the start ("0"); again from the last version seen if the server ends it.
        let mut from = "0".to_string();
        loop {
            let req = pods
                .watch(&WatchParams::default(), &from)
                .expect("watch request");
            let stream = client.request_events::<PodLite>(req).await.expect("watch");
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(event)) = stream.next().await {
                let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = event else {
                    continue;
                };
                let now = Instant::now();
                from.clone_from(&p.metadata.resource_version);
                let mut t = times.lock().unwrap_or_else(|e| e.into_inner());
                let e = t.entry(p.metadata.name.clone()).or_default();
                if e.bound.is_none() && p.spec.node_name.is_some() {
                    e.bound = Some(now);
                }
                if e.running.is_none() && running(&p) {
                    e.running = Some(now);
                    seen += 1;
                    if seen == total {
                        return;
                    }
                }
            }
        }
    })
}

/// The create-to-running latencies of the pods seen both created and running, in µs.
pub fn latencies(times: &HashMap<String, PodTimes>) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for x in times.values() {
        if let (Some(c), Some(r)) = (x.created, x.running) {
            h.record(r.saturating_duration_since(c).as_micros() as u64)
                .expect("record");
        }
    }
    h
}

/// CPU time (user and system) process `pid` has used, in seconds (0 when it cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (indices 11 and 12 here), in USER_HZ ticks,
    // which Linux fixes at 100 per second for user space.
    (ticks(11) + ticks(12)) / 100.0
}

/// The resident memory of process `pid` in MiB (0 when it cannot be read).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}
