//! `minik server`: flags to `minik_server::Config`, signals to the shutdown token.

use std::process::ExitCode;

use anyhow::Context;
use minik_api::quantity::parse_go_duration;
use tokio_util::sync::CancellationToken;

use crate::cli::{NodeArgs, ServerArgs};

fn config(args: ServerArgs) -> anyhow::Result<minik_server::Config> {
    let mode = args.write_kubeconfig_mode.trim_start_matches("0o");
    let write_kubeconfig_mode = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .with_context(|| {
            format!(
                "--write-kubeconfig-mode {:?} is not an octal file mode like 0600",
                args.write_kubeconfig_mode
            )
        })?;
    let service_cidr = args
        .service_cidr
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--service-cidr: {e}"))?;
    let event_ttl = parse_go_duration(&args.event_ttl).with_context(|| {
        format!(
            "--event-ttl {:?} is not a duration like 1h, 30m or 1h30m0s",
            args.event_ttl
        )
    })?;
    let cluster_cidr = args
        .cluster_cidr
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--cluster-cidr: {e}"))?;
    let agent = if args.disable_agent {
        None
    } else {
        let mut agent = node_config(&args.node)?;
        agent.cluster_dns = args.cluster_dns;
        agent.cluster_domain = args.cluster_domain.clone();
        agent.network.cluster_cidr = args.cluster_cidr.clone();
        agent.network.embedded &= !disabled(&args.disable, &["network"]);
        agent.network.dns = !disabled(&args.disable, &["coredns", "dns"]);
        Some(agent)
    };
    Ok(minik_server::Config {
        agent,
        event_ttl,
        cluster_cidr,
        simulated_nodes: args.simulated_nodes as usize,
        disable: args.disable.clone(),
        token: args.token.clone(),
        token_file: args.token_file.clone(),
        agent_token: args.agent_token.clone(),
        agent_token_file: args.agent_token_file.clone(),
        cluster: minik_server::join::ClusterInfo {
            cluster_cidr: args.cluster_cidr.clone(),
            service_cidr: args.service_cidr.clone(),
            cluster_dns: args.cluster_dns,
            cluster_domain: args.cluster_domain.clone(),
            dns: !disabled(&args.disable, &["coredns", "dns"]),
            network: args.node.flannel_backend != "none" && !disabled(&args.disable, &["network"]),
            vxlan: args.node.flannel_backend == "vxlan",
        },
        scheduler: !args.disable_scheduler,
        service_cidr,
        data_dir: args.node.data_dir,
        bind_address: args.bind_address,
        https_listen_port: args.https_listen_port,
        write_kubeconfig: args.write_kubeconfig,
        write_kubeconfig_mode,
        datastore_endpoint: args.datastore_endpoint,
        tls_san: args.tls_san,
        token_auth_file: args.token_auth_file,
        secrets_encryption: args.secrets_encryption,
        controllers: !args.disable_controller_manager,
        cluster_signing_duration: signing_duration(&args.kube_controller_manager_arg)?,
        requestheader_allowed_names: args.requestheader_allowed_names,
        audit: args
            .audit_policy_file
            .map(|policy_file| minik_server::AuditConfig {
                policy_file,
                log_path: args.audit_log_path,
                rotation: minik_server::AuditRotation {
                    max_size_mb: args.audit_log_maxsize,
                    max_backups: args.audit_log_maxbackup,
                    max_age_days: args.audit_log_maxage,
                },
            }),
        admission: minik_server::AdmissionOptions {
            enable: args.enable_admission_plugins,
            disable: args.disable_admission_plugins,
            config_file: args.admission_control_config_file,
        },
        max_requests_inflight: args.max_requests_inflight as usize,
        max_mutating_requests_inflight: args.max_mutating_requests_inflight as usize,
        oidc: minik_server::OidcFlags {
            issuer_url: args.oidc_issuer_url,
            client_id: args.oidc_client_id,
            username_claim: args.oidc_username_claim,
            username_prefix: args.oidc_username_prefix,
            groups_claim: args.oidc_groups_claim,
            groups_prefix: args.oidc_groups_prefix,
            ca_file: args.oidc_ca_file,
            required_claims: args.oidc_required_claim,
        },
        authentication_config: args.authentication_config,
        authorization_mode: args.authorization_mode,
        authorization_webhook_config_file: args.authorization_webhook_config_file,
        authentication_token_webhook_config_file: args.authentication_token_webhook_config_file,
        authentication_token_webhook_cache_ttl: parse_go_duration(
            &args.authentication_token_webhook_cache_ttl,
        )
        .with_context(|| {
            format!(
                "--authentication-token-webhook-cache-ttl {:?} is not a duration like 2m or 0s",
                args.authentication_token_webhook_cache_ttl
            )
        })?,
    })
}

