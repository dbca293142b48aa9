//! The API server's connect subresources, sent on to where they are served:
//!
//! - pods/exec, pods/attach and pods/portforward go to the kubelet of the pod's node
//!   (`/exec/<ns>/<pod>/<container>`, `/attach/...`, `/portForward/<ns>/<pod>`), their
//!   upgraded connection (WebSocket or SPDY) joined through (minik-streaming's proxy);
//! - pods/proxy goes to the pod's IP, services/proxy to one ready endpoint of the service,
//!   nodes/proxy to the node's kubelet (targets.rs);
//! - kubelet.rs: reaching a kubelet.
//!
//! A name in a proxy path may carry a scheme and a port: `https:web:8443`.

pub mod kubelet;
mod targets;

use axum::extract::Request;
use axum::response::Response;
use minik_registry::ApiError;
use serde_json::Value;

use crate::AppState;
use crate::path::Target;

pub use minik_streaming::proxy::is_upgrade;

/// Subresources served by sending the request on.
pub fn is_connect(sub: &str) -> bool {
    matches!(sub, "exec" | "attach" | "portforward" | "proxy")
}

/// Serve a connect subresource; `rest` is the request path after the group-version.
pub async fn serve(
    state: &AppState,
    t: &Target,
    rest: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let name = t.name.as_deref().unwrap_or_default();
    let ns = t.namespace.as_deref().unwrap_or_default();
    match (t.info.plural, t.subresource.as_deref().unwrap_or_default()) {
        ("pods", sub @ ("exec" | "attach" | "portforward")) => {
            pod_stream(state, ns, name, sub, req).await
        }
        ("pods", "proxy") => targets::pod(state, ns, name, &remainder(t, rest), req).await,
        ("services", "proxy") => targets::service(state, ns, name, &remainder(t, rest), req).await,
        ("nodes", "proxy") => targets::node(state, name, &remainder(t, rest), req).await,
        (plural, sub) => Err(ApiError::NotFound {
            group: t.info.group.into(),
            resource: format!("{plural}/{sub}"),
            name: name.into(),
        }),
    }
}

/// What follows `<name>/proxy` in the path, with its leading slash ("/" when nothing).
fn remainder(t: &Target, rest: &str) -> String {
    let skip = if t.namespace.is_some() { 5 } else { 3 };
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    format!("/{}", segs.get(skip..).unwrap_or_default().join("/"))
}

/// The query without the parameter `drop` (kept as the client encoded it).
fn query_without(req: &Request, drop: &str) -> String {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(drop))
        .collect::<Vec<_>>()
        .join("&")
}

/// exec, attach and portforward: to the kubelet of the pod's node.
async fn pod_stream(
    state: &AppState,
    ns: &str,
    name: &str,
    sub: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let pods = minik_api::builtin("", "v1", "pods");
    let pod = state.registry.get(pods, Some(ns), name).await?;
    let asked = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "container")
        .map(|(_, c)| c.into_owned());
    let node = kubelet::node_of(&pod, name)?;
    let path = if sub == "portforward" {
        format!(
            "/portForward/{}/{}",
            kubelet::encode(ns),
            kubelet::encode(name)
        )
    } else {
        refuse_finished(&pod, sub)?;
        let container = crate::pod_logs::container(&pod, name, asked.as_deref())?;
        format!(
            "/{sub}/{}/{}/{}",
            kubelet::encode(ns),
            kubelet::encode(name),
            kubelet::encode(&container)
        )
    };
    let query = query_without(&req, "container");
    let (sender, addr) = kubelet::connect(state, &node).await?;
    forward(sender, req, &format!("{path}?{query}"), &addr.to_string()).await
}

/// Send the request on (minik-streaming's proxy), its failures as Statuses: 503 when the
/// backend cannot be reached, as kube-apiserver.
pub(crate) async fn forward(
    sender: hyper::client::conn::http1::SendRequest<axum::body::Body>,
    req: Request,
    path_and_query: &str,
    host: &str,
) -> Result<Response, ApiError> {
    use minik_streaming::proxy::{ProxyError, forward};
    forward(sender, req, path_and_query, host)
        .await
        .map_err(|e| match e {
            ProxyError::Request(m) => ApiError::BadRequest(m),
            ProxyError::Unreachable(_) => ApiError::Denied {
                code: 503,
                message: e.to_string(),
            },
            ProxyError::NoUpgrade => ApiError::Internal(e.to_string()),
        })
}

/// kube-apiserver's refusal to exec into or attach to a pod that has finished.
fn refuse_finished(pod: &Value, sub: &str) -> Result<(), ApiError> {
    match pod["status"]["phase"].as_str() {
        Some(phase @ ("Succeeded" | "Failed")) => Err(ApiError::BadRequest(format!(
            "cannot {sub} into a container in a completed pod; current phase is {phase}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(namespaced: bool) -> Target {
        Target {
            info: minik_api::builtin("", "v1", if namespaced { "pods" } else { "nodes" }),
            namespace: namespaced.then(|| "default".to_string()),
            name: Some("web:80".into()),
            subresource: Some("proxy".into()),
            printer: vec![],
        }
    }

    #[test]
    fn the_proxied_path_is_what_follows_proxy() {
        let t = target(true);
        assert_eq!(remainder(&t, "namespaces/default/pods/web:80/proxy"), "/");
        assert_eq!(remainder(&t, "namespaces/default/pods/web:80/proxy/"), "/");
        assert_eq!(
            remainder(&t, "namespaces/default/pods/web:80/proxy/a/b/"),
            "/a/b/"
        );
        let n = target(false);
        assert_eq!(
            remainder(&n, "nodes/web:80/proxy/stats/summary"),
            "/stats/summary"
        );
    }

    #[test]
    fn a_finished_pod_refuses_exec() {
        let pod = serde_json::json!({"status": {"phase": "Succeeded"}});
        let e = refuse_finished(&pod, "exec").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot exec into a container in a completed pod; current phase is Succeeded"
        );
        assert!(
            refuse_finished(&serde_json::json!({"status": {"phase": "Running"}}), "exec").is_ok()
        );
    }
}
