//! Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, with the
//! columns kube-apiserver's printers give the common kinds, and Name/Created At otherwise.

mod cells;
mod columns;
mod group_columns;

use minik_api::ResourceInfo;
use serde_json::{Value, json};

use crate::view::partial;

/// A Table of `objects`.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    resource_version: &str,
    include: &str,
) -> Value {
    let cols = columns::for_kind(info.group, info.kind);
    let now = chrono::Utc::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(o, now)).collect();
            let mut r = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => r["object"] = o.clone(),
                _ => r["object"] = partial(o),
            }
            r
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": cols.iter().map(|c| json!({
            "name": c.name, "type": c.kind, "format": c.format, "description": c.name,
            "priority": c.priority,
        })).collect::<Vec<_>>(),
        "rows": rows,
    })
}
