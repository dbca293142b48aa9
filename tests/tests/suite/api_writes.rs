//! Writes: status subresource, generation, finalizers, dry run, preconditions, defaults and validation, allocations, subresources, graceful deletion, events in two groups.
//! Through the router in process (no socket), except the WebSocket test.

use axum::http::Method;
use minik_tests::api::{Api, DEPLOYS, api, deploy, item_names};
use serde_json::json;

#[tokio::test]
async fn status_subresource_and_generation() {
    let api = api().await;
    let (code, created) = api
        .call(Method::POST, DEPLOYS, Some(deploy("web", 1)))
        .await;
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["generation"], 1);
    // Status written through the main resource is ignored.
    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 5});
    let (code, updated) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web"), Some(with_status))
        .await;
    assert_eq!(code, 200);
    assert!(
        updated
            .get("status")
            .is_none_or(|s| s.get("replicas").is_none())
    );
    assert_eq!(
        updated["metadata"]["generation"], 1,
        "no spec change, no new generation"
    );
    // Through /status it lands, and the spec stays.
    let mut status = updated.clone();
    status["status"] = json!({"replicas": 5});
    status["spec"]["replicas"] = json!(9);
    let (code, after) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web/status"), Some(status))
        .await;
    assert_eq!(code, 200);
    assert_eq!(after["status"]["replicas"], 5);
    assert_eq!(after["spec"]["replicas"], 1);
    // A spec change bumps generation.
    let mut scaled = after.clone();
    scaled["spec"]["replicas"] = json!(3);
    let (_, scaled) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web"), Some(scaled))
        .await;
    assert_eq!(scaled["metadata"]["generation"], 2);
    // The stale one is refused.
    let (code, body) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web"), Some(after))
        .await;
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));
}

#[tokio::test]
async fn finalizers_dry_run_preconditions_and_collections() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let mut held = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    let (code, _) = api
        .call(
            Method::POST,
            &format!("{cms}?dryRun=All"),
            Some(held.clone()),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(
        api.call(Method::GET, &format!("{cms}/held"), None).await.0,
        404,
        "dry run stores nothing"
    );
    let (_, created) = api.call(Method::POST, cms, Some(held.clone())).await;
    let (code, deleting) = api.call(Method::DELETE, &format!("{cms}/held"), None).await;
    assert_eq!(code, 200);
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    // Still there until the finalizer goes.
    let (_, now) = api.call(Method::GET, &format!("{cms}/held"), None).await;
    assert!(now["metadata"]["deletionTimestamp"].is_string());
    held = now.clone();
    held["metadata"]["finalizers"] = json!([]);
    let (code, _) = api
        .call(Method::PUT, &format!("{cms}/held"), Some(held))
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        api.call(Method::GET, &format!("{cms}/held"), None).await.0,
        404
    );
    // Preconditions.
    let (_, c) = api
        .call(
            Method::POST,
            cms,
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})),
        )
        .await;
    let wrong = json!({"preconditions": {"uid": created["metadata"]["uid"]}});
    let (code, body) = api
        .call(Method::DELETE, &format!("{cms}/c"), Some(wrong))
        .await;
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));
    let right = json!({"preconditions": {"uid": c["metadata"]["uid"]}});
    assert_eq!(
        api.call(Method::DELETE, &format!("{cms}/c"), Some(right))
            .await
            .0,
        200
    );
    // deletecollection with a selector.
    for (name, app) in [("a", "x"), ("b", "x"), ("k", "keep")] {
        api.call(Method::POST, cms, Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": app}}}))).await;
    }
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{cms}?labelSelector=app%3Dx"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (_, left) = api.call(Method::GET, cms, None).await;
    let names = item_names(&left);
    assert_eq!(names, ["k"]);
}

