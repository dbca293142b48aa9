//! The scheduler: pending pods with `schedulerName: default-scheduler` are taken from the
//! scheduling queue one at a time, filtered and scored against the cache of nodes (a sample
//! of them in big clusters, as kube-scheduler does), assumed on the best node and bound
//! through pods/binding in the background. Pods that fit nowhere may preempt lower-priority
//! pods; otherwise they get a FailedScheduling event and a PodScheduled=False condition in
//! kube-scheduler's words and wait for the cluster to change. Only the holder of the
//! `kube-scheduler` Lease schedules.

mod affinity;
mod cache;
pub mod filters;
mod fit;
pub mod metrics;
mod preempt;
pub mod queue;
pub mod resources;
mod scores;
pub mod volumes;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use minik_controllers::events::{Kind, Recorder};
use minik_controllers::{Change, Informer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use cache::Cache;
pub use fit::FitError;
pub use metrics::Metrics;
use preempt::Nominations;
use queue::{Outcome, SchedulingQueue};

pub const NAME: &str = "default-scheduler";

/// How many feasible nodes to look for before scoring (kube-scheduler's adaptive
/// percentageOfNodesToScore: all below 100 nodes, then 50% falling to 5%, at least 100).
pub fn nodes_to_find(total: usize) -> usize {
    if total < 100 {
        return total;
    }
    let pct = 50usize.saturating_sub(total / 125).max(5);
    (total * pct / 100).max(100)
}

/// Filter (a rotating sample of) the nodes, score the feasible ones, pick the best.
pub fn find_node(
    p: &filters::Prepared,
    cache: &Cache,
    start: &mut usize,
) -> Result<String, FitError> {
    let n = cache.order.len();
    let want = nodes_to_find(n);
    let mut feasible = Vec::new();
    let mut failed = Vec::new();
    let mut processed = 0;
    for i in 0..n {
        processed = i + 1;
        let name = &cache.order[(*start + i) % n];
        let Some(state) = cache.nodes.get(name) else {
            continue;
        };
        match filters::filter(p, state) {
            Ok(()) => feasible.push(state),
            Err(r) => failed.push((name.clone(), r)),
        }
        if feasible.len() >= want {
            break;
        }
    }
    if n > 0 {
        *start = (*start + processed) % n;
    }
    if feasible.is_empty() {
        return Err(FitError { total: n, failed });
    }
    if feasible.len() == 1 {
        return Ok(feasible[0].name());
    }
    let scores = scores::score(p, &feasible, cache);
    let best = scores.iter().copied().max().unwrap_or(0);
    let top: Vec<usize> = (0..feasible.len()).filter(|i| scores[*i] == best).collect();
    let pick = top[rand::random_range(0..top.len())];
    Ok(feasible[pick].name())
}

fn ours(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n == NAME)
}

