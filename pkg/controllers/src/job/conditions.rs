//! Job conditions as the Job controller sets them, and the back-off before failed pods are
//! replaced (10 s, doubling to 6 min, per consecutive failure since the last success).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const SUSPENDED: &str = "Suspended";

const BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// Now, to the second (as the API stores times).
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now()))
}

pub fn new(type_: &str, status: &str, reason: &str, message: &str) -> JobCondition {
    let now = now();
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: text(reason),
        message: text(message),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

pub fn find<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

pub fn is_true(job: &Job, type_: &str) -> bool {
    find(job, type_).is_some_and(|c| c.status == "True")
}

/// Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    is_true(job, COMPLETE) || is_true(job, FAILED)
}

/// Set a condition (a new False one is not added); true if anything changed.
pub fn ensure(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> bool {
    let want = new(type_, status, reason, message);
    match list.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status == want.status && c.reason == want.reason && c.message == want.message {
                return false;
            }
            *c = want;
            true
        }
        None if status != "False" => {
            list.push(want);
            true
        }
        None => false,
    }
}

/// When a finished pod finished: its containers' last exit, else its deletion, else now.
pub fn finish_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let exits = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    exits
        .or(pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .unwrap_or_else(Timestamp::now)
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Record {
    pub failures: u32,
    pub last_failure: Option<Timestamp>,
}

impl Record {
    /// The record after new successes and failures (finish times).
    pub fn after(self, succeeded: &[Timestamp], failed: &[Timestamp]) -> Record {
        let last_success = succeeded.iter().max();
        let Some(last_success) = last_success else {
            return match failed.iter().max() {
                None => self,
                Some(t) => Record {
                    failures: self.failures + failed.len() as u32,
                    last_failure: Some(*t),
                },
            };
        };
        let later: Vec<&Timestamp> = failed.iter().filter(|t| *t > last_success).collect();
        Record {
            failures: later.len() as u32,
            last_failure: later.into_iter().max().copied(),
        }
    }

    /// How long before failed pods may be replaced.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure.filter(|_| self.failures > 0) else {
            return Duration::ZERO;
        };
        let mut wait = BACKOFF;
        for _ in 1..self.failures {
            wait = (wait * 2).min(MAX_BACKOFF);
        }
        let since = Duration::try_from(now - last).unwrap_or_default();
        wait.saturating_sub(since)
    }
}

/// Back-off records by Job key (kept in memory, as kube-controller-manager does).
#[derive(Default)]
pub struct Backoffs(Mutex<HashMap<String, Record>>);

impl Backoffs {
    pub fn get(&self, key: &str) -> Record {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).copied().unwrap_or_default()
    }

    pub fn set(&self, key: &str, r: Record) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(key.to_string(), r);
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("time")
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_six_minutes_and_resets_on_success() {
        let r = Record::default().after(&[], &[t(100)]);
        assert_eq!(r.remaining(t(100)), Duration::from_secs(10));
        assert_eq!(r.remaining(t(104)), Duration::from_secs(6));
        assert_eq!(r.remaining(t(200)), Duration::ZERO);
        let r = r.after(&[], &[t(110), t(120)]);
        assert_eq!((r.failures, r.last_failure), (3, Some(t(120))));
        assert_eq!(r.remaining(t(120)), Duration::from_secs(40));
        let many = Record {
            failures: 9,
            last_failure: Some(t(0)),
        };
        assert_eq!(many.remaining(t(0)), MAX_BACKOFF);
        // A success resets; only failures after it count.
        let r = r.after(&[t(130)], &[t(125), t(140)]);
        assert_eq!((r.failures, r.last_failure), (1, Some(t(140))));
    }

    #[test]
    fn conditions_change_only_when_they_differ() {
        let mut list = Vec::new();
        assert!(!ensure(
            &mut list,
            SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed"
        ));
        assert!(ensure(
            &mut list,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended"
        ));
        assert!(!ensure(
            &mut list,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended"
        ));
        assert!(ensure(
            &mut list,
            SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed"
        ));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason.as_deref(), Some("JobResumed"));
    }
}
