//! Container garbage collection, as kubelet's container GC does it with its default policy
//! (no minimum age, one dead container kept per container of a pod — the one `kubectl logs
//! --previous` reads — and no total limit): the older dead runs of each container of a
//! pod go, and every dead container of a pod that is gone (neither in the API nor with a
//! sandbox left; a pod still with a sandbox is removed whole by the node's relist). Running
//! containers, and containers still being started, are never removed.
//!
//! A container removed takes its writable layer and state directory, its image lease, its
//! log file (rotated ones too) and its termination message file with it.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use minik_runtime::{Container, ContainerState};

/// Dead containers kept per (pod, container name): kubelet's MaxPerPodContainer.
pub const KEEP_PER_CONTAINER: usize = 1;

/// One container as the collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// The pod's uid (the sandbox id).
    pub pod: String,
    pub name: String,
    pub attempt: u32,
    pub created: SystemTime,
    /// Exited (not running, not being started).
    pub dead: bool,
}

impl Candidate {
    pub fn of(c: &Container) -> Candidate {
        Candidate {
            id: c.config.id.clone(),
            pod: c.config.sandbox_id.clone(),
            name: c.config.name.clone(),
            attempt: c.config.attempt,
            created: c.created,
            dead: matches!(c.state, ContainerState::Exited { .. }),
        }
    }
}

/// The containers to remove: for each (pod, name), the dead ones but the newest `keep`;
/// every dead one of the pods `gone` says are gone.
pub fn select(containers: &[Candidate], keep: usize, gone: impl Fn(&str) -> bool) -> Vec<String> {
    let mut units: BTreeMap<(&str, &str), Vec<&Candidate>> = BTreeMap::new();
    for c in containers.iter().filter(|c| c.dead) {
        units.entry((&c.pod, &c.name)).or_default().push(c);
    }
    let mut out = Vec::new();
    for ((pod, _), mut dead) in units {
        // Newest first.
        dead.sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created)));
        let keep = if gone(pod) { 0 } else { keep };
        out.extend(dead.iter().skip(keep).map(|c| c.id.clone()));
    }
    out
}

/// Pods gone for good: not in the API (`live` uids) and without a sandbox.
pub fn gone<'a>(
    live: &'a HashSet<String>,
    sandboxes: &'a HashSet<String>,
) -> impl Fn(&str) -> bool + 'a {
    move |uid| !live.contains(uid) && !sandboxes.contains(uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn c(id: &str, pod: &str, name: &str, attempt: u32, dead: bool) -> Candidate {
        Candidate {
            id: id.into(),
            pod: pod.into(),
            name: name.into(),
            attempt,
            created: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(attempt)),
            dead,
        }
    }

    #[test]
    fn one_dead_run_per_container_of_a_live_pod_stays() {
        let all = [
            c("a0", "p1", "app", 0, true),
            c("a1", "p1", "app", 1, true),
            c("a2", "p1", "app", 2, true),
            c("a3", "p1", "app", 3, false),
            c("s0", "p1", "side", 0, true),
            c("i0", "p1", "init", 0, true),
            c("i1", "p1", "init", 1, true),
        ];
        let mut got = select(&all, KEEP_PER_CONTAINER, |_| false);
        got.sort();
        assert_eq!(got, ["a0", "a1", "i0"]);
        // The running run never goes, nor the last dead one.
        let two = [
            c("x0", "p1", "app", 0, true),
            c("x1", "p1", "app", 1, false),
        ];
        assert!(select(&two, KEEP_PER_CONTAINER, |_| false).is_empty());
    }

    #[test]
    fn every_dead_container_of_a_gone_pod_goes() {
        let all = [
            c("a0", "gone", "app", 0, true),
            c("a1", "gone", "app", 1, true),
            c("r0", "gone", "web", 0, false),
            c("k0", "live", "app", 0, true),
            c("s0", "sandboxed", "app", 0, true),
        ];
        let live: HashSet<String> = ["live".to_string()].into();
        let sandboxes: HashSet<String> = ["sandboxed".to_string()].into();
        let mut got = select(&all, KEEP_PER_CONTAINER, gone(&live, &sandboxes));
        got.sort();
        assert_eq!(got, ["a0", "a1"]);
    }
}
