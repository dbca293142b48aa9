//! The two kinds the replica controller runs: apps/v1 ReplicaSet and core/v1
//! ReplicationController (whose selector is a plain map and whose template is optional).
//! Each says where the fields the controller needs are; the logic is shared.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Informer, Informers};

/// A kind that keeps `replicas` pods from a template running.
pub trait Replicated:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The queue's and the metrics' name.
    const CONTROLLER: &'static str;
    /// Who the events come from.
    const COMPONENT: &'static str;
    /// Whether its status has `terminatingReplicas`.
    const TERMINATING: bool;

    fn informer(informers: &Informers) -> &Arc<Informer<Self>>;
    fn selector(&self) -> LabelSelector;
    /// spec.replicas (defaulted to 1).
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status as stored (JSON; null when there is none).
    fn status_json(&self) -> Value;
}

impl Replicated for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset";
    const COMPONENT: &'static str = "replicaset-controller";
    const TERMINATING: bool = true;

    fn informer(informers: &Informers) -> &Arc<Informer<Self>> {
        &informers.replicasets
    }
    fn selector(&self) -> LabelSelector {
        self.spec.selector.clone()
    }
    fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

impl Replicated for ReplicationController {
    const CONTROLLER: &'static str = "replicationcontroller";
    const COMPONENT: &'static str = "replication-controller";
    const TERMINATING: bool = false;

    fn informer(informers: &Informers) -> &Arc<Informer<Self>> {
        &informers.replicationcontrollers
    }
    fn selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: self.spec.as_ref().and_then(|s| s.selector.clone()),
            match_expressions: None,
        }
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}
