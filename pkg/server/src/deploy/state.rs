//! What each manifest file applied, kept in the ConfigMap kube-system/minik-manifests so
//! that objects removed from a file (or of a deleted file) are deleted across restarts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::apply::MANAGER;
use super::objects::ObjRef;

const NAMESPACE: &str = "kube-system";
const NAME: &str = "minik-manifests";
/// The ConfigMap's key holding the JSON record.
const KEY: &str = "applied.json";

/// File name (relative to the manifests directory) -> the objects it applied.
pub type Applied = BTreeMap<String, Vec<ObjRef>>;

/// The record and its ConfigMap (None: not written yet).
pub async fn load(client: &kube::Client) -> Result<(Applied, Option<ConfigMap>), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let Some(cm) = api.get_opt(NAME).await? else {
        return Ok((Applied::new(), None));
    };
    let text = cm.data.as_ref().and_then(|d| d.get(KEY));
    let applied = match text.map(|t| serde_json::from_str(t)) {
        None => Applied::new(),
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            // Only deletions are lost: every file is applied again anyway.
            tracing::warn!(error = %e, "{NAMESPACE}/{NAME} is unreadable; starting afresh");
            Applied::new()
        }
    };
    Ok((applied, Some(cm)))
}

/// Write the record; the ConfigMap.
pub async fn save(client: &kube::Client, applied: &Applied) -> Result<ConfigMap, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let text = serde_json::to_string(applied).unwrap_or_default();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "data": {KEY: text},
    });
    api.patch(
        NAME,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await
}
