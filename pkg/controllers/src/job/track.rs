//! Counting finished pods exactly once (kube-controller-manager's
//! trackJobStatusAndRemoveFinalizers): a finished pod's uid goes into
//! status.uncountedTerminatedPods, then its tracking finalizer is removed, then it moves into
//! succeeded/failed. The Job is marked Complete or Failed only when nothing is left uncounted
//! or terminating.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::Controller;
use super::conditions as cond;
use super::pods;
use super::sync::Sync;
use crate::events::Kind;
use crate::{Result, util};

/// Move uncounted uids whose pods no longer carry the finalizer into the counters.
fn settle(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let unc = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let mut changed = false;
    for (list, counter) in [
        (&mut unc.succeeded, &mut status.succeeded),
        (&mut unc.failed, &mut status.failed),
    ] {
        let Some(uids) = list.as_mut() else { continue };
        let before = uids.len();
        uids.retain(|u| with_finalizer.contains(u));
        let moved = before - uids.len();
        if moved > 0 {
            *counter = Some(counter.unwrap_or(0) + i32::try_from(moved).unwrap_or(i32::MAX));
            changed = true;
        }
        if uids.is_empty() {
            *list = None;
        }
    }
    changed
}

/// Empty lists and zero counters are left out, as the API's omitempty does.
fn normalize(status: &mut JobStatus) {
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
    for n in [
        &mut status.succeeded,
        &mut status.failed,
        &mut status.active,
    ] {
        if *n == Some(0) {
            *n = None;
        }
    }
}

