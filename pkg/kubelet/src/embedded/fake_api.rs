//! Tests only: a kube::Client over a tower service that answers GETs from a fixed set of
//! objects by path and 404 (a NotFound Status) otherwise, as the API server would.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use kube::client::Body;
use serde_json::{Value, json};

/// A client whose GETs of `objects`' paths return them.
pub fn client(objects: Vec<(&str, Value)>) -> kube::Client {
    let objects: Arc<HashMap<String, Value>> = Arc::new(
        objects
            .into_iter()
            .map(|(p, v)| (p.to_string(), v))
            .collect(),
    );
    let service = tower::service_fn(move |req: http::Request<Body>| {
        let objects = objects.clone();
        async move {
            let path = req.uri().path().to_string();
            let (status, body) = match objects.get(&path) {
                Some(obj) if req.method() == http::Method::GET => (200, obj.clone()),
                _ => {
                    let name = path.rsplit('/').next().unwrap_or_default().to_string();
                    (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": format!("{name:?} not found"), "reason": "NotFound", "code": 404}),
                    )
                }
            };
            let response = http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    kube::Client::new(service, "default")
}
