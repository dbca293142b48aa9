//! NamespaceLifecycle (the namespaces the cluster needs cannot be deleted; writes into a
//! missing or terminating namespace are refused by the registry itself) and AlwaysDeny.

use minik_registry::admission::{Attributes, Operation, Verdict};
use minik_registry::{ApiError, Registry, Result};
use serde_json::Value;

use crate::Plugin;

const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

pub struct NamespaceLifecycle;

#[async_trait::async_trait]
impl Plugin for NamespaceLifecycle {
    async fn validate(&self, _: &Registry, attrs: &Attributes<'_>, _: &Value) -> Result<Verdict> {
        if attrs.operation == Operation::Delete
            && crate::is_core(attrs, "namespaces")
            && IMMORTAL.contains(&attrs.name)
        {
            return Err(ApiError::forbidden(
                attrs.info,
                attrs.name,
                "this namespace may not be deleted".into(),
            ));
        }
        Ok(Verdict::default())
    }
}

/// Lets everything through (kube-apiserver keeps it for old command lines).
pub struct AlwaysAdmit;

impl Plugin for AlwaysAdmit {}

/// Refuses every write (for tests of clients' error handling).
pub struct AlwaysDeny;

#[async_trait::async_trait]
impl Plugin for AlwaysDeny {
    async fn validate(&self, _: &Registry, attrs: &Attributes<'_>, _: &Value) -> Result<Verdict> {
        Err(ApiError::forbidden(
            attrs.info,
            attrs.name,
            "admission control is denying all modifications".into(),
        ))
    }
}