impl Controller {
    /// Count finished pods, remove their finalizers, and write the status (twice when pods
    /// were newly counted: before and after the finalizers go).
    pub(super) async fn track(&self, s: &mut Sync, old: &JobStatus) -> Result<()> {
        let with_finalizer: HashSet<String> = s
            .pods
            .iter()
            .filter(|p| pods::has_finalizer(p))
            .filter_map(|p| p.uid())
            .filter(|u| !s.expected_rm.contains(u))
            .collect();
        let policy = s.spec.pod_failure_policy.clone();
        let completions = s.completions().unwrap_or(0);
        let failing = s
            .finished
            .as_ref()
            .is_some_and(|c| c.type_ != cond::SUCCESS_CRITERIA_MET);
        let mut status = s.job.status.clone().unwrap_or_default();
        let mut needs_flush = settle(&mut status, &with_finalizer);
        let unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let (mut unc_s, mut unc_f) = (
            unc.succeeded.unwrap_or_default(),
            unc.failed.unwrap_or_default(),
        );
        let mut remove: Vec<Arc<Pod>> = Vec::new();
        let mut new_indexes = Vec::new();
        for p in &s.pods {
            let Some(uid) = p.uid() else { continue };
            if !pods::has_finalizer(p) || s.expected_rm.contains(&uid) {
                continue;
            }
            let failed = pods::is_failed(p, &s.job);
            let removable = s.job.metadata.deletion_timestamp.is_some()
                || s.finished.is_some()
                || pods::succeeded(p)
                || failed;
            if !removable {
                continue;
            }
            remove.push(p.clone());
            let index = pods::index(p);
            if pods::succeeded(p) && !unc_f.contains(&uid) {
                if s.indexed() {
                    if let Some(i) = index.filter(|i| *i < completions && !s.prev_succeeded.has(*i))
                    {
                        new_indexes.push(i);
                        needs_flush = true;
                    }
                } else if !unc_s.contains(&uid) {
                    unc_s.push(uid);
                    needs_flush = true;
                }
            } else if (failed || failing)
                && !unc_f.contains(&uid)
                && (!s.indexed() || index.is_some_and(|i| i < completions))
                && pods::judge(policy.as_ref(), p).counts()
            {
                unc_f.push(uid);
                needs_flush = true;
            }
        }
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: (!unc_s.is_empty()).then_some(unc_s),
            failed: (!unc_f.is_empty()).then_some(unc_f),
        });
        if s.indexed() {
            s.succeeded_indexes = s.succeeded_indexes.with(new_indexes);
            let text = s.succeeded_indexes.to_string();
            status.succeeded = Some(s.succeeded_indexes.total()).filter(|n| *n != 0);
            status.completed_indexes = (!text.is_empty()).then_some(text);
            needs_flush |= status.completed_indexes != old.completed_indexes;
        }
        // The interim condition goes in before the finalizers go; the final one after.
        if let Some(c) = s.finished.clone() {
            let list = status.conditions.get_or_insert_with(Vec::new);
            if c.type_ == cond::FAILURE_TARGET {
                list.push(c.clone());
                needs_flush = true;
                s.finished = Some(cond::new(
                    cond::FAILED,
                    "True",
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or(""),
                ));
            } else if c.type_ == cond::SUCCESS_CRITERIA_MET {
                if !cond::is_true(&s.job, cond::SUCCESS_CRITERIA_MET) {
                    list.push(c.clone());
                    status.completion_time = c.last_transition_time.clone();
                    needs_flush = true;
                }
                s.finished = Some(cond::new(
                    cond::COMPLETE,
                    "True",
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or(""),
                ));
            }
        }
        let mut baseline = old.clone();
        if needs_flush {
            self.write_status(s, &mut status).await?;
            baseline = s.job.status.clone().unwrap_or_default();
            self.backoffs.set(&s.key, s.backoff);
        }
        let mut with_finalizer = with_finalizer;
        let mut error = None;
        let removals = remove
            .iter()
            .map(|p| self.remove_finalizer(Some(&s.key), p));
        for (p, r) in remove.iter().zip(futures::future::join_all(removals).await) {
            match r {
                Ok(_) => {
                    if let Some(uid) = p.uid() {
                        with_finalizer.remove(&uid);
                    }
                }
                Err(e) => error = Some(e),
            }
        }
        settle(&mut status, &with_finalizer);
        let finished = error.is_none() && self.enact_finished(s, &mut status);
        normalize(&mut status);
        if status != baseline {
            self.write_status(s, &mut status).await?;
            if !needs_flush {
                self.backoffs.set(&s.key, s.backoff);
            }
        }
        if finished {
            self.record_finished(s);
        }
        error.map_or(Ok(()), Err)
    }

    /// Add the final Complete or Failed condition if nothing is left uncounted or
    /// terminating.
    fn enact_finished(&self, s: &Sync, status: &mut JobStatus) -> bool {
        let Some(c) = s.finished.as_ref() else {
            return false;
        };
        let unc = status.uncounted_terminated_pods.as_ref();
        let left = unc.map_or(0, |u| {
            u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
        });
        if left > 0 || s.terminating > 0 {
            return false;
        }
        let list = status.conditions.get_or_insert_with(Vec::new);
        let reason = c.reason.as_deref().unwrap_or("");
        let message = c.message.as_deref().unwrap_or("");
        cond::ensure(list, &c.type_, &c.status, reason, message);
        if c.type_ == cond::COMPLETE {
            status.completion_time = c.last_transition_time.clone();
        }
        true
    }

    fn record_finished(&self, s: &Sync) {
        let Some(c) = s.finished.as_ref() else { return };
        if c.type_ == cond::COMPLETE {
            if s.completions().is_some_and(|n| s.succeeded > n) {
                self.recorder.event(
                    &s.job,
                    Kind::Warning,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                );
            }
            self.recorder
                .event(&s.job, Kind::Normal, "Completed", "Job completed");
        } else {
            self.recorder.event(
                &s.job,
                Kind::Warning,
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
            );
        }
    }

    /// Replace the Job's status (optimistically: a stale Job conflicts and is retried), then
    /// record the events it stands for.
    async fn write_status(&self, s: &mut Sync, status: &mut JobStatus) -> Result<()> {
        normalize(status);
        let mut job = s.job.clone();
        job.status = Some(status.clone());
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &job.namespace().unwrap_or_default(),
        );
        match api
            .replace_status(&job.name_any(), &PostParams::default(), &job)
            .await
        {
            Ok(written) => {
                self.writes
                    .wrote(&s.key, written.metadata.resource_version.as_deref());
                s.job = written;
                for (reason, message) in std::mem::take(&mut s.events) {
                    self.recorder.event(&s.job, Kind::Normal, reason, message);
                }
                Ok(())
            }
            Err(e) if util::code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
