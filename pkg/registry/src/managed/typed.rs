//! Objects walked with their schema, as server-side apply sees them: structs (fields), maps
//! (keys), associative lists (items by key fields), sets (items by value) and atomic values.
//! The list kinds come from x-kubernetes-list-type, else from the patch strategy, as
//! kube-apiserver derives them for built-in types.

use minik_api::schema;
use serde_json::{Map, Value};

use super::fieldset::{Path, Set};

/// What a node is.
#[derive(Clone, Copy)]
pub enum Shape<'a> {
    /// A struct: declared fields, each with its schema.
    Struct(&'a Value),
    /// A map: any keys, values of one schema (or unknown).
    Map(Option<&'a Value>),
    /// A list of objects identified by these key fields.
    ListMap(&'a [Value], Option<&'a Value>),
    /// A list of distinct scalars.
    Set,
    /// Replaced and owned whole: scalars, atomic lists, atomic structs.
    Atomic,
}

/// The shape of a node whose (unresolved) schema is `s`; unknown schema: by the value.
pub fn shape<'a>(s: Option<&'a Value>, v: Option<&Value>) -> Shape<'a> {
    let Some(s) = s else {
        return match v {
            Some(Value::Object(_)) => Shape::Map(None),
            _ => Shape::Atomic,
        };
    };
    let r = schema::resolve(s);
    let ext = |k: &str| {
        s.get(k)
            .or_else(|| r.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    if ext("x-kubernetes-map-type") == "atomic" {
        return Shape::Atomic;
    }
    if r.get("properties").is_some() {
        return Shape::Struct(r);
    }
    if let Some(items) = r.get("additionalProperties").filter(|a| a.is_object()) {
        return Shape::Map(Some(items));
    }
    if r.get("type").and_then(Value::as_str) == Some("array") {
        let items = r.get("items");
        return match ext("x-kubernetes-list-type") {
            "map" => match s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
            {
                Some(keys) => Shape::ListMap(keys, items),
                None => Shape::Atomic,
            },
            "set" => Shape::Set,
            "atomic" => Shape::Atomic,
            _ if ext("x-kubernetes-patch-strategy")
                .split(',')
                .any(|p| p == "merge") =>
            {
                match s.get("x-kubernetes-patch-merge-key") {
                    Some(key) => Shape::ListMap(std::slice::from_ref(key), items),
                    None => Shape::Set,
                }
            }
            _ => Shape::Atomic,
        };
    }
    Shape::Atomic
}

/// The schema of field `key` of a struct or map.
fn child<'a>(sh: Shape<'a>, key: &str) -> Option<&'a Value> {
    match sh {
        Shape::Struct(s) => s.get("properties").and_then(|p| p.get(key)),
        Shape::Map(items) => items,
        _ => None,
    }
}

/// The path element of a list item.
pub fn item_element(sh: Shape<'_>, item: &Value) -> String {
    match sh {
        Shape::ListMap(keys, _) => {
            let mut k = Map::new();
            for key in keys.iter().filter_map(Value::as_str) {
                match item.get(key) {
                    Some(v) => {
                        k.insert(key.to_string(), v.clone());
                    }
                    // The one defaulted key of the built-in list-maps (ports).
                    None if key == "protocol" => {
                        k.insert(key.to_string(), Value::from("TCP"));
                    }
                    None => {}
                }
            }
            format!("k:{}", Value::Object(k))
        }
        _ => format!("v:{item}"),
    }
}

fn item_schema<'a>(sh: Shape<'a>) -> Option<&'a Value> {
    match sh {
        Shape::ListMap(_, items) => items,
        _ => None,
    }
}

/// The fields a value sets (server-side apply's field set of an applied configuration).
pub fn field_set(v: &Value, s: Option<&Value>) -> Set {
    let mut out = Set::default();
    let mut path = Vec::new();
    to_set(v, shape(s, Some(v)), &mut path, &mut out);
    out
}

fn to_set(v: &Value, sh: Shape<'_>, path: &mut Path, out: &mut Set) {
    match (sh, v) {
        (Shape::Struct(_) | Shape::Map(_), Value::Object(m)) => {
            for (k, cv) in m {
                let cs = child(sh, k);
                path.push(format!("f:{k}"));
                to_set(cv, shape(cs, Some(cv)), path, out);
                let empty = cv.is_null() || cv.as_object().is_some_and(Map::is_empty);
                if empty || matches!(sh, Shape::Map(_)) {
                    out.insert(path);
                }
                path.pop();
            }
        }
        (Shape::ListMap(..) | Shape::Set, Value::Array(items)) => {
            for item in items {
                path.push(item_element(sh, item));
                to_set(item, shape(item_schema(sh), Some(item)), path, out);
                out.insert(path);
                path.pop();
            }
        }
        _ => out.insert(path),
    }
}

/// What changed from `old` to `new`: paths added, modified (scalars) and removed.
#[derive(Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

/// The fields `new` added, modified and removed against `old` (never metadata.managedFields).
pub fn compare(old: &Value, new: &Value, s: Option<&Value>) -> Comparison {
    let mut c = Comparison::default();
    let mut path = Vec::new();
    walk_compare(Some(old), Some(new), s, false, &mut path, &mut c);
    c
}

