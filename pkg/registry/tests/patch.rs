//! Strategic merge patch directives and strategies, against the built-in schemas.

use minik_registry::patch::{PatchType, apply};
use serde_json::{Value, json};

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a", "b"]},
        "spec": {
            "containers": [
                {"name": "one", "image": "i1", "env": [{"name": "X", "value": "1"}], "args": ["a", "b"]},
                {"name": "two", "image": "i2"},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
        }
    })
}

fn smp(current: &Value, patch: Value) -> Value {
    let schema = minik_api::schema::of(minik_api::find("", "v1", "pods").unwrap());
    apply(
        PatchType::Strategic,
        current,
        patch.to_string().as_bytes(),
        schema,
    )
    .unwrap()
}

#[test]
fn lists_merge_by_key_and_others_are_replaced() {
    let out = smp(
        &pod(),
        json!({"spec": {
            "containers": [{"name": "two", "image": "i2b"}, {"name": "three", "image": "i3"}],
            "tolerations": [{"key": "other", "operator": "Exists"}],
        }}),
    );
    let c = &out["spec"]["containers"];
    assert_eq!(c[0]["image"], "i1");
    assert_eq!(c[0]["env"][0]["name"], "X");
    assert_eq!(c[1]["image"], "i2b");
    assert_eq!(c[2]["name"], "three");
    // tolerations are atomic: replaced whole.
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "other", "operator": "Exists"}])
    );
    // args are not a merge list either.
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"name": "one", "args": ["z"]}]}}),
    );
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
}

#[test]
fn directives() {
    let out = smp(
        &pod(),
        json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "two"}, {"name": "one"}],
                "containers": [{"name": "one", "$patch": "delete"}, {"name": "two", "env": [{"name": "Y", "value": "2"}]}],
                "volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}],
            }
        }),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    let c = out["spec"]["containers"].as_array().unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["name"], "two");
    assert_eq!(c[0]["env"][0]["name"], "Y");
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "v", "hostPath": {"path": "/x"}}])
    );
    // $patch: replace on a list and on a map; nothing with a '$' is stored.
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o"}],
                        "securityContext": {"$patch": "replace", "runAsUser": 1}}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "only", "image": "o"}])
    );
    assert_eq!(out["spec"]["securityContext"], json!({"runAsUser": 1}));
    assert!(!out.to_string().contains('$'));
    // Finalizers are a merged set: new ones are added once.
    let out = smp(&pod(), json!({"metadata": {"finalizers": ["b", "c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
}

#[test]
fn json_and_merge_patches() {
    let p = pod();
    let out = apply(
        PatchType::Merge,
        &p,
        br#"{"metadata": {"labels": {"a": "b"}}, "spec": {"volumes": null}}"#,
        None,
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"]["a"], "b");
    assert!(out["spec"].get("volumes").is_none());
    let out = apply(
        PatchType::Json,
        &p,
        br#"[{"op": "add", "path": "/spec/containers/-", "value": {"name": "x"}}]"#,
        None,
    )
    .unwrap();
    assert_eq!(out["spec"]["containers"][2]["name"], "x");
    let test = br#"[{"op": "test", "path": "/metadata/name", "value": "q"}]"#;
    let err = apply(PatchType::Json, &p, test, None).unwrap_err();
    assert_eq!(err.code_and_reason().0, 422);
    let err = apply(PatchType::Json, &p, b"{not json", None).unwrap_err();
    assert_eq!(err.code_and_reason().0, 400);
}
