//! CRD schemas through the router: every structural constraint, defaults and pruning, and
//! names that conflict.

use std::time::Duration;

use axum::http::Method;
use minik_tests::api::{Api, api};
use serde_json::{Value, json};

async fn established(api: &Api, name: &str) -> Value {
    for _ in 0..100 {
        let (_, crd) = api
            .call(
                Method::GET,
                &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"),
                None,
            )
            .await;
        let conditions = crd["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "NamesAccepted") {
            return crd;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} got no conditions");
}

fn crd(plural: &str, kind: &str, schema: Value) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema}}]}})
}

#[tokio::test]
async fn structural_schema_rules() {
    let api = api().await;
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": true},
        "note": {"type": "string", "nullable": true, "maxLength": 5},
        "when": {"type": "string", "format": "date-time"},
        "count": {"type": "integer", "maximum": 3, "exclusiveMaximum": true},
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "level": {"type": "string", "default": "info"}}}}});
    let (code, _) = api
        .call(
            Method::POST,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(crd("things", "Thing", schema)),
        )
        .await;
    assert_eq!(code, 201);
    established(&api, "things.example.com").await;
    let things = "/apis/example.com/v1/namespaces/default/things";
    let good = json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "ok"},
        "spec": {"port": "http", "note": null, "when": "2026-01-02T03:04:05Z", "count": 2,
            "tags": ["a", "b"], "items": [{"name": "x"}],
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "anything": 1},
            "free": {"deep": {"er": true}}, "dropped": "yes"}});
    let (code, created) = api.call(Method::POST, things, Some(good)).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["level"], "info", "defaulted");
    assert!(created["spec"].get("dropped").is_none(), "pruned");
    assert_eq!(created["spec"]["free"]["deep"]["er"], true, "kept");
    assert_eq!(created["spec"]["template"]["anything"], 1, "kept");
    let bad = json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "bad"},
        "spec": {"port": 1.5, "note": "toolong", "when": "yesterday", "count": 3,
            "tags": ["a", "a"], "items": [{"name": "x"}, {"name": "x"}],
            "template": {"metadata": {}}}});
    let (code, body) = api.call(Method::POST, things, Some(bad)).await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    for want in [
        "spec.port",
        "spec.note",
        "spec.when",
        "spec.count",
        "spec.tags[1]",
        "spec.items[1]",
        "spec.template.apiVersion",
        "spec.template.kind",
    ] {
        assert!(
            fields.contains(&want),
            "{want} missing from {fields:?}: {body}"
        );
    }
    assert_eq!(
        api.call(Method::GET, &format!("{things}/bad"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn conflicting_names_are_not_accepted() {
    let api = api().await;
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    api.call(
        Method::POST,
        crds,
        Some(crd("widgets", "Widget", open.clone())),
    )
    .await;
    let first = established(&api, "widgets.example.com").await;
    assert_eq!(first["status"]["conditions"][1]["status"], "True");
    // Another CRD with the same kind in the group.
    api.call(Method::POST, crds, Some(crd("gizmos", "Widget", open)))
        .await;
    let second = established(&api, "gizmos.example.com").await;
    let names = &second["status"]["conditions"][0];
    assert_eq!(
        (names["type"].as_str(), names["status"].as_str()),
        (Some("NamesAccepted"), Some("False"))
    );
    assert_eq!(
        api.call(
            Method::GET,
            "/apis/example.com/v1/namespaces/default/gizmos",
            None
        )
        .await
        .0,
        404
    );
    // A CRD whose name is not plural.group is refused.
    let mut wrong = crd("doodads", "Doodad", json!({"type": "object"}));
    wrong["metadata"]["name"] = json!("something.example.com");
    let (code, body) = api.call(Method::POST, crds, Some(wrong)).await;
    assert_eq!(code, 422, "{body}");
}

#[tokio::test]
async fn transition_rules_see_the_old_list_item() {
    let api = api().await;
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "items": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"],
                "x-kubernetes-validations": [{"rule": "self.size >= oldSelf.size",
                    "message": "size may not shrink"}],
                "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}}}}}}});
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    api.call(Method::POST, crds, Some(crd("volumes", "Volume", schema)))
        .await;
    established(&api, "volumes.example.com").await;
    let vols = "/apis/example.com/v1/namespaces/default/volumes";
    let vol = |a: i64, b: i64| {
        json!({"apiVersion": "example.com/v1", "kind": "Volume", "metadata": {"name": "v"},
            "spec": {"items": [{"name": "a", "size": a}, {"name": "b", "size": b}]}})
    };
    assert_eq!(api.call(Method::POST, vols, Some(vol(5, 5))).await.0, 201);
    // Custom resources take no unconditional update.
    let put = |v: Value| {
        let api = &api;
        async move {
            api.call(
                Method::PUT,
                "/apis/example.com/v1/namespaces/default/volumes/v",
                Some(v),
            )
            .await
        }
    };
    assert_eq!(put(vol(5, 9)).await.0, 422);
    let at = |mut v: Value, rv: &Value| {
        v["metadata"]["resourceVersion"] = rv.clone();
        v
    };
    // b grows, then a shrinks: the rule compares each item with its old self by key.
    let (_, now) = api.call(Method::GET, &format!("{vols}/v"), None).await;
    let (code, grown) = put(at(vol(5, 9), &now["metadata"]["resourceVersion"])).await;
    assert_eq!(code, 200);
    let (code, body) = put(at(vol(1, 9), &grown["metadata"]["resourceVersion"])).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("size may not shrink"),
        "{body}"
    );
    assert_eq!(body["details"]["causes"][0]["field"], "spec.items[0]");
}
