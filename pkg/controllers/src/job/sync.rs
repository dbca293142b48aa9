//! One sync of a Job (kube-controller-manager's syncJob): count the pods, decide whether the
//! Job has failed or succeeded, manage its pods, and track the status.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::Controller;
use super::conditions::{self as cond, Record};
use super::indexes::{self, Intervals};
use super::pods;
use crate::{Result, util};

/// What one sync knows and decides.
pub struct Sync {
    pub key: String,
    pub job: Job,
    pub spec: JobSpec,
    pub pods: Vec<Arc<Pod>>,
    pub active: Vec<Arc<Pod>>,
    /// Pods whose finalizer was removed though the cache still shows it.
    pub expected_rm: HashSet<String>,
    pub succeeded: i32,
    pub failed: i32,
    pub ready: i32,
    pub terminating: i32,
    pub finished: Option<JobCondition>,
    pub prev_succeeded: Intervals,
    pub succeeded_indexes: Intervals,
    pub backoff: Record,
    pub requeue: Option<Duration>,
    /// Events to record once the status saying so is written.
    pub events: Vec<(&'static str, &'static str)>,
}

impl Sync {
    pub fn indexed(&self) -> bool {
        pods::is_indexed(&self.job)
    }

    pub fn completions(&self) -> Option<i32> {
        self.spec.completions
    }

    /// A pod that may be counted: it still has the finalizer, and a valid index if Indexed.
    pub fn countable(&self, p: &Pod) -> bool {
        pods::has_finalizer(p)
            && !p.uid().is_some_and(|u| self.expected_rm.contains(&u))
            && (!self.indexed()
                || pods::index(p).is_some_and(|i| i < self.completions().unwrap_or(0)))
    }

