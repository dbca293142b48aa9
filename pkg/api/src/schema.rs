//! The OpenAPI schemas of the built-in types with the extensions kube-apiserver publishes
//! and patch and apply follow: x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key,
//! x-kubernetes-list-type, x-kubernetes-list-map-keys and x-kubernetes-map-type. k8s-openapi
//! leaves them out; they come from the Go markers k8s-pb keeps (see build.rs).

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::ResourceInfo;
use crate::proto::{self, names::JsonName};

/// Add the extensions to every definition in `definitions` (keyed `io.k8s.api.core.v1.Pod`).
pub fn annotate(definitions: &mut Map<String, Value>) {
    for (name, schema) in definitions.iter_mut() {
        let Some(message) = proto::message_of_definition(name).and_then(|m| proto::message(&m))
        else {
            continue;
        };
        let Some(schema) = schema.as_object_mut() else {
            continue;
        };
        // Object metadata is never required (k8s-openapi's non-optional ObjectMeta says so).
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|r| r != "metadata");
            if required.is_empty() {
                schema.remove("required");
            }
        }
        if !message.struct_type.is_empty() {
            schema.insert("x-kubernetes-map-type".into(), json!(message.struct_type));
        }
        let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for field in message.fields {
            let JsonName::Key(key) = proto::names::json_name(message.name, field) else {
                continue;
            };
            let Some(prop) = props.get_mut(&key).and_then(Value::as_object_mut) else {
                continue;
            };
            let mut put = |k: &str, v: &str| {
                if !v.is_empty() {
                    prop.insert(k.into(), json!(v));
                }
            };
            put("x-kubernetes-patch-strategy", field.patch_strategy);
            put("x-kubernetes-patch-merge-key", field.merge_key);
            put("x-kubernetes-list-type", field.list_type);
            put("x-kubernetes-map-type", field.map_type);
            if !field.list_keys.is_empty() {
                prop.insert("x-kubernetes-list-map-keys".into(), json!(field.list_keys));
            }
        }
    }
}

/// Every built-in definition, annotated, keyed by name.
pub static DEFINITIONS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    for r in crate::all() {
        (r.schema)(&mut generator);
    }
    let mut defs = generator.take_definitions(true);
    annotate(&mut defs);
    defs
});

/// The definition name of a resource's kind (`io.k8s.api.apps.v1.Deployment`).
pub fn definition_name(info: &ResourceInfo) -> Option<String> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let reference = (info.schema)(&mut generator);
    definition_of_ref(reference.get("$ref")?.as_str()?)
}

/// `#/components/schemas/io.k8s.api.core.v1.Pod` (or `#/definitions/...`) -> its name.
pub fn definition_of_ref(reference: &str) -> Option<String> {
    reference.rsplit('/').next().map(str::to_string)
}

/// The definition a schema is or refers to (directly or as a one-element `allOf`).
pub fn resolve(schema: &Value) -> &Value {
    let reference = schema.get("$ref").or_else(|| match schema.get("allOf") {
        Some(Value::Array(all)) if all.len() == 1 => all[0].get("$ref"),
        _ => None,
    });
    match reference.and_then(Value::as_str) {
        Some(r) => definition_of_ref(r)
            .and_then(|n| DEFINITIONS.get(&n))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The schema of field `key` of an object schema (a property, or the values of a map).
pub fn field<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    let s = resolve(schema);
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

/// The schema of the items of an array schema.
pub fn items(schema: &Value) -> Option<&Value> {
    resolve(schema).get("items")
}

/// The schema of a resource's kind.
pub fn of(info: &ResourceInfo) -> Option<&'static Value> {
    static BY_KIND: LazyLock<std::collections::HashMap<(&str, &str, &str), &'static Value>> =
        LazyLock::new(|| {
            crate::all()
                .iter()
                .filter_map(|r| {
                    let schema = DEFINITIONS.get(&definition_name(r)?)?;
                    Some(((r.group, r.version, r.kind), schema))
                })
                .collect()
        });
    BY_KIND.get(&(info.group, info.version, info.kind)).copied()
}
