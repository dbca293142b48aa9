//! The admission chain: the plugins kube-apiserver runs on every write after it is decoded
//! and before it is stored, in Kubernetes' order. Mutating plugins change the object first,
//! then (after the resource's own validation) validating plugins may refuse it.
//!
//! Which plugins run follows `--enable-admission-plugins` / `--disable-admission-plugins`
//! over kube-apiserver's defaults; `--admission-control-config-file` (an
//! AdmissionConfiguration) configures them.

mod config;
mod imagepolicy;
mod lifecycle;
mod limits;
mod matching;
mod namespaced;
mod nodes;
mod optional;
mod pods;
mod podsecurity;
mod policy;
use minik_api::quantity;
mod quota;
mod ratelimit;
mod serviceaccount;
mod webhook;

use std::sync::Arc;

use minik_registry::admission::{Admission, Attributes, Verdict};
use minik_registry::{Registry, Result};
use serde_json::Value;

pub use config::{Options, PluginConfigs};

/// One admission plugin.
#[async_trait::async_trait]
pub trait Plugin: Send + Sync {
    async fn mutate(
        &self,
        _reg: &Registry,
        _attrs: &Attributes<'_>,
        _obj: &mut Value,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn validate(
        &self,
        _reg: &Registry,
        _attrs: &Attributes<'_>,
        _obj: &Value,
    ) -> Result<Verdict> {
        Ok(Verdict::default())
    }
}

/// Every plugin minik has, in the order kube-apiserver runs them, and whether it is on by
/// default.
const PLUGINS: &[(&str, bool)] = &[
    ("AlwaysAdmit", false),
    ("NamespaceAutoProvision", false),
    ("NamespaceLifecycle", true),
    ("NamespaceExists", false),
    ("LimitRanger", true),
    ("ServiceAccount", true),
    ("NodeRestriction", true),
    ("TaintNodesByCondition", true),
    ("AlwaysPullImages", false),
    ("PodNodeSelector", false),
    ("Priority", true),
    ("DefaultTolerationSeconds", true),
    ("PodTolerationRestriction", false),
    ("EventRateLimit", false),
    ("ExtendedResourceToleration", false),
    ("DenyServiceExternalIPs", false),
    ("LimitPodHardAntiAffinityTopology", false),
    ("DefaultStorageClass", true),
    ("PersistentVolumeClaimResize", true),
    ("StorageObjectInUseProtection", true),
    ("RuntimeClass", true),
    ("DefaultIngressClass", true),
    ("PodSecurity", true),
    ("MutatingAdmissionWebhook", true),
    ("ValidatingAdmissionPolicy", true),
    ("ValidatingAdmissionWebhook", true),
    ("ImagePolicyWebhook", false),
    ("ResourceQuota", true),
    ("AlwaysDeny", false),
];

/// Plugins the API server itself runs (they need its authorizers), and whether each is on
/// by default.
pub const SERVER_PLUGINS: &[(&str, bool)] = &[
    ("CertificateApproval", true),
    ("CertificateSigning", true),
    ("CertificateSubjectRestriction", true),
    ("OwnerReferencesPermissionEnforcement", false),
];

/// kube-apiserver plugins minik does not have; naming them in `--disable-admission-plugins`
/// is accepted, enabling them is an error.
const ABSENT: &[&str] = &["ClusterTrustBundleAttest"];

fn plugin(name: &str, configs: &PluginConfigs) -> std::result::Result<Box<dyn Plugin>, String> {
    Ok(match name {
        "NamespaceLifecycle" => Box::new(lifecycle::NamespaceLifecycle),
        "LimitRanger" => Box::new(limits::LimitRanger),
        "ServiceAccount" => Box::new(serviceaccount::ServiceAccount),
        "NodeRestriction" => Box::new(nodes::NodeRestriction),
        "TaintNodesByCondition" => Box::new(nodes::TaintNodesByCondition),
        "DefaultStorageClass" => Box::new(nodes::DefaultStorageClass),
        "StorageObjectInUseProtection" => Box::new(nodes::StorageObjectInUseProtection),
        "AlwaysPullImages" => Box::new(pods::AlwaysPullImages),
        "AlwaysAdmit" => Box::new(lifecycle::AlwaysAdmit),
        "EventRateLimit" => Box::new(ratelimit::EventRateLimit::new(configs.get(name))?),
        "ImagePolicyWebhook" => Box::new(imagepolicy::ImagePolicyWebhook::new(configs.get(name))?),
        "NamespaceAutoProvision" => Box::new(namespaced::NamespaceAutoProvision),
        "NamespaceExists" => Box::new(namespaced::NamespaceExists),
        "PodNodeSelector" => Box::new(namespaced::PodNodeSelector),
        "PodTolerationRestriction" => Box::new(namespaced::PodTolerationRestriction),
        "ExtendedResourceToleration" => Box::new(optional::ExtendedResourceToleration),
        "DenyServiceExternalIPs" => Box::new(optional::DenyServiceExternalIPs),
        "LimitPodHardAntiAffinityTopology" => Box::new(optional::LimitPodHardAntiAffinityTopology),
        "PersistentVolumeClaimResize" => Box::new(optional::PersistentVolumeClaimResize),
        "RuntimeClass" => Box::new(optional::RuntimeClass),
        "DefaultIngressClass" => Box::new(optional::DefaultIngressClass),
        "Priority" => Box::new(pods::Priority),
        "DefaultTolerationSeconds" => Box::new(pods::DefaultTolerationSeconds),
        "PodSecurity" => Box::new(podsecurity::PodSecurity::new(configs.get(name))?),
        "MutatingAdmissionWebhook" => Box::new(webhook::Webhooks::mutating()),
        "ValidatingAdmissionPolicy" => Box::new(policy::Policies),
        "ValidatingAdmissionWebhook" => Box::new(webhook::Webhooks::validating()),
        "ResourceQuota" => Box::new(quota::ResourceQuota::default()),
        "AlwaysDeny" => Box::new(lifecycle::AlwaysDeny),
        other => return Err(format!("admission plugin {other:?} is unknown")),
    })
}

/// The plugins that run, in order.
pub struct Chain {
    plugins: Vec<(&'static str, Box<dyn Plugin>)>,
    /// Which of SERVER_PLUGINS are on.
    server: Vec<&'static str>,
}

impl Chain {
    /// The chain `options` ask for; a clear error for an unknown plugin or a bad
    /// configuration.
    pub fn new(options: &Options) -> std::result::Result<Arc<Self>, String> {
        for name in options.enable.iter().chain(&options.disable) {
            let known = PLUGINS.iter().chain(SERVER_PLUGINS).any(|(p, _)| p == name);
            if !known && !ABSENT.contains(&name.as_str()) {
                return Err(format!("admission plugin {name:?} is unknown"));
            }
            if !known && options.enable.contains(name) {
                return Err(format!(
                    "admission plugin {name:?} is not available in minik"
                ));
            }
        }
        let configs = options.configs()?;
        let mut plugins = Vec::new();
        for (name, default) in PLUGINS {
            let on = options.enable.iter().any(|n| n == name)
                || (*default && !options.disable.iter().any(|n| n == name));
            if on {
                plugins.push((*name, plugin(name, &configs)?));
            }
        }
        tracing::debug!(plugins = ?plugins.iter().map(|p| p.0).collect::<Vec<_>>(), "admission chain");
        let server = SERVER_PLUGINS
            .iter()
            .filter(|(p, default)| {
                options.enable.iter().any(|n| n == p)
                    || (*default && !options.disable.iter().any(|n| n == p))
            })
            .map(|(p, _)| *p)
            .collect();
        Ok(Arc::new(Chain { plugins, server }))
    }

