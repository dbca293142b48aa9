//! Which PersistentVolume a claim may bind to, judged the same way by the PV controller and
//! the scheduler's VolumeBinding plugin (component-helpers' FindMatchingVolume): a volume
//! pre-bound to the claim wins; otherwise the smallest Available volume of the claim's
//! class that is big enough, has the access modes (the fewest that do), the volume mode,
//! the labels the claim selects and, for the scheduler, node affinity to the node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;

use crate::{nodeaffinity, util};

const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The claim's class (the beta annotation first, as Kubernetes reads it); "" for none.
pub fn claim_class(c: &PersistentVolumeClaim) -> &str {
    match c.annotations().get(BETA_CLASS) {
        Some(class) => class,
        None => c
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .unwrap_or(""),
    }
}

/// The volume's class; "" for none.
pub fn volume_class(v: &PersistentVolume) -> &str {
    match v.annotations().get(BETA_CLASS) {
        Some(class) => class,
        None => v
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .unwrap_or(""),
    }
}

fn quantity(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i128 {
    q.and_then(|q| minik_api::quantity::parse(&q.0))
        .unwrap_or(0)
}

/// The storage the claim requests, in thousandths of a byte.
pub fn requested(c: &PersistentVolumeClaim) -> i128 {
    let requests = c
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref());
    quantity(requests.and_then(|r| r.get("storage")))
}

/// The volume's storage capacity, in thousandths of a byte.
pub fn capacity(v: &PersistentVolume) -> i128 {
    let capacity = v.spec.as_ref().and_then(|s| s.capacity.as_ref());
    quantity(capacity.and_then(|c| c.get("storage")))
}

/// Whether the claim wants a different volume mode (Filesystem unless set) than the volume.
pub fn mode_mismatch(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let claim = c.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let volume = v.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    claim.unwrap_or("Filesystem") != volume.unwrap_or("Filesystem")
}

fn volume_modes(v: &PersistentVolume) -> &[String] {
    v.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

/// Whether the volume offers every access mode the claim asks for.
pub fn access_modes_ok(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let have = volume_modes(v);
    c.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
        .iter()
        .all(|m| have.contains(m))
}

/// Whether the volume's claimRef names the claim (by name, and by uid once it has one).
pub fn bound_to(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == c.metadata.name.as_deref()
        && r.namespace.as_deref() == c.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == c.metadata.uid.as_deref())
}

/// Whether the volume's required node affinity (if any) admits the node.
pub fn node_affinity_ok(v: &PersistentVolume, node: &Node) -> bool {
    let required = v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    required.is_none_or(|r| {
        r.node_selector_terms
            .iter()
            .any(|t| nodeaffinity::term_matches(t, node))
    })
}

fn phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Why a volume the claim names (spec.volumeName) cannot be bound to it, if it cannot.
pub fn satisfies(c: &PersistentVolumeClaim, v: &PersistentVolume) -> Result<(), String> {
    if v.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            v.name_any()
        ));
    }
    if capacity(v) < requested(c) {
        return Err("requested PV is too small".into());
    }
    if volume_class(v) != claim_class(c) {
        return Err("storageClassName does not match".into());
    }
    if mode_mismatch(c, v) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_ok(c, v) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// The volume for the claim among `volumes`: one pre-bound to it, else the smallest that
