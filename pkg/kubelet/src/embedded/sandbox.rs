//! A pod's sandbox and directory: made when the pod starts (namespaces per hostNetwork,
//! hostIPC and hostPID; the pod directory with /etc/hosts and /etc/resolv.conf), and undone
//! when it stops (containers stopped, app containers first, then init containers and
//! sidecars in reverse; volumes unmounted; sandbox, pod directory and logs removed).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use minik_controllers::events::Kind;
use minik_runtime::{ContainerState, SandboxConfig};

use super::labels;
use super::layout::safe_component;
use super::{EmbeddedRuntime, dns, failed, volumes};
use crate::runtime::RuntimeError;

fn io(what: &str) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::Failed(format!("{what}: {e}"))
}

/// The pod's resolv.conf and hosts files, in its directory.
pub(super) fn write_files(
    rt: &EmbeddedRuntime,
    pod: &Pod,
    ips: &[String],
) -> Result<(), RuntimeError> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let etc = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let systemd = fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
    let host = dns::host_resolv(&etc, systemd.as_deref());
    let resolv = dns::pod_resolv(pod, &host, rt.cluster_dns.as_deref(), &rt.cluster_domain);
    fs::write(rt.layout.resolv_conf(uid), resolv.render()).map_err(io("writing resolv.conf"))?;
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    let hosts = if host_network {
        dns::host_network_hosts(
            &fs::read_to_string("/etc/hosts").unwrap_or_default(),
            &aliases,
        )
    } else {
        let (name, domain) = dns::hostname(pod, &rt.cluster_domain);
        dns::managed_hosts(ips, &name, domain.as_deref(), &aliases)
    };
    let path = rt.layout.etc_hosts(uid);
    fs::write(&path, hosts).map_err(io("writing the hosts file"))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
        .map_err(io("writing the hosts file"))
}

/// The pod's hostPorts, as CRI's PortMappings (kubelet's makePortMappings: one per port
/// with a hostPort, the first of any duplicate).
fn port_mappings(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<minik_runtime::PortMapping> {
    let mut out: Vec<minik_runtime::PortMapping> = Vec::new();
    for port in spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
    {
        let (Some(host_port), Ok(container_port)) = (
            port.host_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0),
            u16::try_from(port.container_port),
        ) else {
            continue;
        };
        let mapping = minik_runtime::PortMapping {
            protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
            container_port,
            host_port,
            host_ip: port.host_ip.clone().unwrap_or_default(),
        };
        let taken = out.iter().any(|m| {
            m.host_port == mapping.host_port
                && m.protocol == mapping.protocol
                && m.host_ip == mapping.host_ip
        });
        if !taken {
            out.push(mapping);
        }
    }
    out
}

