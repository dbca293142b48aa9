//! `render` on small clusters: the chains, sets and maps it writes, each script also loaded
//! into a real kernel.

use serde_json::json;

use super::netns::assert_loads;
use super::{NO_NAMESPACES, chain, namespace, options, pod, pod_on, policy, set};
use crate::policy::render;

const REJECT: &str = "reject with icmpx admin-prohibited";

#[test]
fn deny_all_isolates_only_pods_of_this_node() {
    let pods = [
        pod("web", "a", "10.42.0.5", json!({})),
        pod_on("node-b", "web", "b", "10.42.1.5", json!({}), &[]),
    ];
    let policies = [policy(
        "web",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )];
    let script = render(&pods, &[namespace("web", json!({}))], &policies, &options());
    assert!(script.starts_with(
        "table inet minik-policy {}\ndelete table inet minik-policy\ntable inet minik-policy {\n"
    ));
    assert_eq!(
        chain(&script, "in/web/a"),
        [
            "comment \"in of pod web/a\"",
            "ip saddr 10.42.0.5 return",
            REJECT
        ]
    );
    assert_eq!(
        set(&script, "in-pods-v4"),
        [
            "type ipv4_addr : verdict",
            "elements = { 10.42.0.5 : jump in/web/a }"
        ]
    );
    assert_eq!(set(&script, "eg-pods-v4"), ["type ipv4_addr : verdict"]);
    assert!(chain(&script, "in/web/b").is_empty());
    let forward = chain(&script, "forward");
    assert_eq!(forward[1], "ct state established,related accept");
    assert_eq!(forward[2], "fib saddr type local accept");
    assert!(forward.contains(&"ip daddr vmap @in-pods-v4"));
    assert!(forward.contains(&"ip6 saddr vmap @eg-pods-v6"));
    assert_loads(&script);
}

#[test]
fn allow_from_pods_of_the_policy_namespace() {
    let pods = [
        pod("shop", "db", "10.42.0.10", json!({"app": "db"})),
        pod("shop", "api", "10.42.0.11", json!({"role": "api"})),
        pod_on(
            "node-b",
            "shop",
            "api2",
            "10.42.1.11",
            json!({"role": "api"}),
            &[],
        ),
        pod("other", "api", "10.42.0.12", json!({"role": "api"})),
        pod("shop", "web", "10.42.0.13", json!({"role": "web"})),
    ];
    let spec = json!({
        "podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "api"}}}]}],
    });
    let script = render(
        &pods,
        NO_NAMESPACES,
        &[policy("shop", "db-from-api", spec)],
        &options(),
    );
    assert_eq!(
        set(&script, "in/shop/db-from-api/0/v4"),
        [
            "type ipv4_addr",
            "flags interval",
            "elements = { 10.42.0.11, 10.42.1.11 }"
        ]
    );
    assert_eq!(
        chain(&script, "in/shop/db")[2..],
        ["ip saddr @in/shop/db-from-api/0/v4 return", REJECT]
    );
    // Pods the policy does not select stay open; no egress isolation without egress rules.
    assert!(chain(&script, "in/shop/web").is_empty());
    assert!(chain(&script, "eg/shop/db").is_empty());
    assert_loads(&script);
}

#[test]
fn namespace_selectors_with_and_without_pod_selectors() {
    let namespaces = [
        namespace("prod", json!({"team": "blue"})),
        namespace("dev", json!({"team": "red"})),
        namespace("srv", json!({})),
    ];
    let pods = [
        pod("srv", "s", "10.42.0.2", json!({"app": "s"})),
        pod("prod", "p1", "10.42.0.3", json!({"role": "client"})),
        pod("prod", "p2", "10.42.0.4", json!({})),
        pod("dev", "d1", "10.42.0.5", json!({"role": "client"})),
    ];
    let spec = json!({
        "podSelector": {},
        "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}},
                       "podSelector": {"matchLabels": {"role": "client"}}}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dev"}}}],
             "ports": [{"port": 80}]},
        ],
    });
    let script = render(&pods, &namespaces, &[policy("srv", "p", spec)], &options());
    assert_eq!(set(&script, "in/srv/p/0/v4")[2], "elements = { 10.42.0.3 }");
    assert_eq!(set(&script, "in/srv/p/1/v4")[2], "elements = { 10.42.0.5 }");
    assert_eq!(
        chain(&script, "in/srv/s")[2..],
        [
            "ip saddr @in/srv/p/0/v4 return",
            "ip saddr @in/srv/p/1/v4 tcp dport 80 return",
            REJECT
        ]
    );
    assert_loads(&script);
}

