//! The Endpoints and EndpointSlice controllers of a real `minik server`, driven by kubectl:
//! pods are made Running/Ready with an IP by patching their status as the admin.

use std::time::{Duration, Instant};

use minik_tests::server::{Server, ok, text};
use serde_json::{Value, json};

fn node(s: &Server, name: &str, zone: &str) {
    s.apply(
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
            "labels": {"topology.kubernetes.io/zone": zone}}}),
    );
}

/// A pod with label app=web on node n1 serving port "http" (8080); running with `ip` and
/// Ready or not.
fn pod(s: &Server, name: &str, extra: Value) {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "hostname": name, "subdomain": "web",
            "containers": [{"name": "c", "image": "busybox",
                "ports": [{"name": "http", "containerPort": 8080}]}]}});
    merge(&mut p, extra);
    s.apply(&p);
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn run(s: &Server, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
    ok(s.kubectl(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]));
}

fn ips(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn slices(s: &Server, svc: &str) -> Vec<Value> {
    let sel = format!("kubernetes.io/service-name={svc}");
    s.json_opt(&["get", "endpointslices", "-l", &sel])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

fn web_service(s: &Server, publish_not_ready: bool) {
    s.apply(&json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "publishNotReadyAddresses": publish_not_ready,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
}

#[test]
fn endpoints_and_slices_follow_pods() {
    let s = Server::start();
    node(&s, "n1", "zone-a");
    web_service(&s, false);
    pod(&s, "p1", json!({}));
    pod(&s, "p2", json!({}));
    pod(&s, "p3", json!({}));
    run(&s, "p1", "10.42.0.5", true);
    run(&s, "p2", "10.42.0.6", false);
    // p3 has no IP: it is not listed.
    let ep = s
        .until(&["get", "endpoints", "web"], "endpoints of web", |v| {
            v.as_ref().is_some_and(|e| {
                ips(&e["subsets"][0]["addresses"]) == ["10.42.0.5"]
                    && ips(&e["subsets"][0]["notReadyAddresses"]) == ["10.42.0.6"]
            })
        })
        .unwrap();
    let subset = &ep["subsets"][0];
    assert_eq!(
        subset["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let a = &subset["addresses"][0];
    assert_eq!(a["nodeName"], "n1");
    assert_eq!(a["hostname"], "p1");
    assert_eq!(a["targetRef"]["kind"], "Pod");
    assert_eq!(a["targetRef"]["name"], "p1");
    assert_eq!(ep["metadata"]["labels"]["team"], "a");
    assert!(
        ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string()
    );

    let slice = &slices(&s, "web")[0];
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-")
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let eps = slice["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2, "{slice:#}");
    let p1 = eps
        .iter()
        .find(|e| e["addresses"][0] == "10.42.0.5")
        .unwrap();
    assert_eq!(
        p1["conditions"],
        json!({"ready": true, "serving": true, "terminating": false})
    );
    assert_eq!(p1["zone"], "zone-a");
    assert_eq!(p1["nodeName"], "n1");
    assert_eq!(p1["targetRef"]["name"], "p1");

    // A terminating pod leaves Endpoints but stays in the slice, not ready, still serving.
    ok(s.kubectl(&[
        "patch",
        "pod",
        "p1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]));
    ok(s.kubectl(&["delete", "pod", "p1", "--wait=false"]));
    s.until(&["get", "endpoints", "web"], "p1 leaves Endpoints", |v| {
        v.as_ref()
            .is_some_and(|e| ips(&e["subsets"][0]["addresses"]).is_empty())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = slices(&s, "web")
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .find(|e| e["addresses"][0] == "10.42.0.5");
        if found.as_ref().map(|e| e["conditions"].clone())
            == Some(json!({"ready": false, "serving": true, "terminating": true}))
        {
            break;
        }
        assert!(Instant::now() < deadline, "terminating endpoint: {found:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(s.kubectl(&[
        "patch",
        "pod",
        "p1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]));

    // Deleted by a user, both come back.
    ok(s.kubectl(&["delete", "endpoints", "web"]));
    let name = slices(&s, "web")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    ok(s.kubectl(&["delete", "endpointslice", &name]));
    s.until(&["get", "endpoints", "web"], "endpoints restored", |v| {
        v.as_ref()
            .is_some_and(|e| ips(&e["subsets"][0]["notReadyAddresses"]) == ["10.42.0.6"])
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while slices(&s, "web")
        .iter()
        .all(|x| x["metadata"]["name"] == name.as_str())
    {
        assert!(Instant::now() < deadline, "slice restored");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The service goes: so do its endpoints and slices.
    ok(s.kubectl(&["delete", "service", "web"]));
    s.until(
        &["get", "endpoints", "web"],
        "endpoints deleted",
        Option::is_none,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !slices(&s, "web").is_empty() {
        assert!(Instant::now() < deadline, "slices deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn unready_addresses_published_and_selectorless_services_left_alone() {
    let s = Server::start();
    node(&s, "n1", "zone-a");
    // A service without selector: the user's Endpoints are theirs.
    s.apply(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}),
    );
    s.apply(&json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]}),
    );
    web_service(&s, true);
    pod(&s, "p1", json!({}));
    run(&s, "p1", "10.42.0.5", false);
    let ep = s
        .until(&["get", "endpoints", "web"], "unready published", |v| {
            v.as_ref()
                .is_some_and(|e| ips(&e["subsets"][0]["addresses"]) == ["10.42.0.5"])
        })
        .unwrap();
    assert!(ep["subsets"][0]["notReadyAddresses"].is_null());
    let slice = slices(&s, "web").remove(0);
    assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
    assert_eq!(slice["endpoints"][0]["conditions"]["serving"], false);
    // By now the controllers have seen every service: ext's Endpoints are untouched and it
    // has no slices of theirs; the API server's own are intact.
    let ext = s.json_opt(&["get", "endpoints", "ext"]).unwrap();
    assert_eq!(ips(&ext["subsets"][0]["addresses"]), ["192.0.2.1"]);
    let trigger = "endpoints.kubernetes.io/last-change-trigger-time";
    assert!(ext["metadata"]["annotations"][trigger].is_null(), "{ext:#}");
    assert!(slices(&s, "ext").is_empty());
    let k = s.json_opt(&["get", "endpoints", "kubernetes"]).unwrap();
    assert_eq!(ips(&k["subsets"][0]["addresses"]), ["127.0.0.1"]);
    let ks = slices(&s, "kubernetes");
    assert_eq!(
        ks.len(),
        1,
        "{}",
        text(&s.kubectl(&["get", "endpointslices", "-A"]))
    );
    assert_eq!(ks[0]["metadata"]["name"], "kubernetes");

    // A headless service without ports lists addresses alone.
    s.apply(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-h", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "web"}, "publishNotReadyAddresses": true}}),
    );
    let h = s
        .until(&["get", "endpoints", "web-h"], "headless endpoints", |v| {
            v.as_ref()
                .is_some_and(|e| ips(&e["subsets"][0]["addresses"]) == ["10.42.0.5"])
        })
        .unwrap();
    assert!(h["subsets"][0]["ports"].is_null());
    assert_eq!(
        h["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    // p1's subdomain is "web", not "web-h".
    assert!(h["subsets"][0]["addresses"][0]["hostname"].is_null());
}

#[test]
fn a_deployment_on_simulated_nodes_is_published_and_scaled_away() {
    let s = Server::start_with(&["--simulated-nodes", "2"]);
    ok(s.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=3",
        "--port=8080",
    ]));
    ok(s.kubectl(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]));
    s.until(&["get", "endpoints", "web"], "three ready addresses", |v| {
        v.as_ref()
            .is_some_and(|e| ips(&e["subsets"][0]["addresses"]).len() == 3)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = slices(&s, "web");
        let ready = all
            .iter()
            .flat_map(|x| x["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| {
                e["conditions"]["ready"] == true
                    && e["nodeName"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("sim-"))
            })
            .count();
        if all.len() == 1 && ready == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "three ready endpoints: {all:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(s.kubectl(&["scale", "deployment", "web", "--replicas=0"]));
    s.until(&["get", "endpoints", "web"], "no addresses", |v| {
        v.as_ref().is_some_and(|e| e["subsets"].is_null())
    });
    // One empty slice stays (the placeholder).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = slices(&s, "web");
        if all.len() == 1 && all[0]["endpoints"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "placeholder slice: {all:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
