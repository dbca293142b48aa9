//! The controllers over a fake API: the proxy keeps the table in step with watch events
//! and deletes it on stop; ServiceLB patches LoadBalancer services' ingress.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::fixtures::{options, ready, service, slice};
use crate::nft::FakeNft;
use crate::proxy::{run, run_servicelb};
use crate::testing::{FakeApi, NODES, SERVICES, SLICES, eventually, stop_and_join, value};

#[tokio::test]
async fn the_table_follows_the_cluster_and_stays_on_stop() {
    let web = service("default", "web", json!({}));
    let web_eps = slice(
        "default",
        "web",
        &[("http", 8080, "TCP")],
        vec![ready("10.42.0.5", "n")],
    );
    let api = FakeApi::new(vec![
        (SERVICES, vec![value(web)]),
        (SLICES, vec![value(web_eps)]),
    ]);
    let nft = FakeNft::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(
        api.client(),
        options(),
        Arc::new(nft.clone()),
        stop.clone(),
    ));

    let last = || nft.last().unwrap_or_default();
    eventually("the first sync", || {
        last().contains("10.43.0.20 . tcp . 80 : goto svc-default/web/tcp/80")
    })
    .await;
    eventually("the watches", || {
        api.watching(SERVICES) == 1 && api.watching(SLICES) == 1
    })
    .await;

    api.added(
        SERVICES,
        value(service(
            "default",
            "other",
            json!({"clusterIP": "10.43.0.30"}),
        )),
    );
    eventually("the new service, without endpoints", || {
        last().contains("10.43.0.30 . tcp . 80 : goto reject-chain")
    })
    .await;
    let eps = slice(
        "default",
        "other",
        &[("http", 9090, "TCP")],
        vec![ready("10.42.0.9", "n")],
    );
    api.added(SLICES, value(eps));
    eventually("its endpoint", || last().contains("dnat to 10.42.0.9:9090")).await;
    let scripts = nft.scripts.lock().unwrap().clone();
    assert!(scripts[0].starts_with("table ip minik-proxy {}\ndelete table ip minik-proxy\n"));
    assert!(
        last().starts_with("flush map ip minik-proxy service-ips\n"),
        "later syncs update in place"
    );
    assert!(
        last().contains("10.43.0.20 . tcp . 80 : goto svc-default/web/tcp/80"),
        "the first service is kept"
    );
    assert!(
        !last().contains("chain svc-default/web/tcp/80 {"),
        "its unchanged chain is not sent again"
    );

    let applied = nft.scripts.lock().unwrap().len();
    stop_and_join(&stop, task).await;
    // The rules stay while minik is down (restarting), as kube-proxy's do.
    assert_eq!(nft.scripts.lock().unwrap().len(), applied);
}

#[tokio::test]
async fn a_bad_cluster_cidr_is_refused_before_anything_is_applied() {
    let api = FakeApi::new(vec![]);
    let nft = FakeNft::default();
    for bad in [
        "",
        "10.42.0.0",
        "10.42.0.0/33",
        "fd00::/64",
        "10.42.0.0/16; flush ruleset",
    ] {
        let mut o = options();
        o.cluster_cidr = bad.into();
        let got = run(
            api.client(),
            o,
            Arc::new(nft.clone()),
            CancellationToken::new(),
        )
        .await;
        assert!(
            matches!(got, Err(crate::proxy::ProxyError::ClusterCidr(_))),
            "{bad}: {got:?}"
        );
    }
    assert!(nft.last().is_none());
}

fn node(name: &str, ready: bool, addresses: Value) -> Value {
    let status = if ready { "True" } else { "False" };
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "status": {"conditions": [{"type": "Ready", "status": status}], "addresses": addresses}})
}

#[tokio::test]
async fn servicelb_gives_load_balancers_the_ready_nodes_addresses() {
    // A LoadBalancer service created on day `day` with port `port`.
    let lb = |name: &str, day: u32, port: i32, extra: Value| {
        let mut spec = json!({"type": "LoadBalancer",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]});
        let extra = extra.as_object().unwrap().clone();
        spec.as_object_mut().unwrap().extend(extra);
        let mut svc = value(service("default", name, spec));
        svc["metadata"]["creationTimestamp"] = json!(format!("2026-01-{day:02}T00:00:00Z"));
        svc
    };
    let nodes = vec![
        node(
            "node-a",
            true,
            json!([{"type": "InternalIP", "address": "192.168.1.10"}]),
        ),
        node(
            "node-b",
            true,
            json!([{"type": "InternalIP", "address": "192.168.1.11"},
                                    {"type": "ExternalIP", "address": "203.0.113.5"}]),
        ),
        node(
            "node-c",
            false,
            json!([{"type": "InternalIP", "address": "192.168.1.12"}]),
        ),
    ];
    let services = vec![
        lb("lb", 1, 80, json!({})),
        lb("local", 2, 8443, json!({"externalTrafficPolicy": "Local"})),
        lb(
            "classy",
            3,
            80,
            json!({"loadBalancerClass": "example.com/other"}),
        ),
        // Port 80 is taken on every node by the older `lb`: no address for this one.
        lb("late", 4, 80, json!({})),
        // No longer a LoadBalancer: its old ingress goes.
        value(super::fixtures::with_status(
            service("default", "was", json!({})),
            json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}]}}),
        )),
        value(service("default", "plain", json!({}))),
    ];
    let slices = vec![value(slice(
        "default",
        "local",
        &[("http", 8080, "TCP")],
        vec![
            ready("10.42.0.5", "node-a"),
            super::fixtures::ep("10.42.1.5", "node-b", json!({"ready": false})),
        ],
    ))];
    let api = FakeApi::new(vec![(SERVICES, services), (NODES, nodes), (SLICES, slices)]);
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_servicelb(api.client(), stop.clone()));
    eventually("three patches", || api.patches.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_and_join(&stop, task).await;

    let mut patches = api.patches.lock().unwrap().clone();
    patches.sort_by(|a, b| a.0.cmp(&b.0));
    let ingress = |ips: &[&str]| {
        let list: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        json!({"status": {"loadBalancer": {"ingress": list}}})
    };
    assert_eq!(
        patches,
        vec![
            (
                "/api/v1/namespaces/default/services/lb/status".to_string(),
                ingress(&["192.168.1.10", "203.0.113.5"])
            ),
            (
                "/api/v1/namespaces/default/services/local/status".to_string(),
                ingress(&["192.168.1.10"])
            ),
            (
                "/api/v1/namespaces/default/services/was/status".to_string(),
                json!({"status": {"loadBalancer": {"ingress": null}}})
            ),
        ]
    );
}
