//! The score plugins, each 0–100 per node and weighted as kube-scheduler's defaults:
//! NodeResourcesFit (LeastAllocated, 1), NodeResourcesBalancedAllocation (1), ImageLocality
//! (1), NodeAffinity (2), TaintToleration (3), InterPodAffinity (2), PodTopologySpread (2).

use k8s_openapi::api::core::v1::{Pod, WeightedPodAffinityTerm};
use kube::ResourceExt;
use minik_controllers::util;

use crate::affinity::{self, term_selects};
use crate::cache::{Cache, NodeState};
use crate::filters::{self, Prepared};

const MB: i64 = 1024 * 1024;

fn least_allocated(p: &Prepared, n: &NodeState) -> i64 {
    let score = |req: i64, alloc: i64| {
        if alloc <= 0 || req > alloc {
            0
        } else {
            (alloc - req) * 100 / alloc
        }
    };
    let cpu = score(n.nonzero.0 + p.info.nonzero.0, n.allocatable.cpu);
    let mem = score(n.nonzero.1 + p.info.nonzero.1, n.allocatable.memory);
    (cpu + mem) / 2
}

fn balanced(p: &Prepared, n: &NodeState) -> i64 {
    let frac = |req: i64, alloc: i64| {
        if alloc <= 0 {
            1.0
        } else {
            (req as f64 / alloc as f64).min(1.0)
        }
    };
    let cpu = frac(n.nonzero.0 + p.info.nonzero.0, n.allocatable.cpu);
    let mem = frac(n.nonzero.1 + p.info.nonzero.1, n.allocatable.memory);
    let std = (cpu - mem).abs() / 2.0;
    ((1.0 - std) * 100.0) as i64
}

/// Images already on the node, weighted by size and how widely they are spread.
fn image_locality(pod: &Pod, n: &NodeState, total_nodes: usize, cache: &Cache) -> i64 {
    let Some(spec) = &pod.spec else {
        return 0;
    };
    let images = n.node.status.as_ref().and_then(|s| s.images.as_ref());
    let Some(images) = images else {
        return 0;
    };
    let mut sum = 0i64;
    for c in &spec.containers {
        let Some(image) = c.image.as_deref() else {
            continue;
        };
        let Some(found) = images
            .iter()
            .find(|i| i.names.iter().flatten().any(|n| n == image))
        else {
            continue;
        };
        let having = cache
            .nodes
            .values()
            .filter(|s| {
                s.node
                    .status
                    .as_ref()
                    .and_then(|st| st.images.as_ref())
                    .is_some_and(|im| {
                        im.iter()
                            .any(|i| i.names.iter().flatten().any(|x| x == image))
                    })
            })
            .count()
            .max(1);
        let spread = having as f64 / total_nodes.max(1) as f64;
        sum += (found.size_bytes.unwrap_or(0) as f64 * spread) as i64;
    }
    let containers = spec.containers.len() as i64;
    let (min, max) = (23 * MB * containers, 1000 * MB * containers);
    let clamped = sum.clamp(min, max);
    if max == min {
        0
    } else {
        (clamped - min) * 100 / (max - min)
    }
}

fn prefer_no_schedule(pod: &Pod, n: &NodeState) -> i64 {
    let taints = n
        .node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    filters::untolerated_all(pod, taints, &["PreferNoSchedule"]).count() as i64
}

fn preferred_terms(pod: &Pod, anti: bool) -> Vec<WeightedPodAffinityTerm> {
    affinity::pod_terms(pod, anti).1
}

/// Preferred pod (anti-)affinity: + weight per matching pod in the same domain (− for anti).
fn inter_pod(pod: &Pod, n: &NodeState, cache: &Cache) -> i64 {
    let ns = pod.namespace().unwrap_or_default();
    let mut score = 0;
    for (anti, sign) in [(false, 1), (true, -1)] {
        for w in preferred_terms(pod, anti) {
            let Some(value) = n.labels().get(&w.pod_affinity_term.topology_key) else {
                continue;
            };
            let key = &w.pod_affinity_term.topology_key;
            let count = affinity::domain_counts(
                cache,
                key,
                |_| true,
                |p| term_selects(&w.pod_affinity_term, &ns, p),
            )
            .get(value)
            .copied()
            .unwrap_or(0);
            score += sign * i64::from(w.weight) * count;
        }
    }
    score
}

/// ScheduleAnyway spread: how many matching pods the node's domains hold (fewer is better).
fn spread_count(pod: &Pod, n: &NodeState, cache: &Cache) -> i64 {
    let ns = pod.namespace().unwrap_or_default();
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == "ScheduleAnyway")
        .map(|c| {
            let sel = c.label_selector.clone().unwrap_or_default();
            let Some(value) = n.labels().get(&c.topology_key) else {
                return 0;
            };
            affinity::domain_counts(
                cache,
                &c.topology_key,
                |_| true,
                |p| {
                    p.namespace().as_deref() == Some(ns.as_str()) && util::matches(&sel, p.labels())
                },
            )
            .get(value)
            .copied()
            .unwrap_or(0)
        })
        .sum()
}

/// Scale raw scores so the best is 100 (or, `reverse`, the lowest raw is 100).
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    raw.iter()
        .map(|r| {
            if reverse {
                if max == 0 { 100 } else { 100 - r * 100 / max }
            } else if max == min {
                if max > 0 { 100 } else { 0 }
            } else {
                (r - min) * 100 / (max - min)
            }
        })
        .collect()
}

/// The weighted total of every score for each feasible node.
pub fn score(p: &Prepared, nodes: &[&NodeState], cache: &Cache) -> Vec<i64> {
    let pod = &p.info.pod;
    let total_nodes = cache.nodes.len();
    let has_affinity = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some();
    let has_spread = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.when_unsatisfiable == "ScheduleAnyway"));
    let node_aff: Vec<i64> = nodes
        .iter()
        .map(|n| {
            if has_affinity {
                affinity::preferred_node_score(pod, &n.node)
            } else {
                0
            }
        })
        .collect();
    let taints: Vec<i64> = nodes.iter().map(|n| prefer_no_schedule(pod, n)).collect();
    let pod_aff: Vec<i64> = nodes
        .iter()
        .map(|n| {
            if has_affinity {
                inter_pod(pod, n, cache)
            } else {
                0
            }
        })
        .collect();
    let spread: Vec<i64> = nodes
        .iter()
        .map(|n| {
            if has_spread {
                spread_count(pod, n, cache)
            } else {
                0
            }
        })
        .collect();
    let (node_aff, taints, pod_aff, spread) = (
        normalize(&node_aff, false),
        normalize(&taints, true),
        normalize(&pod_aff, false),
        normalize(&spread, true),
    );
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            least_allocated(p, n)
                + balanced(p, n)
                + image_locality(pod, n, total_nodes, cache)
                + 2 * node_aff[i]
                + 3 * taints[i]
                + 2 * pod_aff[i]
                + 2 * spread[i]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_puts_the_best_at_100() {
        assert_eq!(normalize(&[0, 5, 10], false), vec![0, 50, 100]);
        assert_eq!(normalize(&[0, 1, 2], true), vec![100, 50, 0]);
        assert_eq!(normalize(&[0, 0], true), vec![100, 100]);
    }
}
