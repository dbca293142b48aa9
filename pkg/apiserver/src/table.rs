//! Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, with the
//! columns kube-apiserver's printers give the common kinds, and Name/Created At otherwise.

mod cells;
mod columns;
mod group_columns;
mod printer;
mod status_cells;

use minik_api::ResourceInfo;
use serde_json::{Value, json};

use crate::view::partial;

/// One column: its definition and each object's cell.
struct Column<'a> {
    definition: Value,
    cell: Box<dyn Fn(&Value) -> Value + 'a>,
}

/// A Table of `objects`: with a CRD's additionalPrinterColumns when `printer` has any,
/// else with the columns of the kind.
pub fn table(
    info: &ResourceInfo,
    printer: &[Value],
    objects: &[Value],
    resource_version: &str,
    include: &str,
) -> Value {
    let now = chrono::Utc::now();
    let builtin = columns::for_kind(info.group, info.kind);
    let cols: Vec<Column<'_>> = if info.custom {
        printer::columns(printer, now)
    } else {
        builtin
            .iter()
            .map(|c| Column {
                definition: json!({"name": c.name, "type": c.kind, "format": c.format,
                    "description": c.name, "priority": c.priority}),
                cell: Box::new(move |o: &Value| (c.cell)(o, now)),
            })
            .collect()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(o)).collect();
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
        "columnDefinitions": cols.iter().map(|c| c.definition.clone()).collect::<Vec<_>>(),
        "rows": rows,
    })
}
