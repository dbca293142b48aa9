//! The default StorageClass k3s ships: `local-path`, served by the built-in local-path
//! provisioner, made at start when missing (one the user changed is left as it is).

use minik_registry::{ApiError, Registry};
use serde_json::json;

/// Create the `local-path` class if there is none.
pub async fn ensure(registry: &Registry) -> Result<(), ApiError> {
    let info = minik_api::builtin("storage.k8s.io", "v1", "storageclasses");
    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": minik_controllers::volume::localpath::CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": minik_controllers::volume::localpath::NAME,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer"});
    crate::rbac_defaults::create_missing(registry, info, [class]).await
}
