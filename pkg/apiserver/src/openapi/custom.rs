//! OpenAPI v3 documents of custom resources' group-versions, from their CRDs' schemas:
//! built on each request (they change with the CRDs), with the object metadata types they
//! refer to.

use minik_api::ResourceInfo;
use minik_registry::Registry;
use serde_json::{Map, Value, json};

/// `com.example.v1.Widget` for group `example.com`, as kube-apiserver names them.
fn definition_name(r: &ResourceInfo) -> String {
    let reversed: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), r.version, r.kind)
}

pub fn document(registry: &Registry, res: &[&'static ResourceInfo], g: &str, v: &str) -> Value {
    let mut schemas = Map::new();
    for r in res.iter().filter(|r| r.group == g && r.version == v) {
        let Some(mut schema) = registry.custom_schema(r) else {
            continue;
        };
        if let Some(props) = schema
            .as_object_mut()
            .map(|m| m.entry("properties").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            props.insert("apiVersion".into(), json!({"type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert("kind".into(), json!({"type": "string",
                "description": "Kind is a string value representing the REST resource this object represents."}));
            props.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref":
                "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
                "description": "Standard object's metadata."}),
            );
        }
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        schemas.insert(definition_name(r), schema);
    }
    for (name, s) in minik_api::schema::DEFINITIONS.iter() {
        if name.starts_with("io.k8s.apimachinery.pkg.apis.meta.v1.") {
            schemas.insert(name.clone(), s.clone());
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": super::paths(res, g, v),
        "components": {"schemas": schemas},
    })
}