/// fits (with the fewest access modes). `node` is the scheduler's candidate node (None for
/// the PV controller, which leaves claims of delayed binding to the scheduler). `skip`
/// names volumes already promised to other claims.
pub fn find_best(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: Option<&Node>,
    delay_binding: bool,
    skip: &dyn Fn(&PersistentVolume) -> bool,
) -> Option<Arc<PersistentVolume>> {
    let wanted = requested(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut best: Option<(usize, i128, &Arc<PersistentVolume>)> = None;
    for v in volumes {
        if skip(v)
            || (v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some() && !bound_to(v, claim))
        {
            continue;
        }
        let size = capacity(v);
        if size < wanted || mode_mismatch(claim, v) || v.metadata.deletion_timestamp.is_some() {
            continue;
        }
        // The PV controller only looks among volumes with the claim's access modes.
        if node.is_none() && !access_modes_ok(claim, v) {
            continue;
        }
        let affinity_ok = node.is_none_or(|n| node_affinity_ok(v, n));
        if bound_to(v, claim) {
            return affinity_ok.then(|| v.clone());
        }
        if node.is_none() && delay_binding {
            continue;
        }
        let fits = phase(v) == "Available"
            && selector.is_none_or(|s| util::matches(s, v.labels()))
            && volume_class(v) == class
            && affinity_ok
            && access_modes_ok(claim, v);
        let rank = (volume_modes(v).len(), size);
        if fits && best.is_none_or(|(m, s, _)| rank < (m, s)) {
            best = Some((rank.0, rank.1, v));
        }
    }
    best.map(|(_, _, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual", "hostPath": {"path": "/tmp/x"}},
            "status": {"phase": "Available"}});
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                "resources": {"requests": {"storage": "1Gi"}}}});
        merge(&mut c, extra);
        serde_json::from_value(c).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn best(c: &PersistentVolumeClaim, vols: &[Arc<PersistentVolume>]) -> Option<String> {
        find_best(c, vols, None, false, &|_| false).map(|v| v.name_any())
    }

    #[test]
    fn the_smallest_volume_that_fits_wins() {
        let vols = [
            pv("big", "10Gi", json!({})),
            pv("small", "500Mi", json!({})),
            pv("exact", "1Gi", json!({})),
            pv("mid", "2Gi", json!({})),
        ];
        assert_eq!(best(&claim(json!({})), &vols).as_deref(), Some("exact"));
        let bigger = claim(json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}}));
        assert_eq!(best(&bigger, &vols).as_deref(), Some("big"));
        let huge = claim(json!({"spec": {"resources": {"requests": {"storage": "1Ti"}}}}));
        assert_eq!(best(&huge, &vols), None);
    }

    #[test]
    fn class_modes_selector_and_phase_must_match() {
        let c = claim(json!({}));
        let other_class = pv("a", "1Gi", json!({"spec": {"storageClassName": "other"}}));
        assert_eq!(best(&c, &[other_class]), None);
        let rox = pv(
            "b",
            "1Gi",
            json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
        );
        assert_eq!(best(&c, &[rox]), None);
        let block = pv("c", "1Gi", json!({"spec": {"volumeMode": "Block"}}));
        assert_eq!(best(&c, &[block]), None);
        let released = pv("d", "1Gi", json!({"status": {"phase": "Released"}}));
        assert_eq!(best(&c, &[released]), None);
        let taken = pv(
            "e",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "ns", "name": "other", "uid": "u2"}}}),
        );
        assert_eq!(best(&c, &[taken]), None);
        let selecting = claim(json!({"spec": {"selector": {"matchLabels": {"tier": "slow"}}}}));
        assert_eq!(best(&selecting, &[pv("f", "1Gi", json!({}))]), None);
        let selecting = claim(json!({"spec": {"selector": {"matchLabels": {"tier": "fast"}}}}));
        assert_eq!(
            best(&selecting, &[pv("f", "1Gi", json!({}))]).as_deref(),
            Some("f")
        );
        // Fewer access modes first, then size.
        let many = pv(
            "many",
            "1Gi",
            json!({"spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}}),
        );
        let one = pv("one", "5Gi", json!({}));
        assert_eq!(best(&c, &[many, one]).as_deref(), Some("one"));
    }

    #[test]
    fn a_pre_bound_volume_wins_over_a_better_fit() {
        let c = claim(json!({}));
        let mine = pv(
            "mine",
            "5Gi",
            json!({"spec": {"claimRef": {"namespace": "ns", "name": "data"}},
                "status": {"phase": "Available"}}),
        );
        let vols = [pv("exact", "1Gi", json!({})), mine];
        assert_eq!(best(&c, &vols).as_deref(), Some("mine"));
        assert!(bound_to(&vols[1], &c));
        // Even for a claim of delayed binding, and whatever its class.
        let found = find_best(&c, &vols, None, true, &|_| false).map(|v| v.name_any());
        assert_eq!(found.as_deref(), Some("mine"));
        assert_eq!(find_best(&c, &vols[..1], None, true, &|_| false), None);
    }

    #[test]
    fn the_scheduler_checks_node_affinity() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "sim-0",
            "labels": {"kubernetes.io/hostname": "sim-0"}}}))
        .unwrap();
        let affinity = |host: &str| {
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions":
                [{"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}}})
        };
        let elsewhere = pv("elsewhere", "1Gi", affinity("sim-1"));
        let here = pv("here", "2Gi", affinity("sim-0"));
        assert!(!node_affinity_ok(&elsewhere, &node));
        assert!(node_affinity_ok(&here, &node));
        let c = claim(json!({}));
        let found = find_best(&c, &[elsewhere.clone(), here], Some(&node), true, &|_| {
            false
        });
        assert_eq!(found.map(|v| v.name_any()).as_deref(), Some("here"));
        assert_eq!(
            find_best(&c, &[elsewhere], Some(&node), true, &|_| false),
            None
        );
    }

    #[test]
    fn a_named_volume_must_satisfy_the_claim() {
        let c = claim(json!({}));
        assert_eq!(satisfies(&c, &pv("a", "1Gi", json!({}))), Ok(()));
        assert_eq!(
            satisfies(&c, &pv("b", "1Mi", json!({}))),
            Err("requested PV is too small".into())
        );
        let rox = pv(
            "c",
            "1Gi",
            json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
        );
        assert_eq!(satisfies(&c, &rox), Err("incompatible accessMode".into()));
        let beta = claim(json!({"metadata": {"annotations": {BETA_CLASS: "other"}}}));
        assert_eq!(claim_class(&beta), "other");
    }
}
