//! The node a server runs, as k3s's server runs an agent: the real kubelet of this
//! process (minik_kubelet::local) acting as `system:node:<name>` through the in-process
//! client, so the Node authorizer and NodeRestriction apply to it as to any kubelet. Once
//! its Node exists, the server labels it a control-plane node, as k3s does (a kubelet may
//! not set node-role labels itself). `--disable-agent` leaves it out; running containers
//! needs root, as k3s does.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use minik_kubelet::machine::MachineOptions;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::local;

/// The label k3s puts on its servers' nodes.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// What the user asked of the server's node.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `--node-name` (default: the host name).
    pub node_name: Option<String>,
    /// `--with-node-id`.
    pub with_node_id: bool,
    /// `--node-ip` (default: the address of the default route's interface).
    pub node_ip: Option<IpAddr>,
    /// `--node-label`s, `key=value`.
    pub node_labels: Vec<String>,
    /// `--node-taint`s, `key=value:Effect`.
    pub node_taints: Vec<String>,
    /// `--kubelet-arg`s, `key=value` (eviction-hard, max-pods).
    pub kubelet_args: Vec<String>,
    /// `--cluster-dns` and `--cluster-domain`, for pods' resolv.conf.
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// The program and leading arguments that run a container's shim (`minik shim`).
    pub shim: Vec<String>,
    /// Container logs (/var/log/pods).
    pub log_dir: PathBuf,
    /// Files that do not survive a reboot (/run/minik).
    pub run_dir: PathBuf,
    /// Registry mirrors and credentials (/etc/minik/registries.yaml).
    pub registries: PathBuf,
    /// An external CRI runtime's endpoint (`--container-runtime-endpoint`); None runs
    /// containers with minik's own runtime.
    pub container_runtime_endpoint: Option<String>,
    /// The pod network, service proxy, DNS and network policy.
    pub network: crate::network::NetworkConfig,
}

/// Why the node cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "minik server runs a node (kubelet and containers), which needs root: run it as root, \
         or with --disable-agent to run only the control plane"
    )]
    NotRoot,
    #[error("{0}")]
    Flag(String),
    #[error("{0}")]
    Machine(#[from] minik_kubelet::machine::MachineError),
    #[error("{0}")]
    Node(#[from] minik_kubelet::local::Error),
    #[error("the pod network: {0}")]
    Network(#[from] minik_network::NetworkError),
    #[error(
        "this kernel lacks what a node needs: {0} (`minik check-config` tells more), or run \
         the server with --disable-agent"
    )]
    Kernel(String),
}

impl AgentConfig {
    /// Check what can be wrong before anything is made: root, labels and taints.
    pub fn check(&self) -> Result<(), AgentError> {
        self.check_as(nix::unistd::geteuid().is_root())?;
        let missing = crate::kernel::missing_required();
        if !missing.is_empty() {
            let names: Vec<String> = missing
                .iter()
                .map(|c| format!("{} ({})", c.name, c.detail))
                .collect();
            return Err(AgentError::Kernel(names.join(", ")));
        }
        Ok(())
    }

    fn check_as(&self, root: bool) -> Result<(), AgentError> {
        if !root {
            return Err(AgentError::NotRoot);
        }
        minik_kubelet::labels::parse_labels(&self.node_labels).map_err(AgentError::Flag)?;
        minik_kubelet::labels::parse_taints(&self.node_taints).map_err(AgentError::Flag)?;
        minik_kubelet::kubelet_args::parse(&self.kubelet_args).map_err(AgentError::Flag)?;
        Ok(())
    }
}

/// What the server gives its node: the controllers' metrics (the pod workers' queue), the
/// usage store the resource metrics API serves, and the CAs of the kubelet server.
pub struct Shared {
    pub metrics: minik_controllers::Metrics,
    pub usage: minik_api::usage::UsageStore,
    pub cas: minik_kubelet::server::Cas,
}

/// The first error of the node, which stops the server.
pub type Failure = Arc<Mutex<Option<AgentError>>>;

/// The node's name: `--node-name` (default: the host name), with `--with-node-id`'s suffix.
pub fn node_name(agent: &AgentConfig, data_dir: &Path) -> Result<String, AgentError> {
    Ok(minik_kubelet::machine::node_name(
        agent.node_name.as_deref(),
        agent.with_node_id,
        &data_dir.join("agent").join("node-id"),
    )?)
}