/// Create the pod's sandbox and directory (or adopt a sandbox already there).
pub(super) async fn create(
    rt: &EmbeddedRuntime,
    pod: &Pod,
    ip: Option<String>,
) -> Result<(), RuntimeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if !safe_component(&uid) {
        return Err(RuntimeError::Failed(format!("invalid pod uid {uid:?}")));
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let entry = rt.entry_for(pod, ip.clone());
    match rt.runtime.sandbox_ready(&uid) {
        Some(true) => {
            tracing::info!(uid, "adopting a running pod");
            let mut shared = entry.shared();
            if shared.ip.is_none() {
                shared.ip = rt.runtime.sandbox(&uid).and_then(|s| s.ip);
            }
            return Ok(());
        }
        Some(false) => tracing::info!(uid, "the pod's sandbox stopped; making it again"),
        None => {}
    }
    let pod_dir = rt.layout.pod(&uid);
    fs::create_dir_all(rt.layout.volumes(&uid)).map_err(io("creating the pod directory"))?;
    fs::set_permissions(&pod_dir, fs::Permissions::from_mode(0o750))
        .map_err(io("creating the pod directory"))?;
    let facts = rt.node.facts().await.unwrap_or_default();
    let ips = if host_network {
        facts.addresses.clone()
    } else {
        ip.clone().into_iter().collect()
    };
    write_files(rt, pod, &ips)?;
    let hostname = if host_network {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        dns::hostname(pod, &rt.cluster_domain).0
    };
    let meta = &pod.metadata;
    let sandbox_labels: BTreeMap<String, String> = [
        (labels::POD_NAME, meta.name.clone().unwrap_or_default()),
        (
            labels::POD_NAMESPACE,
            meta.namespace.clone().unwrap_or_default(),
        ),
        (labels::POD_UID, uid.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = SandboxConfig {
        id: uid.clone(),
        hostname,
        host_network,
        host_ipc: spec.host_ipc.unwrap_or(false),
        host_pid: spec.host_pid.unwrap_or(false),
        labels: sandbox_labels,
        port_mappings: if host_network {
            Vec::new()
        } else {
            port_mappings(&spec)
        },
    };
    let sandbox = match rt.runtime.create_sandbox(&config).await {
        Ok(sandbox) => sandbox,
        Err(e) => {
            // Not started: the next sync starts the pod again (the pod network may not be
            // ready yet).
            rt.pods
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
            return Err(failed("creating the pod sandbox")(e));
        }
    };
    // A CRI runtime's network gives the address itself.
    let ip = ip.or(sandbox.ip);
    if ip.is_some() && !host_network {
        write_files(rt, pod, &ip.clone().into_iter().collect::<Vec<_>>())?;
    }
    entry.shared().ip = ip;
    tracing::info!(uid, pod = ?meta.name, namespace = ?meta.namespace, "pod sandbox created");
    Ok(())
}

/// The pod's log directory, found by its uid when the pod's name is not known any more.
fn log_dir(rt: &EmbeddedRuntime, uid: &str, pod: Option<&Pod>) -> Option<std::path::PathBuf> {
    if let Some(p) = pod {
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        let name = p.metadata.name.as_deref().unwrap_or_default();
        return Some(rt.layout.pod_logs(ns, name, uid));
    }
    let suffix = format!("_{uid}");
    fs::read_dir(&rt.layout.logs)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        .map(|e| e.path())
}

/// Stop the pod's containers as kubelet's killPod does (app containers together, then init
/// containers and sidecars in reverse order), SIGKILL after `grace`; their exited state
/// stays for the final status.
pub(super) async fn kill(
    rt: &EmbeddedRuntime,
    uid: &str,
    grace: Duration,
) -> Result<(), RuntimeError> {
    let pod = rt.entry(uid).map(|e| e.shared().pod.clone());
    let (init, apps): (Vec<_>, Vec<_>) = rt.containers_of(uid).into_iter().partition(|c| {
        c.config
            .labels
            .get(labels::INIT)
            .is_some_and(|v| v == "true")
    });
    let running = |c: &&minik_runtime::Container| matches!(c.state, ContainerState::Running { .. });
    if let Some(pod) = &pod {
        for c in init.iter().chain(&apps).filter(running) {
            rt.recorder.event(
                pod,
                Kind::Normal,
                "Killing",
                &format!("Stopping container {}", c.config.name),
            );
        }
    }
    // Each container's preStop hook first, then SIGTERM with the grace left.
    async fn stop(
        rt: &EmbeddedRuntime,
        pod: Option<&Pod>,
        c: &minik_runtime::Container,
        grace: Duration,
    ) -> minik_runtime::Result<()> {
        let left = match pod {
            Some(pod) => super::hooks::pre_stop_of(rt, pod, c, grace).await,
            None => grace,
        };
        rt.runtime.stop_container(&c.config.id, left).await
    }
    let mut errors = Vec::new();
    let pod = pod.as_ref();
    for result in
        futures::future::join_all(apps.iter().filter(running).map(|c| stop(rt, pod, c, grace)))
            .await
    {
        if let Err(e) = result {
            errors.push(e.to_string());
        }
    }
    for c in init.iter().rev().filter(running) {
        if let Err(e) = stop(rt, pod, c, grace).await {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::Failed(errors.join("; ")))
    }
}

/// Stop and remove everything of the pod; `grace` before each container is killed.
pub(super) async fn remove(
    rt: &EmbeddedRuntime,
    uid: &str,
    grace: Duration,
) -> Result<(), RuntimeError> {
    if !safe_component(uid) {
        return Err(RuntimeError::Failed(format!("invalid pod uid {uid:?}")));
    }
    let pod = rt.entry(uid).map(|e| e.shared().pod.clone());
    kill(rt, uid, grace).await?;
    super::probing::forget(rt, uid);
    let mut errors = Vec::new();
    for c in rt.containers_of(uid) {
        if let Err(e) = rt.remove_container(uid, &c, Duration::ZERO).await {
            errors.push(e.to_string());
        }
    }
    if !errors.is_empty() {
        return Err(RuntimeError::Failed(errors.join("; ")));
    }
    volumes::tear_down(&rt.layout, uid).map_err(io("unmounting the pod's volumes"))?;
    if rt.runtime.sandbox(uid).is_some() {
        rt.runtime
            .remove_sandbox(uid)
            .await
            .map_err(failed("removing the pod sandbox"))?;
    }
    let pod_dir = rt.layout.pod(uid);
    if volumes::fs::mounts_under(&pod_dir).is_empty()
        && let Err(e) = fs::remove_dir_all(&pod_dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(RuntimeError::Failed(format!(
            "removing {}: {e}",
            pod_dir.display()
        )));
    }
    if let Some(logs) = log_dir(rt, uid, pod.as_ref()) {
        let _ = fs::remove_dir_all(logs);
    }
    rt.pods
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(uid);
    rt.pulls().forget(uid);
    tracing::info!(uid, "pod removed");
    Ok(())
}