fn bound(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// One leader's scheduler.
struct Scheduler {
    client: kube::Client,
    pods: Arc<Informer<Pod>>,
    cache: Arc<Mutex<Cache>>,
    nominated: Mutex<Nominations>,
    queue: SchedulingQueue,
    recorder: Recorder,
    metrics: Metrics,
    volumes: Arc<volumes::Volumes>,
}

impl Scheduler {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Schedule one pod; the queue hears how it went.
    async fn attempt(self: &Arc<Self>, key: String, start: &mut usize) {
        let Some((ns, name)) = key.split_once('/') else {
            return self.queue.done(&key, Outcome::Scheduled, 0);
        };
        let Some(pod) = self.pods.store().get(&ObjectRef::new(name).within(ns)) else {
            return self.queue.done(&key, Outcome::Scheduled, 0);
        };
        if bound(&pod).is_some() || pod.metadata.deletion_timestamp.is_some() || !ours(&pod) {
            return self.queue.done(&key, Outcome::Scheduled, 0);
        }
        let began = Instant::now();
        let chosen = {
            let cache = self.cache();
            match self.volumes.prefilter(&pod) {
                Err(why) => Err(volumes::prefilter_message(cache.order.len(), &why)),
                Ok(claims) => {
                    let mut prepared = filters::prepare(pod.clone(), &cache);
                    prepared.volumes = claims;
                    match find_node(&prepared, &cache, start) {
                        Ok(node) => {
                            Ok((self.volumes.assume(&prepared.volumes, &cache, &node), node))
                        }
                        Err(fit) => Err(self.preempt(&prepared, &cache, fit)),
                    }
                }
            }
        };
        self.metrics
            .0
            .duration
            .observe(began.elapsed().as_secs_f64());
        match chosen {
            Ok((plan, node)) => {
                self.cache().assume(pod.clone(), &node);
                let this = self.clone();
                tokio::spawn(async move { this.bind(key, pod, node, plan).await });
            }
            Err(message) => {
                self.metrics.attempt("unschedulable");
                self.recorder
                    .event(pod.as_ref(), Kind::Warning, "FailedScheduling", &message);
                let this = self.clone();
                let p = pod.clone();
                tokio::spawn(async move { this.mark_unschedulable(&p, &message).await });
                self.queue
                    .done(&key, Outcome::Unschedulable, priority(&pod));
            }
        }
    }

    async fn bind(&self, key: String, pod: Arc<Pod>, node: String, plan: volumes::Plan) {
        let ns = pod.namespace().unwrap_or_default();
        let gone = || {
            let here = self
                .pods
                .store()
                .get(&ObjectRef::new(&pod.name_any()).within(&ns));
            here.is_none_or(|p| p.uid() != pod.uid())
        };
        if let Err(e) = self.volumes.bind(&self.client, plan, &gone).await {
            let message = format!("running PreBind plugin \"VolumeBinding\": binding volumes: {e}");
            self.recorder
                .event(pod.as_ref(), Kind::Warning, "FailedScheduling", &message);
            return self.unassume(&key, &pod);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod.name_any(), "namespace": ns, "uid": pod.uid()},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        let result = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &pod.name_any(),
                &PostParams::default(),
                &binding,
            )
            .await;
        match result {
            Ok(_) => {
                self.metrics.attempt("scheduled");
                self.recorder.event(
                    pod.as_ref(),
                    Kind::Normal,
                    "Scheduled",
                    &format!("Successfully assigned {key} to {node}"),
                );
                self.queue.done(&key, Outcome::Scheduled, priority(&pod));
            }
            Err(e) => {
                tracing::debug!(pod = key, node, error = %e, "binding failed");
                self.unassume(&key, &pod);
            }
        }
    }

    /// Binding failed: forget the placement and try again after a back-off.
    fn unassume(&self, key: &str, pod: &Pod) {
        self.metrics.attempt("error");
        self.cache().remove_pod(&pod.uid().unwrap_or_default());
        self.queue.done(key, Outcome::Error, priority(pod));
    }

    async fn mark_unschedulable(&self, pod: &Pod, message: &str) {
        let same = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "PodScheduled" && c.message.as_deref() == Some(message));
        if same {
            return;
        }
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": message, "lastProbeTime": null,
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()}]}});
        let _ = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await;
    }

    /// Keep the cache and the queue in step with pods.
    fn pod_changed(&self, pod: &Arc<Pod>, change: Change) {
        let key = minik_controllers::util::key(&**pod);
        let uid = pod.uid().unwrap_or_default();
        let gone = change == Change::Deleted;
        match bound(pod) {
            Some(node) if !gone && !finished(pod) => {
                self.nominations().remove(&uid);
                self.cache().add_pod(pod.clone(), node);
                self.queue.remove(&key);
            }
            Some(_) => {
                self.cache().remove_pod(&uid);
                self.queue.remove(&key);
                self.queue.move_all();
            }
            None if gone || pod.metadata.deletion_timestamp.is_some() || !ours(pod) => {
                self.nominations().remove(&uid);
                self.queue.remove(&key);
            }
            None => self.queue.add(key, priority(pod)),
        }
    }
}

/// Schedule while holding the lease, until `shutdown`.
pub async fn run(
    client: kube::Client,
    identity: String,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let elector =
        minik_controllers::leader::Elector::new(client.clone(), "kube-scheduler", &identity);
    elector
        .run(shutdown, move |stop| {
            lead(client.clone(), metrics.clone(), stop)
        })
        .await;
}

async fn lead(client: kube::Client, metrics: Metrics, stop: CancellationToken) {
    let pods: Arc<Informer<Pod>> = Informer::new(Api::all(client.clone()));
    let nodes: Arc<Informer<Node>> = Informer::new(Api::all(client.clone()));
    let volumes = volumes::Volumes::new(&client);
    let this = Arc::new(Scheduler {
        volumes: volumes.clone(),
        recorder: Recorder::new(client.clone(), NAME),
        client,
        pods: pods.clone(),
        cache: Arc::default(),
        nominated: Mutex::default(),
        queue: SchedulingQueue::default(),
        metrics,
    });
    let me = this.clone();
    nodes.on_shared(move |node, change| {
        match change {
            Change::Applied => me.cache().set_node(node.clone()),
            Change::Deleted => me.cache().remove_node(&node.name_any()),
        }
        me.queue.move_all();
    });
    let me = this.clone();
    pods.on_shared(move |pod, change| me.pod_changed(pod, change));
    tokio::spawn(nodes.clone().run(stop.clone()));
    tokio::spawn(pods.clone().run(stop.clone()));
    nodes.synced().await;
    pods.synced().await;
    let me = this.clone();
    volumes.run(&stop, move || me.queue.move_all()).await;
    let me = this.clone();
    let ticker = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = ticker.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            me.queue.flush();
            me.metrics.pending(me.queue.sizes());
        }
    });
    tracing::info!("scheduler started");
    let mut start = 0;
    loop {
        let key = tokio::select! {
            () = stop.cancelled() => return,
            key = this.queue.pop() => key,
        };
        this.attempt(key, &mut start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_clusters_are_sampled() {
        assert_eq!(nodes_to_find(50), 50);
        assert_eq!(nodes_to_find(1000), 420);
        assert_eq!(nodes_to_find(5000), 500);
        // 50% - 150/125 = 49% of 150 is 73: at least 100.
        assert_eq!(nodes_to_find(150), 100);
    }
}
