//! Creating and deleting a Job's pods (kube-controller-manager's manageJob): as many active
//! pods as parallelism allows and completions still need, none while suspended, created in
//! slow-start batches after the failure back-off.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};

use super::Controller;
use super::pods;
use super::sync::Sync;
use crate::events::Kind;
use crate::{Error, util};

/// At most this many pods created or deleted per sync.
const BURST: usize = 500;

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Controller {
    /// Bring the active pods toward what the Job wants; returns the active count (also on
    /// error).
    pub(super) async fn manage(&self, s: &mut Sync) -> Result<i32, (i32, Error)> {
        let mut active = count(s.active.len());
        if s.suspended() {
            let doomed = s.active.clone();
            let (removed, removed_ready, err) = self.delete_pods(s, &doomed, false).await;
            s.terminating += removed;
            s.ready -= removed_ready;
            active -= removed;
            return err.map_or(Ok(active), |e| Err((active, e)));
        }
        let parallelism = s.spec.parallelism.unwrap_or(1).max(0);
        let want = match s.completions() {
            None if s.succeeded > 0 => active,
            None => parallelism,
            Some(c) => (c - s.succeeded).clamp(0, parallelism),
        };
        let doomed = self.for_removal(s, usize::try_from(active - want).unwrap_or(0));
        if !doomed.is_empty() {
            let (removed, removed_ready, err) = self.delete_pods(s, &doomed, false).await;
            s.terminating += removed;
            s.ready -= removed_ready;
            active -= removed;
            return err.map_or(Ok(active), |e| Err((active, e)));
        }
        let terminating = if pods::only_replace_failed(&s.job) {
            s.terminating
        } else {
            0
        };
        let diff = usize::try_from(want - terminating - active)
            .unwrap_or(0)
            .min(BURST);
        if diff == 0 {
            return Ok(active);
        }
        let wait = s.backoff.remaining(k8s_openapi::jiff::Timestamp::now());
        if !wait.is_zero() {
            s.look_again(wait);
            return Ok(active);
        }
        let indexes: Vec<Option<i32>> = if s.indexed() {
            let mut busy = s
                .succeeded_indexes
                .with(s.active.iter().filter_map(|p| pods::index(p)));
            if pods::only_replace_failed(&s.job) {
                let terminating = s.pods.iter().filter(|p| pods::is_terminating(p));
                busy = busy.with(terminating.filter_map(|p| pods::index(p)));
            }
            let completions = s.completions().unwrap_or(0);
            busy.first_missing(diff, completions)
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None; diff]
        };
        match self.create_pods(s, &indexes).await {
            Ok(n) => Ok(active + n),
            Err((n, e)) => Err((active + n, e)),
        }
    }

    /// `at_least` active pods to delete: for an Indexed Job, first those with a bad or
    /// repeated index; then the least far along.
    fn for_removal(&self, s: &Sync, at_least: usize) -> Vec<Arc<Pod>> {
        let mut rm = Vec::new();
        let mut left = Vec::new();
        if s.indexed() {
            let completions = s.completions().unwrap_or(0);
            let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
            for p in &s.active {
                match pods::index(p).filter(|i| *i < completions) {
                    Some(i) => by_index.entry(i).or_default().push(p.clone()),
                    None => rm.push(p.clone()),
                }
            }
            for (_, mut group) in by_index {
                group.sort_by_key(|p| std::cmp::Reverse(rank(p)));
                let mut group = group.into_iter();
                left.extend(group.next());
                rm.extend(group);
            }
        } else {
            left = s.active.clone();
        }
        if rm.len() < at_least {
            left.sort_by_key(|p| rank(p));
            let more = (at_least - rm.len()).min(left.len());
            rm.extend(left.into_iter().take(more));
        }
        rm.truncate(BURST);
        rm
    }

    /// Create one pod per entry of `indexes` (slow start: 1, 2, 4, ...), stopping at the
    /// first failure; returns how many were created.
    async fn create_pods(&self, s: &Sync, indexes: &[Option<i32>]) -> Result<i32, (i32, Error)> {
        let ns = s.job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut created = 0;
        let mut batch = 1;
        let mut rest = indexes;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            batch *= 2;
            let creates = now.iter().map(|i| {
                let pod = pods::new_pod(&s.job, *i);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            });
            let mut failed = None;
            for r in futures::future::join_all(creates).await {
                match r {
                    Ok(pod) => {
                        created += 1;
                        self.expectations
                            .created(&s.key, pod.uid().unwrap_or_default());
                        self.recorder.event(
                            &s.job,
                            Kind::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", pod.name_any()),
                        );
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                let msg = match &e {
                    kube::Error::Api(st) => st.message.clone(),
                    other => other.to_string(),
                };
                self.recorder.event(
                    &s.job,
                    Kind::Warning,
                    "FailedCreate",
                    &format!("Error creating: {msg}"),
                );
                return Err((created, e.into()));
            }
        }
        Ok(created)
    }

    /// Delete `doomed`, removing the tracking finalizer first unless `keep_finalizer` (then the
    /// tracking counts them as failed); returns (deleted, deleted that were ready, error).
    pub(super) async fn delete_pods(
        &self,
        s: &mut Sync,
        doomed: &[Arc<Pod>],
        keep_finalizer: bool,
    ) -> (i32, i32, Option<Error>) {
        let ns = s.job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let key = s.key.clone();
        let deletes = doomed.iter().map(|p| {
            let api = api.clone();
            let key = key.clone();
            async move {
                if !keep_finalizer && pods::has_finalizer(p) {
                    self.remove_finalizer(Some(&key), p).await?;
                }
                match api.delete(&p.name_any(), &DeleteParams::default()).await {
                    Ok(_) => Ok(true),
                    Err(e) if util::code(&e) == Some(404) => Ok(false),
                    Err(e) => Err(Error::from(e)),
                }
            }
        });
        let (mut deleted, mut ready, mut error) = (0, 0, None);
        for (p, r) in doomed.iter().zip(futures::future::join_all(deletes).await) {
            match r {
                Ok(found) => {
                    deleted += 1;
                    if util::is_ready(p) {
                        ready += 1;
                    }
                    if found {
                        self.expectations
                            .deleted(&s.key, p.uid().unwrap_or_default());
                        self.recorder.event(
                            &s.job,
                            Kind::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {}", p.name_any()),
                        );
                    }
                }
                Err(e) => error = Some(e),
            }
        }
        (deleted, ready, error)
    }
}

/// Pods to delete first sort first: unscheduled, pending, not ready, then the newest.
fn rank(p: &Pod) -> (bool, u8, bool, std::cmp::Reverse<i64>) {
    let scheduled = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pods::phase(p) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (
        scheduled,
        phase,
        util::is_ready(p),
        std::cmp::Reverse(created),
    )
}
