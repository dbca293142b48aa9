//! The kubelet server: HTTPS on `--kubelet-arg port` (10250) with a serving certificate
//! for the node (tls.rs), every request authenticated and authorized as kubelet does in
//! webhook mode (auth.rs), serving `/healthz`, `/pods` (the pods bound to the node),
//! `/stats/summary` (summary.rs, with the node's counters from host.rs), and
//! `/metrics/resource` and `/metrics` (metrics.rs), `/containerLogs` (logs.rs), and
//! `/exec`, `/attach` and `/portForward` (stream.rs).

pub mod auth;
pub mod host;
pub mod logs;
pub mod metrics;
pub mod stream;
pub mod summary;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use minik_api::usage::UsageStore;
use minik_controllers::Store;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::runtime::{ContainerRuntime, State as ContainerState};
use auth::{Authorizer, User};
use metrics::KubeletMetrics;
pub use tls::{ServingCert, TlsMaterial};

/// Where the kubelet server's certificate comes from.
#[derive(Debug, Clone)]
pub enum Serving {
    /// Issued here with the server CA (the node runs inside the server).
    Cas(Cas),
    /// Given: an agent's, issued through a CSR.
    Given(TlsMaterial),
}

impl Serving {
    /// The certificate, key and client CA to serve with.
    pub fn material(
        &self,
        dir: &std::path::Path,
        node: &str,
        address: IpAddr,
    ) -> Result<TlsMaterial, ServerError> {
        match self {
            Serving::Cas(cas) => serving(dir, cas, node, address),
            Serving::Given(material) => Ok(material.clone()),
        }
    }
}

/// The CAs of the cluster the server needs: the server CA, which signs the node's serving
/// certificate (issued directly while the node runs inside the server; agents get theirs
/// through a CSR), and the client CA, which signs client certificates.
#[derive(Debug, Clone)]
pub struct Cas {
    pub server_ca: minik_auth::CertPair,
    pub client_ca_pem: String,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the kubelet serving certificate: {0}")]
    Cert(#[from] minik_auth::Error),
    #[error("the kubelet server's TLS: {0}")]
    Tls(#[source] std::io::Error),
}

/// Listen on `address:port` (port 0: any free port).
pub async fn bind(address: IpAddr, port: u16) -> Result<TcpListener, ServerError> {
    let addr = SocketAddr::new(address, port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

/// The node's serving certificate (under `dir`) for its name, host name and addresses.
pub fn serving(
    dir: &std::path::Path,
    cas: &Cas,
    node: &str,
    address: IpAddr,
) -> Result<TlsMaterial, ServerError> {
    let mut names = vec![node.to_string()];
    if let Ok(h) = crate::machine::hostname() {
        names.push(h);
    }
    names.push(address.to_string());
    names.push("127.0.0.1".into());
    names.dedup();
    let pair = minik_auth::kubelet_serving(dir, &cas.server_ca, node, &names)?;
    Ok(TlsMaterial {
        cert: tls::ServingCert::from_pem(&pair.cert_pem, &pair.key_pem)
            .map_err(ServerError::Tls)?,
        client_ca_pem: cas.client_ca_pem.clone(),
    })
}

/// What the handlers read.
pub struct Context<R> {
    pub node: String,
    pub runtime: Arc<R>,
    /// The pods bound to the node.
    pub pods: Store<Pod>,
    /// Cpu rates of the pods' containers (stats.rs).
    pub usage: UsageStore,
    /// The data dir (the node's filesystem, images, containers) and the log dir.
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Bytes the runtime's images take.
    pub image_bytes: Box<dyn Fn() -> u64 + Send + Sync>,
    pub started: Timestamp,
    /// Asks the API server as the node (`system:node:<name>`).
    pub authorizer: Authorizer,
    pub metrics: KubeletMetrics,
    pub cpu: host::CpuRate,
}

impl<R: ContainerRuntime> Context<R> {
    /// The Summary now (blocking: reads cgroups, /proc and filesystems).
    pub fn summary(&self) -> summary::Summary {
        let pods = self.pods.state();
        let usage = self.usage.pods(None);
        let mut entries = Vec::new();
        for pod in &pods {
            let uid = crate::local::static_pods::mirror::runtime_uid(pod);
            let Some(stats) = self.runtime.container_stats(&uid) else {
                continue;
            };
            let key = (pod.namespace().unwrap_or_default(), pod.name_any());
            let rates = usage
                .get(&key)
                .map(|u| {
                    u.containers
                        .iter()
                        .map(|(c, u)| (c.clone(), u.cpu_nanocores))
                        .collect()
                })
                .unwrap_or_default();
            entries.push((pod.as_ref(), stats, rates));
        }
        let cpu = host::cpu_nanoseconds();
        let rate = cpu.and_then(|c| self.cpu.observe(c));
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| host::memory(&t));
        summary::build(summary::Inputs {
            node: &self.node,
            started: self.started,
            data_dir: &self.data_dir,
            log_dir: &self.log_dir,
            image_bytes: (self.image_bytes)(),
            node_cpu: (cpu, rate),
            memory,
            pods: entries,
        })
    }
}

/// The user a connection's verified client certificate names.
#[derive(Clone)]
struct CertUser(Option<User>);

/// The routes, behind authentication and authorization.
pub fn router<R: ContainerRuntime>(ctx: Arc<Context<R>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods::<R>))
        .route("/pods/", get(pods::<R>))
        .route(
            "/stats/summary",
            get(stats_summary::<R>).post(stats_summary::<R>),
        )
        .route("/metrics/resource", get(resource_metrics::<R>))
        .route("/metrics", get(kubelet_metrics::<R>))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs::<R>),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(stream::exec::<R>).post(stream::exec::<R>),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(stream::attach::<R>).post(stream::attach::<R>),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(stream::port_forward::<R>).post(stream::port_forward::<R>),
        )
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            authorize::<R>,
        ))
        .with_state(ctx)
}

