//! Watches served from the watch cache: one that asks for the initial state gets
//! everything written before it started, even when the cache is a moment behind the store
//! (at resourceVersion=0 too);
//! one that falls far behind the cache's broadcast still gets every change, in order; one
//! from before the cache's start reads the store's history and then moves to the cache.

use minik_registry::{ListParams, Registry, WatchParams, WriteParams};
use serde_json::json;

async fn registry() -> Registry {
    let store = minik_store::open("memory://", std::path::Path::new("/"), Default::default())
        .await
        .unwrap();
    let reg = Registry::new(store);
    let namespaces = minik_api::builtin("", "v1", "namespaces");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    reg.create(namespaces, None, ns, &WriteParams::default())
        .await
        .unwrap();
    reg
}

/// A registry whose ConfigMap watch cache is started, so later writes reach it through its
/// own watch.
async fn with_cache() -> Registry {
    let reg = registry().await;
    initial_names(&reg, streaming("")).await;
    reg
}

/// Names in the initial ADDED events, up to the bookmark that ends them.
async fn initial_names(reg: &Registry, params: WatchParams) -> Vec<String> {
    let info = minik_api::builtin("", "v1", "configmaps");
    let mut stream = reg.watch(info, Some("default"), params).await.unwrap();
    let mut names = Vec::new();
    while let Some(e) = stream.next().await {
        if e.kind == "BOOKMARK" {
            break;
        }
        assert_eq!(e.kind, "ADDED");
        names.push(e.object["metadata"]["name"].as_str().unwrap().to_string());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_events_include_every_write_before_the_watch() {
    let reg = with_cache().await;
    let info = minik_api::builtin("", "v1", "configmaps");
    for i in 0..30 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("c{i}"), "namespace": "default"}});
        let (created, _) = reg
            .create(info, Some("default"), cm, &WriteParams::default())
            .await
            .unwrap();
        let names = initial_names(&reg, streaming("")).await;
        assert_eq!(names.len(), i + 1, "after c{i}: {names:?}");
        // Not older than a named revision: that write is in.
        let rv = created["metadata"]["resourceVersion"].as_str().unwrap();
        let names = initial_names(&reg, streaming(rv)).await;
        assert!(
            names.contains(&format!("c{i}")),
            "after c{i} at {rv}: {names:?}"
        );
    }
}

/// resourceVersion=0 (kube-rs's streaming list, an informer's first list): any state will
/// do, but the cache catches up first, so a client sees its own writes, even right after a
/// burst that the cache's task is still decoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_revision_0_see_the_clients_own_writes() {
    let reg = with_cache().await;
    let info = minik_api::builtin("", "v1", "configmaps");
    let at_0 = ListParams {
        resource_version: Some("0".into()),
        ..Default::default()
    };
    let mut burst = 0;
    for round in 0..4 {
        let creates = (0..400).map(|i| {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("c{round}-{i}"), "namespace": "default"},
                "data": {"payload": "x".repeat(2000)}});
            let reg = reg.clone();
            tokio::spawn(async move {
                reg.create(info, Some("default"), cm, &WriteParams::default())
                    .await
                    .unwrap();
            })
        });
        for task in creates.collect::<Vec<_>>() {
            task.await.unwrap();
        }
        burst += 400;
        if round % 2 == 0 {
            let names = initial_names(&reg, streaming("0")).await;
            assert_eq!(names.len(), burst, "watch after round {round}");
        } else {
            let list = reg.list(info, Some("default"), &at_0).await.unwrap();
            assert_eq!(list.items.len(), burst, "list after round {round}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_events_past_the_store_time_out() {
    let reg = registry().await;
    let info = minik_api::builtin("", "v1", "configmaps");
    match reg.watch(info, Some("default"), streaming("999999")).await {
        Err(e) => assert_eq!(e.code_and_reason().0, 504, "{e}"),
        Ok(_) => panic!("a watch from a future revision started"),
    }
}

fn streaming(rv: &str) -> WatchParams {
    WatchParams {
        resource_version: Some(rv.to_string()),
        send_initial_events: true,
        allow_bookmarks: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_far_behind_gets_every_change_in_order() {
    let reg = with_cache().await;
    let info = minik_api::builtin("", "v1", "configmaps");
    let params = WatchParams {
        resource_version: Some("0".into()),
        ..Default::default()
    };
    // Opened, then not read while far more changes than the broadcast holds are made.
    let mut stream = reg.watch(info, Some("default"), params).await.unwrap();
    const N: usize = 1500;
    for i in 0..N {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("c{i}"), "namespace": "default"}});
        reg.create(info, Some("default"), cm, &WriteParams::default())
            .await
            .unwrap();
    }
    let mut last = 0i64;
    for i in 0..N {
        let e = stream.next().await.unwrap();
        assert_eq!(e.kind, "ADDED", "event {i}: {:?}", e.object);
        assert_eq!(e.object["metadata"]["name"], format!("c{i}"));
        let rv: i64 = e.object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rv > last);
        last = rv;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_older_than_the_cache_moves_to_it_once_caught_up() {
    let reg = registry().await;
    let info = minik_api::builtin("", "v1", "configmaps");
    let create = async |name: String| {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}});
        let (created, _) = reg
            .create(info, Some("default"), cm, &WriteParams::default())
            .await
            .unwrap();
        created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // As an informer: a list's revision, then writes, then the first watch (which starts
    // the cache, at a later revision).
    let listed = create("c0".into()).await;
    for i in 1..5 {
        create(format!("c{i}")).await;
    }
    let params = |rv: &str| WatchParams {
        resource_version: Some(rv.to_string()),
        ..Default::default()
    };
    let mut old = reg.watch(info, None, params(&listed)).await.unwrap();
    assert!(
        !old.from_cache(),
        "the cache reaches back before it started"
    );
    let mut names = Vec::new();
    for i in 5..40 {
        create(format!("c{i}")).await;
    }
    while names.len() < 39 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), old.next())
            .await
            .expect("an event")
            .expect("the watch goes on");
        assert_eq!(e.kind, "ADDED");
        names.push(e.object["metadata"]["name"].as_str().unwrap().to_string());
    }
    let wanted: Vec<String> = (1..40).map(|i| format!("c{i}")).collect();
    assert_eq!(
        names, wanted,
        "every change after the listed revision, once, in order"
    );
    // Caught up: later changes come from the cache.
    create("c40".into()).await;
    let e = old.next().await.expect("the watch goes on");
    assert_eq!(e.object["metadata"]["name"], "c40");
    assert!(old.from_cache(), "a caught-up watch is moved to the cache");
}
