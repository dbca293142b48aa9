//! ComponentStatus, computed live as kube-apiserver does: the scheduler, the controller
//! manager and the datastore (reported as etcd-0, as clients expect).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::error::{ApiError, Result};
use crate::rest::Registry;

/// Health of in-process components, set by whoever runs them.
#[derive(Clone, Default)]
pub struct Components {
    health: Arc<RwLock<BTreeMap<String, bool>>>,
}

impl Components {
    /// Report `name` (e.g. "scheduler") healthy or not.
    pub fn set(&self, name: &str, healthy: bool) {
        self.health
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), healthy);
    }

    fn get(&self, name: &str) -> Option<bool> {
        self.health
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }
}

fn status(name: &str, healthy: bool, message: &str) -> Value {
    let mut cond = json!({"type": "Healthy", "status": if healthy { "True" } else { "False" }});
    if healthy {
        cond["message"] = json!(message);
    } else {
        cond["error"] = json!(message);
    }
    json!({"apiVersion": "v1", "kind": "ComponentStatus", "metadata": {"name": name},
        "conditions": [cond]})
}

impl Registry {
    /// Every component's status now.
    pub async fn component_statuses(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for name in ["controller-manager", "scheduler"] {
            out.push(match self.components.get(name) {
                Some(true) => status(name, true, "ok"),
                Some(false) => status(name, false, "the component reports unhealthy"),
                None => status(name, false, "the component is not running in this server"),
            });
        }
        out.push(match self.store.current_revision().await {
            Ok(_) => status("etcd-0", true, "ok"),
            Err(e) => status("etcd-0", false, &e.to_string()),
        });
        out
    }

    pub(crate) async fn component_list(
        &self,
        info: &minik_api::ResourceInfo,
    ) -> crate::list::ObjectList {
        crate::list::ObjectList {
            kind: info.list_kind,
            api_version: "v1".into(),
            metadata: json!({}),
            items: self
                .component_statuses()
                .await
                .into_iter()
                .map(std::sync::Arc::new)
                .collect(),
        }
    }

    pub(crate) async fn component_get(
        &self,
        info: &minik_api::ResourceInfo,
        name: &str,
    ) -> Result<Value> {
        self.component_statuses()
            .await
            .into_iter()
            .find(|c| c["metadata"]["name"] == name)
            .ok_or_else(|| ApiError::not_found(info, name))
    }
}
