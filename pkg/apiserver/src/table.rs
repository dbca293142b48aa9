//! Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`.

use minik_api::ResourceInfo;
use serde_json::{Value, json};

/// Whether the client asked for a Table.
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("as=Table"))
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

fn row(obj: &Value, include: &str) -> Value {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .cloned()
        .unwrap_or(Value::Null);
    let mut r = json!({"cells": [name, created]});
    match include {
        "None" => {}
        "Object" => r["object"] = obj.clone(),
        _ => r["object"] = partial(obj),
    }
    r
}

/// A Table of `objects` with the default columns kube-apiserver uses for resources without
/// their own printer (Name, Created At).
pub fn table(
    _info: &ResourceInfo,
    objects: &[Value],
    resource_version: &str,
    include: &str,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "priority": 0},
            {"name": "Created At", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", "priority": 0},
        ],
        "rows": objects.iter().map(|o| row(o, include)).collect::<Vec<_>>(),
    })
}
