//! Columns of a CRD's additionalPrinterColumns: Name first, then each column's JSONPath
//! value (dates shown as ages, as kube-apiserver shows them).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Column;
use super::cells::human_duration;

/// The value at a simple JSONPath (`.spec.replicas`, `.status.conditions[0].type`).
fn at<'a>(o: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = o;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

fn cell(v: Option<&Value>, kind: &str, now: DateTime<Utc>) -> Value {
    match (v, kind) {
        (None | Some(Value::Null), _) => Value::Null,
        (Some(Value::String(t)), "date") => match DateTime::parse_from_rfc3339(t) {
            Ok(at) => json!(human_duration((now - at.with_timezone(&Utc)).num_seconds())),
            Err(_) => json!(t),
        },
        (Some(Value::String(t)), _) => json!(t),
        (Some(n @ (Value::Number(_) | Value::Bool(_))), _) => n.clone(),
        (Some(other), _) => json!(other.to_string()),
    }
}

pub(super) fn columns(printer: &[Value], now: DateTime<Utc>) -> Vec<Column<'_>> {
    let mut out = vec![Column {
        definition: json!({"name": "Name", "type": "string", "format": "name",
            "description": "Name must be unique within a namespace.", "priority": 0}),
        cell: Box::new(|o: &Value| o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)),
    }];
    let cols = if printer.is_empty() {
        vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
    } else {
        printer.to_vec()
    };
    for c in cols {
        let kind = c["type"].as_str().unwrap_or("string").to_string();
        let path = c["jsonPath"].as_str().unwrap_or("").to_string();
        out.push(Column {
            definition: json!({"name": c["name"], "type": kind, "format": c.get("format").cloned().unwrap_or(json!("")),
                "description": c.get("description").cloned().unwrap_or(json!("")),
                "priority": c.get("priority").cloned().unwrap_or(json!(0))}),
            cell: Box::new(move |o: &Value| cell(at(o, &path), &kind, now)),
        });
    }
    out
}
