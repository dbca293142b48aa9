//! API aggregation (apiregistration.k8s.io/v1 APIService): requests for a group-version an
//! APIService names are proxied to its service over TLS with the front-proxy client
//! certificate and the X-Remote-User/X-Remote-Group headers; a controller checks each
//! service (the Available condition) and keeps its discovery document, which /apis and
//! aggregated discovery merge in.

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

/// Where an aggregated group-version is served.
#[derive(Debug, Clone)]
pub struct Backend {
    pub target: minik_registry::client::TlsTarget,
    /// The backend's APIResourceList for its group-version, from the last check.
    pub resources: Option<Value>,
}

/// The aggregated group-versions, shared by the proxy, discovery and the controller.
#[derive(Clone, Default)]
pub struct Aggregator {
    backends: Arc<RwLock<HashMap<(String, String), Backend>>>,
    identity: Arc<RwLock<Option<ProxyIdentity>>>,
}

impl Aggregator {
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

    fn replace(&self, all: HashMap<(String, String), Backend>) {
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
