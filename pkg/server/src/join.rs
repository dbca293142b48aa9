//! What agents join with (k3s's way): the server token `K10<CA hash>::server:<secret>`,
//! kept in `<data-dir>/server/token` (and `node-token`); the CA bundle at /cacerts; the
//! token's secret authenticating as a bootstrapper (it may only ask for a kubelet client
//! certificate, approved at once); and the cluster's settings agents need, in ConfigMap
//! kube-system/minik-config, which nodes may read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use minik_auth::join_token::{self, JoinToken};
use minik_registry::{ApiError, Registry, UserInfo};
use serde_json::json;

/// The ConfigMap (in kube-system) agents read the cluster's settings from.
pub const CONFIG_MAP: &str = "minik-config";

/// Who the server token's secret authenticates as.
pub const TOKEN_USER: &str = "system:bootstrap:server";

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

/// Why the token cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("--token: {0}")]
    Parse(#[from] join_token::TokenError),
    #[error(
        "--token pins a CA hash ({given}) that is not this server's ({ours}): give only the \
         secret, or the token this server printed"
    )]
    OtherCa { given: String, ours: String },
    #[error("{0}")]
    Write(#[from] minik_auth::Error),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The server's token: the secret from `--token` (a full token must pin this server's CA),
/// else the one kept in the data dir, else a new one. The full token is (re)written to
/// `<data-dir>/server/token` and `node-token` (0600). Returns the secret and the full token.
pub fn server_token(
    data_dir: &Path,
    flag: Option<&str>,
    ca_bundle: &str,
) -> Result<(String, String), TokenError> {
    let dir = data_dir.join("server");
    let file = dir.join("token");
    let ours = join_token::ca_hash(ca_bundle.as_bytes());
    let secret = match flag {
        Some(t) => {
            let t = JoinToken::parse(t)?;
            if let Some(given) = t.ca_hash.filter(|h| *h != ours) {
                return Err(TokenError::OtherCa { given, ours });
            }
            t.credential
        }
        None => match std::fs::read_to_string(&file) {
            Ok(text) => JoinToken::parse(&text)?.credential,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                minik_controllers::util::random_suffix(32)
            }
            Err(source) => return Err(TokenError::Read { path: file, source }),
        },
    };
    let full = join_token::server_token(ca_bundle.as_bytes(), &secret);
    let text = format!("{full}\n");
    minik_auth::write_mode(&file, text.as_bytes(), 0o600)?;
    minik_auth::write_mode(&dir.join("node-token"), text.as_bytes(), 0o600)?;
    Ok((secret, full))
}

/// Add the server token's secret to the static tokens: a bootstrapper that may ask for a
/// kubelet client certificate and nothing else.
pub fn authenticate_secret(tokens: &mut HashMap<String, UserInfo>, secret: &str) {
    tokens.insert(
        secret.to_string(),
        UserInfo {
            name: TOKEN_USER.into(),
            uid: String::new(),
            groups: vec![
                "system:bootstrappers".into(),
                "system:bootstrappers:minik:server-token".into(),
            ],
        },
    );
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
    fn the_token_is_kept_and_pins_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, full) = server_token(dir.path(), None, "CA").unwrap();
        assert_eq!(secret.len(), 32);
        let kept = std::fs::read_to_string(dir.path().join("server/node-token")).unwrap();
        assert_eq!(kept.trim(), full);
        // The same secret at the next start; --token replaces it.
        assert_eq!(server_token(dir.path(), None, "CA").unwrap().0, secret);
        assert_eq!(
            server_token(dir.path(), Some("mine"), "CA").unwrap().0,
            "mine"
        );
        assert_eq!(server_token(dir.path(), None, "CA").unwrap().0, "mine");
        // A full token must be this server's.
        let (_, full) = server_token(dir.path(), None, "CA").unwrap();
        assert!(server_token(dir.path(), Some(&full), "CA").is_ok());
        let e = server_token(dir.path(), Some(&full), "other CA").unwrap_err();
        assert!(e.to_string().contains("not this server's"), "{e}");
    }

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