#[tokio::test]
async fn propagation_policy_leaves_the_garbage_collectors_finalizer() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    for name in ["fg", "or", "bg"] {
        api.call(
            Method::POST,
            cms,
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})),
        )
        .await;
    }
    let (code, fg) = api
        .call(
            Method::DELETE,
            &format!("{cms}/fg"),
            Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(fg["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert!(fg["metadata"]["deletionTimestamp"].is_string());
    // Asked again as Orphan: the finalizer is swapped.
    let (_, or) = api
        .call(
            Method::DELETE,
            &format!("{cms}/fg?propagationPolicy=Orphan"),
            None,
        )
        .await;
    assert_eq!(or["metadata"]["finalizers"], json!(["orphan"]));
    let (_, or) = api
        .call(
            Method::DELETE,
            &format!("{cms}/or"),
            Some(json!({"orphanDependents": true})),
        )
        .await;
    assert_eq!(or["metadata"]["finalizers"], json!(["orphan"]));
    // Background (the default): gone at once.
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{cms}/bg?propagationPolicy=Background"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        api.call(Method::GET, &format!("{cms}/bg"), None).await.0,
        404
    );
    let (code, bad) = api
        .call(
            Method::DELETE,
            &format!("{cms}/or?propagationPolicy=Sideways"),
            None,
        )
        .await;
    assert_eq!((code, bad["reason"].as_str()), (422, Some("Invalid")));
    assert!(
        bad["message"].as_str().unwrap().contains("Sideways"),
        "{bad}"
    );
}

#[tokio::test]
async fn defaults_validation_and_cluster_ips() {
    let api = api().await;
    let (code, d) = api
        .call(Method::POST, DEPLOYS, Some(deploy("web", 2)))
        .await;
    assert_eq!(code, 201);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    let mut bad = deploy("bad", 1);
    bad["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let (code, body) = api.call(Method::POST, DEPLOYS, Some(bad)).await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.template.metadata.labels"
    );
    let mut moved = d.clone();
    moved["spec"]["selector"]["matchLabels"] = json!({"app": "x"});
    moved["spec"]["template"]["metadata"]["labels"] = json!({"app": "x"});
    let (code, body) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web"), Some(moved))
        .await;
    assert_eq!(
        (code, body["details"]["causes"][0]["field"].as_str()),
        (422, Some("spec.selector"))
    );

    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    let (code, p) = api.call(Method::POST, pods, Some(pod)).await;
    assert_eq!(code, 201);
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert_eq!(
        p["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let mut changed = p.clone();
    changed["spec"]["containers"][0]["name"] = json!("renamed");
    let (code, _) = api
        .call(Method::PUT, &format!("{pods}/p"), Some(changed))
        .await;
    assert_eq!(code, 422, "pod spec is immutable but for images");
    let mut image = p.clone();
    image["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    assert_eq!(
        api.call(Method::PUT, &format!("{pods}/p"), Some(image))
            .await
            .0,
        200
    );

    let svcs = "/api/v1/namespaces/default/services";
    let svc = |name: &str, ip: Option<&str>| {
        let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        if let Some(ip) = ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s
    };
    let (code, a) = api.call(Method::POST, svcs, Some(svc("a", None))).await;
    assert_eq!(code, 201);
    let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.43."), "{ip}");
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
    let (code, b) = api
        .call(Method::POST, svcs, Some(svc("b", Some(&ip))))
        .await;
    assert_eq!(code, 422, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("already allocated"),
        "{b}"
    );
    let (code, _) = api
        .call(
            Method::GET,
            &format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    api.call(Method::DELETE, &format!("{svcs}/a"), None).await;
    let (code, _) = api
        .call(
            Method::GET,
            &format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}"),
            None,
        )
        .await;
    assert_eq!(code, 404, "the IP is released with its service");
    let (code, b) = api
        .call(Method::POST, svcs, Some(svc("b", Some(&ip))))
        .await;
    assert_eq!(
        (code, b["spec"]["clusterIP"].as_str()),
        (201, Some(ip.as_str()))
    );
}

#[tokio::test]
async fn node_ports_are_allocated_once() {
    let api = api().await;
    let svcs = "/api/v1/namespaces/default/services";
    let svc = |name: &str, node_port: Option<i64>| {
        let mut port = json!({"port": 80});
        if let Some(p) = node_port {
            port["nodePort"] = json!(p);
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [port]}})
    };
    let (code, a) = api.call(Method::POST, svcs, Some(svc("a", None))).await;
    assert_eq!(code, 201);
    let port = a["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&port));
    let (code, b) = api
        .call(Method::POST, svcs, Some(svc("b", Some(port))))
        .await;
    assert_eq!(code, 422, "{b}");
    assert_eq!(b["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
    let (code, _) = api.call(Method::POST, svcs, Some(svc("c", Some(80)))).await;
    assert_eq!(code, 422, "out of range");
    // The failed creates left nothing behind: after a is gone, its port can be had.
    api.call(Method::DELETE, &format!("{svcs}/a"), None).await;
    let (code, b) = api
        .call(Method::POST, svcs, Some(svc("b", Some(port))))
        .await;
    assert_eq!(
        (code, b["spec"]["ports"][0]["nodePort"].as_i64()),
        (201, Some(port))
    );
    let (_, list) = api
        .call(Method::GET, "/apis/networking.k8s.io/v1/ipaddresses", None)
        .await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only b's ClusterIP is held"
    );
}

#[tokio::test]
async fn subresources_scale_binding_eviction_ephemeral_finalize() {
    let api = api().await;
    api.call(Method::POST, DEPLOYS, Some(deploy("web", 1)))
        .await;
    let (code, scale) = api
        .call(Method::GET, &format!("{DEPLOYS}/web/scale"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=web");
    let mut up = scale.clone();
    up["spec"]["replicas"] = json!(4);
    let (code, scaled) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web/scale"), Some(up))
        .await;
    assert_eq!((code, scaled["spec"]["replicas"].as_i64()), (200, Some(4)));
    let (_, d) = api.call(Method::GET, &format!("{DEPLOYS}/web"), None).await;
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["metadata"]["generation"].as_i64()
        ),
        (Some(4), Some(2))
    );
    let (code, _) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web/scale"), Some(scale))
        .await;
    assert_eq!(code, 409, "a stale Scale is refused");
    let (code, _) = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/configmaps/x/scale",
            None,
        )
        .await;
    assert_eq!(code, 404);

    let pods = "/api/v1/namespaces/default/pods";
    for name in ["p", "q"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        api.call(Method::POST, pods, Some(pod)).await;
    }
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, _) = api
        .call(
            Method::POST,
            &format!("{pods}/p/binding"),
            Some(binding.clone()),
        )
        .await;
    assert_eq!(code, 201);
    let (_, p) = api.call(Method::GET, &format!("{pods}/p"), None).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
    let (code, body) = api
        .call(Method::POST, &format!("{pods}/p/binding"), Some(binding))
        .await;
    assert_eq!(code, 409, "{body}");

    let eph = {
        let mut p = p.clone();
        p["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
        p
    };
    let (code, with) = api
        .call(
            Method::PUT,
            &format!("{pods}/p/ephemeralcontainers"),
            Some(eph),
        )
        .await;
    assert_eq!(
        (
            code,
            with["spec"]["ephemeralContainers"][0]["name"].as_str()
        ),
        (200, Some("debug"))
    );

    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "keep-p"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "p"}}}});
    api.call(
        Method::POST,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        Some(pdb),
    )
    .await;
    let eviction = |name: &str| json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}});
    // A running pod asks its budget (a pending one would just go).
    let (code, _) = api
        .patch(
            &format!("{pods}/p/status"),
            "application/merge-patch+json",
            r#"{"status":{"phase":"Running"}}"#,
        )
        .await;
    assert_eq!(code, 200);
    let (code, body) = api
        .call(
            Method::POST,
            &format!("{pods}/p/eviction"),
            Some(eviction("p")),
        )
        .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (429, Some("TooManyRequests"))
    );
    let (code, _) = api
        .call(
            Method::POST,
            &format!("{pods}/q/eviction"),
            Some(eviction("q")),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(
        api.call(Method::GET, &format!("{pods}/q"), None).await.0,
        404
    );

    let (_, ns) = api
        .call(Method::GET, "/api/v1/namespaces/default", None)
        .await;
    let mut fin = ns.clone();
    fin["spec"]["finalizers"] = json!(["kubernetes"]);
    let (code, out) = api
        .call(
            Method::PUT,
            "/api/v1/namespaces/default/finalize",
            Some(fin),
        )
        .await;
    assert_eq!(
        (code, out["spec"]["finalizers"][0].as_str()),
        (200, Some("kubernetes"))
    );
}

