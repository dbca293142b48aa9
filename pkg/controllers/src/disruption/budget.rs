//! The arithmetic of a PodDisruptionBudget, as kube-controller-manager's disruption
//! controller does it: how many pods are expected and must stay healthy, which recorded
//! evictions still count, how many disruptions are allowed, and the DisruptionAllowed
//! condition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::util;

/// An eviction recorded in `disruptedPods` counts this long; a pod not deleted by then is
/// counted again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

fn timeout() -> SignedDuration {
    SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default()
}

/// Whether the budget is a share of its pods' controllers' scale (maxUnavailable, or
/// minAvailable as a percentage); a plain minAvailable needs no scale.
pub fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.is_some_and(|s| s.max_unavailable.is_some())
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(IntOrString::String(_))
        )
}

/// An int or a percentage of `total` (rounded up); a string that is no percentage is an
/// error, as intstr.GetScaledValueFromIntOrPercent has it.
pub fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let p: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let r = (i64::from(total) * p + 99).div_euclid(100);
            Ok(i32::try_from(r).unwrap_or(i32::MAX))
        }
    }
}

/// (expectedPods, desiredHealthy) for a budget over `pods` pods whose controllers want
/// `scale` replicas in all.
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: i32,
    scale: i32,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let desired = (scale - scaled(max, scale)?).max(0);
        return Ok((scale, desired));
    }
    match &spec.min_available {
        Some(IntOrString::Int(i)) => Ok((pods, *i)),
        Some(min) => Ok((scale, scaled(min, scale)?)),
        None => Ok((0, 0)),
    }
}

/// The recorded evictions that still count (their pod is here, not yet being deleted, and
/// the record is younger than DELETION_TIMEOUT), when the next one expires, and the pods
/// whose record expired without them being deleted.
pub fn live_disruptions(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<Arc<Pod>>) {
    let mut live = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut expired = Vec::new();
    let Some(recorded) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (live, recheck, expired);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = recorded.get(&pod.name_any()) else {
            continue;
        };
        let deadline = at.0 + timeout();
        if deadline < now {
            expired.push(pod.clone());
        } else {
            recheck = Some(recheck.map_or(deadline, |r| r.min(deadline)));
            live.insert(pod.name_any(), at.clone());
        }
    }
    (live, recheck, expired)
}

/// Ready pods that are neither being deleted nor about to be (evicted moments ago).
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .is_none_or(|at| at.0 + timeout() <= now)
        })
        .filter(|p| util::is_ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Set a condition as apimachinery's SetStatusCondition does: the transition time moves
/// only when the status changes.
fn set_condition(
    conditions: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let new = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: util::now(),
    };
    match conditions
        .iter_mut()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    {
        Some(c) => {
            let since = (c.status == status).then(|| c.last_transition_time.clone());
            *c = Condition {
                last_transition_time: since.unwrap_or(new.last_transition_time.clone()),
                ..new
            };
        }
        None => conditions.push(new),
    }
}

/// The DisruptionAllowed condition by disruptionsAllowed.
pub fn update_condition(status: &mut PodDisruptionBudgetStatus) {
    let allowed = status.disruptions_allowed.unwrap_or(0) > 0;
    let (s, reason) = if allowed {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let generation = status.observed_generation;
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        s,
        reason,
        "",
        generation,
    );
}

/// Whether the stored condition says what disruptionsAllowed does, for this generation.
fn condition_current(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = &pdb.status else {
        return false;
    };
    let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation
        || c.observed_generation != status.observed_generation
    {
        return false;
    }
    if status.disruptions_allowed.unwrap_or(0) > 0 {
        c.status == "True" && c.reason == SUFFICIENT_PODS
    } else {
        c.status == "False" && c.reason == INSUFFICIENT_PODS
    }
}

/// The status to write, or None when the stored one is up to date. No disruption is
/// allowed while no pod is expected (a budget whose pods are not seen yet stays safe).
pub fn next_status(
    pdb: &PodDisruptionBudget,
    current: i32,
    desired: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
) -> Option<PodDisruptionBudgetStatus> {
    let allowed = if expected <= 0 {
        0
    } else {
        (current - desired).max(0)
    };
    let old = pdb.status.clone().unwrap_or_default();
    let same = old.current_healthy.unwrap_or(0) == current
        && old.desired_healthy.unwrap_or(0) == desired
        && old.expected_pods.unwrap_or(0) == expected
        && old.disruptions_allowed.unwrap_or(0) == allowed
        && old.disrupted_pods.clone().unwrap_or_default() == disrupted
        && old.observed_generation == pdb.metadata.generation
        && condition_current(pdb);
    if same {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: Some(current),
        desired_healthy: Some(desired),
        expected_pods: Some(expected),
        disruptions_allowed: Some(allowed),
        // (Left out when empty, as the API's omitempty map is.)
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    update_condition(&mut status);
    Some(status)
}

/// After a failed sync: no disruption allowed, and the condition says why.
pub fn fail_safe(pdb: &PodDisruptionBudget, error: &str) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = Some(0);
    let generation = status.observed_generation;
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        "False",
        SYNC_FAILED,
        error,
        generation,
    );
    status
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