#[test]
fn ip_blocks_leave_out_their_exceptions() {
    let pods = [pod("n", "a", "10.42.0.2", json!({}))];
    let spec = json!({
        "podSelector": {},
        "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}},
            {"ipBlock": {"cidr": "fd00::/64", "except": ["fd00::1/128"]}},
        ]}],
    });
    let script = render(
        &pods,
        NO_NAMESPACES,
        &[policy("n", "blocks", spec)],
        &options(),
    );
    assert_eq!(
        set(&script, "in/n/blocks/0/v4")[2],
        "elements = { 10.0.0.0/24, 10.0.2.0-10.0.255.255 }"
    );
    assert_eq!(
        set(&script, "in/n/blocks/0/v6")[2],
        "elements = { fd00::, fd00::2-fd00::ffff:ffff:ffff:ffff }"
    );
    assert_eq!(
        chain(&script, "in/n/a")[2..],
        [
            "ip saddr @in/n/blocks/0/v4 return",
            "ip6 saddr @in/n/blocks/0/v6 return",
            REJECT
        ]
    );
    assert_loads(&script);
}

#[test]
fn named_ports_resolve_against_each_destination_pod() {
    let pods = [
        pod_on(
            "node-a",
            "n",
            "web",
            "10.42.0.2",
            json!({}),
            &[("http", 8080, "TCP")],
        ),
        pod_on(
            "node-a",
            "n",
            "dns",
            "10.42.0.3",
            json!({}),
            &[("http", 53, "UDP")],
        ),
    ];
    let spec = json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]});
    let script = render(
        &pods,
        NO_NAMESPACES,
        &[policy("n", "http", spec)],
        &options(),
    );
    assert_eq!(
        chain(&script, "in/n/web")[2..],
        ["tcp dport 8080 return", REJECT]
    );
    // The rule names a TCP port; dns has only a UDP one, so nothing is allowed there.
    assert_eq!(chain(&script, "in/n/dns")[2..], [REJECT]);
    assert_loads(&script);
}

#[test]
fn end_ports_make_ranges_and_protocols_are_kept() {
    let pods = [pod("n", "a", "10.42.0.2", json!({}))];
    let spec = json!({"podSelector": {}, "ingress": [{"ports": [
        {"protocol": "UDP", "port": 8000, "endPort": 8080},
        {"protocol": "SCTP", "port": 9000},
        {"protocol": "TCP"},
    ]}]});
    let script = render(
        &pods,
        NO_NAMESPACES,
        &[policy("n", "ranges", spec)],
        &options(),
    );
    assert_eq!(
        chain(&script, "in/n/a")[2..],
        [
            "udp dport 8000-8080 return",
            "sctp dport 9000 return",
            "meta l4proto tcp return",
            REJECT
        ]
    );
    assert_loads(&script);
}

#[test]
fn egress_rules_with_blocks_and_named_ports_of_peer_pods() {
    let pods = [
        pod("app", "client", "10.42.0.2", json!({"app": "client"})),
        pod_on(
            "node-b",
            "db",
            "pg",
            "10.42.1.7",
            json!({"app": "pg"}),
            &[("sql", 5432, "TCP")],
        ),
        pod_on(
            "node-b",
            "db",
            "other",
            "10.42.1.8",
            json!({"app": "other"}),
            &[("sql", 5433, "TCP")],
        ),
    ];
    let namespaces = [namespace("app", json!({})), namespace("db", json!({}))];
    // policyTypes left out: Ingress and, as there are egress rules, Egress.
    let spec = json!({
        "podSelector": {"matchLabels": {"app": "client"}},
        "egress": [
            {"to": [{"ipBlock": {"cidr": "10.43.0.10/32"}}], "ports": [{"protocol": "UDP", "port": 53}]},
            {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "pg"}}}],
             "ports": [{"port": "sql"}]},
        ],
    });
    let script = render(
        &pods,
        &namespaces,
        &[policy("app", "out", spec)],
        &options(),
    );
    assert_eq!(
        set(&script, "eg/app/out/0/v4")[2],
        "elements = { 10.43.0.10 }"
    );
    assert_eq!(
        set(&script, "eg/app/out/1/named-v4"),
        [
            "type ipv4_addr . inet_proto . inet_service",
            "elements = { 10.42.1.7 . tcp . 5432 }"
        ]
    );
    assert_eq!(
        chain(&script, "eg/app/client")[2..],
        [
            "ip daddr @eg/app/out/0/v4 udp dport 53 return",
            "ip daddr . meta l4proto . th dport @eg/app/out/1/named-v4 return",
            REJECT
        ]
    );
    assert_eq!(
        chain(&script, "eg/app/client")[1],
        "ip daddr 10.42.0.2 return"
    );
    assert_eq!(
        set(&script, "eg-pods-v4")[1],
        "elements = { 10.42.0.2 : jump eg/app/client }"
    );
    // Ingress is isolated too (default policyTypes), with no rules: deny all.
    assert_eq!(chain(&script, "in/app/client")[2..], [REJECT]);
    assert_loads(&script);
}

