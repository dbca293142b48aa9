//! `make bench-pods`: a release `minik server` running its real node (as root), busybox
//! imported from its air-gap directory; 100 pods (`sleep 3600`) are created in a burst by 10
//! kube-rs clients and run in real containers. Prints create-to-Running latency p50/p99
//! (Running: phase Running with the container started, seen through a watch), the time until
//! all are Running, the server's RSS with the node Ready and no pods and with every pod
//! running, and the shims' total RSS (each container's `minik shim` is its own process).
//! The pods are then deleted and every shim waited for before the server stops.
//! BENCH_QUICK=1: 10 pods (to check the harness, not for figures).

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use minik_bench::cluster::{
    PodLite, Timings, create_namespace, latencies, node_ready, rss_mib, wait_for, watch_pods,
};
use minik_bench::report::{Table, p50_p99_ms};
use minik_tests::server::Server;

const CLIENTS: usize = 10;
const NAMESPACE: &str = "bench";

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]},
    }))
    .expect("pod")
}

/// Phase Running and the container started.
fn running(p: &PodLite) -> bool {
    let cs = &p.status.container_statuses;
    p.status.phase.as_deref() == Some("Running")
        && !cs.is_empty()
        && cs
            .iter()
            .all(|c| c.started == Some(true) && c.state.running.is_some())
}

/// The shims of the server whose data lives under `dir`: processes whose command line is
/// `<minik binary> shim ...` naming a path under `dir`.
fn shims(dir: &Path) -> Vec<u32> {
    let bin = minik_tests::minik_bin();
    let dir = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.len() > 2
                && Path::new(&args[0]) == bin
                && args[1] == "shim"
                && args[2..].iter().any(|a| a.contains(&dir))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let total = if quick { 10 } else { 100 };
    let server = Server::start_node(&[]);
    let data = server.dir.path().join("data");
    let client = server.kube_client().await;
    node_ready(&client).await;
    // Let the start settle (image import, first node status) before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_mib(server.pid());

    create_namespace(&client, NAMESPACE).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    wait_for("the default service account", 60, || async {
        sas.get_opt("default").await.ok().flatten().map(|_| ())
    })
    .await;

    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let times = Timings::default();
    // Watch before creating, to see every pod start as it happens.
    let watch = watch_pods(client.clone(), NAMESPACE, times.clone(), total, running);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(server.kube_client().await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("node Ready; creating {total} pods with {CLIENTS} clients");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
        let times = times.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..total / CLIENTS {
                let name = format!("p-{c}-{i}");
                let sent = Instant::now();
                times
                    .lock()
                    .unwrap()
                    .entry(name.clone())
                    .or_default()
                    .created = Some(sent);
                api.create(&PostParams::default(), &pod(&name))
                    .await
                    .expect("create pod");
            }
        }));
    }
    for t in tasks {
        t.await.expect("creator");
    }
    let created_in = start.elapsed();
    tokio::time::timeout(Duration::from_secs(600), watch)
        .await
        .expect("every pod Running within 10 minutes")
        .expect("watcher");
    let all_running = start.elapsed();
    let h = latencies(&times.lock().unwrap());
    // Let the node's status and stats catch up before measuring memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_mib(server.pid());
    let running_shims = shims(&data);
    let shims_rss: f64 = running_shims.iter().map(|p| rss_mib(*p)).sum();

    // Clean up: delete the pods (1 s grace: `sleep` as PID 1 ignores TERM) and wait until
    // every shim is gone; dropping the server then stops it and removes what is left.
    let deleted = Instant::now();
    api.delete_collection(
        &DeleteParams::default().grace_period(1),
        &ListParams::default(),
    )
    .await
    .expect("delete the pods");
    wait_for("every shim to exit", 300, || async {
        shims(&data).is_empty().then_some(())
    })
    .await;
    let cleaned_in = deleted.elapsed();

    let mut table = Table::new(
        format!(
            "minik node (release build): {total} busybox pods created by {CLIENTS} kube-rs clients \
             in a burst, run in real containers"
        ),
        &["minik", "target"],
    );
    table.row(
        "create to Running p50 / p99 (ms)",
        vec![p50_p99_ms(&h, 1000.0), "< 300 / < 1000".into()],
    );
    table.row(
        format!("all {total} created (s)"),
        vec![format!("{:.2}", created_in.as_secs_f64()), String::new()],
    );
    table.row(
        format!("all {total} Running (s)"),
        vec![format!("{:.2}", all_running.as_secs_f64()), String::new()],
    );
    table.row(
        "server RSS, node Ready, no pods (MiB)",
        vec![format!("{idle_rss:.0}"), "< 60".into()],
    );
    table.row(
        format!("server RSS with {total} pods running (MiB)"),
        vec![format!("{rss:.0}"), String::new()],
    );
    table.row(
        format!("shims' total RSS, {} shims (MiB)", running_shims.len()),
        vec![format!("{shims_rss:.0}"), String::new()],
    );
    table.row(
        "delete all to every shim gone (s)",
        vec![format!("{:.2}", cleaned_in.as_secs_f64()), String::new()],
    );
    println!("{}", table.render());
    drop(server);
}
