//! OpenAPI v3: the root index and one document per group-version with every path and
//! operation, tagged with x-kubernetes-group-version-kind and x-kubernetes-action, and the
//! query parameters each operation takes (kubectl checks `fieldValidation` there before it
//! relies on server-side validation). OpenAPI v2 (one document, JSON or gnostic protobuf)
//! is made from the same documents (v2.rs).

mod custom;
mod gnostic;
mod v2;

pub use v2::v2;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minik_api::{ResourceInfo, all};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::status::json_response;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Group-versions served, each once.
fn group_versions(res: &[&'static ResourceInfo]) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for r in res {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

pub async fn root(State(state): State<AppState>) -> Response {
    let mut paths = Map::new();
    let hash = format!(
        "{}-{}",
        minik_version::MINIK_VERSION,
        state.registry.api_generation()
    );
    for (g, v) in group_versions(&state.registry.resources()) {
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json_response(StatusCode::OK, &json!({"paths": paths}), &[])
}

/// Documents are built once per group-version and kept as JSON text: as `Value` trees they
/// took tens of MB, kept for the life of the server after one `kubectl apply`.
static DOCUMENTS: LazyLock<Mutex<HashMap<String, Bytes>>> = LazyLock::new(Default::default);

pub async fn document(State(state): State<AppState>, Path(rest): Path<String>) -> Response {
    let res = state.registry.resources();
    let found = group_versions(&res)
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == rest.trim_matches('/'));
    match found {
        Some((g, v)) if group_versions(&builtins()).contains(&(g, v)) => {
            json_bytes(cached_document(g, v))
        }
        Some((g, v)) => {
            let doc = custom::document(&state.registry, &res, g, v);
            json_response(StatusCode::OK, &doc, &[])
        }
        None => {
            crate::status::not_found_path(format!("/openapi/v3/{rest}").parse().unwrap_or_default())
                .await
        }
    }
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &ResourceInfo, action: &str, params: &[&str]) -> Value {
    json!({
        "operationId": format!("{action}{}", r.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": params.iter().map(|p| query(p, p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK"}},
    })
}

const WRITE: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "pretty"];
const LIST: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];

/// The document of one group-version as JSON, built once and kept.
fn cached_document(group: &str, version: &str) -> Bytes {
    let mut docs = DOCUMENTS.lock().unwrap_or_else(|e| e.into_inner());
    docs.entry(gv_path(group, version))
        .or_insert_with(|| {
            Bytes::from(serde_json::to_vec(&gv_document(group, version)).unwrap_or_default())
        })
        .clone()
}

/// A 200 response with a JSON body already encoded.
fn json_bytes(body: Bytes) -> Response {
    use axum::response::IntoResponse;
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The built-in resources.
fn builtins() -> Vec<&'static ResourceInfo> {
    all().iter().collect()
}

fn gv_document(group: &str, version: &str) -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": minik_version::KUBERNETES_VERSION},
        "paths": paths(&builtins(), group, version),
        "components": {"schemas": schemas(group, version)},
    })
}

/// The paths and operations of a group-version's resources.
fn paths(res: &[&'static ResourceInfo], group: &str, version: &str) -> Map<String, Value> {
    let base = format!("/{}", gv_path(group, version));
    let mut paths = Map::new();
    for r in res
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let mut ops = Map::new();
        ops.insert("get".into(), operation(r, "list", LIST));
        if r.verbs.contains(&"create") {
            ops.insert("post".into(), operation(r, "post", WRITE));
            ops.insert("delete".into(), operation(r, "deletecollection", LIST));
        }
        paths.insert(collection.clone(), Value::Object(ops));
        let mut item = Map::new();
        item.insert("get".into(), operation(r, "get", &["pretty"]));
        if r.verbs.contains(&"update") {
            item.insert("put".into(), operation(r, "put", WRITE));
            item.insert(
                "patch".into(),
                operation(r, "patch", &[WRITE, &["force"]].concat()),
            );
            item.insert(
                "delete".into(),
                operation(
                    r,
                    "delete",
                    &["dryRun", "gracePeriodSeconds", "propagationPolicy"],
                ),
            );
        }
        paths.insert(format!("{collection}/{{name}}"), Value::Object(item));
        if r.subresources.contains(&"status") {
            let mut status = Map::new();
            status.insert("get".into(), operation(r, "get", &["pretty"]));
            status.insert("put".into(), operation(r, "put", WRITE));
            status.insert("patch".into(), operation(r, "patch", WRITE));
            paths.insert(
                format!("{collection}/{{name}}/status"),
                Value::Object(status),
            );
        }
    }
    paths
}

/// The schemas of a group-version's kinds and of everything they refer to, each kind tagged
/// with x-kubernetes-group-version-kind (what `kubectl explain` looks for).
fn schemas(group: &str, version: &str) -> Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for r in all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let reference = (r.schema)(&mut generator);
        let name = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .map(str::to_string);
        if let Some(name) = name {
            kinds.push((name, r));
        }
    }
    let mut defs = generator.take_definitions(true);
    minik_api::schema::annotate(&mut defs);
    for (name, r) in kinds {
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": r.group, "version": r.version, "kind": r.kind}]),
            );
        }
    }
    defs
}