#[test]
fn pods_not_selected_or_not_isolatable_are_left_alone() {
    let mut host = pod("n", "host", "192.168.0.1", json!({"app": "x"}));
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut done = pod("n", "done", "10.42.0.9", json!({"app": "x"}));
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let pods = [
        host,
        done,
        pod("n", "other", "10.42.0.3", json!({"app": "y"})),
        pod("m", "x", "10.42.0.4", json!({"app": "x"})),
    ];
    let spec =
        json!({"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress", "Egress"]});
    let script = render(&pods, NO_NAMESPACES, &[policy("n", "p", spec)], &options());
    for map in ["in-pods-v4", "eg-pods-v4", "in-pods-v6", "eg-pods-v6"] {
        assert_eq!(set(&script, map).len(), 1, "{map} has elements:\n{script}");
    }
    assert!(!script.contains("chain in/"));
    assert!(!script.contains("chain eg/"));
    assert_loads(&script);
}

#[test]
fn an_empty_rule_allows_everything_and_policies_add_up() {
    let pods = [pod("n", "a", "10.42.0.2", json!({"app": "a"}))];
    let policies = [
        policy("n", "deny", json!({"podSelector": {}})),
        policy(
            "n",
            "open",
            json!({"podSelector": {"matchLabels": {"app": "a"}}, "ingress": [{}]}),
        ),
    ];
    let script = render(&pods, NO_NAMESPACES, &policies, &options());
    assert_eq!(chain(&script, "in/n/a")[2..], ["return", REJECT]);
    assert_loads(&script);
}

#[test]
fn dual_stack_pods_and_names_too_long_for_the_kernel() {
    let name = "p".repeat(253);
    let mut dual = pod("n", &name, "10.42.0.7", json!({}));
    let status = dual.status.as_mut().unwrap();
    status.pod_ips =
        Some(serde_json::from_value(json!([{"ip": "10.42.0.7"}, {"ip": "fd00::7"}])).unwrap());
    let script = render(
        &[dual],
        NO_NAMESPACES,
        &[policy("n", "deny", json!({"podSelector": {}}))],
        &options(),
    );
    let element = |map: &str| set(&script, map)[1].to_string();
    let v4 = element("in-pods-v4");
    let chain_name = v4.split("jump ").nth(1).unwrap().trim_end_matches(" }");
    assert!(
        chain_name.starts_with("in/n/ppp") && chain_name.len() <= 240,
        "{chain_name}"
    );
    assert_eq!(
        element("in-pods-v6"),
        format!("elements = {{ fd00::7 : jump {chain_name} }}")
    );
    assert_eq!(
        chain(&script, chain_name)[1..],
        [
            "ip saddr 10.42.0.7 return",
            "ip6 saddr fd00::7 return",
            REJECT
        ]
    );
    assert_loads(&script);
}

#[test]
fn an_address_claimed_twice_goes_to_the_first_pod_only() {
    let pods = [
        pod("n", "new", "10.42.0.8", json!({})),
        pod("n", "old", "10.42.0.8", json!({})),
    ];
    let script = render(
        &pods,
        NO_NAMESPACES,
        &[policy("n", "deny", json!({"podSelector": {}}))],
        &options(),
    );
    assert_eq!(
        set(&script, "in-pods-v4")[1],
        "elements = { 10.42.0.8 : jump in/n/new }"
    );
    assert_loads(&script);
}
