//! What agents join with (k3s's way): the join tokens (tokens.rs: the server token
//! `K10<CA hash>::server:<secret>`, kept in `<data-dir>/server/token` and `node-token`, and
//! the optional agent token `K10<CA hash>::node:<secret>` in `agent-token`); the CA bundle at
//! /cacerts; and the cluster's settings agents need, in ConfigMap kube-system/minik-config,
//! which nodes may read.

mod tokens;

pub use tokens::{
    AGENT_TOKEN_USER, JoinTokens, TOKEN_USER, TokenError, authenticate, check_flags, flag_or_file,
    join_tokens,
};

use std::net::IpAddr;

use minik_registry::{ApiError, Registry};
use serde_json::json;

/// The ConfigMap (in kube-system) agents read the cluster's settings from.
pub const CONFIG_MAP: &str = "minik-config";

/// The cluster settings an agent takes from its server rather than from its own flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// Whether nodes answer cluster DNS (`--disable coredns` turns it off).
    pub dns: bool,
    /// Whether nodes run minik's pod network (else CNI plugins: `--flannel-backend none`).
    pub network: bool,
    /// Whether nodes reach each other's pods over VXLAN (`--flannel-backend vxlan`).
    pub vxlan: bool,
}

impl ClusterInfo {
    /// The ConfigMap's data.
    pub fn to_data(&self) -> serde_json::Value {
        json!({"clusterCIDR": self.cluster_cidr, "serviceCIDR": self.service_cidr,
            "clusterDNS": self.cluster_dns.to_string(), "clusterDomain": self.cluster_domain,
            "dns": self.dns.to_string(), "network": self.network.to_string(),
            "flannelBackend": if self.vxlan { "vxlan" } else { "host-gw" }})
    }

    /// Read the ConfigMap's data back.
    pub fn from_data(data: &std::collections::BTreeMap<String, String>) -> Result<Self, String> {
        let get = |k: &str| {
            data.get(k)
                .cloned()
                .ok_or_else(|| format!("ConfigMap {CONFIG_MAP} has no {k}"))
        };
        Ok(ClusterInfo {
            cluster_cidr: get("clusterCIDR")?,
            service_cidr: get("serviceCIDR")?,
            cluster_dns: get("clusterDNS")?
                .parse()
                .map_err(|e| format!("ConfigMap {CONFIG_MAP}: clusterDNS: {e}"))?,
            cluster_domain: get("clusterDomain")?,
            dns: get("dns")? == "true",
            network: get("network")? == "true",
            vxlan: data.get("flannelBackend").map(String::as_str) == Some("vxlan"),
        })
    }
}

/// The ConfigMap key of the client CA (PEM), which agents' kubelet servers verify the API
/// server's client certificate with.
pub const CLIENT_CA_KEY: &str = "clientCA";

/// Publish the cluster's settings and the client CA for agents, and let nodes read them.
pub async fn publish(
    registry: &Registry,
    info: &ClusterInfo,
    client_ca_pem: &str,
) -> Result<(), ApiError> {
    let mut data = info.to_data();
    data[CLIENT_CA_KEY] = json!(client_ca_pem);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": "kube-system"}, "data": data});
    crate::bootstrap::create_or_replace(
        registry,
        minik_api::builtin("", "v1", "configmaps"),
        "kube-system",
        cm,
    )
    .await?;
    let name = "minik:agent-config";
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": "kube-system"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": [CONFIG_MAP], "verbs": ["get"]}]});
    crate::bootstrap::create_or_replace(
        registry,
        minik_api::builtin("rbac.authorization.k8s.io", "v1", "roles"),
        "kube-system",
        role,
    )
    .await?;
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "kube-system"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
            "name": "system:nodes"}]});
    crate::bootstrap::create_or_replace(
        registry,
        minik_api::builtin("rbac.authorization.k8s.io", "v1", "rolebindings"),
        "kube-system",
        binding,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_round_trips() {
        let info = ClusterInfo {
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            cluster_dns: IpAddr::from([10, 43, 0, 10]),
            cluster_domain: "cluster.local".into(),
            dns: true,
            network: false,
            vxlan: true,
        };
        let data: std::collections::BTreeMap<String, String> =
            serde_json::from_value(info.to_data()).unwrap();
        assert_eq!(ClusterInfo::from_data(&data).unwrap(), info);
        let mut partial = data.clone();
        partial.remove("clusterDNS");
        assert!(ClusterInfo::from_data(&partial).is_err());
    }
}
