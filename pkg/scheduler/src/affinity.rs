//! Label and field matching for node affinity, pod (anti-)affinity terms and topology
//! spread: which pods a term selects, and the counts per topology domain.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use kube::ResourceExt;
use minik_controllers::{nodeaffinity, util};

use crate::cache::Cache;

/// The pod's nodeSelector and required node affinity, as one check.
pub fn node_matches(pod: &Pod, node: &Node) -> bool {
    pod.spec
        .as_ref()
        .is_none_or(|s| nodeaffinity::admits(s, node))
}

/// Sum of the weights of the pod's preferred node-affinity terms the node matches.
pub fn preferred_node_score(pod: &Pod, node: &Node) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|p| nodeaffinity::term_matches(&p.preference, node))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// Whether `other` is selected by `term` written in a pod of namespace `ns`.
pub fn term_selects(term: &PodAffinityTerm, ns: &str, other: &Pod) -> bool {
    let other_ns = other.namespace().unwrap_or_default();
    let in_ns = match &term.namespaces {
        Some(list) if !list.is_empty() => list.contains(&other_ns),
        // An empty namespaceSelector ({}) selects every namespace.
        _ if term.namespace_selector.as_ref().is_some_and(util::is_empty) => true,
        _ => other_ns == ns,
    };
    in_ns
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| util::matches(s, other.labels()))
}

/// topology value -> how many pods `selects` picks in it, over every node with the key.
pub fn domain_counts(
    cache: &Cache,
    key: &str,
    eligible: impl Fn(&Node) -> bool,
    selects: impl Fn(&Pod) -> bool,
) -> HashMap<String, i64> {
    let mut counts: HashMap<String, i64> = HashMap::new();
    for state in cache.nodes.values() {
        let Some(value) = state.labels().get(key) else {
            continue;
        };
        if !eligible(&state.node) {
            continue;
        }
        let n = state
            .pods
            .values()
            .filter(|p| p.pod.metadata.deletion_timestamp.is_none() && selects(&p.pod))
            .count();
        *counts.entry(value.clone()).or_default() += i64::try_from(n).unwrap_or(0);
    }
    counts
}

/// The pod's (anti-)affinity terms: (required, preferred).
pub fn pod_terms(pod: &Pod, anti: bool) -> (Vec<PodAffinityTerm>, Vec<WeightedPodAffinityTerm>) {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let (required, preferred) = if anti {
        let t = a.and_then(|a| a.pod_anti_affinity.as_ref());
        (
            t.and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
            t.and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .clone()
            }),
        )
    } else {
        let t = a.and_then(|a| a.pod_affinity.as_ref());
        (
            t.and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
            t.and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .clone()
            }),
        )
    };
    (required.unwrap_or_default(), preferred.unwrap_or_default())
}
