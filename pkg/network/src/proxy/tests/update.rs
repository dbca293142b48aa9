//! Updates of a table in place: the script (flush, delete what is gone, add the rest), and
//! in the kernel (root, netns) the same table as a fresh one, with affinity memory kept.

use serde_json::json;

use super::fixtures::{mixed, options, ready, service, slice};
use super::netns::Netns;
use crate::proxy::TABLE;
use crate::proxy::model::plan;
use crate::proxy::render::body;
use crate::proxy::update::{Blocks, recreate, update};

const STICKY_5: &str = "aff-default/sticky/tcp/80__10.42.0.5/8080/60s";
const STICKY_6: &str = "aff-default/sticky/tcp/80__10.42.1.6/8080/60s";

fn body_of(
    svcs: &[k8s_openapi::api::core::v1::Service],
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
) -> String {
    let o = options();
    body(
        TABLE,
        &plan(svcs, slices, &o.node_name, &o.skip_ips),
        &o.cluster_cidr,
    )
}

/// The mixed cluster after some changes: `web` gone, `sticky` down to one endpoint (10.42.1.6),
/// a new service `fresh`.
fn changed() -> String {
    let (mut svcs, mut slices) = mixed();
    svcs.retain(|s| s.metadata.name.as_deref() != Some("web"));
    slices.retain(|s| !s.metadata.name.as_deref().unwrap().starts_with("web-"));
    for s in &mut slices {
        if s.metadata.name.as_deref() == Some("sticky-abc") {
            s.endpoints
                .as_mut()
                .unwrap()
                .retain(|e| e.addresses[0] == "10.42.1.6");
        }
    }
    svcs.push(service(
        "default",
        "fresh",
        json!({"clusterIP": "10.43.0.40"}),
    ));
    slices.push(slice(
        "default",
        "fresh",
        &[("http", 80, "TCP")],
        vec![ready("10.42.2.2", "x")],
    ));
    body_of(&svcs, &slices)
}

fn mixed_body() -> String {
    let (svcs, slices) = mixed();
    body_of(&svcs, &slices)
}

#[test]
fn blocks_are_read_off_the_body() {
    let body = mixed_body();
    let o = Blocks::of(&body);
    let chains = o.names("chain");
    assert!(chains.contains("svc-default/web/tcp/80"));
    assert!(chains.contains("ep-default/web/tcp/80__10.42.0.5/8080"));
    assert!(chains.contains("nat-prerouting"));
    assert!(o.names("set").contains(STICKY_5));
    assert!(o.names("map").contains("service-ips"));
    assert!(
        !chains.iter().any(|c| c.contains("service-ips")),
        "maps are not chains"
    );
    assert_eq!(o.names("set").len(), 2);
    // Every declaration is whole: the blocks add up to the body inside `table { }`.
    let total: usize = o.list.iter().map(|(_, _, t)| t.len()).sum();
    assert_eq!(
        total,
        body.len() - "table ip minik-proxy {\n".len() - "}\n".len()
    );
}

#[test]
fn an_update_flushes_and_deletes_only_what_is_gone() {
    let next_body = changed();
    let script = update(TABLE, &mixed_body(), &next_body);
    assert!(script.starts_with("flush map ip minik-proxy service-ips\n"));
    assert!(script.contains("flush chain ip minik-proxy svc-default/sticky/tcp/80\n"));
    // What did not change is not sent again.
    assert!(!script.contains("chain nat-prerouting"), "{script}");
    assert!(!script.contains(&format!("set {STICKY_6}")));
    assert!(script.contains("delete chain ip minik-proxy svc-default/web/tcp/80\n"));
    assert!(
        script.contains("delete chain ip minik-proxy ep-default/sticky/tcp/80__10.42.0.5/8080\n")
    );
    assert!(script.contains(&format!("delete set ip minik-proxy {STICKY_5}\n")));
    assert!(!script.contains(&format!("delete set ip minik-proxy {STICKY_6}")));
    assert!(!script.contains("delete chain ip minik-proxy svc-default/sticky"));
    assert!(!script.contains("delete table"));
}

/// The table's listing with affinity elements left out, sorted (listing order follows
/// creation order, which differs between an updated and a fresh table).
fn normalized(listing: &str) -> Vec<String> {
    let mut lines: Vec<String> = listing
        .lines()
        .filter(|l| !l.trim_start().starts_with("elements = { 10.99.") && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn an_updated_table_equals_a_fresh_one_and_keeps_affinity() {
    let ns = Netns::new("update");
    let first = mixed_body();
    ns.nft(&recreate(TABLE, &first)).unwrap();
    // A client remembered by the endpoint that stays.
    ns.exec(
        "nft",
        &[
            "add",
            "element",
            "ip",
            "minik-proxy",
            STICKY_6,
            "{ 10.99.0.7 }",
        ],
        None,
    )
    .unwrap();
    let next_body = changed();
    ns.nft(&update(TABLE, &first, &next_body))
        .unwrap_or_else(|e| panic!("{e}"));
    let updated = ns.list().unwrap();
    assert!(
        updated.contains("elements = { 10.99.0.7 expires"),
        "{updated}"
    );
    assert!(!updated.contains("default/web/"));
    assert!(!updated.contains(STICKY_5));

    let fresh = Netns::new("fresh");
    fresh.nft(&recreate(TABLE, &next_body)).unwrap();
    assert_eq!(normalized(&updated), normalized(&fresh.list().unwrap()));
    // Updating to the same contents again changes nothing.
    ns.nft(&update(TABLE, &next_body, &next_body)).unwrap();
    assert_eq!(normalized(&ns.list().unwrap()), normalized(&updated));
}
