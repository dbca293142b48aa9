//! Rendering tests: the script's text for each kind of service.

use super::fixtures::{self, mixed, options, ready, service, slice};
use crate::proxy::render;
use serde_json::json;

/// The body of chain (or set, map) `name`: the lines between its `{` and its `}`.
fn block<'s>(script: &'s str, kind: &str, name: &str) -> Option<&'s str> {
    let head = format!("\t{kind} {name} {{\n");
    let start = script.find(&head)? + head.len();
    let len = script[start..].find("\n\t}\n")?;
    Some(&script[start..start + len])
}

fn chain<'s>(script: &'s str, name: &str) -> &'s str {
    block(script, "chain", name).unwrap_or_else(|| panic!("no chain {name} in\n{script}"))
}

fn mixed_script() -> String {
    let (svcs, slices) = mixed();
    render(&svcs, &slices, &options())
}

#[test]
fn recreates_the_table_atomically() {
    let s = mixed_script();
    assert!(s.starts_with(
        "table ip minik-proxy {}\ndelete table ip minik-proxy\ntable ip minik-proxy {\n"
    ));
    assert!(s.ends_with("}\n"));
    for (chain_name, hook) in [
        ("nat-prerouting", "type nat hook prerouting priority dstnat"),
        ("nat-output", "type nat hook output priority -100"),
        (
            "nat-postrouting",
            "type nat hook postrouting priority srcnat",
        ),
        ("filter-input", "type filter hook input"),
        ("filter-forward", "type filter hook forward"),
        ("filter-output", "type filter hook output"),
    ] {
        assert!(chain(&s, chain_name).contains(hook), "{chain_name}");
    }
    assert!(chain(&s, "nat-prerouting").contains("jump services"));
    assert!(chain(&s, "nat-output").contains("jump services"));
}

#[test]
fn cluster_ip_picks_a_random_ready_endpoint() {
    let s = mixed_script();
    let ips = block(&s, "map", "service-ips").unwrap();
    assert!(ips.contains("10.43.0.20 . tcp . 80 : goto svc-default/web/tcp/80"));
    assert!(ips.contains("10.43.0.20 . udp . 53 : goto svc-default/web/udp/53"));
    let svc = chain(&s, "svc-default/web/tcp/80");
    assert!(svc.contains(
        "ip daddr 10.43.0.20 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade"
    ));
    assert!(svc.contains(
        "numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/80__10.42.0.5/8080, 1 : goto ep-default/web/tcp/80__10.42.1.6/8080 }"
    ));
    // The not-ready endpoint is not used.
    assert!(!s.contains("10.42.1.7"));
    let ep = chain(&s, "ep-default/web/tcp/80__10.42.0.5/8080");
    assert!(
        ep.contains("ip saddr 10.42.0.5 jump mark-for-masquerade"),
        "hairpin"
    );
    assert!(ep.contains("meta l4proto tcp dnat to 10.42.0.5:8080"));
    // The UDP port goes to the slice's port of the same name.
    let ep = chain(&s, "ep-default/web/udp/53__10.42.1.6/5353");
    assert!(ep.contains("meta l4proto udp dnat to 10.42.1.6:5353"));
    let sctp = chain(&s, "ep-default/sctp/sctp/9000__10.42.0.5/9000");
    assert!(sctp.contains("meta l4proto sctp dnat to 10.42.0.5:9000"));
}

