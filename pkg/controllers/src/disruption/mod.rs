//! The disruption controller: keeps each PodDisruptionBudget's status — expected pods,
//! healthy pods, how many must stay healthy, how many disruptions are allowed, the
//! evictions not yet seen through (`disruptedPods`) and the DisruptionAllowed condition —
//! which the eviction subresource reads and decrements. When a sync fails, the budget
//! allows no disruption (SyncFailed).

pub mod budget;
mod scale;
pub mod stale;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use crate::events::{Kind, Recorder};
use crate::{Ctx, Error, Queue, Reconcile, Result, util};

pub struct Controller {
    ctx: Ctx,
    recorder: Recorder,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("disruption", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.pdbs.on(move |pdb, _| q.add(util::key(pdb)));
    let (q, pdbs) = (queue.clone(), ctx.informers.pdbs.clone());
    ctx.informers.pods.on(move |pod, _| {
        let ns = pod.namespace().unwrap_or_default();
        for pdb in pdbs.store().state() {
            if pdb.namespace().as_deref() == Some(ns.as_str()) && selects(&pdb, pod) {
                q.add(util::key(pdb.as_ref()));
            }
        }
    });
    stale::start(ctx, 1);
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "controllermanager"),
    });
    ctx.spawn_workers("disruption", &queue, workers, this);
    queue
}

/// Whether the budget covers the pod: a missing selector selects nothing, an empty one
/// every pod of the namespace (policy/v1).
pub fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| util::matches(sel, pod.labels()))
}

impl Controller {
    fn pods(&self, pdb: &PodDisruptionBudget, ns: &str) -> Vec<Arc<Pod>> {
        self.ctx
            .informers
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns) && selects(pdb, p))
            .collect()
    }

    /// (expectedPods, desiredHealthy).
    async fn counts(&self, pdb: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Result<(i32, i32)> {
        let n = i32::try_from(pods.len()).unwrap_or(i32::MAX);
        let scale = if budget::needs_scale(pdb) {
            let (scale, unmanaged) = scale::expected(&self.ctx, pods).await?;
            if !unmanaged.is_empty() {
                tracing::debug!(
                    pdb = util::key(pdb),
                    ?unmanaged,
                    "pods without a controller"
                );
                let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                self.recorder.event(
                    pdb,
                    Kind::Warning,
                    "UnmanagedPods",
                    &format!(
                        "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                        serde_json::to_string(&selector).unwrap_or_default()
                    ),
                );
            }
            scale
        } else {
            0
        };
        budget::expected_and_desired(pdb, n, scale).map_err(Error::Other)
    }

    /// Compute and write the status; when to look again (a recorded eviction expiring).
    async fn try_sync(&self, pdb: &PodDisruptionBudget, ns: &str) -> Result<Option<Duration>> {
        let pods = self.pods(pdb, ns);
        if pods.is_empty() {
            self.recorder
                .event(pdb, Kind::Normal, "NoPods", "No matching pods found");
        }
        let (expected, desired) = match self.counts(pdb, &pods).await {
            Ok(c) => c,
            Err(e) => {
                self.recorder.event(
                    pdb,
                    Kind::Warning,
                    "CalculateExpectedPodCountFailed",
                    &format!("Failed to calculate the number of expected pods: {e}"),
                );
                return Err(e);
            }
        };
        let now = Timestamp::now();
        let (live, recheck, expired) = budget::live_disruptions(pdb, &pods, now);
        for pod in expired {
            self.recorder.event(
                pod.as_ref(),
                Kind::Warning,
                "NotDeleted",
                &format!(
                    "Pod was expected by PDB {} to be deleted but it wasn't",
                    util::key(pdb)
                ),
            );
        }
        let current = budget::count_healthy(&pods, &live, now);
        if let Some(status) = budget::next_status(pdb, current, desired, expected, live) {
            self.write(pdb, ns, status).await?;
        }
        Ok(recheck.map(|at| Duration::try_from(at - now).unwrap_or_default()))
    }

    /// PUT the status on the version read (an eviction may have written since: then
    /// conflict and look again).
    async fn write(
        &self,
        pdb: &PodDisruptionBudget,
        ns: &str,
        status: PodDisruptionBudgetStatus,
    ) -> Result<()> {
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.ctx.client.clone(), ns);
        let mut new = pdb.clone();
        new.status = Some(status);
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), &new)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn conflict(e: &Error) -> bool {
    matches!(e, Error::Kube(k) if util::code(k) == Some(409))
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, pdb)) = self.ctx.informers.pdbs.namespaced(&key) else {
            return Ok(None);
        };
        match self.try_sync(&pdb, ns).await {
            Ok(next) => Ok(next),
            Err(e) if conflict(&e) => Err(e),
            Err(e) => {
                tracing::debug!(key, error = %e, "syncing the disruption budget");
                let message = match &e {
                    Error::Kube(kube::Error::Api(s)) => s.message.clone(),
                    other => other.to_string(),
                };
                let status = budget::fail_safe(&pdb, &message);
                if pdb.status.as_ref() != Some(&status) {
                    self.write(&pdb, ns, status).await?;
                }
                Err(e)
            }
        }
    }
}
