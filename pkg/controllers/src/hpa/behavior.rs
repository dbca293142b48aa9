//! From the replicas the metrics ask for to the replicas to set, as kube-controller-manager
//! normalizes them. Without `behavior`: the highest recommendation of the last 5 minutes
//! (scale-down stabilization), within min/max and at most max(2×current, 4). With it:
//! recommendations stabilized over each direction's window, then the change limited by the
//! policies (Pods or Percent per period, the Max or Min of them, or Disabled) counting the
//! changes made within each period. Defaults are the API's: scale-up 0 s window, 100% or 4
//! pods per 15 s (Max); scale-down 300 s window, 100% per 15 s.

use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

use super::replicas::Tolerance;

/// kube-controller-manager's `--horizontal-pod-autoscaler-downscale-stabilization`.
pub const DOWNSCALE_STABILIZATION: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// At most this many pods per period.
    Pods(i32, Duration),
    /// At most this percentage of the replicas at the period's start.
    Percent(i32, Duration),
}

impl Policy {
    fn period(&self) -> Duration {
        match self {
            Policy::Pods(_, p) | Policy::Percent(_, p) => *p,
        }
    }
}

/// One direction's rules, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub window: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
    pub tolerance: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// `given` over the defaults (each field that is set replaces the default's).
fn rules(given: Option<&HPAScalingRules>, default: Rules) -> Rules {
    let Some(g) = given else { return default };
    Rules {
        window: g.stabilization_window_seconds.map_or(default.window, secs),
        select: match g.select_policy.as_deref() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            Some(_) => Select::Max,
            None => default.select,
        },
        policies: match &g.policies {
            Some(ps) => ps
                .iter()
                .map(|p| match p.type_.as_str() {
                    "Percent" => Policy::Percent(p.value, secs(p.period_seconds)),
                    _ => Policy::Pods(p.value, secs(p.period_seconds)),
                })
                .collect(),
            None => default.policies,
        },
        tolerance: g
            .tolerance
            .as_ref()
            .and_then(|q| minik_api::quantity::parse(&q.0))
            .map(|m| m as f64 / 1000.0)
            .or(default.tolerance),
    }
}

/// The behavior with the API's defaults (the scale-down window defaults to the
/// controller's downscale stabilization).
pub fn with_defaults(b: &HorizontalPodAutoscalerBehavior) -> Behavior {
    let period = Duration::from_secs(15);
    let up = Rules {
        window: Duration::ZERO,
        select: Select::Max,
        policies: vec![Policy::Pods(4, period), Policy::Percent(100, period)],
        tolerance: None,
    };
    let down = Rules {
        window: DOWNSCALE_STABILIZATION,
        select: Select::Max,
        policies: vec![Policy::Percent(100, period)],
        tolerance: None,
    };
    Behavior {
        up: rules(b.scale_up.as_ref(), up),
        down: rules(b.scale_down.as_ref(), down),
    }
}

/// The tolerance of each direction (10% unless the behavior sets one).
pub fn tolerance(b: Option<&Behavior>) -> Tolerance {
    let mut t = Tolerance::default();
    if let Some(b) = b {
        t.up = b.up.tolerance.unwrap_or(t.up);
        t.down = b.down.tolerance.unwrap_or(t.down);
    }
    t
}

/// What normalizing decided: the replicas, and the reasons for the AbleToScale and
/// ScalingLimited conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    pub able: (&'static str, &'static str),
    pub limited: bool,
    pub limit: (&'static str, &'static str),
}

/// A rescale: how many replicas it added or removed, and when.
#[derive(Debug, Clone, Copy)]
struct Change {
    replicas: i32,
    at: Instant,
}

/// What one HPA's recent past the normalization needs: unstabilized recommendations and
/// the rescales of each direction.
#[derive(Debug, Default)]
pub struct History {
    recommendations: Vec<(i32, Instant)>,
    up: Vec<Change>,
    down: Vec<Change>,
}

