//! PATCH through the router: conflicts, subresources, dry run and validation.

use axum::http::Method;
use minik_tests::api::{api, deploy};
use serde_json::json;

const MERGE: &str = "application/merge-patch+json";

#[tokio::test]
async fn patch_conflicts_subresources_and_dry_run() {
    let api = api().await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let (_, d) = api.call(Method::POST, deps, Some(deploy("web", 1))).await;
    let web = format!("{deps}/web");
    let rv = d["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = api
        .patch(&web, MERGE, r#"{"metadata":{"labels":{"a":"1"}}}"#)
        .await;
    assert_eq!(code, 200);
    // The patch names the version it read, which is now stale: 409.
    let stale = json!({"metadata": {"resourceVersion": rv, "labels": {"b": "2"}}}).to_string();
    let (code, body) = api.patch(&web, MERGE, &stale).await;
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));
    // Dry run: answered, not stored.
    let (code, out) = api
        .patch(
            &format!("{web}?dryRun=All"),
            MERGE,
            r#"{"spec":{"replicas":9}}"#,
        )
        .await;
    assert_eq!((code, out["spec"]["replicas"].as_i64()), (200, Some(9)));
    assert_eq!(
        api.call(Method::GET, &web, None).await.1["spec"]["replicas"],
        1
    );
    // Status through the main resource is ignored; through status it lands.
    let status = r#"{"status":{"replicas":4}}"#;
    api.patch(&web, MERGE, status).await;
    assert!(api.call(Method::GET, &web, None).await.1["status"]["replicas"].is_null());
    let (code, out) = api.patch(&format!("{web}/status"), MERGE, status).await;
    assert_eq!((code, out["status"]["replicas"].as_i64()), (200, Some(4)));
    // Scale.
    let (code, scale) = api
        .patch(&format!("{web}/scale"), MERGE, r#"{"spec":{"replicas":3}}"#)
        .await;
    assert_eq!((code, scale["kind"].as_str()), (200, Some("Scale")));
    assert_eq!(
        api.call(Method::GET, &web, None).await.1["spec"]["replicas"],
        3
    );
    let (code, scale) = api
        .patch(
            &format!("{web}/scale?dryRun=All"),
            MERGE,
            r#"{"spec":{"replicas":8}}"#,
        )
        .await;
    assert_eq!((code, scale["spec"]["replicas"].as_i64()), (200, Some(8)));
    let (_, now) = api.call(Method::GET, &web, None).await;
    assert_eq!(now["spec"]["replicas"], 3);
    // The scale went through the scale subresource, recorded as such.
    let scaler = now["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subresource"] == "scale")
        .cloned()
        .unwrap();
    assert_eq!(scaler["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    // Unknown fields: Strict refuses, the default warns and drops them.
    let (code, _) = api
        .patch(
            &format!("{web}?fieldValidation=Strict"),
            MERGE,
            r#"{"spec":{"bogus":1}}"#,
        )
        .await;
    assert_eq!(code, 400);
    // An unknown patch type is 415; a missing object 404.
    let (code, _) = api.patch(&web, "text/plain", "{}").await;
    assert_eq!(code, 415);
    let (code, _) = api.patch(&format!("{deps}/nope"), MERGE, "{}").await;
    assert_eq!(code, 404);
}

/// Start the config maps' watch cache (a list at resourceVersion 0 is served from it), so
/// patches start from its copy.
async fn cached_config_map(api: &minik_tests::api::Api, data: serde_json::Value) -> String {
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
    assert_eq!(api.call(Method::POST, cms, Some(cm)).await.0, 201);
    let (code, list) = api
        .call(Method::GET, &format!("{cms}?resourceVersion=0"), None)
        .await;
    assert_eq!(
        (code, list["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    format!("{cms}/c")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_lose_nothing() {
    let api = api().await;
    let c = cached_config_map(&api, json!({})).await;
    // Each patch adds its own key; with no resourceVersion in them, none may fail or be
    // lost, however stale the copy a patch starts from.
    let patches = (0..24).map(|i| {
        let body = json!({"data": {format!("k{i}"): "v"}}).to_string();
        let (api, c) = (&api, &c);
        async move { api.patch(c, MERGE, &body).await }
    });
    for (code, body) in futures::future::join_all(patches).await {
        assert_eq!(code, 200, "{body}");
    }
    let (_, got) = api.call(Method::GET, &c, None).await;
    assert_eq!(got["data"].as_object().map(|d| d.len()), Some(24), "{got}");
}
