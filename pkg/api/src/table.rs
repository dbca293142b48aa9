//! The table itself, built from k8s-openapi's `Resource` constants plus what only discovery
//! knows (short names, categories, subresources).

use std::collections::HashMap;
use std::sync::LazyLock;

use k8s_openapi::{ClusterResourceScope, ListableResource, NamespaceResourceScope};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One served resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// The plural, the path segment: `pods`.
    pub plural: &'static str,
    pub singular: String,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [&'static str],
    /// Decode a body as this type and encode it again: the typed view of the object, with
    /// defaults of the Rust types and unknown fields dropped.
    pub typed: fn(&serde_json::Value) -> Result<serde_json::Value, String>,
    /// The warning kube-apiserver sends with every request to a deprecated resource.
    pub deprecated: Option<&'static str>,
    /// Add this type's OpenAPI schema (and every schema it refers to) to a generator;
    /// returns the reference to it.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Served for a CustomResourceDefinition: its schema and behaviour come from the CRD.
    pub custom: bool,
    /// A custom resource's storage version ("" for built-ins).
    pub storage_version: &'static str,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub(crate) const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const READ_ONLY: &[&str] = &["get", "list"];

trait Scope {
    const NAMESPACED: bool;
}
impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn typed<T: DeserializeOwned + Serialize>(
    v: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    // Straight from the borrowed value: no copy of it first.
    let t = T::deserialize(v).map_err(|e| e.to_string())?;
    serde_json::to_value(&t).map_err(|e| e.to_string())
}

fn schema<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

fn info<T>(
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceInfo
where
    T: ListableResource + DeserializeOwned + Serialize + schemars::JsonSchema,
    T::Scope: Scope,
{
    ResourceInfo {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: T::LIST_KIND,
        plural: T::URL_PATH_SEGMENT,
        singular: T::KIND.to_ascii_lowercase(),
        namespaced: <T::Scope as Scope>::NAMESPACED,
        verbs: ALL_VERBS,
        short_names,
        categories,
        subresources,
        typed: typed::<T>,
        schema: schema::<T>,
        deprecated: None,
        custom: false,
        storage_version: "",
    }
}

const CREATE_ONLY: &[&str] = &["create"];

/// A create-only review API (TokenReview, SubjectAccessReview, ...): answered by the API
/// server, never stored.
fn review<T>() -> ResourceInfo
where
    T: k8s_openapi::Resource + DeserializeOwned + Serialize + schemars::JsonSchema,
    T::Scope: Scope,
{
    ResourceInfo {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: "",
        plural: T::URL_PATH_SEGMENT,
        singular: T::KIND.to_ascii_lowercase(),
        namespaced: <T::Scope as Scope>::NAMESPACED,
        verbs: CREATE_ONLY,
        short_names: &[],
        categories: &[],
        subresources: &[],
        typed: typed::<T>,
        schema: schema::<T>,
        deprecated: None,
        custom: false,
        storage_version: "",
    }
}

const ALL: &[&str] = &["all"];
const STATUS: &[&str] = &["status"];
const SCALE: &[&str] = &["scale", "status"];

static TABLE: LazyLock<Vec<ResourceInfo>> = LazyLock::new(|| {
    use k8s_openapi::api::{
        admissionregistration::v1 as adm, apps::v1 as apps, authentication::v1 as authn,
        authorization::v1 as authz, autoscaling::v1 as as1, autoscaling::v2 as as2,
        batch::v1 as batch, certificates::v1 as cert, coordination::v1 as coord, core::v1 as core,
        discovery::v1 as disc, events::v1 as ev, flowcontrol::v1 as fc, networking::v1 as net,
        node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, resource::v1 as dra,
        scheduling::v1 as sched, storage::v1 as storage, storagemigration::v1 as svm,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;
    let mut t = vec![
        info::<core::ComponentStatus>(&["cs"], &[], &[]),
        info::<core::ConfigMap>(&["cm"], &[], &[]),
        info::<core::Endpoints>(&["ep"], &[], &[]),
        info::<core::Event>(&["ev"], &[], &[]),
        info::<core::LimitRange>(&["limits"], &[], &[]),
        info::<core::Namespace>(&["ns"], &[], &["finalize", "status"]),
        info::<core::Node>(&["no"], &[], &["proxy", "status"]),
        info::<core::PersistentVolumeClaim>(&["pvc"], &[], STATUS),
        info::<core::PersistentVolume>(&["pv"], &[], STATUS),
        info::<core::Pod>(
            &["po"],
            ALL,
            &[
                "attach",
                "binding",
                "ephemeralcontainers",
                "eviction",
                "exec",
                "log",
                "portforward",
                "proxy",
                "resize",
                "status",
            ],
        ),
        info::<core::PodTemplate>(&[], &[], &[]),
        info::<core::ReplicationController>(&["rc"], ALL, SCALE),
        info::<core::ResourceQuota>(&["quota"], &[], STATUS),
        info::<core::Secret>(&[], &[], &[]),
        info::<core::ServiceAccount>(&["sa"], &[], &["token"]),
        info::<core::Service>(&["svc"], ALL, &["proxy", "status"]),
        info::<adm::MutatingWebhookConfiguration>(&[], &["api-extensions"], &[]),
        info::<adm::ValidatingWebhookConfiguration>(&[], &["api-extensions"], &[]),
        info::<adm::ValidatingAdmissionPolicy>(&[], &["api-extensions"], STATUS),
        info::<adm::ValidatingAdmissionPolicyBinding>(&[], &["api-extensions"], &[]),
        info::<adm::MutatingAdmissionPolicy>(&[], &["api-extensions"], &[]),
        info::<adm::MutatingAdmissionPolicyBinding>(&[], &["api-extensions"], &[]),
        info::<apps::ControllerRevision>(&[], &[], &[]),
        info::<apps::DaemonSet>(&["ds"], ALL, STATUS),
        info::<apps::Deployment>(&["deploy"], ALL, SCALE),
        info::<apps::ReplicaSet>(&["rs"], ALL, SCALE),
        info::<apps::StatefulSet>(&["sts"], ALL, SCALE),
        info::<as2::HorizontalPodAutoscaler>(&["hpa"], ALL, STATUS),
        info::<as1::HorizontalPodAutoscaler>(&["hpa"], ALL, STATUS),
        info::<batch::CronJob>(&["cj"], ALL, STATUS),
        info::<batch::Job>(&[], ALL, STATUS),
        info::<cert::CertificateSigningRequest>(&["csr"], &[], &["approval", "status"]),
        info::<cert::ClusterTrustBundle>(&[], &[], &[]),
        info::<coord::Lease>(&[], &[], &[]),
        info::<disc::EndpointSlice>(&[], &[], &[]),
        info::<ev::Event>(&["ev"], &[], &[]),
        info::<fc::FlowSchema>(&[], &[], STATUS),
        info::<fc::PriorityLevelConfiguration>(&[], &[], STATUS),
        info::<net::IngressClass>(&[], &[], &[]),
        info::<net::Ingress>(&["ing"], &[], STATUS),
        info::<net::IPAddress>(&["ip"], &[], &[]),
        info::<net::NetworkPolicy>(&["netpol"], &[], &[]),
        info::<net::ServiceCIDR>(&[], &[], STATUS),
        info::<node::RuntimeClass>(&[], &[], &[]),
        info::<policy::PodDisruptionBudget>(&["pdb"], &[], STATUS),
        info::<rbac::ClusterRoleBinding>(&[], &[], &[]),
        info::<rbac::ClusterRole>(&[], &[], &[]),
        info::<rbac::RoleBinding>(&[], &[], &[]),
        info::<rbac::Role>(&[], &[], &[]),
        info::<dra::DeviceClass>(&[], &[], &[]),
        info::<dra::ResourceClaimTemplate>(&[], &[], &[]),
        info::<dra::ResourceClaim>(&[], &[], STATUS),
        info::<dra::ResourceSlice>(&[], &[], &[]),
        info::<sched::PriorityClass>(&["pc"], &[], &[]),
        info::<storage::CSIDriver>(&[], &[], &[]),
        info::<storage::CSINode>(&[], &[], &[]),
        info::<storage::CSIStorageCapacity>(&[], &[], &[]),
        info::<storage::StorageClass>(&["sc"], &[], &[]),
        info::<storage::VolumeAttachment>(&[], &[], STATUS),
        info::<storage::VolumeAttributesClass>(&["vac"], &[], &[]),
        info::<svm::StorageVersionMigration>(&[], &[], STATUS),
        info::<apiext::CustomResourceDefinition>(&["crd", "crds"], &["api-extensions"], STATUS),
        info::<apireg::APIService>(&[], &["api-extensions"], STATUS),
        review::<authn::SelfSubjectReview>(),
        review::<authn::TokenReview>(),
        review::<authz::LocalSubjectAccessReview>(),
        review::<authz::SelfSubjectAccessReview>(),
        review::<authz::SelfSubjectRulesReview>(),
        review::<authz::SubjectAccessReview>(),
    ];
    for r in t.iter_mut() {
        match (r.group, r.kind) {
            ("", "ComponentStatus") => {
                r.verbs = READ_ONLY;
                r.deprecated = Some("v1 ComponentStatus is deprecated in v1.19+");
            }
            ("", "Endpoints") => {
                r.deprecated = Some(
                    "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice",
                );
            }
            _ => {}
        }
    }
    t
});

/// Every served resource, in a stable order.
pub fn all() -> &'static [ResourceInfo] {
    &TABLE
}

type Names = (&'static str, &'static str, &'static str);

/// The table by (group, version, plural) and by (group, version, kind): every request looks
/// its resource up, often more than once.
static INDEX: LazyLock<(HashMap<Names, usize>, HashMap<Names, usize>)> = LazyLock::new(|| {
    let (mut by_plural, mut by_kind) = (HashMap::new(), HashMap::new());
    // The first entry wins, as a scan of the table would find it.
    for (i, r) in TABLE.iter().enumerate() {
        by_plural.entry((r.group, r.version, r.plural)).or_insert(i);
        by_kind.entry((r.group, r.version, r.kind)).or_insert(i);
    }
    (by_plural, by_kind)
});

fn lookup(
    index: &HashMap<(&str, &str, &str), usize>,
    names: (&str, &str, &str),
) -> Option<&'static ResourceInfo> {
    index.get(&names).and_then(|i| TABLE.get(*i))
}

/// The resource with this group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    lookup(&INDEX.0, (group, version, plural))
}

/// A built-in resource this server always serves (the table is fixed at build time, so a
/// miss is a programming error).
pub fn builtin(group: &str, version: &str, plural: &str) -> &'static ResourceInfo {
    find(group, version, plural)
        .unwrap_or_else(|| panic!("{plural}.{group}/{version} is not in the resource table"))
}

/// The resource of this group, version and kind.
pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    lookup(&INDEX.1, (group, version, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let pods = find("", "v1", "pods").unwrap();
        assert!(pods.namespaced);
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.list_kind, "PodList");
        assert_eq!(pods.singular, "pod");
        assert!(!find("", "v1", "namespaces").unwrap().namespaced);
        assert_eq!(
            find_kind("apps", "v1", "Deployment").unwrap().plural,
            "deployments"
        );
        let mut seen = std::collections::HashSet::new();
        for r in all() {
            assert!(
                seen.insert((r.group, r.version, r.plural)),
                "duplicate {}",
                r.plural
            );
        }
        assert!(all().len() > 60);
    }

    #[test]
    fn typed_view_checks_shape() {
        let cm = find("", "v1", "configmaps").unwrap();
        let ok = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x"}, "data": {"a": "b"}});
        assert!((cm.typed)(&ok).is_ok());
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": 1}});
        assert!((cm.typed)(&bad).is_err());
    }
}
