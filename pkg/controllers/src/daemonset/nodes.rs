//! Which nodes a DaemonSet's pod belongs on (node name, nodeSelector, required node affinity,
//! taints against its tolerations), and the pod it puts there: the template with the
//! tolerations every daemon pod gets and a required node affinity on `metadata.name` that
//! pins it to its node for the scheduler.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use kube::ResourceExt;

use crate::history::REVISION_LABEL;
use crate::util;

const NAME_FIELD: &str = "metadata.name";
/// The label of the DaemonSet's template generation (when the DaemonSet is annotated with it).
const GENERATION_LABEL: &str = "pod-template-generation";
const GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// The tolerations kube adds to every daemon pod, so node problems neither evict nor keep
/// out daemons (network-unavailable only for host-network pods).
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(format!("node.kubernetes.io/{key}")),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut all = vec![
        t("not-ready", "NoExecute"),
        t("unreachable", "NoExecute"),
        t("disk-pressure", "NoSchedule"),
        t("memory-pressure", "NoSchedule"),
        t("pid-pressure", "NoSchedule"),
        t("unschedulable", "NoSchedule"),
    ];
    if host_network {
        all.push(t("network-unavailable", "NoSchedule"));
    }
    all
}

/// Add each daemon toleration unless the spec has it (same key, operator, value, effect).
fn add_tolerations(spec: &mut PodSpec) {
    let extra = daemon_tolerations(spec.host_network == Some(true));
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for want in extra {
        let same = |t: &Toleration| {
            t.key == want.key
                && t.effect == want.effect
                && t.operator.as_deref().unwrap_or("Equal")
                    == want.operator.as_deref().unwrap_or("Equal")
                && t.value.as_deref().unwrap_or("") == want.value.as_deref().unwrap_or("")
        };
        match list.iter_mut().find(|t| same(t)) {
            Some(t) => *t = want,
            None => list.push(want),
        }
    }
}

/// The template pods are made from: the DaemonSet's with the daemon tolerations and the
/// revision hash (and template generation) labels.
pub fn template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = ds.spec.template.clone();
    add_tolerations(t.spec.get_or_insert_with(Default::default));
    let labels = t
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    if let Some(g) = generation(ds) {
        labels.insert(GENERATION_LABEL.into(), g.to_string());
    }
    labels.insert(REVISION_LABEL.into(), hash.into());
    t
}

fn generation(ds: &DaemonSet) -> Option<i64> {
    ds.annotations().get(GENERATION_ANNOTATION)?.parse().ok()
}

/// Whether a pod was made from the current template (its hash, or its generation).
pub fn is_updated(ds: &DaemonSet, pod: &Pod, hash: &str) -> bool {
    let labels = pod.labels();
    (!hash.is_empty() && labels.get(REVISION_LABEL).map(String::as_str) == Some(hash))
        || generation(ds).is_some_and(|g| labels.get(GENERATION_LABEL) == Some(&g.to_string()))
}

/// A pod of `template` for `node`: its required node affinity becomes `metadata.name In
/// [node]` (the node was checked against the original terms already).
pub fn pod_for(ds: &DaemonSet, template: &PodTemplateSpec, node: &str) -> Pod {
    let mut pod = util::pod_from_template(template, ds, &ds.name_any(), None);
    let pin = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let spec = pod.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(pin);
    pod
}

/// The node a daemon pod is on, or is pinned to before it is scheduled.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find_map(
            |r| match (r.key.as_str(), r.operator.as_str(), r.values.as_deref()) {
                (NAME_FIELD, "In", Some([one])) => Some(one.clone()),
                _ => None,
            },
        )
}

/// Whether a DaemonSet's pod should run on the node, and whether one there may keep running
/// (it tolerates the node's NoExecute taints though not all its NoSchedule ones).
pub fn should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let mut spec = ds.spec.template.spec.clone().unwrap_or_default();
    add_tolerations(&mut spec);
    let name = node.name_any();
    if spec
        .node_name
        .as_ref()
        .is_some_and(|n| !n.is_empty() && *n != name)
        || !crate::nodeaffinity::admits(&spec, node)
    {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints.iter().any(|taint| {
            effects.contains(&taint.effect.as_str())
                && !tolerations.iter().any(|t| util::tolerates(t, taint))
        })
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(&["NoExecute"]));
    }
    (true, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}
        }))
        .unwrap()
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap()
    }

    #[test]
    fn taints_keep_daemons_out_unless_tolerated() {
        let plain = ds(json!({"containers": [{"name": "c", "image": "i"}]}));
        let tainted = node(
            "n1",
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            should_run(&plain, &node("n0", json!({}), json!([]))),
            (true, true)
        );
        assert_eq!(should_run(&plain, &tainted), (false, true));
        let evicting = node(
            "n2",
            json!({}),
            json!([{"key": "k", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&plain, &evicting), (false, false));
        let toleration =
            json!({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"});
        let tolerant = ds(json!({"containers": [{"name": "c", "image": "i"}],
            "tolerations": [toleration]}));
        assert_eq!(should_run(&tolerant, &tainted), (true, true));
        // The standard daemon tolerations: unschedulable and not-ready nodes still get one.
        let cordoned = node(
            "n3",
            json!({}),
            json!([
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&plain, &cordoned), (true, true));
    }

    #[test]
    fn selectors_and_affinity_choose_nodes() {
        let cpus =
            json!({"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["2"]}]});
        let name = json!({"matchFields":
            [{"key": "metadata.name", "operator": "In", "values": ["special"]}]});
        let picky = ds(json!({"containers": [{"name": "c", "image": "i"}],
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [cpus, name]}}}}));
        assert!(
            should_run(
                &picky,
                &node("a", json!({"disk": "ssd", "cpus": "4"}), json!([]))
            )
            .0
        );
        assert!(
            !should_run(
                &picky,
                &node("b", json!({"disk": "ssd", "cpus": "2"}), json!([]))
            )
            .0
        );
        assert!(should_run(&picky, &node("special", json!({"disk": "ssd"}), json!([]))).0);
        assert!(!should_run(&picky, &node("c", json!({"cpus": "8"}), json!([]))).0);
    }

    #[test]
    fn pods_are_pinned_to_their_node_and_tolerate_node_problems() {
        let d = ds(
            json!({"containers": [{"name": "c", "image": "i"}], "hostNetwork": true,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]
            }}}}),
        );
        let t = template(&d, "h1");
        let pod = pod_for(&d, &t, "sim-1");
        assert_eq!(target_node(&pod).as_deref(), Some("sim-1"));
        assert_eq!(pod.labels()[REVISION_LABEL], "h1");
        assert!(is_updated(&d, &pod, "h1") && !is_updated(&d, &pod, "h2"));
        let tolerations = pod.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        assert_eq!(tolerations.len(), 7);
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/network-unavailable"))
        );
        // Adding them again changes nothing.
        let mut spec = pod.spec.clone().unwrap();
        add_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 7);
    }
}
