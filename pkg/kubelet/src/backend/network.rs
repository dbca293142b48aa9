//! The embedded runtime's sandboxes on the pod network, as a CRI runtime's RunPodSandbox
//! calls its CNI plugins: a new sandbox (not on the host's network) is attached and its
//! address kept in the sandbox record; removing the sandbox detaches it first. A sandbox
//! that cannot be attached is removed again, so a retry starts clean.

use std::sync::Arc;

use minik_network::{PodNetwork, PodRef};
use minik_runtime::{Error, Result, Runtime, Sandbox, SandboxConfig};

use crate::embedded::labels;

fn pod_ref(config: &SandboxConfig) -> PodRef {
    let label = |k: &str| config.labels.get(k).cloned().unwrap_or_default();
    PodRef {
        uid: config.id.clone(),
        namespace: label(labels::POD_NAMESPACE),
        name: label(labels::POD_NAME),
        ports: config
            .port_mappings
            .iter()
            .map(|p| minik_network::hostports::HostPort {
                protocol: p.protocol.to_ascii_lowercase(),
                host_port: p.host_port,
                container_port: p.container_port,
                host_ip: p.host_ip.parse().ok(),
            })
            .collect(),
    }
}

/// Run a blocking network call off the async threads.
async fn blocking<T: Send + 'static>(
    what: &str,
    call: impl FnOnce() -> std::result::Result<T, minik_network::NetworkError> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::Failed(format!("{what}: {e}"))),
        Err(e) => Err(Error::Failed(format!("{what}: {e}"))),
    }
}

/// Attach a sandbox that has its own network namespace and no address yet.
pub(super) async fn attach(
    network: &Arc<dyn PodNetwork>,
    runtime: &Runtime,
    mut sandbox: Sandbox,
) -> Result<Sandbox> {
    let Some(netns) = sandbox.netns.clone().filter(|_| sandbox.ip.is_none()) else {
        return Ok(sandbox);
    };
    let pod = pod_ref(&sandbox.config);
    let net = network.clone();
    let ips = match blocking("setting up the pod network", move || net.add(&pod, &netns)).await {
        Ok(ips) => ips,
        Err(e) => {
            if let Err(undo) = runtime.remove_sandbox(&sandbox.config.id) {
                tracing::warn!(sandbox = sandbox.config.id, error = %undo, "removing the sandbox");
            }
            return Err(e);
        }
    };
    let ip = ips.first().map(ToString::to_string);
    runtime.set_sandbox_ip(&sandbox.config.id, ip.clone())?;
    sandbox.ip = ip;
    Ok(sandbox)
}

/// Detach a sandbox before it is removed.
pub(super) async fn detach(network: &Arc<dyn PodNetwork>, sandbox: &Sandbox) -> Result<()> {
    if sandbox.config.host_network {
        return Ok(());
    }
    let pod = pod_ref(&sandbox.config);
    let netns = sandbox.netns.clone().filter(|p| p.exists());
    let net = network.clone();
    blocking("tearing down the pod network", move || {
        net.del(&pod, netns.as_deref())
    })
    .await
}

/// Free what pods whose sandboxes are gone still hold (after a crash).
pub(crate) fn collect(network: &dyn PodNetwork, runtime: &Runtime) {
    let live = runtime
        .sandboxes()
        .into_iter()
        .map(|s| s.config.id)
        .collect();
    if let Err(e) = network.gc(&live) {
        tracing::warn!(error = %e, "releasing the addresses of pods that are gone");
    }
}