/// Whether field `key` of a struct is required (Go writes it even when empty, so it is
/// never "added" on its own).
fn required(sh: Shape<'_>, key: &str) -> bool {
    match sh {
        Shape::Struct(s) => s
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|k| k == key)),
        _ => false,
    }
}

/// The items of a list-map or set, by their path elements.
fn entries<'v>(sh: Shape<'_>, v: Option<&'v Value>) -> Vec<(String, &'v Value)> {
    match (sh, v) {
        (Shape::ListMap(..) | Shape::Set, Some(Value::Array(items))) => {
            items.iter().map(|i| (item_element(sh, i), i)).collect()
        }
        _ => Vec::new(),
    }
}

fn walk_compare(
    old: Option<&Value>,
    new: Option<&Value>,
    s: Option<&Value>,
    is_required: bool,
    path: &mut Path,
    c: &mut Comparison,
) {
    // Equal values hold no change at any depth (most of an object, in most writes).
    if let (Some(a), Some(b)) = (old, new)
        && a == b
    {
        return;
    }
    let sh = shape(s, new.or(old));
    match sh {
        Shape::Atomic => {
            if let (Some(a), Some(b)) = (old, new)
                && a != b
            {
                c.modified.insert(path);
            }
        }
        Shape::Struct(_) | Shape::Map(_) => compare_fields(sh, old, new, path, c),
        _ => {
            let before = entries(sh, old);
            let after = entries(sh, new);
            let mut keys: Vec<&String> = before.iter().chain(&after).map(|(k, _)| k).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let o = before.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
                let n = after.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
                path.push(key.clone());
                walk_compare(o, n, item_schema(sh), false, path, c);
                path.pop();
            }
        }
    }
    // A struct field with fields is never a member itself (Go's non-pointer structs always
    // exist), nor is a required list or struct (always written); list items always are.
    let item = path.last().is_some_and(|p| !p.starts_with("f:"));
    let filled = new
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    let container = !matches!(sh, Shape::Atomic);
    if path.is_empty()
        || !item && container && is_required
        || !item && matches!(sh, Shape::Struct(_)) && filled
    {
        return;
    }
    match (old, new) {
        (None, Some(_)) => c.added.insert(path),
        (Some(_), None) => c.removed.insert(path),
        _ => {}
    }
}

/// The fields of a struct or map compared one by one: no key is copied but into the path
/// of a field that differs.
fn compare_fields(
    sh: Shape<'_>,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut Path,
    c: &mut Comparison,
) {
    let empty = Map::new();
    let before = old.and_then(Value::as_object).unwrap_or(&empty);
    let after = new.and_then(Value::as_object).unwrap_or(&empty);
    // Who manages what is not itself a managed field.
    let top_metadata = path.len() == 1 && path[0] == "f:metadata";
    let changed = after
        .iter()
        .map(|(k, n)| (k, before.get(k), Some(n)))
        .chain(
            before
                .iter()
                .filter(|(k, _)| !after.contains_key(*k))
                .map(|(k, o)| (k, Some(o), None)),
        );
    for (key, o, n) in changed {
        if o.is_some() && o == n || top_metadata && key == "managedFields" {
            continue;
        }
        path.push(format!("f:{key}"));
        walk_compare(o, n, child(sh, key), required(sh, key), path, c);
        path.pop();
    }
}

/// `config` merged into `live` (server-side apply's merge): the configuration wins, maps
/// and associative lists merge, sets are unioned, atomic values are replaced.
pub fn merge(live: &Value, config: &Value, s: Option<&Value>) -> Value {
    let sh = shape(s, Some(config));
    match (sh, live, config) {
        (Shape::Struct(_) | Shape::Map(_), Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, cv, child(sh, k)),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Shape::ListMap(..) | Shape::Set, Value::Array(l), Value::Array(c)) => {
            let mut out = l.clone();
            for ci in c {
                let id = item_element(sh, ci);
                match out.iter().position(|li| item_element(sh, li) == id) {
                    Some(i) => out[i] = merge(&out[i], ci, item_schema(sh)),
                    None => out.push(ci.clone()),
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// Remove the nodes at `paths` from `v`, except nodes with a descendant in `kept` (someone
/// still owns part of them: they stay, less their other dropped parts).
pub fn remove(v: &mut Value, paths: &Set, kept: &Set) {
    for p in &paths.0 {
        let owned_below = kept.0.iter().any(|k| k.len() > p.len() && k.starts_with(p));
        if !owned_below {
            remove_path(v, p);
        }
    }
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let (kind, body) = first.split_at(2.min(first.len()));
    match (kind, v) {
        ("f:", Value::Object(m)) => {
            if rest.is_empty() {
                m.remove(body);
            } else if let Some(c) = m.get_mut(body) {
                remove_path(c, rest);
            }
        }
        ("k:" | "v:", Value::Array(items)) => {
            let wanted: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let matches = |item: &Value| match kind {
                "v:" => *item == wanted,
                _ => wanted.as_object().is_some_and(|k| {
                    k.iter().all(|(kk, kv)| match item.get(kk) {
                        Some(v) => v == kv,
                        None => kk == "protocol" && kv == "TCP",
                    })
                }),
            };
            if rest.is_empty() {
                items.retain(|i| !matches(i));
            } else if let Some(item) = items.iter_mut().find(|i| matches(i)) {
                remove_path(item, rest);
            }
        }
        _ => {}
    }
}
