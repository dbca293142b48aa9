//! Clients for the components inside the server process (controllers, scheduler, simulated
//! nodes): `kube::Client` over the API router as a tower service (no TCP, no TLS), each
//! request carrying the component's identity, so authorization and admission treat it as
//! any other client.

use axum::Router;
use minik_apiserver::authn::{LocalIdentity, UserInfo};

/// A client that is `user` in `groups` (plus system:authenticated).
pub fn client(router: &Router, user: &str, groups: &[&str]) -> kube::Client {
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
            req
        })
        .service(router.clone());
    kube::Client::new(service, "default")
}