#[tokio::test]
async fn graceful_pod_deletion() {
    let api = api().await;
    let pods = "/api/v1/namespaces/default/pods";
    for name in ["running", "pending"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 20}});
        api.call(Method::POST, pods, Some(pod)).await;
    }
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "running"}, "target": {"kind": "Node", "name": "n1"}});
    api.call(
        Method::POST,
        &format!("{pods}/running/binding"),
        Some(binding),
    )
    .await;
    // Never scheduled: gone at once.
    let (code, body) = api
        .call(Method::DELETE, &format!("{pods}/pending"), None)
        .await;
    assert_eq!((code, body["kind"].as_str()), (200, Some("Status")));
    assert_eq!(
        api.call(Method::GET, &format!("{pods}/pending"), None)
            .await
            .0,
        404
    );
    // On a node: marked, with its grace period, until the kubelet (here: a forced delete) ends it.
    let (code, marked) = api
        .call(Method::DELETE, &format!("{pods}/running"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 20);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let (_, shorter) = api
        .call(
            Method::DELETE,
            &format!("{pods}/running?gracePeriodSeconds=5"),
            None,
        )
        .await;
    assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 5);
    assert_eq!(
        api.call(Method::GET, &format!("{pods}/running"), None)
            .await
            .0,
        200
    );
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{pods}/running"),
            Some(json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        api.call(Method::GET, &format!("{pods}/running"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn events_are_one_storage_in_two_groups() {
    let api = api().await;
    let core = "/api/v1/namespaces/default/events";
    let v1 = "/apis/events.k8s.io/v1/namespaces/default/events";
    let (code, _) = api
        .call(Method::POST, core, Some(json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "from-core"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started", "message": "hello", "type": "Normal", "count": 1})))
        .await;
    assert_eq!(code, 201);
    let watch = {
        let a = Api {
            router: api.router.clone(),
            store: api.store.clone(),
        };
        tokio::spawn(async move {
            a.watch_lines(
                "/apis/events.k8s.io/v1/namespaces/default/events?watch=true&resourceVersion=0",
                2,
            )
            .await
        })
    };
    let (code, created) = api
        .call(Method::POST, v1, Some(json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "from-v1"},
            "eventTime": "2026-11-30T10:00:00.000000Z", "reportingController": "minik/test", "reportingInstance": "i",
            "action": "Testing", "reason": "Tested", "regarding": {"kind": "Pod", "name": "q"}, "note": "hi there", "type": "Normal"})))
        .await;
    assert_eq!(code, 201, "{created}");
    let (_, list) = api.call(Method::GET, v1, None).await;
    assert_eq!(item_names(&list), ["from-core", "from-v1"]);
    assert_eq!(list["items"][0]["note"], "hello");
    assert_eq!(list["items"][0]["regarding"]["name"], "p");
    let (_, core_view) = api
        .call(Method::GET, &format!("{core}/from-v1"), None)
        .await;
    assert_eq!(core_view["message"], "hi there");
    assert_eq!(core_view["involvedObject"]["name"], "q");
    assert_eq!(core_view["reportingComponent"], "minik/test");
    let lines = watch.await.unwrap();
    assert_eq!(lines[0]["object"]["note"], "hello");
    assert_eq!(lines[1]["object"]["regarding"]["name"], "q");
    assert_eq!(
        api.call(Method::DELETE, &format!("{v1}/from-core"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        api.call(Method::GET, &format!("{core}/from-core"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn hpas_are_one_storage_in_two_versions() {
    let api = api().await;
    let v1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
    let v2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    let (code, created) = api
        .call(Method::POST, v1, Some(json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 60}})))
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["targetCPUUtilizationPercentage"], 60);
    let (_, as_v2) = api.call(Method::GET, &format!("{v2}/web"), None).await;
    assert_eq!(as_v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        as_v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        60
    );
    let (_, list) = api.call(Method::GET, v1, None).await;
    assert_eq!(
        list["items"][0]["spec"]["targetCPUUtilizationPercentage"],
        60
    );
    assert_eq!(
        api.call(Method::DELETE, &format!("{v2}/web"), None).await.0,
        200
    );
    assert_eq!(
        api.call(Method::GET, &format!("{v1}/web"), None).await.0,
        404
    );
}

#[tokio::test]
async fn service_updates_keep_and_change_allocations() {
    let api = api().await;
    let svcs = "/api/v1/namespaces/default/services";
    let (_, a) = api
        .call(
            Method::POST,
            svcs,
            Some(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
            "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}),
            ),
        )
        .await;
    let ip = a["spec"]["clusterIP"].clone();
    // A replace that leaves out the allocated values keeps them.
    let mut bare = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
        "spec": {"type": "NodePort", "selector": {"app": "a"}, "ports": [{"port": 80}]}});
    let (code, np) = api
        .call(Method::PUT, &format!("{svcs}/a"), Some(bare.clone()))
        .await;
    assert_eq!(code, 200, "{np}");
    assert_eq!(np["spec"]["clusterIP"], ip);
    let port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&port));
    // Again without nodePort: the same one is kept.
    let (_, again) = api
        .call(Method::PUT, &format!("{svcs}/a"), Some(bare.clone()))
        .await;
    assert_eq!(again["spec"]["ports"][0]["nodePort"], port);
    // Back to ClusterIP: the node port is dropped and free again.
    bare["spec"]["type"] = json!("ClusterIP");
    let (_, back) = api
        .call(Method::PUT, &format!("{svcs}/a"), Some(bare))
        .await;
    assert!(back["spec"]["ports"][0].get("nodePort").is_none());
    let (code, b) = api
        .call(Method::POST, svcs, Some(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"},
            "spec": {"type": "NodePort", "selector": {"app": "b"}, "ports": [{"port": 80, "nodePort": port}]}})))
        .await;
    assert_eq!(code, 201, "{b}");
}