    pub fn look_again(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    pub fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Controller {
    pub(super) async fn sync(&self, key: &str, cached: &Job) -> Result<Option<Duration>> {
        let pods = self.pods_of(cached);
        let present: HashMap<String, bool> = pods
            .iter()
            .filter_map(|p| Some((p.uid()?, p.metadata.deletion_timestamp.is_none())))
            .collect();
        let satisfied = self
            .expectations
            .satisfied(key, |uid| present.get(uid).copied());
        let mut job = cached.clone();
        let status = job.status.get_or_insert_with(Default::default);
        let uncounted = status
            .uncounted_terminated_pods
            .get_or_insert_with(Default::default)
            .clone();
        let (unc_s, unc_f): (HashSet<String>, HashSet<String>) = (
            uncounted.succeeded.into_iter().flatten().collect(),
            uncounted.failed.into_iter().flatten().collect(),
        );
        let spec = job.spec.clone().unwrap_or_default();
        let mut s = Sync {
            key: key.to_string(),
            active: pods
                .iter()
                .filter(|p| util::is_active(p))
                .cloned()
                .collect(),
            expected_rm: self.expected_removals(key, &pods),
            pods,
            job,
            spec,
            succeeded: 0,
            failed: 0,
            ready: 0,
            terminating: 0,
            finished: None,
            prev_succeeded: Intervals::default(),
            succeeded_indexes: Intervals::default(),
            backoff: Record::default(),
            requeue: None,
            events: Vec::new(),
        };
        // Pods finished since the last sync.
        let policy = s.spec.pod_failure_policy.clone();
        let fresh = |p: &&Arc<Pod>, seen: &HashSet<String>| {
            s.countable(p) && !p.uid().is_some_and(|u| seen.contains(&u))
        };
        let new_succeeded: Vec<&Arc<Pod>> = s
            .pods
            .iter()
            .filter(|p| fresh(p, &unc_s) && pods::succeeded(p))
            .collect();
        let new_failed: Vec<&Arc<Pod>> = s
            .pods
            .iter()
            .filter(|p| fresh(p, &unc_f) && pods::is_failed(p, &s.job))
            .collect();
        let times = |list: &[&Arc<Pod>]| -> Vec<Timestamp> {
            list.iter().map(|p| cond::finish_time(p)).collect()
        };
        s.backoff = self
            .backoffs
            .get(key)
            .after(&times(&new_succeeded), &times(&new_failed));
        let counted_failures = new_failed
            .iter()
            .filter(|p| pods::judge(policy.as_ref(), p).counts())
            .count();
        let old = cached.status.clone().unwrap_or_default();
        s.succeeded = old.succeeded.unwrap_or(0) + count(unc_s.len() + new_succeeded.len());
        s.failed = old.failed.unwrap_or(0) + count(unc_f.len() + counted_failures);
        let suspended = s.suspended();
        if let Some(st) = s.job.status.as_mut()
            && st.start_time.is_none()
            && !suspended
        {
            st.start_time = Some(cond::now());
        }
        s.ready = count(s.active.iter().filter(|p| util::is_ready(p)).count());
        s.terminating = count(s.pods.iter().filter(|p| pods::is_terminating(p)).count());

        self.judge(&mut s);
        tracing::debug!(
            key,
            pods = s.pods.len(),
            active = s.active.len(),
            succeeded = s.succeeded,
            failed = s.failed,
            finished = ?s.finished.as_ref().map(|c| &c.type_),
            satisfied,
            "syncing a job"
        );
        let mut manage_err = None;
        let mut active = count(s.active.len());
        if s.finished.is_some() {
            let doomed = s.active.clone();
            let (deleted, deleted_ready, err) = self.delete_pods(&mut s, &doomed, true).await;
            if deleted != active || !satisfied {
                s.finished = None;
            }
            active -= deleted;
            s.terminating += deleted;
            s.ready -= deleted_ready;
            manage_err = err;
        } else {
            let manage = satisfied && s.job.metadata.deletion_timestamp.is_none();
            if manage {
                match self.manage(&mut s).await {
                    Ok(n) => active = n,
                    Err((n, e)) => (active, manage_err) = (n, Some(e)),
                }
            }
            let complete = active == 0
                && match s.completions() {
                    None => s.succeeded > 0,
                    Some(c) => s.succeeded >= c,
                };
            if complete {
                s.finished = Some(cond::new(
                    cond::SUCCESS_CRITERIA_MET,
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ));
            } else if manage {
                self.suspension(&mut s);
            }
        }
        if let Some(st) = s.job.status.as_mut() {
            st.active = (active != 0).then_some(active);
            st.ready = Some(s.ready);
            st.terminating = Some(s.terminating);
        }
        self.track(&mut s, &old).await?;
        if let Some(e) = manage_err {
            return Err(e);
        }
        Ok(if satisfied {
            s.requeue
        } else {
            Some(
                s.requeue
                    .map_or(Duration::from_secs(1), |r| r.min(Duration::from_secs(1))),
            )
        })
    }

    /// Whether the Job has failed (FailureTarget) or met its success policy.
    fn judge(&self, s: &mut Sync) {
        let failure = |reason: &str, message: &str| {
            Some(cond::new(cond::FAILURE_TARGET, "True", reason, message))
        };
        if let Some(c) =
            cond::find(&s.job, cond::SUCCESS_CRITERIA_MET).filter(|c| c.status == "True")
        {
            s.finished = Some(c.clone());
        } else if let Some(c) =
            cond::find(&s.job, cond::FAILURE_TARGET).filter(|c| c.status == "True")
        {
            let (reason, message) = (c.reason.clone(), c.message.clone());
            s.finished = Some(cond::new(
                cond::FAILED,
                "True",
                reason.as_deref().unwrap_or(""),
                message.as_deref().unwrap_or(""),
            ));
        } else if let Some(message) = self.fail_job_message(s) {
            s.finished = failure("PodFailurePolicy", &message);
        } else if s.failed > s.spec.backoff_limit.unwrap_or(6) {
            s.finished = failure(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            );
        } else if let Some(left) = self.deadline_left(s) {
            if left.is_zero() {
                s.finished = failure(
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                );
            } else {
                s.look_again(left);
            }
        }
        if s.indexed() {
            let completions = s.completions().unwrap_or(0);
            let text = s
                .job
                .status
                .as_ref()
                .and_then(|st| st.completed_indexes.clone())
                .unwrap_or_default();
            s.prev_succeeded = Intervals::parse(&text, completions);
            let new = s
                .pods
                .iter()
                .filter(|p| pods::succeeded(p) && pods::has_finalizer(p))
                .filter_map(|p| pods::index(p).filter(|i| *i < completions));
            s.succeeded_indexes = s.prev_succeeded.with(new);
            s.succeeded = s.succeeded_indexes.total();
            if s.finished.is_none()
                && let Some(msg) = indexes::success_policy_met(
                    s.spec.success_policy.as_ref(),
                    completions,
                    &s.succeeded_indexes,
                )
            {
                s.finished = Some(cond::new(
                    cond::SUCCESS_CRITERIA_MET,
                    "True",
                    "SuccessPolicy",
                    &msg,
                ));
            }
        }
    }

    /// The message of the first failed pod a FailJob rule matches.
    fn fail_job_message(&self, s: &Sync) -> Option<String> {
        let policy = s.spec.pod_failure_policy.as_ref()?;
        s.pods
            .iter()
            .filter(|p| pods::is_failed(p, &s.job))
            .find_map(|p| match pods::judge(Some(policy), p) {
                pods::Verdict::FailJob(m) => Some(m),
                _ => None,
            })
    }

    /// Time left before activeDeadlineSeconds (None without a deadline, a start, or when
    /// suspended).
    fn deadline_left(&self, s: &Sync) -> Option<Duration> {
        let limit = s.spec.active_deadline_seconds?;
        let start = s.job.status.as_ref()?.start_time.as_ref()?.0;
        if s.suspended() {
            return None;
        }
        let elapsed = Duration::try_from(Timestamp::now() - start).unwrap_or_default();
        Some(Duration::from_secs(u64::try_from(limit).unwrap_or(0)).saturating_sub(elapsed))
    }

    /// The Suspended condition, and a fresh startTime on resume.
    fn suspension(&self, s: &mut Sync) {
        let suspended = s.suspended();
        let Some(st) = s.job.status.as_mut() else {
            return;
        };
        let list = st.conditions.get_or_insert_with(Vec::new);
        let changed = if suspended {
            cond::ensure(
                list,
                cond::SUSPENDED,
                "True",
                "JobSuspended",
                "Job suspended",
            )
        } else {
            cond::ensure(list, cond::SUSPENDED, "False", "JobResumed", "Job resumed")
        };
        if changed && !suspended {
            st.start_time = Some(cond::now());
        }
        if st.conditions.as_ref().is_some_and(Vec::is_empty) {
            st.conditions = None;
        }
        if changed {
            s.events.push(if suspended {
                ("Suspended", "Job suspended")
            } else {
                ("Resumed", "Job resumed")
            });
        }
    }
}
