//! Object metadata the server owns: names, uid, timestamps, generation, and the checks on a
//! body before it is stored (the generic `PrepareForCreate/Update` and `Validate`).

use minik_api::ResourceInfo;
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause, Result};

/// `metadata` of `obj`, created if missing.
pub fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    meta.as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Five characters from the alphabet kube-apiserver's name generator uses.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Check that the body is of this resource's kind and version, and that its namespace agrees
/// with the request's.
pub fn check_type_and_namespace(
    info: &ResourceInfo,
    obj: &mut Value,
    namespace: Option<&str>,
) -> Result<()> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::BadRequest(
            "Object 'Kind' is missing in the request body".into(),
        ));
    }
    if api_version.is_empty() {
        return Err(ApiError::BadRequest(
            "Object 'apiVersion' is missing in the request body".into(),
        ));
    }
    if kind != info.kind || api_version != info.api_version() {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or the kind ({kind}) is not {}",
            info.api_version(),
            info.kind
        )));
    }
    let meta = meta_mut(obj)?;
    match (info.namespaced, namespace) {
        (true, Some(ns)) => {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                _ => {}
            }
            meta.insert("namespace".into(), json!(ns));
        }
        (true, None) => {
            return Err(ApiError::BadRequest(
                "a namespace must be given for a namespaced resource".into(),
            ));
        }
        (false, _) => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

/// Fill what the server sets on create: name from generateName, uid, creationTimestamp,
/// generation. Returns the name.
pub fn prepare_create(info: &ResourceInfo, obj: &mut Value) -> Result<String> {
    let meta = meta_mut(obj)?;
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty()
        && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        && !prefix.is_empty()
    {
        name = format!("{prefix}{}", random_suffix());
        meta.insert("name".into(), json!(name));
    }
    if let Err(message) = minik_api::validate_name(info.plural, &name) {
        return Err(ApiError::invalid(
            info,
            &name,
            vec![Cause {
                field: "metadata.name".into(),
                message,
                reason: if name.is_empty() {
                    "FieldValueRequired"
                } else {
                    "FieldValueInvalid"
                }
                .into(),
            }],
        ));
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    meta.insert("generation".into(), json!(1));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    Ok(name)
}

/// A qualified name: an optional DNS-subdomain prefix and '/', then 1-63 characters of
/// alphanumerics, '-', '_' and '.', starting and ending alphanumeric.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    name_ok && prefix.is_none_or(minik_api::is_dns1123_subdomain)
}

fn is_label_value(v: &str) -> bool {
    v.is_empty() || (v.len() <= 63 && is_qualified_name(v) && !v.contains('/'))
}

/// Labels, annotations and owner references, as ValidateObjectMeta checks them.
pub fn validate_metadata(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let bad = |field: String, value: &str, msg: &str| Cause {
        field,
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {value:?}: {msg}"),
    };
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    for (k, v) in meta
        .get("labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !is_qualified_name(k) {
            out.push(bad("metadata.labels".into(), k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
        if !v.as_str().is_some_and(is_label_value) {
            out.push(bad("metadata.labels".into(), v.as_str().unwrap_or(""), "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
    }
    let mut size = 0;
    for (k, v) in meta
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !is_qualified_name(&k.to_ascii_lowercase()) {
            out.push(bad("metadata.annotations".into(), k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
        size += k.len() + v.as_str().map_or(0, str::len);
    }
    if size > 256 * 1024 {
        out.push(Cause {
            field: "metadata.annotations".into(),
            reason: "FieldValueTooLong".into(),
            message: "Too long: must have at most 262144 bytes".into(),
        });
    }
    for (i, r) in meta
        .get("ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for f in ["apiVersion", "kind", "name", "uid"] {
            if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push(Cause {
                    field: format!("metadata.ownerReferences[{i}].{f}"),
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                });
            }
        }
    }
    out
}

/// Carry over what an update may not change, and bump generation when the spec changed.
pub fn prepare_update(old: &Value, new: &mut Value) -> Result<()> {
    let changed_spec = !same_except(old, new, &["metadata", "status"]);
    let empty = Map::new();
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let meta = meta_mut(new)?;
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    let generation = old_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    meta.insert(
        "generation".into(),
        json!(if changed_spec {
            generation + 1
        } else {
            generation
        }),
    );
    meta.remove("resourceVersion");
    Ok(())
}

/// Whether objects `a` and `b` are equal but for their top-level fields `skip`.
fn same_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let wanted = |(k, _): &(&String, &Value)| !skip.contains(&k.as_str());
    a.iter().filter(wanted).eq(b.iter().filter(wanted))
}

/// Whether an update leaves the object as it was (only its resourceVersion may differ):
/// then nothing is written, as kube-apiserver skips a write that changes no byte.
pub fn unchanged(old: &Value, new: &Value) -> bool {
    same_except(old, new, &["metadata"])
        && same_except(
            old.get("metadata").unwrap_or(&Value::Null),
            new.get("metadata").unwrap_or(&Value::Null),
            &["resourceVersion"],
        )
}

/// Paths present in `given` but dropped by the typed round trip: unknown fields.
pub fn unknown_fields(given: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (given, typed) {
        (Value::Object(g), Value::Object(t)) => {
            for (k, v) in g {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None if v.is_null() => {}
                    None if is_free_form(path) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(g), Value::Array(t)) => {
            for (i, (gv, tv)) in g.iter().zip(t).enumerate() {
                unknown_fields(gv, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Maps whose keys are data, not fields (labels, annotations, data, ...): an empty value
/// there may be dropped by the typed view without being unknown.
fn is_free_form(path: &str) -> bool {
    path.ends_with("labels") || path.ends_with("annotations") || path.ends_with("data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_bumps_on_spec_only() {
        let old = json!({"metadata": {"uid": "u", "generation": 3, "creationTimestamp": "t"},
            "spec": {"a": 1}, "status": {"s": 1}});
        let mut same = json!({"metadata": {"uid": "x"}, "spec": {"a": 1}, "status": {"s": 2}});
        prepare_update(&old, &mut same).unwrap();
        assert_eq!(same["metadata"]["generation"], 3);
        assert_eq!(same["metadata"]["uid"], "u");
        let mut changed = json!({"metadata": {}, "spec": {"a": 2}});
        prepare_update(&old, &mut changed).unwrap();
        assert_eq!(changed["metadata"]["generation"], 4);
    }

    #[test]
    fn metadata_rules() {
        let ok = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web", "empty": ""},
            "annotations": {"example.com/note": "anything at all"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}]}});
        assert!(validate_metadata(&ok).is_empty());
        let bad = json!({"metadata": {"labels": {"bad key!": "v", "k": "-no-"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p"}]}});
        let fields: Vec<String> = validate_metadata(&bad)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "metadata.labels",
                "metadata.labels",
                "metadata.ownerReferences[0].uid"
            ]
        );
    }

    #[test]
    fn unknown_fields_found() {
        let given =
            json!({"spec": {"a": 1, "bogus": 2, "n": null}, "metadata": {"labels": {"x": ""}}});
        let typed = json!({"spec": {"a": 1}, "metadata": {"labels": {}}});
        let mut out = Vec::new();
        unknown_fields(&given, &typed, "", &mut out);
        assert_eq!(out, vec!["spec.bogus".to_string()]);
    }
}
