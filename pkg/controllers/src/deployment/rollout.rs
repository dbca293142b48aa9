//! How ReplicaSets are scaled during a rollout: RollingUpdate within maxSurge and
//! maxUnavailable, Recreate (all old pods gone before any new one), and scaling while paused.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;

use super::{Controller, Sets, replicas};
use crate::{Result, util};

fn desired(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

fn rolling_params(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let want = desired(d);
    let surge = util::scaled_value(ru.and_then(|r| r.max_surge.as_ref()), want, "25%", true);
    let unavailable = util::scaled_value(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        want,
        "25%",
        false,
    );
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable.min(want))
}

/// Pods allowed above the desired count during a rollout (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    let recreate = d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    if recreate { 0 } else { rolling_params(d).0 }
}

/// Pods allowed to be unavailable during a rollout.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let recreate = d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    if recreate { 0 } else { rolling_params(d).1 }
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

impl Controller {
    /// One step of a rolling update; whether anything was scaled.
    pub(super) async fn rolling(&self, d: &Deployment, ns: &str, sets: &mut Sets) -> Result<bool> {
        let want = desired(d);
        let (surge, unavailable) = rolling_params(d);
        let total: i32 = sets.all().map(|r| replicas(r)).sum();
        let start = if sets.new.is_none() {
            (want + surge - total).clamp(0, want)
        } else {
            0
        };
        let new = self.ensure_new(d, ns, sets, start).await?;
        let current = replicas(&new);
        // Scale the new ReplicaSet up within the surge (or down to the desired count).
        if current > want {
            return self.scale(d, &new, want).await;
        }
        if current < want {
            let total: i32 = sets.all().map(|r| replicas(r)).sum();
            let room = want + surge - total;
            if room > 0 {
                let to = current + room.min(want - current);
                return self.scale(d, &new, to).await;
            }
        }
        // Then scale old ones down, keeping want - maxUnavailable available.
        let old_count: i32 = sets.old.iter().map(|r| replicas(r)).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all: i32 = sets.all().map(|r| replicas(r)).sum();
        let min_available = want - unavailable;
        let new_unavailable = replicas(&new) - available(&new);
        let max_down = all - min_available - new_unavailable;
        if max_down <= 0 {
            return Ok(false);
        }
        let mut done = 0;
        let mut changed = false;
        // First the old pods that are not available anyway.
        for rs in sets.old.clone() {
            if done >= max_down {
                break;
            }
            let unhealthy = replicas(&rs) - available(&rs);
            if replicas(&rs) == 0 || unhealthy <= 0 {
                continue;
            }
            let cut = unhealthy.min(max_down - done);
            changed |= self.scale(d, &rs, replicas(&rs) - cut).await?;
            done += cut;
        }
        if changed {
            return Ok(true);
        }
        let available_now: i32 = sets.all().map(|r| available(r)).sum();
        if available_now <= min_available {
            return Ok(false);
        }
        let mut budget = (available_now - min_available).min(max_down);
        for rs in sets.old.clone() {
            if budget <= 0 {
                break;
            }
            let n = replicas(&rs);
            if n == 0 {
                continue;
            }
            let cut = n.min(budget);
            changed |= self.scale(d, &rs, n - cut).await?;
            budget -= cut;
        }
        Ok(changed)
    }

    /// Recreate: every old ReplicaSet to zero and its pods gone, then the new one up.
    pub(super) async fn recreate(&self, d: &Deployment, ns: &str, sets: &mut Sets) -> Result<bool> {
        let mut changed = false;
        for rs in sets.old.clone() {
            changed |= self.scale(d, &rs, 0).await?;
        }
        if changed {
            return Ok(true);
        }
        let old_uids: Vec<String> = sets.old.iter().filter_map(|r| r.uid()).collect();
        let old_pods_left = self.ctx.informers.pods.store().state().iter().any(|p| {
            p.namespace().as_deref() == Some(ns)
                && !util::is_terminal(p)
                && util::controller_of(p.as_ref()).is_some_and(|o| old_uids.contains(&o.uid))
        });
        if old_pods_left {
            return Ok(false);
        }
        let new = self.ensure_new(d, ns, sets, desired(d)).await?;
        self.scale(d, &new, desired(d)).await
    }

    /// Paused: no rollout, but the current ReplicaSet follows the desired count when it is
    /// the only one with pods.
    pub(super) async fn scale_when_paused(
        &self,
        d: &Deployment,
        sets: &Sets,
        new: &Arc<ReplicaSet>,
    ) -> Result<bool> {
        if sets.old.iter().any(|r| replicas(r) > 0) {
            return Ok(false);
        }
        self.scale(d, new, desired(d)).await
    }
}
