//! Which resources the cluster serves, each group at its preferred version (client-go's
//! ServerPreferredResources): the garbage collector watches every one it can delete, list and
//! watch, and the namespace controller empties every namespaced one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::discovery::ApiResource;

/// One served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Resource {
    /// Whether every one of `verbs` is supported.
    pub fn supports(&self, verbs: &[&str]) -> bool {
        verbs
            .iter()
            .all(|v| self.verbs.iter().any(|have| have == v))
    }

    /// "plural.group" as Kubernetes prints a GroupResource ("pods." for the core group).
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.ar.plural, self.ar.group)
    }
}

/// What discovery found, and what it could not read.
#[derive(Debug, Default)]
pub struct Discovered {
    pub resources: Vec<Resource>,
    /// Group versions whose resources could not be read: (group version, error).
    pub failed: Vec<(String, String)>,
    /// Group versions that do not parse.
    pub unparsable: Vec<String>,
}

impl Discovered {
    /// client-go's ErrGroupDiscoveryFailed text.
    pub fn failure_message(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        let mut each: Vec<String> = self
            .failed
            .iter()
            .map(|(gv, e)| format!("{gv}: {e}"))
            .collect();
        each.sort();
        Some(format!(
            "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {}",
            self.failed.len(),
            each.join(", ")
        ))
    }
}

/// (group, version) of "group/version" or "version", as schema.ParseGroupVersion does.
pub fn parse_group_version(gv: &str) -> Result<(&str, &str), String> {
    match gv.split('/').collect::<Vec<_>>()[..] {
        [v] if !v.is_empty() => Ok(("", v)),
        [g, v] if !v.is_empty() => Ok((g, v)),
        _ => Err(format!("unexpected GroupVersion string: {gv}")),
    }
}

/// The resources of one group version's list (subresources left out).
pub fn resources_of(list: &APIResourceList) -> Result<Vec<Resource>, String> {
    let (group, version) = parse_group_version(&list.group_version)?;
    Ok(list
        .resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| Resource {
            ar: ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                api_version: list.group_version.clone(),
                kind: r.kind.clone(),
                plural: r.name.clone(),
            },
            namespaced: r.namespaced,
            verbs: r.verbs.clone(),
        })
        .collect())
}

/// Discover every group at its preferred version. Fails only when the group lists cannot
/// be read; a group version that fails is reported in `failed`.
pub async fn discover(client: &kube::Client) -> Result<Discovered, kube::Error> {
    let core = client.list_core_api_versions().await?;
    let groups = client.list_api_groups().await?;
    let mut versions: Vec<String> = core.versions.first().cloned().into_iter().collect();
    for g in &groups.groups {
        let preferred = g.preferred_version.as_ref().or(g.versions.first());
        versions.extend(preferred.map(|v| v.group_version.clone()));
    }
    let lists = futures::future::join_all(versions.iter().map(|gv| async move {
        if gv.contains('/') {
            client.list_api_group_resources(gv).await
        } else {
            client.list_core_api_resources(gv).await
        }
    }))
    .await;
    let mut found = Discovered::default();
    for (gv, list) in versions.iter().zip(lists) {
        match list.map(|l| resources_of(&l)) {
            Ok(Ok(resources)) => found.resources.extend(resources),
            Ok(Err(unparsable)) => found.unparsable.push(unparsable),
            Err(e) => found.failed.push((gv.clone(), crate::gc::message(&e))),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    #[test]
    fn group_versions_parse_as_kubernetes_does() {
        assert_eq!(parse_group_version("v1"), Ok(("", "v1")));
        assert_eq!(parse_group_version("apps/v1"), Ok(("apps", "v1")));
        assert!(parse_group_version("a/b/c").is_err());
        assert!(parse_group_version("").is_err());
    }

    #[test]
    fn subresources_are_left_out() {
        let r = |name: &str| APIResource {
            name: name.into(),
            kind: "Deployment".into(),
            namespaced: true,
            verbs: vec!["list".into(), "watch".into(), "delete".into()],
            ..Default::default()
        };
        let list = APIResourceList {
            group_version: "apps/v1".into(),
            resources: vec![r("deployments"), r("deployments/scale")],
        };
        let found = resources_of(&list).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].ar.api_version, "apps/v1");
        assert_eq!(found[0].group_resource(), "deployments.apps");
        assert!(found[0].supports(&["list", "delete"]));
        assert!(!found[0].supports(&["deletecollection"]));
    }
}
