//! `make bench-sched`: a release `minik server` with 1,000 simulated nodes; 10,000 pods are
//! created by 16 kube-rs clients and scheduled, bound and reported Running. Prints the
//! scheduling throughput (pods bound per second, from the first create to the last bind),
//! create-to-Running latency p50/p99, and the server's RSS at that scale.
//! BENCH_QUICK=1: 100 nodes and 1,000 pods (to check the harness, not for figures).

use std::time::{Duration, Instant};

use kube::api::PostParams;
use minik_bench::cluster::{
    PodLite, Timings, cpu_seconds, create_namespace, latencies, nodes_registered, rss_mib,
    watch_pods,
};
use minik_bench::report::{Table, p50_p99_ms, rate};
use minik_tests::server::Server;

/// The body of a create of pod `name`.
fn pod(name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    }))
    .expect("pod")
}

/// Phase Running.
fn running(p: &PodLite) -> bool {
    p.status.phase.as_deref() == Some("Running")
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (nodes, wanted) = if quick { (100, 1000) } else { (1000, 10_000) };
    // 16 clients create the same number each.
    let pods = wanted / 16 * 16;
    let server = Server::start_with(&["--simulated-nodes", &nodes.to_string()]);
    let client = server.kube_client().await;
    nodes_registered(&client, nodes).await;
    let idle_rss = rss_mib(server.pid());
    create_namespace(&client, "bench").await;
    let times = Timings::default();
    // Watch before creating, to see every bind and Running as it happens.
    let watch = watch_pods(client.clone(), "bench", times.clone(), pods, running);
    // Each create's answer is checked, not decoded: the harness leaves the CPU to the server.
    let create = kube::core::Request::new("/api/v1/namespaces/bench/pods");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    let cpu_before = cpu_seconds(server.pid());
    let per_client = pods / 16;
    eprintln!("{nodes} nodes registered; creating {pods} pods");
    let mut tasks = Vec::new();
    for c in 0..16 {
        let (client, times, create) = (client.clone(), times.clone(), create.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                let name = format!("p-{c}-{i}");
                let sent = Instant::now();
                let req = create
                    .create(&PostParams::default(), pod(&name))
                    .expect("create request");
                client
                    .request::<serde::de::IgnoredAny>(req)
                    .await
                    .expect("create pod");
                times.lock().unwrap().entry(name).or_default().created = Some(sent);
            }
        }));
    }
    for t in tasks {
        t.await.expect("creator");
    }
    let created_in = start.elapsed();
    let total = per_client * 16;
    tokio::time::timeout(Duration::from_secs(600), watch)
        .await
        .expect("every pod Running within 10 minutes")
        .expect("watcher");
    let t = times.lock().unwrap().clone();
    let last_bound = t.values().filter_map(|x| x.bound).max().expect("binds");
    let bound_rate = total as f64 / last_bound.duration_since(start).as_secs_f64();
    let h = latencies(&t);
    let rss = rss_mib(server.pid());
    let cpu_per_pod = (cpu_seconds(server.pid()) - cpu_before) * 1000.0 / total as f64;
    let mut table = Table::new(
        format!(
            "minik scheduler (release build): {total} pods on {nodes} simulated nodes, 16 kube-rs clients creating"
        ),
        &["minik", "target"],
    );
    table.row(
        "pods created/s",
        vec![rate(total as f64 / created_in.as_secs_f64()), String::new()],
    );
    table.row(
        "pods scheduled/s (first create to last bind)",
        vec![rate(bound_rate), ">= 1000".into()],
    );
    table.row(
        "create to Running p50 / p99 (ms)",
        vec![p50_p99_ms(&h, 1000.0), String::new()],
    );
    // Steadier than the rates on a machine whose speed drifts: the work each pod costs.
    table.row(
        "server CPU per pod, create to Running (ms)",
        vec![format!("{cpu_per_pod:.2}"), String::new()],
    );
    table.row(
        "server RSS before pods (MiB)",
        vec![format!("{idle_rss:.0}"), String::new()],
    );
    table.row(
        format!("server RSS with {total} pods (MiB)"),
        vec![format!("{rss:.0}"), String::new()],
    );
    println!("{}", table.render());
}