/// The node's settings from the flags a server and an agent share; the cluster's (DNS,
/// domain, cluster CIDR) are k3s's defaults until the server's are known.
pub fn node_config(node: &NodeArgs) -> anyhow::Result<minik_server::AgentConfig> {
    // Containers' shims are this very binary (`minik shim`).
    let exe = std::env::current_exe().context("finding the minik binary")?;
    Ok(minik_server::AgentConfig {
        node_name: node.node_name.clone(),
        with_node_id: node.with_node_id,
        node_ip: node.node_ip,
        node_labels: node.node_label.clone(),
        node_taints: node.node_taint.clone(),
        kubelet_args: node.kubelet_arg.clone(),
        cluster_dns: std::net::IpAddr::from([10, 43, 0, 10]),
        cluster_domain: "cluster.local".into(),
        shim: vec![exe.to_string_lossy().into_owned(), "shim".into()],
        log_dir: "/var/log/pods".into(),
        run_dir: "/run/minik".into(),
        registries: node.private_registry.clone(),
        container_runtime_endpoint: node.container_runtime_endpoint.clone(),
        network: minik_server::NetworkConfig {
            embedded: node.flannel_backend != "none",
            vxlan: node.flannel_backend == "vxlan",
            cluster_cidr: "10.42.0.0/16".into(),
            proxy: !node.disable_kube_proxy,
            dns: true,
            policy: !node.disable_network_policy,
            prefix: node.network_prefix.clone(),
            cni_conf_dir: node.cni_conf_dir.clone(),
            cni_bin_dir: node.cni_bin_dir.clone(),
        },
    })
}

/// The CSR signers' longest certificate from `--kube-controller-manager-arg`s (a year
/// unless `cluster-signing-duration` is given); other keys are refused by name.
fn signing_duration(args: &[String]) -> anyhow::Result<std::time::Duration> {
    let mut duration = std::time::Duration::from_secs(365 * 24 * 3600);
    for arg in args {
        let (key, value) = arg
            .trim_start_matches('-')
            .split_once('=')
            .with_context(|| format!("--kube-controller-manager-arg {arg:?} is not KEY=VALUE"))?;
        if key != "cluster-signing-duration" {
            anyhow::bail!(
                "--kube-controller-manager-arg {key:?} is not supported (known: \
                 cluster-signing-duration)"
            );
        }
        duration = parse_go_duration(value)
            .filter(|d| !d.is_zero())
            .with_context(|| {
                format!("--kube-controller-manager-arg {arg:?}: not a duration like 8760h or 30m")
            })?;
    }
    Ok(duration)
}

/// Whether `--disable` names one of `names`.
fn disabled(disable: &[String], names: &[&str]) -> bool {
    disable.iter().any(|d| names.contains(&d.as_str()))
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let config = config(args)?;
    until_signal(|shutdown| minik_server::run(config, shutdown))??;
    Ok(ExitCode::SUCCESS)
}

/// Run `task` on a multi-threaded runtime with a shutdown token cancelled by SIGTERM or
/// SIGINT.
pub fn until_signal<F, T>(task: impl FnOnce(CancellationToken) -> F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            on_signal.cancel();
        });
        task(shutdown).await
    }))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::signing_duration;
    use std::time::Duration;

    #[test]
    fn controller_manager_args() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(signing_duration(&[]).unwrap(), year);
        let two = signing_duration(&args(&["cluster-signing-duration=2m"])).unwrap();
        assert_eq!(two, Duration::from_secs(120));
        let dashed = signing_duration(&args(&["--cluster-signing-duration=1h"])).unwrap();
        assert_eq!(dashed, Duration::from_secs(3600));
        for bad in [
            "cluster-signing-duration",
            "cluster-signing-duration=0s",
            "leader-elect=false",
        ] {
            let e = signing_duration(&args(&[bad])).unwrap_err().to_string();
            assert!(e.contains("--kube-controller-manager-arg"), "{bad}: {e}");
        }
    }
}
