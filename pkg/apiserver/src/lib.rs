//! The Kubernetes API server: HTTP routing, discovery, the generic resource handlers, watch
//! streams, and serving over TLS. `app()` builds the router so tests (and in-process clients)
//! can call it without a socket.

pub mod admission;
pub mod aggregator;
pub mod audit;
pub mod authn;
pub mod authz;
mod certificates;
mod discovery;
pub mod encrypt;
mod filters;
mod handlers;
mod health;
mod metrics;
mod openapi;
pub mod overload;
mod owners;
mod path;
pub mod pod_logs;
pub mod proxy;
pub mod resource_metrics;
mod status;
mod table;
mod tls;
mod view;
pub mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use minik_registry::Registry;

pub use tls::{TlsFiles, client_verifier, serve_tls};

/// What every handler shares.
/// What every request handler shares: cloned once per middleware and handler, so it is one
/// `Arc` (fields are set through `DerefMut` before serving starts).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppParts {
        Arc::make_mut(&mut self.0)
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct AppParts {
    pub registry: Registry,
    pub started: Arc<std::sync::atomic::AtomicBool>,
    pub metrics: Arc<metrics::Metrics>,
    /// Metrics of other components of the process (controllers, scheduler), appended to
    /// /metrics: each gives Prometheus text.
    pub more_metrics: Vec<Arc<dyn Fn() -> String + Send + Sync>>,
    pub aggregator: aggregator::Aggregator,
    /// How pods/log reaches kubelets.
    pub kubelet: proxy::kubelet::KubeletClient,
    pub authenticator: authn::Authenticator,
    pub authorization: authz::Mode,
    pub limits: overload::Limits,
    /// The audit log, when `--audit-policy-file` is set.
    pub audit: Option<Arc<audit::Auditor>>,
    /// The encryption configuration file (`--secrets-encryption`).
    pub encryption_config: Option<Arc<std::path::PathBuf>>,
    /// One key rotation at a time.
    pub encryption_lock: Arc<tokio::sync::Mutex<()>>,
    /// The CA bundle served at /cacerts, to anyone, as k3s's supervisor does: agents fetch
    /// it before they trust the server and check it against their token's hash.
    pub cacerts: Option<Arc<String>>,
}

impl AppState {
    pub fn new(registry: Registry) -> Self {
        AppState(Arc::new(AppParts {
            registry,
            started: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            metrics: Arc::new(metrics::Metrics::default()),
            more_metrics: Vec::new(),
            aggregator: aggregator::Aggregator::default(),
            kubelet: proxy::kubelet::KubeletClient::default(),
            authenticator: authn::Authenticator::default(),
            authorization: authz::Mode::default(),
            limits: overload::Limits::default(),
            audit: None,
            encryption_config: None,
            encryption_lock: Arc::default(),
            cacerts: None,
        }))
    }
}

/// GET /cacerts: the server CA bundle (PEM), or 404 when the server has none to give.
async fn cacerts(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &state.cacerts {
        Some(pem) => (
            [(http::header::CONTENT_TYPE, "application/x-pem-file")],
            pem.as_str().to_owned(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// The whole API as one router.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::core_versions))
        .route("/apis", get(discovery::groups))
        .route("/metrics", get(metrics::serve))
        .route("/healthz", get(health::check))
        .route("/livez", get(health::check))
        .route("/readyz", get(health::check))
        .route("/healthz/{*check}", get(health::one))
        .route("/livez/{*check}", get(health::one))
        .route("/readyz/{*check}", get(health::one))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::root))
        .route("/openapi/v3/{*rest}", get(openapi::document))
        .route("/api/{version}", get(discovery::core_resources))
        .route("/apis/{group}", get(discovery::group))
        .route("/apis/{group}/{version}", get(discovery::group_resources))
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            axum::routing::post(authn::self_subject_review),
        )
        .route(
            "/.well-known/openid-configuration",
            get(authn::openid_configuration),
        )
        .route("/openid/v1/jwks", get(authn::jwks))
        .route("/v1-minik/secrets-encrypt/status", get(encrypt::status))
        .route(
            "/v1-minik/secrets-encrypt/rotate",
            axum::routing::post(encrypt::rotate),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            axum::routing::post(authz::reviews::self_subject_access),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            axum::routing::post(authz::reviews::subject_access),
        )
        .route(
            "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews",
            axum::routing::post(authz::reviews::local_subject_access),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            axum::routing::post(authz::reviews::self_subject_rules),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            axum::routing::post(authz::reviews::token),
        )
        .route("/api/{version}/{*rest}", axum::routing::any(handlers::core))
        .route(
            "/apis/{group}/{version}/{*rest}",
            axum::routing::any(handlers::grouped),
        )
        .fallback(status::not_found_path)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            aggregator::route,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authz::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            overload::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authn::middleware,
        ))
        // Outside authentication and authorization: a joining agent has no credential the
        // server would take before it trusts the server's CA.
        .route("/cacerts", get(cacerts))
        .with_state(state);
    filters::wrap(routes)
}
