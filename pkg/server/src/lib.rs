//! `minik server`: open the datastore, make or load the certificates, create what a cluster
//! starts with, serve the API over HTTPS and write the admin kubeconfig; stop on one token.

pub mod agent;
mod bootstrap;
mod config;
pub mod deploy;
mod flowcontrol;
pub mod join;
pub mod kernel;
pub mod local;
pub mod network;
mod rbac_defaults;

pub use agent::AgentConfig;
pub use config::{AuditConfig, Config};
pub use minik_admission::Options as AdmissionOptions;
pub use minik_apiserver::audit::Rotation as AuditRotation;
pub use minik_apiserver::authn::oidc_config::OidcFlags;
pub use minik_apiserver::authz::Mode as AuthorizationMode;
pub use minik_apiserver::webhook::WebhookClient as ApiClient;
pub use network::NetworkConfig;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use minik_apiserver::{AppState, TlsFiles, app, serve_tls};
use minik_registry::Registry;
use minik_store::StoreOptions;
use tokio_util::sync::CancellationToken;

/// A time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("datastore: {0}")]
    Store(#[from] minik_store::Error),
    #[error("certificates: {0}")]
    Pki(#[from] minik_auth::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("creating the cluster's first objects: {0}")]
    Bootstrap(#[from] minik_registry::ApiError),
    #[error("authentication: {0}")]
    Authentication(String),
    #[error("authorization: {0}")]
    Authorization(String),
    #[error("admission: {0}")]
    Admission(String),
    #[error("audit: {0}")]
    Audit(String),
    #[error("secrets encryption: {0}")]
    Encryption(String),
    #[error("node: {0}")]
    Agent(#[from] agent::AgentError),
    #[error("join tokens: {0}")]
    Token(#[from] join::TokenError),
}

/// Run a server until `shutdown` is cancelled.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    // Token files are read before anything is made.
    config.token =
        join::flag_or_file("--token", config.token.take(), config.token_file.as_deref())?;
    config.agent_token = join::flag_or_file(
        "--agent-token",
        config.agent_token.take(),
        config.agent_token_file.as_deref(),
    )?;
    join::check_flags(config.token.as_deref(), config.agent_token.as_deref())?;
    if let Some(agent) = &config.agent {
        agent.check()?;
    }
    minik_store::private_dir(&config.data_dir)?;
    let store = minik_store::open(
        &config.datastore_endpoint,
        &config.data_dir,
        StoreOptions::default(),
    )
    .await?;
    let result = serve(&config, store.clone(), shutdown).await;
    store.close().await;
    tracing::info!("minik server stopped");
    result
}

/// Sweep expired events every minute (or every TTL, when shorter) until shutdown.
async fn expire_events(registry: Registry, ttl: Duration, shutdown: CancellationToken) {
    let mut tick =
        tokio::time::interval(ttl.clamp(Duration::from_secs(1), Duration::from_secs(60)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match registry.expire_events(ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired events"),
            Err(e) => tracing::warn!(error = %e, "expiring events"),
        }
    }
}

async fn serve(
    config: &Config,
    store: std::sync::Arc<dyn minik_store::Backend>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // Settings that can be wrong are checked before anything is made.
    let webhook = |path: &Option<PathBuf>| {
        path.as_deref()
            .map(minik_apiserver::webhook::WebhookClient::from_kubeconfig)
            .transpose()
    };
    let authz_webhook = webhook(&config.authorization_webhook_config_file)
        .map_err(|e| Error::Authorization(format!("--authorization-webhook-config-file: {e}")))?
        .map(minik_apiserver::authz::webhook::WebhookAuthorizer::new);
    let authorization = AuthorizationMode::parse(&config.authorization_mode, authz_webhook)
        .map_err(Error::Authorization)?;
    let token_webhook = webhook(&config.authentication_token_webhook_config_file)
        .map_err(|e| {
            Error::Authentication(format!("--authentication-token-webhook-config-file: {e}"))
        })?
        .map(|c| {
            std::sync::Arc::new(minik_apiserver::authn::webhook::TokenWebhook::new(
                c,
                config.authentication_token_webhook_cache_ttl,
            ))
        });
    let mut issuers = match &config.authentication_config {
        Some(p) => {
            minik_apiserver::authn::oidc_config::from_file(p).map_err(Error::Authentication)?
        }
        None => Vec::new(),
    };
    if let Some(i) = minik_apiserver::authn::oidc_config::from_flags(&config.oidc)
        .map_err(Error::Authentication)?
    {
        if config.authentication_config.is_some() {
            return Err(Error::Authentication(
                "--authentication-config and --oidc-* flags are mutually exclusive".into(),
            ));
        }
        issuers.push(i);
    }
    let oidc = std::sync::Arc::new(
        issuers
            .into_iter()
            .map(minik_apiserver::authn::oidc::JwtAuthenticator::new)
            .collect(),
    );
    let tokens = match &config.token_auth_file {
        Some(path) => {
            minik_apiserver::authn::load_token_file(path).map_err(Error::Authentication)?
        }
        None => Default::default(),
    };
    let admission = minik_admission::Chain::new(&config.admission).map_err(Error::Admission)?;
    let server_plugins: Vec<&'static str> = minik_admission::SERVER_PLUGINS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| admission.server_plugin(p))
        .collect();
    let audit = match &config.audit {
        Some(a) => {
            let log = a.log_path.clone().unwrap_or_else(|| {
                config
                    .data_dir
                    .join("server")
                    .join("logs")
                    .join("audit.log")
            });
            Some(
                minik_apiserver::audit::Auditor::new(&a.policy_file, &log, a.rotation)
                    .map_err(Error::Audit)?,
            )
        }
        None => None,
    };
    let mut sans = config.tls_san.clone();
    sans.push(config.service_cidr.nth(1).to_string());
    sans.push(bootstrap::advertise_address(config.bind_address).to_string());
    let pki = minik_auth::Pki::load_or_create(&config.data_dir.join("tls"), &sans)?;
    let join_tokens = join::join_tokens(
        &config.data_dir,
        config.token.as_deref(),
        config.agent_token.as_deref(),
        &pki.server_ca.cert_pem,
    )?;
    let mut tokens = tokens;
    join::authenticate(&mut tokens, &join_tokens);
    let signer = std::sync::Arc::new(
        minik_apiserver::authn::serviceaccount::TokenSigner::from_pem(&pki.service_key_pem)
            .map_err(Error::Authentication)?,
    );
    // Under RBAC, nobody grants what they do not hold; token secrets get their tokens.
    let admission = std::sync::Arc::new(minik_apiserver::admission::ServerAdmission {
        inner: admission,
        rbac: authorization.has_rbac(),
        tokens: Some((signer.clone(), pki.server_ca.cert_pem.clone())),
        authorization: (!authorization.allows_everything()).then(|| authorization.clone()),
        plugins: server_plugins,
    });
    let registry = Registry::new(store)
        .with_service_cidr(config.service_cidr)
        .with_admission(admission);
    let encryption_config = config.data_dir.join("server/cred/encryption-config.json");
    let encryption = minik_apiserver::encrypt::load(&encryption_config, config.secrets_encryption)
        .map_err(Error::Encryption)?;
    let encryption_config = encryption
        .is_some()
        .then(|| std::sync::Arc::new(encryption_config));
    registry.set_encryption(encryption);
    let dns = config.cluster.dns.then_some(config.cluster.cluster_dns);
    bootstrap::run(&registry, config.service_cidr, dns).await?;
    join::publish(&registry, &config.cluster, &pki.client_ca.cert_pem).await?;
    rbac_defaults::ensure(&registry).await?;
    minik_apiserver::resource_metrics::ensure_apiservice(&registry).await?;
    flowcontrol::ensure(&registry).await?;
    // CRDs are served before the first request, and followed from then on.
    registry.sync_crds().await;
    let crds = registry.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = crds.run_crd_controller() => {}
            () = stop.cancelled() => {}
        }
    });
    let protection = registry.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = protection.run_protection_controller() => {}
            () = stop.cancelled() => {}
        }
    });
    let addr = SocketAddr::new(config.bind_address, config.https_listen_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let local = listener.local_addr().map_err(Error::Serve)?;
    let advertise = bootstrap::advertise_address(config.bind_address);
    bootstrap::endpoints(&registry, advertise, local.port()).await?;
    let kubeconfig =
        minik_auth::admin_kubeconfig(&pki, &format!("https://127.0.0.1:{}", local.port()));
    minik_auth::write_mode(
        &config.write_kubeconfig,
        kubeconfig.as_bytes(),
        config.write_kubeconfig_mode,
    )?;
    tracing::info!(address = %local, kubeconfig = %config.write_kubeconfig.display(), "minik server is ready");
    tracing::info!(
        "use it with `minik kubectl get nodes` (or `KUBECONFIG={} kubectl get nodes`); join \
         agents with `minik agent --server https://{}:{} --token-file {}`",
        config.write_kubeconfig.display(),
        advertise,
        local.port(),
        join_tokens.join_file.display()
    );
    let files = TlsFiles {
        cert_pem: &pki.serving.cert_pem,
        key_pem: &pki.serving.key_pem,
        client_ca_pem: &pki.client_ca.cert_pem,
    };
    tokio::spawn(expire_events(
        registry.clone(),
        config.event_ttl,
        shutdown.clone(),
    ));
    // Node and pod usage, reported by the kubelets of this process, served as the resource
    // metrics API by an in-process aggregated API server.
    let usage = minik_api::usage::UsageStore::default();
    let metrics_api = minik_apiserver::resource_metrics::router(registry.clone(), usage.clone());
    let mut state = AppState::new(registry);
    state.cacerts = Some(std::sync::Arc::new(pki.server_ca.cert_pem.clone()));
    state.aggregator.serve_local(
        minik_apiserver::resource_metrics::GROUP,
        minik_apiserver::resource_metrics::VERSION,
        metrics_api,
    );
    state.authorization = authorization;
    state.audit = audit;
    state.encryption_config = encryption_config;
    state.limits = minik_apiserver::overload::Limits::new(
        config.max_requests_inflight,
        config.max_mutating_requests_inflight,
    );
    state.authenticator = minik_apiserver::authn::Authenticator {
        tokens: std::sync::Arc::new(tokens),
        client_ca: Some(
            minik_apiserver::client_verifier(&pki.client_ca.cert_pem)
                .map_err(|e| Error::Authentication(e.to_string()))?,
        ),
        service_accounts: Some(signer),
        request_header: Some(std::sync::Arc::new(
            minik_apiserver::authn::requestheader::RequestHeader::new(
                minik_apiserver::client_verifier(&pki.request_header_ca.cert_pem)
                    .map_err(|e| Error::Authentication(e.to_string()))?,
                config.requestheader_allowed_names.clone(),
            ),
        )),
        webhook: token_webhook,
        oidc,
    };
    // Aggregated API servers are reached as the front proxy, for the admin.
    state
        .aggregator
        .set_identity(minik_apiserver::aggregator::ProxyIdentity {
            cert_pem: pki.proxy_client.cert_pem.clone(),
            key_pem: pki.proxy_client.key_pem.clone(),
            user: "system:admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        });
    // pods/log and the streaming subresources reach kubelets with their own certificate.
    state
        .kubelet
        .set(minik_apiserver::proxy::kubelet::KubeletIdentity {
            cert_pem: pki.kubelet_client.cert_pem.clone(),
            key_pem: pki.kubelet_client.key_pem.clone(),
            ca_pem: pki.server_ca.cert_pem.clone(),
        });
    // Agents' kubelets (in other processes) are scraped into the usage store, as k3s's
    // metrics-server scrapes every kubelet.
    let scraper = minik_apiserver::resource_metrics::scrape::Scraper {
        registry: state.registry.clone(),
        kubelet: state.kubelet.clone(),
        usage: usage.clone(),
    };
    tokio::spawn(minik_apiserver::resource_metrics::scrape::run(
        scraper,
        shutdown.clone(),
    ));
    let aggregation = state.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = minik_apiserver::aggregator::run(aggregation) => {}
            () = stop.cancelled() => {}
        }
    });
    let controller_metrics = minik_controllers::Metrics::default();
    let metrics_for_nodes = controller_metrics.clone();
    let metrics_for_agent = controller_metrics.clone();
    let m = controller_metrics.clone();
    state
        .more_metrics
        .push(std::sync::Arc::new(move || m.encode()));
    let scheduler_metrics = minik_scheduler::Metrics::default();
    let m = scheduler_metrics.clone();
    state
        .more_metrics
        .push(std::sync::Arc::new(move || m.encode()));
    let router = app(state);
    if config.controllers {
        let client = local::client(
            &router,
            "kube-controller-manager",
            "system:kube-controller-manager",
            &[],
        );
        let options = minik_controllers::Options {
            identity: bootstrap::leader_identity(),
            workers: 5,
            cluster_cidr: config.cluster_cidr,
            root_ca: pki.server_ca.cert_pem.clone(),
            data_dir: config.data_dir.clone(),
            // Client certificates from the CA the API server trusts for clients (as k3s).
            signing: Some(minik_controllers::certificates::SigningCas {
                client: minik_controllers::certificates::Ca {
                    cert_pem: pki.client_ca.cert_pem.clone(),
                    key_pem: pki.client_ca.key_pem.clone(),
                },
                server: minik_controllers::certificates::Ca {
                    cert_pem: pki.server_ca.cert_pem.clone(),
                    key_pem: pki.server_ca.key_pem.clone(),
                },
                duration: config.cluster_signing_duration,
            }),
        };
        tokio::spawn(minik_controllers::run(
            client,
            options,
            controller_metrics,
            shutdown.clone(),
        ));
        // ServiceLB (k3s's klipper-lb without its pods): LoadBalancer services get the
        // nodes' addresses; each node's service proxy serves their ports.
        let client = local::client(
            &router,
            "minik-servicelb",
            "system:admin",
            &["system:masters"],
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = minik_network::proxy::run_servicelb(client, stop).await {
                tracing::error!(error = %e, "ServiceLB stopped");
            }
        });
    }
    // Manifests (embedded defaults and the user's) applied as the admin, as k3s's deploy
    // controller does.
    let client = local::client(&router, "minik-deploy", "system:admin", &["system:masters"]);
    tokio::spawn(deploy::run(
        client,
        deploy::DeployOptions {
            dir: config.data_dir.join("server").join("manifests"),
            disabled: config.disable.clone(),
        },
        shutdown.clone(),
    ));
    if config.scheduler {
        let client = local::client(&router, "kube-scheduler", "system:kube-scheduler", &[]);
        tokio::spawn(minik_scheduler::run(
            client,
            bootstrap::leader_identity(),
            scheduler_metrics,
            shutdown.clone(),
        ));
    }
    let agent_failed = agent::Failure::default();
    if let Some(a) = &config.agent {
        agent::start(
            a,
            &config.data_dir,
            &router,
            agent::Shared {
                metrics: metrics_for_agent,
                usage: usage.clone(),
                cas: minik_kubelet::server::Cas {
                    server_ca: pki.server_ca.clone(),
                    client_ca_pem: pki.client_ca.cert_pem.clone(),
                },
            },
            shutdown.clone(),
            agent_failed.clone(),
        )?;
    }
    if config.simulated_nodes > 0 {
        let nodes = router.clone();
        let count = config.simulated_nodes;
        let stop = shutdown.clone();
        let metrics = metrics_for_nodes;
        tokio::spawn(async move {
            let client_for = |name: &str| {
                local::client(
                    &nodes,
                    "kubelet",
                    &format!("system:node:{name}"),
                    &["system:nodes"],
                )
            };
            if let Err(e) = minik_kubelet::sim::run(count, client_for, metrics, usage, stop).await {
                tracing::error!(error = %e, "simulated nodes");
            }
        });
    }
    let served = serve_tls(listener, files, router, shutdown).await;
    // Give in-flight responses a moment to finish writing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Some(e) = agent_failed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(e.into());
    }
    served.map_err(Error::Serve)
}
