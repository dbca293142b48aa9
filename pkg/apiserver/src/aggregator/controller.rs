//! The APIService controller: for each APIService with a service, find the service's
//! endpoint (for a Local one, the in-process server of its group-version, if any), check
//! the backend serves its group-version (keeping its discovery document), and set the
//! Available condition. Runs every second.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use minik_registry::{Registry, WriteParams};
use serde_json::{Value, json};

use super::{Backend, Target, proxy};
use crate::AppState;

fn info(group: &str, version: &str, plural: &str) -> &'static minik_api::ResourceInfo {
    minik_api::builtin(group, version, plural)
}

/// Follow APIServices until the task is dropped.
pub async fn run(state: AppState) {
    loop {
        sync(&state).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn sync(state: &AppState) {
    let apiservices = info("apiregistration.k8s.io", "v1", "apiservices");
    let Ok(list) = state
        .registry
        .list(apiservices, None, &Default::default())
        .await
    else {
        return;
    };
    let mut backends = HashMap::new();
    for svc in &list.items {
        let g = svc
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let v = svc
            .pointer("/spec/version")
            .and_then(Value::as_str)
            .unwrap_or("");
        let local = "Local APIServices are always available".to_string();
        let backend = match svc.pointer("/spec/service") {
            None | Some(Value::Null) => match state.aggregator.local(g, v) {
                Some(router) => Ok(Backend {
                    target: Target::Local(router),
                    resources: None,
                }),
                None => {
                    set_available(&state.registry, svc, true, "Local", &local).await;
                    continue;
                }
            },
            Some(_) => resolve(&state.registry, svc).await,
        };
        let checked = match backend {
            Ok(b) => check(state, b, g, v).await,
            Err(e) => Err(e),
        };
        let (available, reason, message) = match checked {
            Ok(backend) => {
                let passed = match backend.target {
                    Target::Local(_) => ("Local", local),
                    Target::Remote(_) => ("Passed", "all checks passed".to_string()),
                };
                backends.insert((g.to_string(), v.to_string()), backend);
                (true, passed.0, passed.1)
            }
            Err((reason, message)) => (false, reason, message),
        };
        set_available(&state.registry, svc, available, reason, &message).await;
    }
    state.aggregator.replace(backends);
}

/// The backend of an APIService, checked by fetching its group-version's discovery.
async fn check(
    state: &AppState,
    mut backend: Backend,
    group: &str,
    version: &str,
) -> Result<Backend, (&'static str, String)> {
    let id = state.aggregator.identity();
    if id.is_none() && matches!(backend.target, Target::Remote(_)) {
        return Err((
            "MissingIdentity",
            "the aggregation proxy has no client certificate".into(),
        ));
    }
    let req = axum::http::Request::builder()
        .method(Method::GET)
        .uri(format!("/apis/{group}/{version}"))
        .header("accept", "application/json")
        .body(Body::empty())
        .map_err(|e| ("FailedDiscoveryCheck", e.to_string()))?;
    let resp = proxy::send(&backend, id.as_ref(), req).await.map_err(|e| {
        (
            "FailedDiscoveryCheck",
            format!(
                "failing or missing response from {}: {e}",
                backend.target.describe()
            ),
        )
    })?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ("FailedDiscoveryCheck", e.to_string()))?
        .to_bytes();
    if status != StatusCode::OK {
        let at = backend.target.describe();
        return Err((
            "FailedDiscoveryCheck",
            format!("failing or missing response from {at}: bad status from {at}: {status}"),
        ));
    }
    backend.resources = serde_json::from_slice(&bytes).ok();
    Ok(backend)
}

/// The service's endpoint for the APIService's port.
async fn resolve(
    registry: &Registry,
    apiservice: &Value,
) -> Result<Backend, (&'static str, String)> {
    let spec = &apiservice["spec"];
    let ns = spec
        .pointer("/service/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = spec
        .pointer("/service/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let port = spec
        .pointer("/service/port")
        .and_then(Value::as_i64)
        .unwrap_or(443);
    let addr = registry.service_endpoint(ns, name, port).await?;
    let ca_bundle = spec
        .get("caBundle")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    Ok(Backend {
        target: Target::Remote(minik_registry::client::TlsTarget {
            addr,
            server_name: format!("{name}.{ns}.svc"),
            ca_bundle,
            insecure: spec.get("insecureSkipTLSVerify") == Some(&json!(true)),
        }),
        resources: None,
    })
}

/// Write the Available condition when it changes.
async fn set_available(registry: &Registry, svc: &Value, ok: bool, reason: &str, message: &str) {
    let status = if ok { "True" } else { "False" };
    let current = svc
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Available"));
    if current
        .is_some_and(|c| c["status"] == status && c["reason"] == reason && c["message"] == message)
    {
        return;
    }
    let mut updated = svc.clone();
    updated["status"] = json!({"conditions": [{"type": "Available", "status": status,
        "reason": reason, "message": message,
        "lastTransitionTime": minik_registry::now_rfc3339()}]});
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let apiservices = info("apiregistration.k8s.io", "v1", "apiservices");
    if let Err(e) = registry
        .update(
            apiservices,
            None,
            name,
            updated,
            true,
            &WriteParams::default(),
        )
        .await
    {
        tracing::debug!(apiservice = %name, error = %e, "APIService status not written yet");
    }
}
