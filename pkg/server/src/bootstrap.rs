//! What every cluster starts with: the four namespaces and the `kubernetes` service.

use minik_registry::{ApiError, Registry, WriteParams};
use serde_json::json;

/// Create what is missing; leave what exists.
pub async fn run(registry: &Registry) -> Result<(), ApiError> {
    let namespaces = minik_api::find("", "v1", "namespaces").expect("namespaces are served");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        ensure(
            registry
                .create(namespaces, None, obj, &WriteParams::default())
                .await,
        )?;
    }
    let services = minik_api::find("", "v1", "services").expect("services are served");
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
    });
    ensure(
        registry
            .create(services, Some("default"), svc, &WriteParams::default())
            .await,
    )
}

fn ensure<T>(r: Result<T, ApiError>) -> Result<(), ApiError> {
    match r {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
