//! Reaching a node's kubelet: its address (the node's InternalIP and daemonEndpoints port)
//! and an HTTP/1.1 connection over TLS with the API server's kubelet client certificate,
//! the kubelet's serving certificate checked against the cluster's server CA.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use minik_registry::ApiError;
use minik_registry::client::{self, ClientCert, TlsTarget};
use serde_json::Value;

use crate::AppState;

/// How long reaching a kubelet (or a pod) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// A connection to the kubelet at `addr` with the API server's kubelet client
    /// certificate, the kubelet's serving certificate checked against the CA.
    pub async fn connect<B>(&self, addr: SocketAddr) -> Result<SendRequest<B>, ApiError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let id = self
            .get()
            .ok_or_else(|| ApiError::Internal("the API server has no kubelet client".into()))?;
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
        tokio::time::timeout(CONNECT_TIMEOUT, client::connect::<B>(&target, Some(&cert)))
            .await
            .map_err(|_| unreachable(addr, "timed out connecting to the kubelet"))?
            .map_err(|e| unreachable(addr, &e))
    }
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

/// A connection to the kubelet of node `node_name`, and its address.
pub async fn connect<B>(
    state: &AppState,
    node_name: &str,
) -> Result<(SendRequest<B>, SocketAddr), ApiError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let nodes = minik_api::builtin("", "v1", "nodes");
    let node = state.registry.get(nodes, None, node_name).await?;
    let addr = kubelet_address(&node).ok_or_else(|| {
        ApiError::Internal(format!("node {node_name:?} has no address for its kubelet"))
    })?;
    let sender = state.kubelet.connect(addr).await?;
    Ok((sender, addr))
}

/// 503, as kube-apiserver answers when it cannot reach a backend.
pub fn unreachable(addr: SocketAddr, why: &str) -> ApiError {
    ApiError::Denied {
        code: 503,
        message: format!("error trying to reach service: dial tcp {addr}: {why}"),
    }
}

/// The node a pod runs on, or a 400 as kube-apiserver says it for an unscheduled pod.
pub fn node_of(pod: &Value, name: &str) -> Result<String, ApiError> {
    pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))
}

/// Percent-encoding of a path segment or query value.
pub fn encode(s: &str) -> String {
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
