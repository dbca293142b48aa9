//! The resource metrics API (`metrics.k8s.io/v1beta1`), served in this process as k3s's
//! metrics-server serves it: NodeMetrics (`nodes`) and namespaced PodMetrics (`pods`), get
//! and list with label and field selectors, from the usage kubelets report into a
//! `UsageStore`. It is an aggregated API server of its own: the aggregator serves its
//! group-version while the Local APIService `v1beta1.metrics.k8s.io` exists (made at start),
//! after authenticating and authorizing the request as every other one (reading needs RBAC
//! on `metrics.k8s.io` nodes/pods, which `system:aggregated-metrics-reader` grants).
//! In-process kubelets write the store; the kubelets of agents in other processes are
//! scraped into it (scrape.rs, summary.rs).

mod objects;
pub mod scrape;
mod summary;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use minik_api::ResourceInfo;
use minik_api::usage::UsageStore;
use minik_registry::{ApiError, ListParams, Registry, Selector, WriteParams};
use serde_json::{Value, json};

use crate::status::{Failure, json_response};
use crate::view::View;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

#[derive(Clone)]
struct Served {
    registry: Registry,
    usage: UsageStore,
}

/// The API server of `metrics.k8s.io/v1beta1`, for `Aggregator::serve_local`.
pub fn router(registry: Registry, usage: UsageStore) -> Router {
    let base = format!("/apis/{GROUP}/{VERSION}");
    Router::new()
        .route(&base, get(discovery))
        .route(&format!("{base}/nodes"), get(list_nodes))
        .route(&format!("{base}/nodes/{{name}}"), get(get_node))
        .route(&format!("{base}/pods"), get(list_all_pods))
        .route(
            &format!("{base}/namespaces/{{namespace}}/pods"),
            get(list_pods),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/pods/{{name}}"),
            get(get_pod),
        )
        .method_not_allowed_fallback(not_allowed)
        .fallback(crate::status::not_found_path)
        .with_state(Served { registry, usage })
}

/// The APIService that makes the aggregator serve this group-version (Local: no service).
pub async fn ensure_apiservice(registry: &Registry) -> Result<(), ApiError> {
    let info = minik_api::builtin("apiregistration.k8s.io", "v1", "apiservices");
    let svc = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": format!("{VERSION}.{GROUP}"),
            "labels": {"k8s-app": "metrics-server"}},
        "spec": {"group": GROUP, "version": VERSION,
            "groupPriorityMinimum": 100, "versionPriority": 100}});
    match registry
        .create(info, None, svc, &WriteParams::default())
        .await
    {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn discovery() -> Response {
    let resource = |name: &str, kind: &str, namespaced: bool| {
        json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
            "verbs": ["get", "list"]})
    };
    let body = json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [resource("nodes", "NodeMetrics", false),
            resource("pods", "PodMetrics", true)]});
    json_response(StatusCode::OK, &body, &[])
}

async fn not_allowed() -> Response {
    Failure(ApiError::MethodNotAllowed).into_response()
}

fn core(plural: &str) -> &'static ResourceInfo {
    minik_api::builtin("", "v1", plural)
}

/// The label and field selectors of a list.
fn params(query: &HashMap<String, String>) -> Result<ListParams, ApiError> {
    let selector = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(ListParams {
        label_selector: Selector::labels(selector("labelSelector"))?,
        field_selector: Selector::fields(selector("fieldSelector"))?,
        ..Default::default()
    })
}

/// metrics-server's NotFound: `nodemetrics.metrics.k8s.io "x" not found`.
fn not_found(resource: &str, name: String) -> ApiError {
    ApiError::NotFound {
        group: GROUP.into(),
        resource: resource.into(),
        name,
    }
}

/// An object, or a Table of it when the client asks for one.
fn respond(headers: &HeaderMap, kind: objects::Kind, items: Vec<Value>, one: bool) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let body = match View::from_accept(accept, None) {
        View::Table(..) => objects::table(&items),
        _ if one => items.into_iter().next().unwrap_or_default(),
        _ => objects::list(kind, items),
    };
    json_response(StatusCode::OK, &body, &[])
}

async fn list_nodes(
    State(s): State<Served>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let nodes = s.registry.list(core("nodes"), None, &params(&q)?).await?;
    let items = nodes
        .items
        .iter()
        .filter_map(|n| {
            let name = n.pointer("/metadata/name").and_then(Value::as_str)?;
            Some(objects::node(n, &s.usage.node(name)?))
        })
        .collect();
    Ok(respond(&headers, objects::Kind::Node, items, false))
}

async fn get_node(
    State(s): State<Served>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let missing = || not_found("nodemetrics", name.clone());
    let node = s
        .registry
        .get(core("nodes"), None, &name)
        .await
        .map_err(|_| missing())?;
    let usage = s.usage.node(&name).ok_or_else(missing)?;
    let item = objects::node(&node, &usage);
    Ok(respond(&headers, objects::Kind::Node, vec![item], true))
}

async fn pods(
    s: &Served,
    namespace: Option<&str>,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let pods = s
        .registry
        .list(core("pods"), namespace, &params(q)?)
        .await?;
    let usage = s.usage.pods(namespace);
    let items = pods
        .items
        .iter()
        .filter_map(|p| {
            let ns = p.pointer("/metadata/namespace").and_then(Value::as_str)?;
            let name = p.pointer("/metadata/name").and_then(Value::as_str)?;
            Some(objects::pod(p, usage.get(&(ns.into(), name.into()))?))
        })
        .collect();
    Ok(respond(headers, objects::Kind::Pod, items, false))
}

async fn list_all_pods(
    State(s): State<Served>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    pods(&s, None, &q, &headers).await
}

async fn list_pods(
    State(s): State<Served>,
    Path(namespace): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    pods(&s, Some(&namespace), &q, &headers).await
}

async fn get_pod(
    State(s): State<Served>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let missing = || not_found("podmetrics", format!("{namespace}/{name}"));
    let pod = s
        .registry
        .get(core("pods"), Some(&namespace), &name)
        .await
        .map_err(|_| missing())?;
    let usage = s.usage.pods(Some(&namespace));
    let found = usage
        .get(&(namespace.clone(), name.clone()))
        .ok_or_else(missing)?;
    let item = objects::pod(&pod, found);
    Ok(respond(&headers, objects::Kind::Pod, vec![item], true))
}
