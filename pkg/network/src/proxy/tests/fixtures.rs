//! Test objects: Services, EndpointSlices and options, built from JSON as a client sends them.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use crate::proxy::ProxyOptions;

pub const NODE: &str = "node-a";

pub fn options() -> ProxyOptions {
    ProxyOptions {
        node_name: NODE.into(),
        cluster_cidr: "10.42.0.0/16".into(),
        skip_ips: vec!["10.43.0.10".parse().unwrap()],
        table: "minik-proxy".into(),
    }
}

/// A service `ns/name` with `spec` (merged over a ClusterIP default with port 80 "http").
pub fn service(ns: &str, name: &str, spec: Value) -> Service {
    let mut base = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.20",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
    });
    merge(&mut base["spec"], spec);
    serde_json::from_value(base).unwrap()
}

/// A service with a status (load-balancer ingress).
pub fn with_status(svc: Service, status: Value) -> Service {
    let mut v = serde_json::to_value(svc).unwrap();
    v["status"] = status;
    serde_json::from_value(v).unwrap()
}

/// One endpoint: address, node, and conditions (ready, serving, terminating).
pub fn ep(ip: &str, node: &str, conditions: Value) -> Value {
    json!({"addresses": [ip], "nodeName": node, "conditions": conditions})
}

pub fn ready(ip: &str, node: &str) -> Value {
    ep(ip, node, json!({"ready": true}))
}

/// A slice of `service` in `ns` with ports `[(name, port, protocol)]`.
pub fn slice(
    ns: &str,
    service: &str,
    ports: &[(&str, i32, &str)],
    endpoints: Vec<Value>,
) -> EndpointSlice {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": format!("{service}-abc"),
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints
    }))
    .unwrap()
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `n` services with `m` ready endpoints each (the benchmark and big-table case).
pub fn many(n: usize, m: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut svcs = Vec::with_capacity(n);
    let mut slices = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("svc-{i}");
        let ip = format!("10.43.{}.{}", 1 + i / 250, 1 + i % 250);
        svcs.push(service("bench", &name, json!({"clusterIP": ip})));
        let eps = (0..m)
            .map(|j| ready(&format!("10.42.{}.{}", i % 250, 1 + j), "node-b"))
            .collect();
        slices.push(slice("bench", &name, &[("http", 8080, "TCP")], eps));
    }
    (svcs, slices)
}

/// A cluster with one service of every kind the proxy handles (and some it skips).
pub fn mixed() -> (Vec<Service>, Vec<EndpointSlice>) {
    let two_ports = json!([{"name": "http", "port": 80, "protocol": "TCP"},
                           {"name": "dns", "port": 53, "protocol": "UDP"}]);
    let ports: &[(&str, i32, &str)] = &[("http", 8080, "TCP"), ("dns", 5353, "UDP")];
    let eps = || {
        vec![
            ready("10.42.0.5", NODE),
            ready("10.42.1.6", "node-b"),
            ep("10.42.1.7", "node-b", json!({"ready": false})),
        ]
    };
    let node_port = |ip: &str, np: i32, policy: &str| {
        json!({"type": "NodePort", "clusterIP": ip, "externalTrafficPolicy": policy,
               "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": np}]})
    };
    let lb = |name: &str, ip: &str, np: i32| {
        let spec = json!({"type": "LoadBalancer", "clusterIP": ip, "externalIPs": ["203.0.113.7"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": np}]});
        let status = json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.50"}]}});
        with_status(service("default", name, spec), status)
    };
    let services = vec![
        service("default", "web", json!({"ports": two_ports})),
        service("default", "empty", json!({"clusterIP": "10.43.0.21"})),
        service("default", "np", node_port("10.43.0.22", 30080, "Cluster")),
        service(
            "default",
            "nplocal",
            node_port("10.43.0.23", 30081, "Local"),
        ),
        service(
            "default",
            "nplocal-none",
            node_port("10.43.0.24", 30082, "Local"),
        ),
        lb("lb", "10.43.0.25", 30083),
        // The same load-balancer and external IP and port as `lb`, which keeps them (first
        // by name).
        lb("lb2", "10.43.0.29", 30084),
        service(
            "default",
            "sticky",
            json!({"clusterIP": "10.43.0.26", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        ),
        service("default", "headless", json!({"clusterIP": "None"})),
        service(
            "default",
            "extname",
            json!({"type": "ExternalName", "clusterIP": null,
            "externalName": "example.com"}),
        ),
        service(
            "kube-system",
            "kube-dns",
            json!({"clusterIP": "10.43.0.10"}),
        ),
        service("default", "term", json!({"clusterIP": "10.43.0.27"})),
        service(
            "default",
            "sctp",
            json!({"clusterIP": "10.43.0.28",
            "ports": [{"name": "s", "port": 9000, "protocol": "SCTP"}]}),
        ),
    ];
    let http: &[(&str, i32, &str)] = &[("http", 8080, "TCP")];
    let slices = vec![
        slice("default", "web", ports, eps()),
        slice("default", "np", http, eps()),
        slice("default", "nplocal", http, eps()),
        slice(
            "default",
            "nplocal-none",
            http,
            vec![ready("10.42.1.6", "node-b")],
        ),
        slice("default", "lb", http, eps()),
        slice("default", "lb2", http, eps()),
        slice("default", "sticky", http, eps()),
        slice("default", "headless", http, eps()),
        slice(
            "kube-system",
            "kube-dns",
            &[("http", 53, "TCP")],
            vec![ready("10.42.0.2", NODE)],
        ),
        slice(
            "default",
            "term",
            http,
            vec![
                ep(
                    "10.42.0.8",
                    NODE,
                    json!({"ready": false, "serving": true, "terminating": true}),
                ),
                ep(
                    "10.42.0.9",
                    NODE,
                    json!({"ready": false, "serving": false, "terminating": true}),
                ),
            ],
        ),
        slice(
            "default",
            "sctp",
            &[("s", 9000, "SCTP")],
            vec![ready("10.42.0.5", NODE)],
        ),
    ];
    (services, slices)
}
