//! The kernel accepts every rendered script (root; inside a throwaway network namespace):
//! each case, the same script twice, an empty cluster, and 1,000 services × 10 endpoints.

use std::time::Instant;

use super::fixtures::{many, mixed, options};
use super::netns::Netns;
use crate::proxy::model::plan;
use crate::proxy::render::body;
use crate::proxy::update::update;
use crate::proxy::{TABLE, delete_script, render};

#[test]
fn every_case_loads_and_reloads() {
    let ns = Netns::new("load");
    let (svcs, slices) = mixed();
    let script = render(&svcs, &slices, &options());
    ns.nft(&script).unwrap_or_else(|e| panic!("{e}\n{script}"));
    let first = ns.list().unwrap();
    ns.nft(&script).unwrap();
    assert_eq!(
        ns.list().unwrap(),
        first,
        "applying twice gives the same table"
    );
    for needle in [
        "numgen random mod 2 vmap",
        "10.43.0.20 . tcp . 80 : goto svc-default/web/tcp/80",
        "dnat to 10.42.0.5:8080",
        "update @aff-default/sticky/tcp/80__10.42.0.5/8080/60s { ip saddr }",
        "tcp . 30080 : goto ext-default/np/tcp/80",
        "10.43.0.21 . tcp . 80 : goto reject-chain",
    ] {
        assert!(first.contains(needle), "{needle} not in\n{first}");
    }
    ns.nft(&delete_script(TABLE)).unwrap();
    assert!(ns.list().is_err(), "table deleted");
    // Deleting what is absent is fine too.
    ns.nft(&delete_script(TABLE)).unwrap();
}

#[test]
fn an_empty_cluster_loads() {
    let ns = Netns::new("empty");
    ns.nft(&render(&[], &[], &options())).unwrap();
    assert!(ns.list().unwrap().contains("chain services"));
}

#[test]
fn a_big_cluster_loads() {
    let ns = Netns::new("big");
    let (svcs, slices) = many(1000, 10);
    let started = Instant::now();
    let script = render(&svcs, &slices, &options());
    let rendered = started.elapsed();
    ns.nft(&script).unwrap();
    let first = started.elapsed();
    let again = Instant::now();
    let next = render(&svcs, &slices, &options());
    ns.nft(&next).unwrap();
    let recreated = again.elapsed();
    // The run loop's way: an update in place, after one endpoint went.
    let o = options();
    let body_of = |slices: &[k8s_openapi::api::discovery::v1::EndpointSlice]| {
        body(
            TABLE,
            &plan(&svcs, slices, &o.node_name, &o.skip_ips),
            &o.cluster_cidr,
        )
    };
    let before = body_of(&slices);
    let mut fewer = slices.clone();
    fewer[0].endpoints.as_mut().unwrap().pop();
    let after = body_of(&fewer);
    let again = Instant::now();
    let script_update = update(TABLE, &before, &after);
    ns.nft(&script_update).unwrap();
    assert!(script_update.len() < after.len() / 10, "only what changed");
    eprintln!(
        "1000 services x 10 endpoints: script {} KiB, render {rendered:?}, render+apply {first:?}, \
         again (recreate) {recreated:?}, render+update {:?}",
        script.len() / 1024,
        again.elapsed()
    );
    let listed = ns.list().unwrap();
    assert_eq!(listed.matches("\tchain ep-").count(), 9_999);
    assert!(listed.contains("10.43.4.250 . tcp . 80 : goto svc-bench/svc-999/tcp/80"));
}
