//! API aggregation (apiregistration.k8s.io/v1 APIService): requests for a group-version an
//! APIService names are proxied to its service over TLS with the front-proxy client
//! certificate and the X-Remote-User/X-Remote-Group headers; a controller checks each
//! service (the Available condition) and keeps its discovery document, which /apis and
//! aggregated discovery merge in.
//!
//! An API server of this process (the resource metrics API) registers as a local backend:
//! a Local APIService (one without a service) for its group-version is then served by it,
//! in-process, after the same authentication and authorization as every request.

mod controller;
mod proxy;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use crate::AppState;

pub use controller::run;
pub use proxy::ProxyIdentity;

/// An aggregated API server: a service reached over TLS, or a router of this process.
#[derive(Clone)]
pub enum Target {
    Remote(minik_registry::client::TlsTarget),
    Local(axum::Router),
}

impl Target {
    /// Where it is, for messages.
    fn describe(&self) -> String {
        match self {
            Target::Remote(t) => t.addr.to_string(),
            Target::Local(_) => "the in-process server".into(),
        }
    }
}

/// Where an aggregated group-version is served.
#[derive(Clone)]
pub struct Backend {
    pub target: Target,
    /// The backend's APIResourceList for its group-version, from the last check.
    pub resources: Option<Value>,
}

type GroupVersion = (String, String);

/// The aggregated group-versions, shared by the proxy, discovery and the controller.
#[derive(Clone, Default)]
pub struct Aggregator {
    backends: Arc<RwLock<HashMap<GroupVersion, Backend>>>,
    identity: Arc<RwLock<Option<ProxyIdentity>>>,
    /// In-process API servers by the group-version they serve.
    local: Arc<RwLock<HashMap<GroupVersion, axum::Router>>>,
}

impl Aggregator {
    /// Serve `group`/`version` with `router` (in this process) while a Local APIService
    /// names it.
    pub fn serve_local(&self, group: &str, version: &str, router: axum::Router) {
        let mut local = self.local.write().unwrap_or_else(|e| e.into_inner());
        local.insert((group.to_string(), version.to_string()), router);
    }

    fn local(&self, group: &str, version: &str) -> Option<axum::Router> {
        let local = self.local.read().unwrap_or_else(|e| e.into_inner());
        local
            .get(&(group.to_string(), version.to_string()))
            .cloned()
    }

    /// The client certificate the proxy presents to backends.
    pub fn set_identity(&self, id: ProxyIdentity) {
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) = Some(id);
    }

    fn identity(&self) -> Option<ProxyIdentity> {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn backend(&self, group: &str, version: &str) -> Option<Backend> {
        let b = self.backends.read().unwrap_or_else(|e| e.into_inner());
        b.get(&(group.to_string(), version.to_string())).cloned()
    }

    fn replace(&self, all: HashMap<GroupVersion, Backend>) {
        *self.backends.write().unwrap_or_else(|e| e.into_inner()) = all;
    }

    /// (group, version, APIResourceList) of every available aggregated group-version.
    pub fn discovery(&self) -> Vec<(String, String, Value)> {
        let b = self.backends.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, String, Value)> = b
            .iter()
            .filter_map(|((g, v), be)| Some((g.clone(), v.clone(), be.resources.clone()?)))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

/// Send requests under an aggregated `/apis/<group>/<version>` to its backend.
pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let mut parts = path.trim_start_matches('/').splitn(4, '/');
    if let (Some("apis"), Some(group), Some(version)) = (parts.next(), parts.next(), parts.next())
        && let Some(backend) = state.aggregator.backend(group, version)
    {
        return proxy::forward(&state.aggregator, &backend, req).await;
    }
    next.run(req).await
}
