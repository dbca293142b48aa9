//! The filter plugins, as kube-scheduler names and words them: NodeUnschedulable,
//! NodeName, NodeResourcesFit, NodePorts, NodeAffinity, TaintToleration, InterPodAffinity,
//! PodTopologySpread, VolumeBinding (in `volumes`). What each needs from the whole cluster
//! is computed once per pod (`Prepared`).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Taint, TopologySpreadConstraint};
use kube::ResourceExt;
use minik_controllers::util;

use crate::affinity::{self, domain_counts, term_selects};
use crate::cache::{Cache, NodeState, PodInfo};
use crate::resources::ports_conflict;

/// Why a node cannot take the pod; preemption may help with some.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Unschedulable,
    NodeName,
    Insufficient(String),
    TooManyPods,
    Ports,
    NodeAffinity,
    Taint(String),
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
    Spread,
    Volume(String),
}

impl Reason {
    /// kube-scheduler's words.
    pub fn text(&self) -> String {
        match self {
            Reason::Unschedulable => "node(s) were unschedulable".into(),
            Reason::NodeName => "node(s) didn't match the requested node name".into(),
            Reason::Insufficient(r) => format!("Insufficient {r}"),
            Reason::TooManyPods => "Too many pods".into(),
            Reason::Ports => "node(s) didn't have free ports for the requested pod ports".into(),
            Reason::NodeAffinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Reason::Taint(t) => format!("node(s) had untolerated taint {t}"),
            Reason::PodAffinity => "node(s) didn't match pod affinity rules".into(),
            Reason::PodAntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
            Reason::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules".into()
            }
            Reason::Spread => "node(s) didn't match pod topology spread constraints".into(),
            Reason::Volume(m) => m.clone(),
        }
    }

    /// Whether evicting lower-priority pods could make the node fit.
    pub fn preemptable(&self) -> bool {
        matches!(
            self,
            Reason::Insufficient(_)
                | Reason::TooManyPods
                | Reason::Ports
                | Reason::PodAntiAffinity
                | Reason::ExistingAntiAffinity
                | Reason::Spread
        )
    }
}

/// One constraint of PodTopologySpread with its counts.
struct Spread {
    c: TopologySpreadConstraint,
    counts: HashMap<String, i64>,
    min: i64,
    self_match: i64,
}

/// What filtering a pod needs, computed once per scheduling attempt.
pub struct Prepared {
    pub info: PodInfo,
    affinity: Vec<(PodAffinityTerm, HashMap<String, i64>)>,
    /// Whether any pod in the cluster matches all affinity terms (else the first pod of a
    /// group may go anywhere its own labels match).
    affinity_anywhere: bool,
    anti: Vec<(PodAffinityTerm, HashMap<String, i64>)>,
    /// topology key -> values where an existing pod's anti-affinity rejects this pod.
    existing_anti: Vec<(String, String)>,
    spread: Vec<Spread>,
    /// The pod's claims (VolumeBinding), set after PreFilter.
    pub volumes: crate::volumes::PodVolumes,
}

fn required_terms(pod: &Pod, anti: bool) -> Vec<PodAffinityTerm> {
    affinity::pod_terms(pod, anti).0
}

pub fn prepare(pod: Arc<Pod>, cache: &Cache) -> Prepared {
    let ns = pod.namespace().unwrap_or_default();
    let all = |_: &k8s_openapi::api::core::v1::Node| true;
    let counts = |t: &PodAffinityTerm| {
        domain_counts(cache, &t.topology_key, all, |p| term_selects(t, &ns, p))
    };
    let affinity: Vec<_> = required_terms(&pod, false)
        .into_iter()
        .map(|t| {
            let c = counts(&t);
            (t, c)
        })
        .collect();
    let affinity_anywhere = affinity.iter().all(|(_, c)| c.values().any(|n| *n > 0));
    let anti: Vec<_> = required_terms(&pod, true)
        .into_iter()
        .map(|t| {
            let c = counts(&t);
            (t, c)
        })
        .collect();
    let mut existing_anti = Vec::new();
    for (uid, node) in &cache.with_anti {
        let Some(state) = cache.nodes.get(node) else {
            continue;
        };
        if let Some(other) = state.pods.get(uid) {
            let other_ns = other.pod.namespace().unwrap_or_default();
            for t in required_terms(&other.pod, true) {
                if term_selects(&t, &other_ns, &pod)
                    && let Some(v) = state.labels().get(&t.topology_key)
                {
                    existing_anti.push((t.topology_key.clone(), v.clone()));
                }
            }
        }
    }
    let spread = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
        .map(|c| spread(&pod, &ns, c, cache))
        .collect();
    Prepared {
        info: PodInfo::new(pod),
        affinity,
        affinity_anywhere,
        anti,
        existing_anti,
        spread,
        volumes: Default::default(),
    }
}

