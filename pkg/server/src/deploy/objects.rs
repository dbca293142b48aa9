//! What a manifest file applied: references to its objects, and which of them a new
//! version of the file no longer has.

use serde::{Deserialize, Serialize};

/// One applied object. The namespace is the one it was applied in (None: cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjRef {
    /// The API group (an object is the same in every version of its group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default()
    }

    /// Whether both name the same object.
    pub fn same(&self, other: &ObjRef) -> bool {
        self.group() == other.group()
            && self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
    }
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The objects of `old` that `new` does not have, last first (so that objects are
/// deleted before what they were made in, as a namespace).
pub fn removed(old: &[ObjRef], new: &[ObjRef]) -> Vec<ObjRef> {
    old.iter()
        .rev()
        .filter(|o| !new.iter().any(|n| n.same(o)))
        .cloned()
        .collect()
}

/// `old` with the objects of `new` it lacks added (what a partly applied file holds).
pub fn union(old: &[ObjRef], new: &[ObjRef]) -> Vec<ObjRef> {
    let mut out = old.to_vec();
    out.extend(removed(new, old).into_iter().rev());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::slice::from_ref;

    fn r(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjRef {
        ObjRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: ns.map(String::from),
            name: name.into(),
        }
    }

    #[test]
    fn removed_objects_last_first() {
        let ns = r("v1", "Namespace", None, "app");
        let dep = r("apps/v1", "Deployment", Some("app"), "web");
        let cm = r("v1", "ConfigMap", Some("default"), "c");
        let old = [ns.clone(), dep.clone(), cm.clone()];
        assert_eq!(removed(&old, from_ref(&cm)), [dep.clone(), ns.clone()]);
        assert!(removed(&old, &old).is_empty());
        assert_eq!(removed(&old, &[]), [cm.clone(), dep, ns]);
    }

    #[test]
    fn identity_ignores_the_version_only() {
        let a = r("autoscaling/v1", "HorizontalPodAutoscaler", Some("d"), "h");
        let b = r("autoscaling/v2", "HorizontalPodAutoscaler", Some("d"), "h");
        assert!(removed(from_ref(&a), from_ref(&b)).is_empty());
        let other_ns = r("autoscaling/v2", "HorizontalPodAutoscaler", Some("e"), "h");
        assert_eq!(removed(from_ref(&a), &[other_ns]), from_ref(&a));
        let other_group = r("v1", "HorizontalPodAutoscaler", Some("d"), "h");
        assert_eq!(removed(from_ref(&a), &[other_group]), [a]);
    }

    #[test]
    fn union_keeps_old_and_adds_new() {
        let a = r("v1", "ConfigMap", Some("d"), "a");
        let b = r("v1", "ConfigMap", Some("d"), "b");
        let c = r("v1", "Secret", Some("d"), "c");
        assert_eq!(
            union(&[a.clone(), b.clone()], &[c.clone(), a.clone()]),
            [a, b, c]
        );
    }

    #[test]
    fn serializes_camel_case() {
        let v = serde_json::to_value(r("v1", "Namespace", None, "n")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "name": "n"})
        );
    }
}