fn age(t: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(t)
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

impl History {
    /// The first recommendation is the current size.
    pub fn start(&mut self, current: i32, now: Instant) {
        if self.recommendations.is_empty() {
            self.recommendations.push((current, now));
        }
    }

    /// Keep `desired`, reusing the slot of one sample older than `keep`.
    fn record(&mut self, desired: i32, keep: Duration, now: Instant) {
        match self
            .recommendations
            .iter()
            .rposition(|(_, t)| age(*t, now) > keep)
        {
            Some(i) => self.recommendations[i] = (desired, now),
            None => self.recommendations.push((desired, now)),
        }
    }

    /// The highest recommendation within the window (no behavior).
    fn stabilize(&mut self, desired: i32, window: Duration, now: Instant) -> i32 {
        let highest = self
            .recommendations
            .iter()
            .filter(|(_, t)| age(*t, now) <= window)
            .map(|(r, _)| *r)
            .fold(desired, i32::max);
        self.record(desired, window, now);
        highest
    }

    /// Within [lowest recommendation of the scale-up window, highest of the scale-down
    /// window], as near the current size as that allows.
    fn stabilize_with(&mut self, b: &Behavior, current: i32, desired: i32, now: Instant) -> i32 {
        let (mut up, mut down) = (desired, desired);
        for (r, t) in &self.recommendations {
            if age(*t, now) < b.up.window {
                up = up.min(*r);
            }
            if age(*t, now) < b.down.window {
                down = down.max(*r);
            }
        }
        self.record(desired, b.up.window.max(b.down.window), now);
        current.max(up).min(down)
    }

    /// Remember a rescale (with a behavior; the policies count them).
    pub fn rescaled(&mut self, b: Option<&Behavior>, from: i32, to: i32, now: Instant) {
        let Some(b) = b else { return };
        let (events, rules, replicas) = if to > from {
            (&mut self.up, &b.up, to - from)
        } else {
            (&mut self.down, &b.down, from - to)
        };
        let longest = rules
            .policies
            .iter()
            .map(Policy::period)
            .max()
            .unwrap_or_default();
        events.retain(|e| age(e.at, now) <= longest);
        events.push(Change { replicas, at: now });
    }

    /// Replicas added (or removed) within `period`.
    fn changed(events: &[Change], period: Duration, now: Instant) -> i32 {
        events
            .iter()
            .filter(|e| age(e.at, now) < period)
            .map(|e| e.replicas)
            .sum()
    }

    /// The bound the policies of `rules` put on the replicas (`up`: the most, else the
    /// fewest).
    fn bound(&self, rules: &Rules, current: i32, up: bool, now: Instant) -> i32 {
        let pick = match (rules.select, up) {
            (Select::Disabled, _) => return current,
            (Select::Max, true) | (Select::Min, false) => i32::max,
            (Select::Min, true) | (Select::Max, false) => i32::min,
        };
        let mut result: Option<i32> = None;
        for p in &rules.policies {
            let added = Self::changed(&self.up, p.period(), now);
            let removed = Self::changed(&self.down, p.period(), now);
            let start = current - added + removed;
            let proposed = match (p, up) {
                (Policy::Pods(v, _), true) => start + v,
                (Policy::Pods(v, _), false) => start - v,
                (Policy::Percent(v, _), true) => {
                    (f64::from(start) * (1.0 + f64::from(*v) / 100.0)).ceil() as i32
                }
                (Policy::Percent(v, _), false) => {
                    (f64::from(start) * (1.0 - f64::from(*v) / 100.0)) as i32
                }
            };
            result = Some(result.map_or(proposed, |r| pick(r, proposed)));
        }
        result.unwrap_or(current)
    }
}

/// Within min and max, and without a behavior at most max(2×current, 4).
fn limit_by_rules(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, (&'static str, &'static str)) {
    let up_limit = (2 * current).max(4);
    let (most, why) = if max > up_limit {
        (up_limit, UP_LIMIT)
    } else {
        (max, TOO_MANY)
    };
    if desired < min {
        (min, TOO_FEW)
    } else if desired > most {
        (most, why)
    } else {
        (desired, WITHIN)
    }
}

fn limit_by_behavior(
    h: &History,
    b: &Behavior,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: Instant,
) -> (i32, (&'static str, &'static str)) {
    if desired > current {
        let limit = h.bound(&b.up, current, true, now).max(current);
        let (most, why) = if max > limit {
            (limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if desired > most {
            return (most, why);
        }
    } else if desired < current {
        let limit = h.bound(&b.down, current, false, now).min(current);
        let (least, why) = if min < limit {
            (limit, DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if desired < least {
            return (least, why);
        }
    }
    (desired, WITHIN)
}

/// The replicas to set for the `desired` the metrics ask for.
pub fn normalize(
    h: &mut History,
    b: Option<&Behavior>,
    current: i32,
    desired: i32,
    (min, max): (i32, i32),
    now: Instant,
) -> Normalized {
    let (stabilized, able) = match b {
        None => {
            let s = h.stabilize(desired, DOWNSCALE_STABILIZATION, now);
            (s, if s != desired { DOWN_STABILIZED } else { READY })
        }
        Some(b) => {
            let s = h.stabilize_with(b, current, desired, now);
            let moved = if desired >= current {
                UP_STABILIZED
            } else {
                DOWN_STABILIZED
            };
            (s, if s != desired { moved } else { READY })
        }
    };
    let (replicas, limit) = match b {
        None => limit_by_rules(current, stabilized, min, max),
        Some(b) => limit_by_behavior(h, b, current, stabilized, min, max, now),
    };
    Normalized {
        replicas,
        able,
        limited: replicas != stabilized,
        limit,
    }
}

#[cfg(test)]
#[path = "behavior_tests.rs"]
mod tests;
