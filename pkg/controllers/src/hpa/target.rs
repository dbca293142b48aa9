//! The scale target of an HPA: any resource with a `scale` subresource (Deployment,
//! ReplicaSet, StatefulSet, ReplicationController, a custom resource with scale), found
//! through discovery from the reference's apiVersion and kind, read and written through
//! its autoscaling/v1 Scale; and the pods' label selector as the Scale reports it.

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::CrossVersionObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;

/// The scale subresource of one object.
pub struct Target {
    api: Api<DynamicObject>,
    name: String,
}

/// What an API error says (its Status message), or the error itself.
pub fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// (group, version) of an apiVersion: `apps/v1`, or `v1` for the core group.
fn group_version(api_version: &str) -> Result<(&str, &str), String> {
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [v] if !v.is_empty() => Ok(("", v)),
        [g, v] if !g.is_empty() && !v.is_empty() => Ok((g, v)),
        _ => Err(format!("unexpected GroupVersion string: {api_version}")),
    }
}

/// Find the resource `reference` names, in `namespace`.
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    reference: &CrossVersionObjectReference,
) -> Result<Target, String> {
    let api_version = reference.api_version.as_deref().unwrap_or("");
    let (group, version) = group_version(api_version)?;
    let gvk = GroupVersionKind::gvk(group, version, &reference.kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|_| {
            format!(
                "no matches for kind \"{}\" in group \"{group}\"",
                reference.kind
            )
        })?;
    Ok(Target {
        api: Api::namespaced_with(client.clone(), namespace, &resource),
        name: reference.name.clone(),
    })
}

impl Target {
    pub async fn get(&self) -> Result<Scale, kube::Error> {
        self.api.get_scale(&self.name).await
    }

    /// Set the replicas of the Scale read (its resourceVersion guards the write).
    pub async fn set(&self, mut scale: Scale, replicas: i32) -> Result<Scale, kube::Error> {
        scale.spec.get_or_insert_default().replicas = Some(replicas);
        self.api
            .replace_scale(&self.name, &PostParams::default(), &scale)
            .await
    }
}

/// A label selector in its string form (`app=web,tier in (a,b),!canary`).
pub fn parse_selector(s: &str) -> Result<LabelSelector, String> {
    let mut exprs = Vec::new();
    for part in minik_api::selector::split_requirements(s)
        .into_iter()
        .map(str::trim)
    {
        if part.is_empty() {
            continue;
        }
        let bad = || format!("unable to parse requirement: {part:?}");
        let set = |v: &str| -> Result<Vec<String>, String> {
            let inner = v.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')'));
            Ok(inner
                .ok_or_else(bad)?
                .split(',')
                .map(|x| x.trim().to_string())
                .collect())
        };
        let (key, operator, values) = if let Some((k, v)) = part.split_once("!=") {
            (k, "NotIn", Some(vec![v.trim().to_string()]))
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            (k, "In", Some(vec![v.trim().to_string()]))
        } else if let Some((k, v)) = part.split_once(" notin ") {
            (k, "NotIn", Some(set(v)?))
        } else if let Some((k, v)) = part.split_once(" in ") {
            (k, "In", Some(set(v)?))
        } else if let Some(k) = part.strip_prefix('!') {
            (k, "DoesNotExist", None)
        } else {
            (part, "Exists", None)
        };
        let key = key.trim();
        if key.is_empty() || key.contains(' ') {
            return Err(bad());
        }
        exprs.push(LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values,
        });
    }
    Ok(LabelSelector {
        match_expressions: Some(exprs),
        match_labels: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn scale_selectors_parse_as_label_selectors() {
        let sel = parse_selector("app=web,tier in (a, b),!canary,zone").unwrap();
        let matches = |l: &[(&str, &str)]| crate::util::matches(&sel, &labels(l));
        assert!(matches(&[("app", "web"), ("tier", "b"), ("zone", "1")]));
        assert!(!matches(&[("app", "web"), ("tier", "c"), ("zone", "1")]));
        assert!(!matches(&[
            ("app", "web"),
            ("tier", "a"),
            ("zone", "1"),
            ("canary", "y")
        ]));
        let sel = parse_selector("app!=web,x==1").unwrap();
        assert!(crate::util::matches(
            &sel,
            &labels(&[("app", "db"), ("x", "1")])
        ));
        assert!(parse_selector("a in b").is_err());
        assert!(parse_selector("a b").is_err());
        assert_eq!(group_version("apps/v1"), Ok(("apps", "v1")));
        assert_eq!(group_version("v1"), Ok(("", "v1")));
        assert!(group_version("a/b/c").is_err());
    }
}
