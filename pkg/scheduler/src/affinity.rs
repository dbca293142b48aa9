//! Label and field matching for node affinity, pod (anti-)affinity terms and topology
//! spread: which pods a term selects, and the counts per topology domain.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm,
};
use kube::ResourceExt;
use minik_controllers::util;

use crate::cache::Cache;

fn requirement(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term (labels and `metadata.name` fields) matches a node.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.labels();
    let name = node.name_any();
    let exprs = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    let has_any = term
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
        || term.match_fields.as_ref().is_some_and(|e| !e.is_empty());
    has_any
        && exprs.clone().all(|r| requirement(r, labels.get(&r.key)))
        && fields
            .clone()
            .all(|r| r.key == "metadata.name" && requirement(r, Some(&name)))
}

/// The pod's nodeSelector and required node affinity, as one check.
pub fn node_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else {
        return true;
    };
    let labels = node.labels();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
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
        .filter(|p| term_matches(&p.preference, node))
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