    /// Whether a plugin the API server runs itself (SERVER_PLUGINS) is on.
    pub fn server_plugin(&self, name: &str) -> bool {
        self.server.contains(&name)
    }

    /// The names of the plugins that run.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.0).collect()
    }
}

#[async_trait::async_trait]
impl Admission for Chain {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        for (_, p) in &self.plugins {
            warnings.extend(p.mutate(reg, attrs, obj).await?);
        }
        Ok(warnings)
    }

    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict> {
        let mut all = Verdict::default();
        for (_, p) in &self.plugins {
            let v = p.validate(reg, attrs, obj).await?;
            all.warnings.extend(v.warnings);
            all.hold.extend(v.hold);
        }
        Ok(all)
    }
}

/// Objects of a resource from the watch cache (all namespaces when `ns` is None).
pub(crate) async fn cached(
    reg: &Registry,
    group: &str,
    version: &str,
    plural: &str,
    ns: Option<&str>,
) -> Result<Vec<Arc<Value>>> {
    reg.cached_objects(minik_api::builtin(group, version, plural), ns)
        .await
}

/// Make `v` an empty array unless it is one already.
pub(crate) fn ensure_array(v: &mut Value) {
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
}

/// Whether `attrs` creates an object of the core resource `plural`.
pub(crate) fn creates(attrs: &Attributes<'_>, plural: &str) -> bool {
    is_core(attrs, plural) && attrs.operation == minik_registry::admission::Operation::Create
}

/// Whether `attrs` is about subresource `sub` of the core resource `plural`.
pub(crate) fn is_core_sub(attrs: &Attributes<'_>, plural: &str, sub: &str) -> bool {
    attrs.info.group.is_empty() && attrs.info.plural == plural && attrs.subresource == Some(sub)
}

/// Whether `attrs` is about the core resource `plural` (no subresource).
pub(crate) fn is_core(attrs: &Attributes<'_>, plural: &str) -> bool {
    attrs.info.group.is_empty() && attrs.info.plural == plural && attrs.subresource.is_none()
}
