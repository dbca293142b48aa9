//! Clients for the components inside the server process (controllers, scheduler, simulated
//! nodes): `kube::Client` over the API router as a tower service (no TCP, no TLS), each
//! request carrying the component's identity, so authorization and admission treat it as
//! any other client.

use axum::Router;
use minik_apiserver::authn::{LocalIdentity, UserInfo};

/// A client that is `user` in `groups` (plus system:authenticated), and names itself
/// `agent` (its field manager, as the User-Agent names it).
pub fn client(router: &Router, agent: &str, user: &str, groups: &[&str]) -> kube::Client {
    let agent = http::HeaderValue::from_str(&format!(
        "{agent}/{} (linux) kubernetes/minik",
        minik_version::KUBERNETES_VERSION
    ))
    .unwrap_or_else(|_| http::HeaderValue::from_static("minik"));
    let identity = LocalIdentity(UserInfo {
        name: user.into(),
        uid: String::new(),
        groups: groups
            .iter()
            .map(|g| g.to_string())
            .chain(["system:authenticated".to_string()])
            .collect(),
    });
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut req: http::Request<kube::client::Body>| {
            req.extensions_mut().insert(identity.clone());
            req.headers_mut()
                .insert(http::header::USER_AGENT, agent.clone());
            req
        })
        .service(router.clone());
    kube::Client::new(service, "default")
}
