//! managedFields recorded for ordinary writes, as kube-apiserver records them.

use axum::http::Method;
use minik_tests::api::api;
use serde_json::json;

#[tokio::test]
async fn updates_are_recorded_per_manager() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (_, c) = api
        .call(Method::POST, &format!("{cms}?fieldManager=creator"), Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"a": "1"}})))
        .await;
    let mf = &c["metadata"]["managedFields"];
    assert_eq!(mf[0]["manager"], "creator");
    assert_eq!(mf[0]["operation"], "Update");
    assert_eq!(mf[0]["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
    // Another manager changes a and adds a label: it takes a, creator keeps the map.
    let (_, p) = api
        .patch(
            &format!("{cms}/m?fieldManager=labeler"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}},"data":{"a":"2"}}"#,
        )
        .await;
    let mf = p["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 2, "{mf:?}");
    assert_eq!(mf[0]["fieldsV1"], json!({"f:data": {}}));
    assert_eq!(
        mf[1]["fieldsV1"],
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}})
    );
    // `[{}]` clears them.
    let (_, cleared) = api
        .patch(
            &format!("{cms}/m"),
            "application/merge-patch+json",
            r#"{"metadata":{"managedFields":[{}]}}"#,
        )
        .await;
    assert!(
        cleared["metadata"].get("managedFields").is_none(),
        "{cleared}"
    );
    // Apply needs a field manager.
    let (code, _) = api
        .patch(
            &format!("{cms}/m"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n",
        )
        .await;
    assert_eq!(code, 400);
    let (code, created) = api
        .patch(
            &format!("{cms}/new?fieldManager=me"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: new}\ndata: {k: v}\n",
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(
        created["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:k": {}}})
    );
}

#[tokio::test]
async fn a_created_deployment_is_recorded_as_kube_apiserver_records_it() {
    let api = api().await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}});
    let (code, d) = api
        .call(
            Method::POST,
            &format!("{deps}?fieldManager=kubectl-create"),
            Some(body),
        )
        .await;
    assert_eq!(code, 201);
    let labels = json!({".": {}, "f:app": {}});
    let want = json!({
        "f:metadata": {"f:labels": labels},
        "f:spec": {
            "f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {},
            "f:selector": {},
            // kube-apiserver also marks rollingUpdate itself (".": {}): a Go pointer, which
            // the schemas do not tell apart from a struct value.
            "f:strategy": {"f:rollingUpdate": {"f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
            "f:template": {
                "f:metadata": {"f:labels": labels},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {},
                        "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
                        "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                    "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                    "f:securityContext": {}, "f:terminationGracePeriodSeconds": {},
                }
            }
        }
    });
    assert_eq!(
        d["metadata"]["managedFields"][0]["fieldsV1"], want,
        "{}",
        d["metadata"]["managedFields"]
    );
}

#[tokio::test]
async fn components_get_objects_without_managed_fields_and_are_still_recorded() {
    use axum::body::Body;
    use axum::http::Request;
    use minik_tests::api::from_component;
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"a": "1"}});
    let create = Request::post(format!("{cms}?fieldManager=controller"))
        .header("content-type", "application/json")
        .body(Body::from(cm.to_string()))
        .unwrap();
    let (code, created) = api.request(from_component(create)).await;
    assert_eq!(code, 201, "{created}");
    assert!(
        created["metadata"].get("managedFields").is_none(),
        "{created}"
    );
    assert_eq!(created["data"]["a"], "1");
    let patch = Request::patch(format!("{cms}/m?fieldManager=other"))
        .header("content-type", "application/merge-patch+json")
        .body(Body::from(r#"{"data":{"b":"2"}}"#))
        .unwrap();
    let (code, patched) = api.request(from_component(patch)).await;
    assert_eq!(code, 200, "{patched}");
    assert!(
        patched["metadata"].get("managedFields").is_none(),
        "{patched}"
    );
    let get = Request::get(format!("{cms}/m"))
        .body(Body::empty())
        .unwrap();
    let (_, lean) = api.request(from_component(get)).await;
    assert!(lean["metadata"].get("managedFields").is_none(), "{lean}");
    // Everyone else sees both writes recorded, and otherwise the same object.
    let (_, mut full) = api.call(Method::GET, &format!("{cms}/m"), None).await;
    let meta = full["metadata"].as_object_mut().unwrap();
    let managers: Vec<_> = meta["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].clone())
        .collect();
    assert_eq!(managers, [json!("controller"), json!("other")]);
    meta.remove("managedFields");
    assert_eq!(full, lean);
}
