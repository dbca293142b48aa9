//! OpenAPI v2 (`/openapi/v2`): every group-version in one Swagger 2.0 document, as JSON or,
//! when asked for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (what
//! client-go's discovery and `kubectl explain --output=plaintext-openapiv2` ask for), in
//! gnostic's protobuf form.

use std::sync::LazyLock;

use bytes::Bytes;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::group_versions;
use crate::AppState;

/// A document as JSON text and in gnostic protobuf (the `Value` tree it was made from is
/// dropped: it is many times the size of the text).
type Built = std::sync::Arc<(Bytes, Vec<u8>)>;

fn encode(doc: &Value) -> Built {
    let json = Bytes::from(serde_json::to_vec(doc).unwrap_or_default());
    std::sync::Arc::new((json, super::gnostic::document(doc)))
}

/// The document of the built-in resources, built once.
static DOCUMENT: LazyLock<Built> = LazyLock::new(|| encode(&build()));

/// The document with the custom resources of the CRDs served now, kept per generation.
static WITH_CUSTOM: std::sync::Mutex<Option<(u64, Built)>> = std::sync::Mutex::new(None);

fn with_custom(state: &AppState) -> Built {
    let generation = state.registry.api_generation();
    let mut cached = WITH_CUSTOM.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((g, doc)) = cached.as_ref()
        && *g == generation
    {
        return doc.clone();
    }
    let mut doc = build();
    let res = state.registry.resources();
    let builtin = group_versions(&super::builtins());
    for (g, v) in group_versions(&res) {
        if builtin.contains(&(g, v)) {
            continue;
        }
        let custom = super::custom::document(&state.registry, &res, g, v);
        for (part, from) in [("paths", "/paths"), ("definitions", "/components/schemas")] {
            for (k, item) in custom
                .pointer(from)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                doc[part][k] = to_v2(item.clone());
            }
        }
    }
    let built = encode(&doc);
    *cached = Some((generation, built.clone()));
    built
}

pub async fn v2(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let custom = !state.registry.resources().iter().all(|r| !r.custom);
    let doc = tokio::task::spawn_blocking(move || match custom {
        true => with_custom(&state),
        false => DOCUMENT.clone(),
    })
    .await;
    let Ok(doc) = doc else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if accept.contains("com.github.proto-openapi.spec.v2") {
        return (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            doc.1.clone(),
        )
            .into_response();
    }
    super::json_bytes(doc.0.clone())
}

fn build() -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (g, v) in group_versions(&super::builtins()) {
        let doc = super::gv_document(g, v);
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            paths.insert(path.clone(), to_v2(item.clone()));
        }
        for (name, schema) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            definitions
                .entry(name.clone())
                .or_insert_with(|| to_v2(schema.clone()));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": minik_version::KUBERNETES_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

/// Rewrite a v3 fragment as v2: references point at `#/definitions/`, parameters carry
/// their type directly, and `nullable` (not in v2) goes.
fn to_v2(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            m.remove("nullable");
            // v3 wraps a reference with siblings in a one-element allOf; v2 readers (kubectl's
            // among them) want the plain `$ref`.
            let lone_ref = match m.get("allOf").and_then(Value::as_array) {
                Some(all) if all.len() == 1 => all[0].get("$ref").cloned(),
                _ => None,
            };
            if let Some(r) = lone_ref {
                m.remove("allOf");
                m.insert("$ref".into(), r);
            }
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                *r = r.replace("#/components/schemas/", "#/definitions/");
            }
            if m.get("in").is_some()
                && let Some(Value::Object(schema)) = m.remove("schema")
            {
                m.extend(schema);
            }
            for (_, child) in m.iter_mut() {
                *child = to_v2(std::mem::take(child));
            }
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                *child = to_v2(std::mem::take(child));
            }
        }
        _ => {}
    }
    v
}