#[test]
fn no_endpoints_rejects_in_the_filter_chains() {
    let s = mixed_script();
    let no_ep = block(&s, "map", "no-endpoint-services").unwrap();
    assert!(no_ep.contains("10.43.0.21 . tcp . 80 : goto reject-chain"));
    assert!(
        !block(&s, "map", "service-ips")
            .unwrap()
            .contains("10.43.0.21")
    );
    assert!(block(&s, "chain", "svc-default/empty/tcp/80").is_none());
    let reject = chain(&s, "reject-chain");
    assert!(reject.contains("meta l4proto tcp reject with tcp reset"));
    assert!(reject.contains("reject with icmp type port-unreachable"));
    for c in ["filter-input", "filter-forward", "filter-output"] {
        assert!(
            chain(&s, c).contains("ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
        );
    }
    assert!(chain(&s, "filter-input").contains("vmap @no-endpoint-nodeports"));
}

#[test]
fn terminating_endpoints_serve_when_none_is_ready() {
    let s = mixed_script();
    let svc = chain(&s, "svc-default/term/tcp/80");
    assert!(
        svc.contains(
            "numgen random mod 1 vmap { 0 : goto ep-default/term/tcp/80__10.42.0.8/8080 }"
        )
    );
    assert!(!s.contains("10.42.0.9"), "not serving: unused");
}

#[test]
fn node_port_masquerades_to_any_endpoint() {
    let s = mixed_script();
    let np = block(&s, "map", "service-nodeports").unwrap();
    assert!(np.contains("tcp . 30080 : goto ext-default/np/tcp/80"));
    let ext = chain(&s, "ext-default/np/tcp/80");
    assert_eq!(
        ext,
        "\t\tjump mark-for-masquerade\n\t\tgoto svc-default/np/tcp/80"
    );
    assert!(chain(&s, "services").contains(
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
    ));
    let post = chain(&s, "nat-postrouting");
    assert!(post.contains("jump masquerading"));
    let masq = chain(&s, "masquerading");
    assert!(masq.contains("meta mark & 0x00004000 == 0 return"));
    assert!(masq.contains("masquerade"));
}

#[test]
fn node_port_local_policy_uses_local_endpoints_only() {
    let s = mixed_script();
    let ext = chain(&s, "ext-default/nplocal/tcp/80");
    assert!(ext.contains("ip saddr 10.42.0.0/16 goto svc-default/nplocal/tcp/80"));
    assert!(ext.contains("fib saddr type local jump mark-for-masquerade"));
    assert!(ext.contains(
        "numgen random mod 1 vmap { 0 : goto ep-default/nplocal/tcp/80__10.42.0.5/8080 }"
    ));
    assert!(
        !ext.contains("\t\tjump mark-for-masquerade\n"),
        "no masquerade of outside clients"
    );
    // No local endpoint: outside traffic is dropped, pods still reach the service.
    let none = chain(&s, "ext-default/nplocal-none/tcp/80");
    assert!(none.ends_with("\t\tdrop"));
    assert!(
        chain(&s, "svc-default/nplocal-none/tcp/80")
            .contains("goto ep-default/nplocal-none/tcp/80__10.42.1.6/8080")
    );
}

#[test]
fn load_balancer_and_external_ips_are_served_like_the_cluster_ip() {
    let s = mixed_script();
    let ips = block(&s, "map", "service-ips").unwrap();
    assert!(ips.contains("10.43.0.25 . tcp . 80 : goto svc-default/lb/tcp/80"));
    assert!(ips.contains("192.168.1.50 . tcp . 80 : goto ext-default/lb/tcp/80"));
    assert!(ips.contains("203.0.113.7 . tcp . 80 : goto ext-default/lb/tcp/80"));
    assert!(
        block(&s, "map", "service-nodeports")
            .unwrap()
            .contains("tcp . 30083 : goto ext-default/lb/tcp/80")
    );
}

#[test]
fn session_affinity_remembers_the_client() {
    let s = mixed_script();
    let set = block(&s, "set", "aff-default/sticky/tcp/80__10.42.0.5/8080/60s").unwrap();
    assert!(set.contains("type ipv4_addr"));
    assert!(set.contains("flags dynamic,timeout"));
    assert!(set.contains("timeout 60s"));
    let svc = chain(&s, "svc-default/sticky/tcp/80");
    let check = svc
        .find("ip saddr @aff-default/sticky/tcp/80__10.42.0.5/8080/60s goto ep-default/sticky/tcp/80__10.42.0.5/8080")
        .unwrap();
    assert!(
        check < svc.find("numgen").unwrap(),
        "affinity before the random choice"
    );
    let ep = chain(&s, "ep-default/sticky/tcp/80__10.42.1.6/8080");
    assert!(ep.contains("update @aff-default/sticky/tcp/80__10.42.1.6/8080/60s { ip saddr }"));
    // The default timeout.
    let svcs = vec![service("a", "b", json!({"sessionAffinity": "ClientIP"}))];
    let slices = vec![slice(
        "a",
        "b",
        &[("http", 8080, "TCP")],
        vec![ready("10.42.0.5", "n")],
    )];
    let s = render(&svcs, &slices, &options());
    assert!(
        block(&s, "set", "aff-a/b/tcp/80__10.42.0.5/8080/10800s")
            .unwrap()
            .contains("timeout 10800s")
    );
}

#[test]
fn pod_traffic_leaving_the_cluster_is_masqueraded() {
    let s = mixed_script();
    assert!(
        chain(&s, "nat-postrouting")
            .contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade")
    );
}

#[test]
fn headless_external_name_and_skipped_ips_get_no_rules() {
    let s = mixed_script();
    assert!(!s.contains("default/headless"));
    assert!(!s.contains("default/extname"));
    assert!(!s.contains("10.43.0.10"));
    assert!(!s.contains("kube-system"));
}

#[test]
fn internal_local_policy_keeps_cluster_ip_traffic_on_the_node() {
    let svcs = vec![service(
        "a",
        "b",
        json!({"internalTrafficPolicy": "Local", "type": "NodePort",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30090}]}),
    )];
    let slices = vec![slice(
        "a",
        "b",
        &[("http", 8080, "TCP")],
        vec![
            ready("10.42.0.5", fixtures::NODE),
            ready("10.42.1.5", "node-b"),
        ],
    )];
    let s = render(&svcs, &slices, &options());
    assert!(
        chain(&s, "svc-a/b/tcp/80")
            .contains("numgen random mod 1 vmap { 0 : goto ep-a/b/tcp/80__10.42.0.5/8080 }")
    );
    assert!(chain(&s, "clu-a/b/tcp/80").contains("numgen random mod 2"));
    assert!(chain(&s, "ext-a/b/tcp/80").contains("goto clu-a/b/tcp/80"));
}

#[test]
fn ipv6_slices_and_unnamed_ports_match_correctly() {
    let svcs = vec![service(
        "a",
        "b",
        json!({"ports": [{"port": 80, "protocol": "TCP"}]}),
    )];
    let mut v6 = slice("a", "b", &[("", 8080, "TCP")], vec![ready("fd00::1", "n")]);
    v6.address_type = "IPv6".into();
    let mut v4 = slice(
        "a",
        "b",
        &[("", 8080, "TCP")],
        vec![ready("10.42.0.5", "n")],
    );
    v4.ports.as_mut().unwrap()[0].name = None;
    let s = render(&svcs, &[v6, v4], &options());
    assert!(chain(&s, "svc-a/b/tcp/80").contains("goto ep-a/b/tcp/80__10.42.0.5/8080"));
    assert!(!s.contains("fd00"));
}
