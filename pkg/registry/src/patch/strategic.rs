//! Strategic merge patch, as kube-apiserver applies it: maps merge key by key (null
//! deletes), lists whose schema says `x-kubernetes-patch-strategy: merge` merge by their
//! `x-kubernetes-patch-merge-key` (or as a set for primitives), other lists are replaced;
//! the directives `$patch` (merge, replace, delete), `$retainKeys`, `$setElementOrder/<field>`
//! and `$deleteFromPrimitiveList/<field>` are honoured and never stored.

use minik_api::schema;
use serde_json::{Map, Value};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

type Result<T> = std::result::Result<T, String>;

/// Apply `patch` to `original`, an object whose schema is `schema`.
pub fn apply(original: &Value, patch: &Value, schema: Option<&Value>) -> Result<Value> {
    let (Value::Object(orig), Value::Object(p)) = (original, patch) else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    match merge_map(orig.clone(), p, schema)? {
        Some(m) => Ok(Value::Object(m)),
        None => Err("a strategic merge patch cannot delete the whole object".into()),
    }
}

/// Merge `patch` into `orig`; None when the patch deletes the map.
fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<&Value>,
) -> Result<Option<Map<String, Value>>> {
    match patch.get(PATCH).and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut fresh = patch.clone();
            fresh.remove(PATCH);
            return merge_map(Map::new(), &fresh, schema);
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        let keep: Vec<&str> = keep
            .as_array()
            .ok_or("$retainKeys must be a list")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    let mut orders = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let gone = value
                .as_array()
                .ok_or("$deleteFromPrimitiveList must be a list")?;
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|v| !gone.contains(v));
            }
        } else if let Some(field) = key.strip_prefix(SET_ORDER) {
            orders.push((field, value));
        }
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let field_schema = schema.and_then(|s| schema::field(s, key));
        match value {
            Value::Null => {
                orig.remove(key);
            }
            Value::Object(p) => {
                let current = match orig.remove(key) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                if let Some(merged) = merge_map(current, p, field_schema)? {
                    orig.insert(key.clone(), Value::Object(merged));
                }
            }
            Value::Array(p) => {
                let current = match orig.remove(key) {
                    Some(Value::Array(l)) => l,
                    _ => Vec::new(),
                };
                let merged = merge_list(current, p, field_schema)?;
                orig.insert(key.clone(), Value::Array(merged));
            }
            v => {
                orig.insert(key.clone(), v.clone());
            }
        }
    }
    for (field, order) in orders {
        let merge_key = schema
            .and_then(|s| schema::field(s, field))
            .and_then(|f| f.get("x-kubernetes-patch-merge-key"))
            .and_then(Value::as_str);
        if let (Some(Value::Array(list)), Some(order)) = (orig.get_mut(field), order.as_array()) {
            reorder(list, order, merge_key);
        }
    }
    Ok(Some(orig))
}

/// Merge a patch list into a list per the field's patch strategy.
fn merge_list(orig: Vec<Value>, patch: &[Value], schema: Option<&Value>) -> Result<Vec<Value>> {
    let strategy = schema
        .and_then(|s| s.get("x-kubernetes-patch-strategy"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let merge_key = schema
        .and_then(|s| s.get("x-kubernetes-patch-merge-key"))
        .and_then(Value::as_str);
    let item_schema = schema.and_then(schema::items);
    let replace = patch
        .iter()
        .any(|v| v.get(PATCH).and_then(Value::as_str) == Some("replace"));
    let elements: Vec<&Value> = patch
        .iter()
        .filter(|v| v.get(PATCH).and_then(Value::as_str) != Some("replace"))
        .collect();
    if replace || !strategy.split(',').any(|s| s == "merge") {
        // Replaced whole: still no directive may be stored.
        return elements
            .into_iter()
            .map(|v| fresh(v, item_schema))
            .collect::<Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect());
    }
    let Some(key) = merge_key else {
        // A set of primitives: the union, in order.
        let mut out = orig;
        for v in elements {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        return Ok(out);
    };
    let mut out = orig;
    for el in elements {
        let Value::Object(p) = el else {
            return Err(format!(
                "the list elements must be objects with the merge key {key:?}"
            ));
        };
        let id = p.get(key);
        let pos = out.iter().position(|o| o.get(key) == id && id.is_some());
        if p.get(PATCH).and_then(Value::as_str) == Some("delete") {
            out.retain(|o| o.get(key) != id || id.is_none());
            continue;
        }
        match pos {
            Some(i) => {
                let current = match std::mem::take(&mut out[i]) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                match merge_map(current, p, item_schema)? {
                    Some(m) => out[i] = Value::Object(m),
                    None => {
                        out.remove(i);
                    }
                }
            }
            None => {
                if let Some(m) = merge_map(Map::new(), p, item_schema)? {
                    out.push(Value::Object(m));
                }
            }
        }
    }
    Ok(out)
}

/// A patch value stored as it is, less its directives.
fn fresh(v: &Value, schema: Option<&Value>) -> Result<Option<Value>> {
    Ok(match v {
        Value::Object(p) => merge_map(Map::new(), p, schema)?.map(Value::Object),
        other => Some(other.clone()),
    })
}

/// Order `list` as `order` says (`$setElementOrder`); elements it does not name keep their
/// places after the named ones.
fn reorder(list: &mut [Value], order: &[Value], merge_key: Option<&str>) {
    let id = |v: &Value| match merge_key {
        Some(k) => v.get(k).cloned(),
        None => Some(v.clone()),
    };
    let wanted: Vec<Option<Value>> = order.iter().map(id).collect();
    list.sort_by_key(|v| {
        let me = id(v);
        wanted
            .iter()
            .position(|w| *w == me && me.is_some())
            .unwrap_or(usize::MAX)
    });
}
