//! `GET pods/<name>/log`: kube-apiserver's LogREST. The options are checked
//! (PodLogOptions), the container chosen (the only one, the
//! `kubectl.kubernetes.io/default-container` annotation's, or the one asked for), and the
//! request sent on to the kubelet of the pod's node (`/containerLogs/...` on its
//! daemonEndpoints port at its InternalIP, over TLS with the API server's kubelet client
//! certificate, the kubelet's certificate checked against the cluster's server CA). The
//! kubelet's answer is streamed back as it comes (`follow`), and its refusals become
//! Statuses with their code.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use minik_registry::ApiError;
use minik_registry::client::{self, ClientCert, TlsTarget};
use serde_json::Value;

use crate::AppState;

/// How long reaching a kubelet may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The annotation naming the container `kubectl logs` and `exec` default to.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// Who the API server is to kubelets, and how it knows them.
#[derive(Debug, Clone)]
pub struct KubeletIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA that signs kubelets' serving certificates.
    pub ca_pem: String,
}

/// The kubelet client's identity, set once the PKI is loaded.
#[derive(Debug, Clone, Default)]
pub struct KubeletClient(Arc<RwLock<Option<KubeletIdentity>>>);

impl KubeletClient {
    pub fn set(&self, id: KubeletIdentity) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }

    fn get(&self) -> Option<KubeletIdentity> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// The container a log request is for, as kube-apiserver picks it.
pub fn container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let (apps, init, ephemeral) = (
        names(pod, "containers"),
        names(pod, "initContainers"),
        names(pod, "ephemeralContainers"),
    );
    if let Some(c) = asked {
        if apps.iter().chain(&init).chain(&ephemeral).any(|n| n == c) {
            return Ok(c.to_string());
        }
        return Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if let Some(d) = pod["metadata"]["annotations"][DEFAULT_CONTAINER].as_str()
        && apps.iter().any(|n| n == d)
    {
        return Ok(d.to_string());
    }
    if apps.len() == 1 {
        return Ok(apps[0].clone());
    }
    let mut message = format!(
        "a container name must be specified for pod {name}, choose one of: [{}]",
        apps.join(" ")
    );
    if !init.is_empty() {
        message.push_str(&format!(
            " or one of the init containers: [{}]",
            init.join(" ")
        ));
    }
    if !ephemeral.is_empty() {
        message.push_str(&format!(
            " or one of the ephemeral containers: [{}]",
            ephemeral.join(" ")
        ));
    }
    Err(ApiError::BadRequest(message))
}

/// Where a node's kubelet listens: its InternalIP (else any address that is an IP) and its
/// daemonEndpoints port.
pub fn kubelet_address(node: &Value) -> Option<SocketAddr> {
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    let addresses = node["status"]["addresses"].as_array()?;
    let ip = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .flat_map(|kind| addresses.iter().filter(move |a| a["type"] == *kind))
        .find_map(|a| a["address"].as_str()?.parse::<IpAddr>().ok())?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

fn text_response(status: StatusCode, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Serve pods/<name>/log of `ns` with the request's query parameters.
pub async fn logs(
    state: &AppState,
    ns: &str,
    name: &str,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let query: HashMap<String, String> = params.iter().cloned().collect();
    let opts = minik_api::pod_log::Options::from_query(&query, chrono::Utc::now())
        .map_err(|e| ApiError::Unprocessable(format!("PodLogOptions {name:?} is invalid: {e}")))?;
    let pods = minik_api::builtin("", "v1", "pods");
    let pod = state.registry.get(pods, Some(ns), name).await?;
    let container = container(&pod, name, opts.container.as_deref())?;
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        // Not scheduled: nothing has run, and there is nothing to show.
        return Ok(text_response(StatusCode::OK, Body::empty()));
    };
    let nodes = minik_api::builtin("", "v1", "nodes");
    let node = state.registry.get(nodes, None, node_name).await?;
    let addr = kubelet_address(&node).ok_or_else(|| {
        ApiError::Internal(format!("node {node_name:?} has no address for its kubelet"))
    })?;
    let id = state
        .kubelet
        .get()
        .ok_or_else(|| ApiError::Internal("the API server has no kubelet client".into()))?;
    let mut forwarded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "container")
        .cloned()
        .collect();
    forwarded.sort();
    let query = forwarded
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let path = format!(
        "/containerLogs/{}/{}/{}?{query}",
        encode(ns),
        encode(name),
        encode(&container)
    );
    let url = format!("https://{addr}{path}");
    let target = TlsTarget {
        addr,
        server_name: addr.ip().to_string(),
        ca_bundle: Some(id.ca_pem.into_bytes()),
        insecure: false,
    };
    let cert = ClientCert {
        cert_pem: id.cert_pem,
        key_pem: id.key_pem,
    };
    let failed = |e: String| ApiError::Internal(format!("Get {url:?}: {e}"));
    let mut sender = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client::connect::<http_body_util::Empty<bytes::Bytes>>(&target, Some(&cert)),
    )
    .await
    .map_err(|_| failed("timed out connecting to the kubelet".into()))?
    .map_err(failed)?;
    let req = http::Request::get(&path)
        .header(header::HOST, addr.to_string())
        .body(http_body_util::Empty::new())
        .map_err(|e| failed(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = resp.status();
    if status == StatusCode::OK {
        return Ok(text_response(StatusCode::OK, Body::new(resp.into_body())));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
    Err(match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(body),
        other => ApiError::Denied {
            code: other.as_u16(),
            message: body,
        },
    })
}

/// Percent-encoding of a path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(annotation: Option<&str>, apps: &[&str], init: &[&str]) -> Value {
        let list = |n: &[&str]| n.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        let mut p = json!({"metadata": {"name": "p"},
            "spec": {"containers": list(apps), "initContainers": list(init)}});
        if let Some(a) = annotation {
            p["metadata"]["annotations"] = json!({DEFAULT_CONTAINER: a});
        }
        p
    }

    #[test]
    fn the_container_is_chosen_as_kube_apiserver_does() {
        assert_eq!(container(&pod(None, &["a"], &[]), "p", None).unwrap(), "a");
        assert_eq!(
            container(&pod(Some("b"), &["a", "b"], &[]), "p", None).unwrap(),
            "b"
        );
        assert_eq!(
            container(&pod(None, &["a"], &["i"]), "p", Some("i")).unwrap(),
            "i"
        );
        let many = container(&pod(None, &["a", "b"], &["i"]), "p", None).unwrap_err();
        assert_eq!(
            many.to_string(),
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let wrong = container(&pod(None, &["a"], &[]), "p", Some("x")).unwrap_err();
        assert_eq!(wrong.to_string(), "container x is not valid for pod p");
    }

    #[test]
    fn the_kubelet_is_found_at_the_nodes_internal_ip_and_port() {
        let node = json!({"status": {"addresses": [
            {"type": "Hostname", "address": "box"},
            {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(
            kubelet_address(&node),
            Some("10.0.0.5:10250".parse().unwrap())
        );
        assert_eq!(kubelet_address(&json!({"status": {}})), None);
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("2024-01-01T00:00:00Z"), "2024-01-01T00:00:00Z");
        assert_eq!(encode("a b/c+d"), "a%20b%2Fc%2Bd");
    }
}