#[tokio::test]
async fn secret_string_data_goes_into_data() {
    let api = api().await;
    let secrets = "/api/v1/namespaces/default/secrets";
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"a": "b2xk", "keep": "a2VlcA=="}, "stringData": {"a": "new", "b": "two"}});
    let (code, created) = api.call(Method::POST, secrets, Some(body)).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["data"],
        json!({"a": "bmV3", "b": "dHdv", "keep": "a2VlcA=="})
    );
    assert!(created.get("stringData").is_none(), "{created}");
    assert_eq!(created["type"], "Opaque");
    // Patches carry stringData too, and what is stored is what a read gives.
    let (code, patched) = api
        .patch(
            &format!("{secrets}/s"),
            "application/merge-patch+json",
            r#"{"stringData":{"keep":"changed"}}"#,
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    let (_, read) = api.call(Method::GET, &format!("{secrets}/s"), None).await;
    assert_eq!(read["data"]["keep"], "Y2hhbmdlZA==");
    assert!(read.get("stringData").is_none());
    // A bad key in stringData is refused like one in data.
    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"},
        "stringData": {"no/slash": "x"}});
    let (code, status) = api.call(Method::POST, secrets, Some(bad)).await;
    assert_eq!(code, 422, "{status}");
}

#[tokio::test]
async fn hpas_get_the_defaults_of_their_version() {
    let api = api().await;
    let v1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
    let v2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
    let (code, created) = api
        .call(
            Method::POST,
            v2,
            Some(json!({"apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler", "metadata": {"name": "two"},
            "spec": {"scaleTargetRef": target, "maxReplicas": 4,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}}})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let spec = &created["spec"];
    assert_eq!(spec["minReplicas"], 1);
    assert_eq!(
        spec["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    let up = &spec["behavior"]["scaleUp"];
    assert_eq!(up["stabilizationWindowSeconds"], 0);
    assert_eq!(up["selectPolicy"], "Max");
    assert_eq!(up["policies"].as_array().map(Vec::len), Some(2), "{up}");
    let down = &spec["behavior"]["scaleDown"];
    assert_eq!(down["stabilizationWindowSeconds"], 10);
    assert_eq!(
        down["policies"],
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    );
    // Without a behavior none is made up; a v1 object without a target gets 80%.
    let (code, created) = api
        .call(
            Method::POST,
            v1,
            Some(json!({"apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler", "metadata": {"name": "one"},
            "spec": {"scaleTargetRef": target, "maxReplicas": 3}})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["targetCPUUtilizationPercentage"], 80);
    assert_eq!(created["spec"]["minReplicas"], 1);
    let (_, as_v2) = api.call(Method::GET, &format!("{v2}/one"), None).await;
    assert!(as_v2["spec"].get("behavior").is_none(), "{as_v2}");
    assert_eq!(
        as_v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
}

#[tokio::test]
async fn writes_that_change_nothing_store_nothing() {
    let api = api().await;
    let web = format!("{DEPLOYS}/web");
    let (code, created) = api
        .call(Method::POST, DEPLOYS, Some(deploy("web", 1)))
        .await;
    assert_eq!(code, 201);
    let rv = created["metadata"]["resourceVersion"].clone();
    // The same object again, by PUT and by a patch that sets what is there: no new
    // resourceVersion, as kube-apiserver skips a write that changes nothing.
    let (code, put) = api.call(Method::PUT, &web, Some(created.clone())).await;
    assert_eq!((code, &put["metadata"]["resourceVersion"]), (200, &rv));
    assert_eq!(put["metadata"]["generation"], 1);
    let same = r#"{"spec":{"replicas":1}}"#;
    let (code, patched) = api.patch(&web, "application/merge-patch+json", same).await;
    assert_eq!((code, &patched["metadata"]["resourceVersion"]), (200, &rv));
    let (_, got) = api.call(Method::GET, &web, None).await;
    assert_eq!(got["metadata"]["resourceVersion"], rv);
    // A real change is written.
    let (code, changed) = api
        .patch(
            &web,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":2}}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_ne!(changed["metadata"]["resourceVersion"], rv);
    assert_eq!(changed["metadata"]["generation"], 2);
    // A stale resourceVersion is still a conflict, even for a write that changes nothing.
    let (code, _) = api.call(Method::PUT, &web, Some(created)).await;
    assert_eq!(code, 409);
}
