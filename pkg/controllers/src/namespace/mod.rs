//! The namespace controller, as kube-controller-manager's: a namespace being deleted
//! (Terminating, held by its `kubernetes` finalizer) is emptied through the API, resource by
//! resource, honouring finalizers and graceful deletion; its status conditions say how that
//! goes; once nothing is left, namespaces/finalize drops `kubernetes` and the namespace goes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::gc::discovery::{self, Resource};
use crate::gc::message;
use crate::{Change, Ctx, Queue, Reconcile, Result};
use conditions::{Report, update_conditions};

mod conditions;

const FINALIZER: &str = "kubernetes";
/// What objects still held by finalizers are given, in seconds, before looking again.
const FINALIZER_ESTIMATE: i64 = 15;
/// Look again at most this long after content was left to go.
const MAX_RECHECK: Duration = Duration::from_secs(5);
/// Resources emptied at once.
const PARALLEL: usize = 8;

pub struct Controller {
    client: kube::Client,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("namespace", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.namespaces.on(move |ns, change| {
        if change == Change::Applied && ns.metadata.deletion_timestamp.is_some() {
            q.add(ns.name_any());
        }
    });
    let this = Arc::new(Controller {
        client: ctx.client.clone(),
    });
    ctx.spawn_workers("namespace", &queue, workers, this);
    queue
}

/// What is left of one resource in the namespace.
#[derive(Default)]
struct Left {
    /// Seconds it may take to go.
    estimate: i64,
    remaining: usize,
    /// finalizer -> objects it holds.
    finalizers: std::collections::BTreeMap<String, usize>,
}

/// "group/version, Resource=plural", as Go prints a GroupVersionResource.
fn gvr(r: &Resource) -> String {
    format!("{}/{}, Resource={}", r.ar.group, r.ar.version, r.ar.plural)
}

impl Controller {
    /// How long the namespace's pods may take to stop.
    async fn pods_estimate(&self, ns: &str) -> Result<i64> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let list = pods.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|p| !crate::util::is_terminal(p))
            .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
            .max()
            .unwrap_or(0))
    }

    /// Delete everything of one resource in `ns`; what is left.
    async fn empty(&self, r: Resource, ns: &str) -> (Resource, Result<Left, String>) {
        let left = self.empty_one(&r, ns).await;
        (r, left)
    }

    async fn empty_one(&self, r: &Resource, ns: &str) -> Result<Left, String> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &r.ar);
        let fail = |e: kube::Error| message(&e);
        let estimate = if r.ar.group.is_empty() && r.ar.plural == "pods" {
            self.pods_estimate(ns).await.map_err(|e| e.to_string())?
        } else {
            0
        };
        let unsupported = |e: &kube::Error| matches!(crate::util::code(e), Some(404 | 405));
        let mut collected = false;
        if r.supports(&["deletecollection"]) {
            match api
                .delete_collection(&DeleteParams::background(), &ListParams::default())
                .await
            {
                Ok(_) => collected = true,
                Err(e) if unsupported(&e) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        if !r.supports(&["list"]) {
            return Ok(Left {
                estimate,
                ..Default::default()
            });
        }
        if !collected {
            let items = api
                .list_metadata(&ListParams::default())
                .await
                .map_err(fail)?;
            for item in items
                .items
                .iter()
                .filter(|i| i.metadata.deletion_timestamp.is_none())
            {
                match api
                    .delete(&item.name_any(), &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if crate::util::code(&e) == Some(404) => {}
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        let left = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(fail)?;
        let mut finalizers = std::collections::BTreeMap::new();
        for f in left
            .items
            .iter()
            .flat_map(|i| i.metadata.finalizers.iter().flatten())
        {
            *finalizers.entry(f.clone()).or_insert(0) += 1;
        }
        let remaining = left.items.len();
        let estimate = match (estimate, finalizers.is_empty(), remaining) {
            (e, _, _) if e > 0 => e,
            (_, false, _) => FINALIZER_ESTIMATE,
            (_, true, 0) => 0,
            _ => {
                return Err(format!(
                    "unexpected items still remain in namespace: {ns} for gvr: {}",
                    gvr(r)
                ));
            }
        };
        Ok(Left {
            estimate,
            remaining,
            finalizers,
        })
    }

    /// deleteAllContent: empty every namespaced resource.
    async fn delete_all_content(&self, ns: &str) -> Report {
        let mut report = Report::default();
        let found = match discovery::discover(&self.client).await {
            Ok(found) => found,
            Err(e) => {
                let msg = message(&e);
                report.missed("NamespaceDeletionDiscoveryFailure", "DiscoveryFailed", msg);
                return report;
            }
        };
        if let Some(msg) = found.failure_message() {
            report.missed("NamespaceDeletionDiscoveryFailure", "DiscoveryFailed", msg);
        }
        if !found.unparsable.is_empty() {
            let msg = found.unparsable.join(", ");
            report.missed(
                "NamespaceDeletionGroupVersionParsingFailure",
                "GroupVersionParsingFailed",
                msg,
            );
        }
        let resources = found
            .resources
            .into_iter()
            .filter(|r| r.namespaced && r.supports(&["delete"]));
        let results: Vec<_> = futures::stream::iter(resources.map(|r| self.empty(r, ns)))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (r, result) in results {
            match result {
                Ok(left) => {
                    report.estimate = report.estimate.max(left.estimate);
                    if left.remaining > 0 {
                        report.remaining.insert(r.group_resource(), left.remaining);
                        for (f, n) in left.finalizers {
                            *report.finalizers.entry(f).or_insert(0) += n;
                        }
                    }
                }
                Err(e) => report.errors.push(e),
            }
        }
        report.totals();
        report
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let Some(ns) = api.get_opt(&name).await? else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let status = ns.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Terminating") {
            let patch = json!({"status": {"phase": "Terminating"}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let finalizers = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(None);
        }
        let report = self.delete_all_content(&name).await;
        let mut conditions = status.conditions.unwrap_or_default();
        if update_conditions(&mut conditions, &report.failing) {
            let patch = json!({"status": {"conditions": conditions}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(namespace = name, error = %e, "updating namespace conditions");
            }
        }
        // Nothing may be left behind: finalize only after a complete, successful pass.
        let failures: Vec<String> = report
            .errors
            .iter()
            .chain(&report.incomplete)
            .cloned()
            .collect();
        if !failures.is_empty() {
            return Err(crate::Error::Other(failures.join(", ")));
        }
        if !report.remaining.is_empty() {
            let secs = u64::try_from(report.estimate / 2 + 1).unwrap_or(1);
            return Ok(Some(Duration::from_secs(secs).min(MAX_RECHECK)));
        }
        let mut done = ns.clone();
        let kept: Vec<String> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
        done.spec.get_or_insert_default().finalizers = Some(kept);
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &done)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if crate::util::code(&e) == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
