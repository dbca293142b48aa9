//! The watch cache takes a writer's hinted object only for exactly the bytes it was hinted
//! with, and a write that fails takes its hint back.

use std::time::Duration;

use serde_json::json;

use super::*;

fn config_maps() -> &'static ResourceInfo {
    minik_api::find("", "v1", "configmaps").expect("config maps")
}

async fn cache() -> (Arc<dyn Backend>, Caches, Arc<Cacher>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = minik_store::open("memory://", dir.path(), Default::default())
        .await
        .expect("store");
    let caches = Caches::default();
    let cacher = caches.get(&store, config_maps()).await.expect("cache");
    (store, caches, cacher, dir)
}

/// Put `obj` at `key` with a hint of `hinted` as stored as `hinted_bytes`; the object the
/// cache then holds.
async fn put(
    (store, caches, cacher): (&Arc<dyn Backend>, &Caches, &Arc<Cacher>),
    key: &str,
    obj: &Value,
    (hinted_bytes, hinted): (&[u8], Value),
) -> Value {
    let bytes = serde_json::to_vec(obj).expect("encode");
    let hint = caches.hint(config_maps(), key, hinted_bytes, hinted);
    let kv = store.create(key, bytes).await.expect("create");
    hint.keep();
    assert!(
        cacher
            .wait_for(kv.mod_revision, Duration::from_secs(5))
            .await
    );
    assert!(cacher.hints().is_empty(), "the event took the hint");
    (*cacher.object(key).expect("cached")).clone()
}

#[tokio::test]
async fn hinted_object_is_taken_only_for_its_own_bytes() {
    let (store, caches, cacher, _dir) = cache().await;
    let c = (&store, &caches, &cacher);
    let prefix = resource_prefix(config_maps());
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
    // A marker the bytes do not have shows which one the cache took.
    let mut marked = obj.clone();
    marked["marker"] = json!(true);
    let key = format!("{prefix}default/a");
    let bytes = serde_json::to_vec(&obj).expect("encode");
    let got = put(c, &key, &obj, (&bytes, marked.clone())).await;
    assert_eq!(got["marker"], true, "matching bytes: the hinted object");
    assert!(got["metadata"]["resourceVersion"].is_string());
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}});
    let key = format!("{prefix}default/b");
    let got = put(c, &key, &other, (&bytes, marked)).await;
    assert!(got.get("marker").is_none(), "other bytes: decoded");
    assert_eq!(got["metadata"]["name"], "b");
}

#[tokio::test]
async fn a_failed_write_takes_its_hint_back() {
    let (_store, caches, cacher, _dir) = cache().await;
    let key = format!("{}default/a", resource_prefix(config_maps()));
    let hint = caches.hint(config_maps(), &key, b"{}", json!({}));
    assert_eq!(cacher.hints().len(), 1);
    drop(hint);
    assert!(cacher.hints().is_empty());
    // A newer hint for the key is not taken back by an older one's failure.
    let old = caches.hint(config_maps(), &key, b"{}", json!({}));
    let new = caches.hint(config_maps(), &key, b"{}", json!({}));
    drop(old);
    assert_eq!(cacher.hints().len(), 1);
    drop(new);
    assert!(cacher.hints().is_empty());
}

/// A registry whose `info` objects are cached, with `obj` created in namespace `default`;
/// and the cache.
async fn registry_with(
    info: &ResourceInfo,
    obj: Value,
) -> (crate::Registry, Arc<Cacher>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = minik_store::open("memory://", dir.path(), Default::default())
        .await
        .expect("store");
    let registry = crate::Registry::new(store.clone());
    let cacher = registry.caches.get(&store, info).await.expect("cache");
    let params = crate::WriteParams::default();
    let namespaces = minik_api::find("", "v1", "namespaces").expect("namespaces");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    registry
        .create(namespaces, None, ns, &params)
        .await
        .expect("namespace");
    let (obj, _) = registry
        .create(info, Some("default"), obj, &params)
        .await
        .expect("create");
    settle(&cacher, &obj).await;
    (registry, cacher, dir)
}

fn config_map_c(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
}

/// Wait until the cache has `obj` at its revision.
async fn settle(cacher: &Cacher, obj: &Value) {
    let rv = obj["metadata"]["resourceVersion"].as_str().expect("rv");
    let rv = rv.parse().expect("a number");
    assert!(cacher.wait_for(rv, Duration::from_secs(5)).await);
}

/// Patch `default/c` with a merge patch.
async fn patch_c(registry: &crate::Registry, patch: Value) -> Value {
    let target = crate::patch::Target {
        info: config_maps(),
        ns: Some("default"),
        name: "c",
        sub: None,
    };
    let body = patch.to_string();
    let params = crate::WriteParams::default();
    let kind = crate::patch::PatchType::Merge;
    let (out, _) = registry
        .patch(&target, kind, body.as_bytes(), &params)
        .await
        .expect("patch");
    out
}

/// Put the cache's copy of `default/<name>` back to `stale`, as if it lagged behind the
/// store.
fn lag(cacher: &Cacher, info: &ResourceInfo, name: &str, stale: Arc<Value>) {
    let key = format!("{}default/{name}", resource_prefix(info));
    cacher.lock().objects.insert(key.into(), stale);
}

#[tokio::test]
async fn patches_from_a_stale_cached_copy_lose_nothing() {
    let (registry, cacher, _dir) =
        registry_with(config_maps(), config_map_c(json!({"x": "a"}))).await;
    let key = format!("{}default/c", resource_prefix(config_maps()));
    let old = cacher.object(&key).expect("cached");
    let now = patch_c(&registry, json!({"data": {"x": "b"}})).await;
    settle(&cacher, &now).await;
    // From the stale copy (x=a) the patch changes nothing; the store has x=b: it writes.
    lag(&cacher, config_maps(), "c", old.clone());
    let out = patch_c(&registry, json!({"data": {"x": "a"}})).await;
    assert_eq!(out["data"]["x"], "a");
    let got = registry.get(config_maps(), Some("default"), "c").await;
    assert_eq!(got.expect("get")["data"]["x"], "a");
    // Another key, from the stale copy: the stored x stays what it is.
    settle(&cacher, &out).await;
    let now = patch_c(&registry, json!({"data": {"x": "c"}})).await;
    settle(&cacher, &now).await;
    lag(&cacher, config_maps(), "c", old);
    let out = patch_c(&registry, json!({"data": {"y": "1"}})).await;
    assert_eq!(
        (out["data"]["x"].as_str(), out["data"]["y"].as_str()),
        (Some("c"), Some("1"))
    );
}

#[tokio::test]
async fn a_binding_from_a_stale_cached_copy_is_refused() {
    let pods = minik_api::find("", "v1", "pods").expect("pods");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let (registry, cacher, _dir) = registry_with(pods, pod).await;
    let key = format!("{}default/p", resource_prefix(pods));
    let unbound = cacher.object(&key).expect("cached");
    let params = crate::WriteParams::default();
    let to = |node: &str| json!({"target": {"kind": "Node", "name": node}});
    registry
        .bind("default", "p", &to("n1"), &params)
        .await
        .expect("bind");
    // The cache still shows the pod unbound: the store decides.
    lag(&cacher, pods, "p", unbound);
    let again = registry.bind("default", "p", &to("n2"), &params).await;
    let err = again.expect_err("bound already").to_string();
    assert!(err.contains("already assigned to node \"n1\""), "{err}");
    let got = registry.get(pods, Some("default"), "p").await.expect("get");
    assert_eq!(got["spec"]["nodeName"], "n1");
}