fn text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Authenticate (client certificate, else bearer token), then authorize every request.
async fn authorize<R: ContainerRuntime>(
    State(ctx): State<Arc<Context<R>>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    ctx.metrics.request(req.method().as_str(), &path);
    let from_cert = req.extensions().get::<CertUser>().and_then(|u| u.0.clone());
    let user = match from_cert {
        Some(u) => Some(u),
        None => match bearer(&req) {
            Some(token) => match ctx.authorizer.token_user(&token).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(error = %e, "reviewing a token");
                    None
                }
            },
            None => None,
        },
    };
    let Some(mut user) = user else {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized".into());
    };
    if !user.groups.iter().any(|g| g == "system:authenticated") {
        user.groups.push("system:authenticated".into());
    }
    let verb = auth::verb(req.method());
    let subresources = auth::subresources(&path);
    for sub in &subresources {
        match ctx.authorizer.allowed(&user, verb, sub).await {
            Ok(true) => return next.run(req).await,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(user = user.name, verb, subresource = sub, error = %e,
                    "authorization error");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "Authorization error (user={}, verb={verb}, resource=nodes, \
                         subresource={sub})",
                        user.name
                    ),
                );
            }
        }
    }
    tracing::debug!(user = user.name, verb, ?subresources, "forbidden");
    text(
        StatusCode::FORBIDDEN,
        auth::forbidden(&user.name, verb, &subresources),
    )
}

fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

async fn pods<R: ContainerRuntime>(State(ctx): State<Arc<Context<R>>>) -> Response {
    let mut items: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .map(|p| p.as_ref().clone())
        .collect();
    items.sort_by_key(|p| (p.namespace(), p.name_any()));
    json(&serde_json::json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items,
    }))
}

async fn summary_of<R: ContainerRuntime>(ctx: Arc<Context<R>>) -> Option<summary::Summary> {
    tokio::task::spawn_blocking(move || ctx.summary())
        .await
        .map_err(|e| tracing::warn!(error = %e, "computing the stats summary"))
        .ok()
}

async fn stats_summary<R: ContainerRuntime>(State(ctx): State<Arc<Context<R>>>) -> Response {
    match summary_of(ctx).await {
        Some(s) => json(&s),
        None => text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Error".into()),
    }
}

async fn resource_metrics<R: ContainerRuntime>(State(ctx): State<Arc<Context<R>>>) -> Response {
    let s = summary_of(ctx).await;
    prometheus(metrics::resource_text(s.as_ref()))
}

async fn kubelet_metrics<R: ContainerRuntime>(State(ctx): State<Arc<Context<R>>>) -> Response {
    let uids = ctx.runtime.pods();
    let running = uids
        .iter()
        .filter_map(|u| ctx.runtime.pod_state(u))
        .flat_map(|p| p.init_containers.into_iter().chain(p.containers))
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
        .count();
    ctx.metrics.running(uids.len(), running);
    prometheus(ctx.metrics.encode())
}

fn prometheus(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Serve `ctx` over TLS on `listener` until `stop`.
pub async fn serve<R: ContainerRuntime>(
    listener: TcpListener,
    material: TlsMaterial,
    ctx: Arc<Context<R>>,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    let config = tls::server_config(&material).map_err(ServerError::Tls)?;
    let verifier = tls::client_verifier(&material.client_ca_pem).map_err(ServerError::Tls)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let app = router(ctx);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "kubelet server listening");
    }
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet server: accept failed");
                    continue;
                }
            },
        };
        let (acceptor, app, verifier, stop) = (
            acceptor.clone(),
            app.clone(),
            verifier.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "kubelet server: TLS handshake failed");
                    return;
                }
            };
            let chain: Vec<CertificateDer<'static>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let user = cert_user(verifier.as_ref(), &chain);
            let app = app.layer(axum::Extension(CertUser(user)));
            let service = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "kubelet server: connection error");
                },
                () = stop.cancelled() => {}
            }
        });
    }
}

fn cert_user(verifier: &dyn ClientCertVerifier, chain: &[CertificateDer<'static>]) -> Option<User> {
    tls::verified_user(verifier, chain).map(|(name, groups)| User {
        name,
        uid: String::new(),
        groups,
        extra: Vec::new(),
    })
}