fn spread(pod: &Pod, ns: &str, c: TopologySpreadConstraint, cache: &Cache) -> Spread {
    let selector = c.label_selector.clone().unwrap_or_default();
    let honor_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
    let counts = domain_counts(
        cache,
        &c.topology_key,
        |n| !honor_affinity || affinity::node_matches(pod, n),
        |p| p.namespace().as_deref() == Some(ns) && util::matches(&selector, p.labels()),
    );
    let mut min = counts.values().copied().min().unwrap_or(0);
    if let Some(min_domains) = c.min_domains
        && (counts.len() as i64) < i64::from(min_domains)
    {
        min = 0;
    }
    let self_match = i64::from(util::matches(&selector, pod.labels()));
    Spread {
        c,
        counts,
        min,
        self_match,
    }
}

fn taint_text(t: &Taint) -> String {
    format!("{{{}: {}}}", t.key, t.value.as_deref().unwrap_or(""))
}

/// The first taint with `effects` the pod does not tolerate.
pub fn untolerated<'a>(pod: &Pod, taints: &'a [Taint], effects: &[&str]) -> Option<&'a Taint> {
    untolerated_all(pod, taints, effects).next()
}

/// The taints with `effects` the pod does not tolerate.
pub fn untolerated_all<'a>(
    pod: &Pod,
    taints: &'a [Taint],
    effects: &[&str],
) -> impl Iterator<Item = &'a Taint> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .filter(|t| !tolerations.iter().any(|tol| util::tolerates(tol, t)))
}

/// Run every filter; the first reason the node does not fit.
pub fn filter(p: &Prepared, state: &NodeState) -> Result<(), Reason> {
    let pod = &p.info.pod;
    let node = &state.node;
    let spec = pod.spec.as_ref();
    let node_spec = node.spec.as_ref();
    let taints = node_spec
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    if node_spec.and_then(|s| s.unschedulable) == Some(true) {
        let tolerated = spec
            .and_then(|s| s.tolerations.as_ref())
            .into_iter()
            .flatten()
            .any(|t| {
                util::tolerates(
                    t,
                    &Taint {
                        key: "node.kubernetes.io/unschedulable".into(),
                        effect: "NoSchedule".into(),
                        ..Default::default()
                    },
                )
            });
        if !tolerated {
            return Err(Reason::Unschedulable);
        }
    }
    if let Some(want) = spec
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
        && want != state.name()
    {
        return Err(Reason::NodeName);
    }
    fits(&p.info, state)?;
    if !affinity::node_matches(pod, node) {
        return Err(Reason::NodeAffinity);
    }
    if let Some(t) = untolerated(pod, taints, &["NoSchedule", "NoExecute"]) {
        return Err(Reason::Taint(taint_text(t)));
    }
    crate::volumes::filter(&p.volumes, node)?;
    inter_pod(p, state)?;
    for s in &p.spread {
        let Some(value) = state.labels().get(&s.c.topology_key) else {
            return Err(Reason::Spread);
        };
        let count = s.counts.get(value).copied().unwrap_or(0);
        if count + s.self_match - s.min > i64::from(s.c.max_skew) {
            return Err(Reason::Spread);
        }
    }
    Ok(())
}

/// NodeResourcesFit and NodePorts against what the node holds now.
pub fn fits(info: &PodInfo, state: &NodeState) -> Result<(), Reason> {
    let alloc = &state.allocatable;
    let used = &state.requested;
    let req = &info.requests;
    if used.pods + 1 > alloc.pods {
        return Err(Reason::TooManyPods);
    }
    if req.cpu > 0 && used.cpu + req.cpu > alloc.cpu {
        return Err(Reason::Insufficient("cpu".into()));
    }
    if req.memory > 0 && used.memory + req.memory > alloc.memory {
        return Err(Reason::Insufficient("memory".into()));
    }
    if req.storage > 0 && used.storage + req.storage > alloc.storage {
        return Err(Reason::Insufficient("ephemeral-storage".into()));
    }
    for (k, v) in &req.other {
        let have = alloc.other.get(k).copied().unwrap_or(0);
        let taken = used.other.get(k).copied().unwrap_or(0);
        if *v > 0 && taken + v > have {
            return Err(Reason::Insufficient(k.clone()));
        }
    }
    for want in &info.ports {
        if state
            .pods
            .values()
            .flat_map(|p| &p.ports)
            .any(|have| ports_conflict(want, have))
        {
            return Err(Reason::Ports);
        }
    }
    Ok(())
}

fn inter_pod(p: &Prepared, state: &NodeState) -> Result<(), Reason> {
    let labels = state.labels();
    let ns = p.info.pod.namespace().unwrap_or_default();
    for (t, counts) in &p.affinity {
        let Some(v) = labels.get(&t.topology_key) else {
            return Err(Reason::PodAffinity);
        };
        let here = counts.get(v).copied().unwrap_or(0) > 0;
        // The first pod of a group that selects itself may start it anywhere.
        let first = !p.affinity_anywhere && term_selects(t, &ns, &p.info.pod);
        if !here && !first {
            return Err(Reason::PodAffinity);
        }
    }
    for (t, counts) in &p.anti {
        if let Some(v) = labels.get(&t.topology_key)
            && counts.get(v).copied().unwrap_or(0) > 0
        {
            return Err(Reason::PodAntiAffinity);
        }
    }
    for (key, value) in &p.existing_anti {
        if labels.get(key) == Some(value) {
            return Err(Reason::ExistingAntiAffinity);
        }
    }
    Ok(())
}
