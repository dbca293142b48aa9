//! A probe's timing (kubelet's defaults: period 10 s, timeout 1 s, success and failure
//! thresholds 1 and 3) and the threshold state machine of kubelet's probe worker: a result
//! changes only after `successThreshold` successes or `failureThreshold` failures in a row.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

/// Liveness, readiness or startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// "Liveness", as kubelet's events say it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    /// What the container counts as before its first probe: not ready, alive, not started.
    pub fn initial(self) -> bool {
        matches!(self, Kind::Liveness)
    }
}

/// When and how often a probe runs, and how many results in a row change its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// The probe's terminationGracePeriodSeconds (liveness and startup kills).
    pub grace: Option<Duration>,
}

fn secs(v: Option<i32>, default: u64, min: u64) -> Duration {
    let v = v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default);
    Duration::from_secs(v.max(min))
}

impl Timing {
    pub fn of(probe: &Probe) -> Timing {
        let count = |v: Option<i32>, default: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
            grace: probe
                .termination_grace_period_seconds
                .and_then(|g| u64::try_from(g).ok())
                .map(Duration::from_secs),
        }
    }
}

/// The result of one probe run: passed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// A worker's current result and the run of equal outcomes behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// The result as reported (true: success).
    pub result: bool,
    last: Option<Outcome>,
    run: u32,
}

impl Threshold {
    pub fn new(kind: Kind) -> Threshold {
        Threshold {
            result: kind.initial(),
            last: None,
            run: 0,
        }
    }

    /// Count one outcome; true when the result changed.
    pub fn observe(&mut self, outcome: Outcome, timing: &Timing) -> bool {
        if self.last == Some(outcome) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(outcome);
            self.run = 1;
        }
        let needed = match outcome {
            Outcome::Success => timing.success_threshold,
            Outcome::Failure => timing.failure_threshold,
        };
        let wanted = outcome == Outcome::Success;
        if self.run < needed || self.result == wanted {
            return false;
        }
        self.result = wanted;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kubelets() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        assert_eq!(t.initial_delay, Duration::ZERO);
        let t = Timing::of(&Probe {
            period_seconds: Some(0),
            failure_threshold: Some(1),
            termination_grace_period_seconds: Some(5),
            ..Default::default()
        });
        assert_eq!(t.period, Duration::from_secs(1));
        assert_eq!(t.failure_threshold, 1);
        assert_eq!(t.grace, Some(Duration::from_secs(5)));
    }

    #[test]
    fn results_change_after_enough_outcomes_in_a_row() {
        let timing = Timing {
            success_threshold: 2,
            failure_threshold: 3,
            ..Timing::of(&Probe::default())
        };
        let mut ready = Threshold::new(Kind::Readiness);
        assert!(!ready.result);
        assert!(!ready.observe(Outcome::Success, &timing));
        assert!(ready.observe(Outcome::Success, &timing));
        assert!(ready.result);
        assert!(!ready.observe(Outcome::Failure, &timing));
        assert!(!ready.observe(Outcome::Failure, &timing));
        // A success breaks the run of failures.
        assert!(!ready.observe(Outcome::Success, &timing));
        assert!(!ready.observe(Outcome::Failure, &timing));
        assert!(!ready.observe(Outcome::Failure, &timing));
        assert!(ready.observe(Outcome::Failure, &timing));
        assert!(!ready.result);
        let mut alive = Threshold::new(Kind::Liveness);
        assert!(alive.result);
        assert!(!alive.observe(Outcome::Success, &timing));
        assert!(!Threshold::new(Kind::Startup).result);
    }
}
