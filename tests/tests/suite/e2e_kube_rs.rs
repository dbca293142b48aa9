//! kube-rs (the Rust client) against a real `minik server`: typed CRUD, lists, and
//! kube-runtime's watcher with bookmarks, both with list-then-watch and with watch-list.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, PartialObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use minik_tests::server::Server;

async fn client(s: &Server) -> Client {
    s.kube_client().await
}

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "data": {"v": value},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud_and_lists() {
    let s = Server::start();
    let client = client(&s).await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "37"));
    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut got = cms.get("a").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["v"], "1");
    got.data = Some([("v".to_string(), "2".to_string())].into());
    let replaced = cms
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    assert_ne!(replaced.metadata.resource_version.unwrap(), rv);
    // A stale resourceVersion is a 409 Conflict.
    let mut stale = created.clone();
    stale.data = Some([("v".to_string(), "stale".to_string())].into());
    match cms.replace("a", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (409, "Conflict")),
        other => panic!("expected 409, got {other:?}"),
    }
    match cms.create(&PostParams::default(), &cm("a", "1")).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("expected 409, got {other:?}"),
    }
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("p{i}"), "x"))
            .await
            .unwrap();
    }
    let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.metadata.continue_.is_some());
    let selected = cms
        .list(&ListParams::default().labels("app=kube-rs"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 6);
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    match cms.get("a").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
}

async fn watcher_sees_changes(streaming: bool) {
    let s = Server::start();
    let client = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("before", "0"))
        .await
        .unwrap();
    // (kube-root-ca.crt is there too, as in every namespace)
    let mut config = watcher::Config::default().labels("app=kube-rs");
    if streaming {
        config = config.streaming_lists();
    }
    let mut events = watcher::watcher(cms.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), events.try_next()).await {
            Ok(Ok(Some(Event::InitApply(o)))) => initial.push(o.metadata.name.unwrap()),
            Ok(Ok(Some(Event::InitDone))) => break,
            Ok(Ok(Some(_))) => {}
            other => panic!("watcher: {other:?}"),
        }
    }
    assert_eq!(initial, vec!["before".to_string()]);
    cms.create(&PostParams::default(), &cm("after", "1"))
        .await
        .unwrap();
    cms.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(20), events.try_next()).await {
            Ok(Ok(Some(Event::Apply(o)))) => {
                seen.push(format!("apply {}", o.metadata.name.unwrap()))
            }
            Ok(Ok(Some(Event::Delete(o)))) => {
                seen.push(format!("delete {}", o.metadata.name.unwrap()))
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("watcher after {seen:?}: {other:?}"),
        }
    }
    assert_eq!(seen, ["apply after", "delete before"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_api() {
    let s = Server::start();
    let client = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("m1", "big value"))
        .await
        .unwrap();
    let meta = cms.get_metadata("m1").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("m1"));
    assert_eq!(meta.metadata.labels.unwrap()["app"], "kube-rs");
    // (kube-root-ca.crt is there too, as in every namespace)
    let mine = ListParams::default().labels("app=kube-rs");
    let list = cms.list_metadata(&mine).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());
    let metas: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client, "default");
    let mine = watcher::Config::default().labels("app=kube-rs");
    let mut events = watcher::watcher(metas, mine).boxed();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), events.try_next()).await {
            Ok(Ok(Some(Event::InitDone))) => break,
            Ok(Ok(Some(_))) => {}
            other => panic!("metadata watcher: {other:?}"),
        }
    }
    cms.create(&PostParams::default(), &cm("m2", "x"))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), events.try_next()).await {
            Ok(Ok(Some(Event::Apply(m)))) => {
                assert_eq!(m.metadata.name.as_deref(), Some("m2"));
                break;
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("metadata watcher: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_watcher_list_then_watch() {
    watcher_sees_changes(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_watcher_watch_list() {
    watcher_sees_changes(true).await;
}
