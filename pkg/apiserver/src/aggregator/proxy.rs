//! The proxy to an aggregated API server: one TLS connection per request, the front-proxy
//! client certificate, and the requesting user in X-Remote-User / X-Remote-Group. A local
//! backend gets the request as it is (the user in its extensions).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minik_registry::client::{self, ClientCert};

use super::{Aggregator, Backend, Target};
use crate::status::json_response;

/// Who the proxy is (its client certificate) and whom it speaks for.
#[derive(Clone)]
pub struct ProxyIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub user: String,
    pub groups: Vec<String>,
}

/// Send one request to a backend and return its response as it comes; a remote backend
/// needs the proxy's identity.
pub(super) async fn send(
    backend: &Backend,
    id: Option<&ProxyIdentity>,
    mut req: Request,
) -> Result<Response, String> {
    let target = match &backend.target {
        Target::Local(router) => {
            use tower::ServiceExt;
            return router
                .clone()
                .oneshot(as_received(req))
                .await
                .map_err(|e| match e {});
        }
        Target::Remote(t) => t,
    };
    let id = id.ok_or("the aggregation proxy has no client certificate")?;
    let client = ClientCert {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
    };
    let mut sender = client::connect(target, Some(&client)).await?;
    // The user the request was authenticated as (the proxy's own default otherwise).
    let (user, groups) = match req.extensions().get::<crate::authn::UserInfo>() {
        Some(u) => (u.name.clone(), u.groups.clone()),
        None => (id.user.clone(), id.groups.clone()),
    };
    let headers = req.headers_mut();
    for h in [
        header::AUTHORIZATION.as_str(),
        "x-remote-user",
        "x-remote-group",
    ] {
        headers.remove(h);
    }
    headers.retain_impersonation_free();
    if let Ok(v) = HeaderValue::from_str(&user) {
        headers.insert("x-remote-user", v);
    }
    for g in &groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append("x-remote-group", v);
        }
    }
    if let Ok(host) = HeaderValue::from_str(&target.server_name) {
        headers.insert(header::HOST, host);
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = path
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.map(Body::new))
}

/// The request as the client sent it, with the user it was authenticated as (and nothing
/// else this server's routing attached to it).
fn as_received(req: Request) -> Request {
    let (parts, body) = req.into_parts();
    let mut fresh = Request::new(body);
    *fresh.method_mut() = parts.method;
    *fresh.uri_mut() = parts.uri;
    *fresh.version_mut() = parts.version;
    *fresh.headers_mut() = parts.headers;
    if let Some(user) = parts.extensions.get::<crate::authn::UserInfo>() {
        fresh.extensions_mut().insert(user.clone());
    }
    fresh
}

trait RetainImpersonationFree {
    fn retain_impersonation_free(&mut self);
}

impl RetainImpersonationFree for axum::http::HeaderMap {
    /// Drop `Impersonate-*` headers: the proxy states the user itself.
    fn retain_impersonation_free(&mut self) {
        let names: Vec<_> = self
            .keys()
            .filter(|k| k.as_str().starts_with("impersonate-"))
            .cloned()
            .collect();
        for n in names {
            self.remove(n);
        }
    }
}

pub(super) async fn forward(agg: &Aggregator, backend: &Backend, req: Request) -> Response {
    match send(backend, agg.identity().as_ref(), req).await {
        Ok(resp) => resp,
        Err(e) => unavailable(e),
    }
}

fn unavailable(why: String) -> Response {
    tracing::warn!(error = %why, "aggregated API request failed");
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("error trying to reach service: {why}"),
        "reason": "ServiceUnavailable", "code": 503});
    json_response(StatusCode::SERVICE_UNAVAILABLE, &body, &[]).into_response()
}