/// Run the node `name`: its pod network, service proxy, DNS and network policy, and its
/// kubelet, with `client` acting as the node, until `shutdown` or the kubelet fails.
/// `serving` is the kubelet server's certificate.
#[allow(clippy::too_many_arguments)]
pub async fn run_node(
    agent: &AgentConfig,
    data_dir: &Path,
    name: &str,
    client: kube::Client,
    serving: minik_kubelet::server::Serving,
    metrics: minik_controllers::Metrics,
    usage: minik_api::usage::UsageStore,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let labels =
        minik_kubelet::labels::parse_labels(&agent.node_labels).map_err(AgentError::Flag)?;
    let taints =
        minik_kubelet::labels::parse_taints(&agent.node_taints).map_err(AgentError::Flag)?;
    let kubelet =
        minik_kubelet::kubelet_args::parse(&agent.kubelet_args).map_err(AgentError::Flag)?;
    let networks = crate::network::pod_network(&agent.network, data_dir)?;
    let options = minik_kubelet::local::Options {
        machine: MachineOptions {
            name: name.to_string(),
            node_ip: agent.node_ip,
            labels,
            taints,
            data_dir: data_dir.to_path_buf(),
            kubelet,
        },
        data_dir: data_dir.to_path_buf(),
        log_dir: agent.log_dir.clone(),
        run_dir: agent.run_dir.clone(),
        shim: agent.shim.clone(),
        registries: agent.registries.clone(),
        runtime_endpoint: agent.container_runtime_endpoint.clone(),
        cluster_dns: Some(agent.cluster_dns.to_string()),
        cluster_domain: agent.cluster_domain.clone(),
        server: Some(serving),
        network: Some(networks.network.clone()),
    };
    crate::network::start(agent, name, &networks, client.clone(), &shutdown);
    minik_kubelet::local::run(options, client, metrics, usage, shutdown).await?;
    Ok(())
}

/// Start the server's node; when it fails, the error is put in `failed` and `shutdown`
/// is cancelled (a server whose node failed stops, as k3s's does).
pub fn start(
    agent: &AgentConfig,
    data_dir: &Path,
    router: &Router,
    shared: Shared,
    shutdown: CancellationToken,
    failed: Failure,
) -> Result<(), AgentError> {
    let name = node_name(agent, data_dir)?;
    let client = local::client(
        router,
        "kubelet",
        &format!("system:node:{name}"),
        &["system:nodes"],
    );
    let supervisor = local::client(
        router,
        "minik-supervisor",
        "system:admin",
        &["system:masters"],
    );
    tokio::spawn(label_control_plane(
        supervisor,
        name.clone(),
        shutdown.clone(),
    ));
    let (agent, data_dir) = (agent.clone(), data_dir.to_path_buf());
    tokio::spawn(async move {
        // The kubelet server's certificate comes from the server CA this process holds.
        let serving = minik_kubelet::server::Serving::Cas(shared.cas);
        let (metrics, usage) = (shared.metrics, shared.usage);
        let stop = shutdown.clone();
        let result = run_node(
            &agent, &data_dir, &name, client, serving, metrics, usage, stop,
        )
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the node failed");
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            shutdown.cancel();
        }
    });
    Ok(())
}

/// Label the node `node-role.kubernetes.io/control-plane: "true"` once it exists (k3s's
/// setControlPlaneRoleLabel).
async fn label_control_plane(client: kube::Client, name: String, stop: CancellationToken) {
    let nodes: Api<Node> = Api::all(client);
    loop {
        match nodes.get_opt(&name).await {
            Ok(Some(node))
                if node
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CONTROL_PLANE_LABEL))
                    == Some(&"true".to_string()) =>
            {
                return;
            }
            Ok(Some(_)) => {
                let patch = json!({"metadata": {"labels": {CONTROL_PLANE_LABEL: "true"}}});
                match nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(node = name, "labelled a control-plane node");
                        return;
                    }
                    Err(e) => tracing::debug!(node = name, error = %e, "labelling the node"),
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(node = name, error = %e, "waiting for the node"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig {
            node_name: None,
            with_node_id: false,
            node_ip: None,
            node_labels: vec!["tier=web".into()],
            node_taints: vec!["dedicated=db:NoSchedule".into()],
            kubelet_args: vec!["max-pods=50".into()],
            cluster_dns: IpAddr::from([10, 43, 0, 10]),
            cluster_domain: "cluster.local".into(),
            shim: vec!["minik".into(), "shim".into()],
            log_dir: "/var/log/pods".into(),
            run_dir: "/run/minik".into(),
            registries: "/etc/minik/registries.yaml".into(),
            container_runtime_endpoint: None,
            network: crate::NetworkConfig {
                embedded: true,
                vxlan: false,
                cluster_cidr: "10.42.0.0/16".into(),
                proxy: true,
                dns: true,
                policy: true,
                prefix: "minik".into(),
                cni_conf_dir: "/etc/cni/net.d".into(),
                cni_bin_dir: "/opt/cni/bin".into(),
            },
        }
    }

    #[test]
    fn the_node_needs_root_and_valid_flags() {
        assert!(config().check_as(true).is_ok());
        let e = config().check_as(false).unwrap_err().to_string();
        assert!(
            e.contains("needs root") && e.contains("--disable-agent"),
            "{e}"
        );
        let mut bad = config();
        bad.node_taints = vec!["dedicated=db".into()];
        assert!(bad.check_as(true).is_err());
        let mut bad = config();
        bad.node_labels = vec!["node-role.kubernetes.io/worker=true".into()];
        assert!(bad.check_as(true).is_err());
        let mut bad = config();
        bad.kubelet_args = vec!["cgroup-driver=systemd".into()];
        assert!(bad.check_as(true).is_err());
    }
}
