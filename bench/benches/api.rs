//! `make bench-api`: a release `minik server` (its own process, HTTPS on 127.0.0.1) driven by
//! kube-rs clients: creates/s with 16 clients, get latency, listing 10,000 configmaps, and
//! watch delivery to 1,000 watchers. Every write is durable.
//! BENCH_QUICK=1 shortens every phase (to check the harness, not for figures).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{AsyncBufReadExt, StreamExt};
use hdrhistogram::Histogram;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use minik_bench::cluster::create_namespace;
use minik_bench::report::{Table, ms, p50_p99_ms, rate};
use minik_tests::server::Server;

struct Plan {
    run: Duration,
    gets: usize,
    list_keys: usize,
    watchers: usize,
    watch_rate: u64,
    watch_run: Duration,
}

fn plan() -> Plan {
    if std::env::var_os("BENCH_QUICK").is_some() {
        return Plan {
            run: Duration::from_secs(1),
            gets: 300,
            list_keys: 500,
            watchers: 50,
            watch_rate: 50,
            watch_run: Duration::from_secs(2),
        };
    }
    Plan {
        run: Duration::from_secs(5),
        gets: 3000,
        list_keys: 10_000,
        watchers: 1000,
        watch_rate: 100,
        watch_run: Duration::from_secs(5),
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "data": {"t": now_ns().to_string(), "pad": "x".repeat(1000)},
    }))
    .expect("configmap")
}

async fn client(s: &Server) -> Client {
    s.kube_client().await
}

/// Create configmaps named `{prefix}{n}` from `clients` tasks until `deadline` (or `count`
/// in all); returns how many.
async fn create_many(
    api: &Api<ConfigMap>,
    prefix: &str,
    clients: usize,
    deadline: Option<Instant>,
    count: usize,
) -> usize {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (api, prefix) = (api.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            let mut i = c;
            while deadline.is_none_or(|d| Instant::now() < d) && i < count {
                api.create(&PostParams::default(), &cm(&format!("{prefix}{i}")))
                    .await
                    .expect("create");
                n += 1;
                i += clients;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client task");
    }
    total
}

/// Open `watchers` raw watch streams; each records the delay from the `t` stamp in a
/// configmap to the line reaching it, for `expect` events.
async fn watch_fanout(
    client: &Client,
    watchers: usize,
    expect: u64,
) -> Vec<tokio::task::JoinHandle<Histogram<u64>>> {
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let req =
            http::Request::get("/api/v1/namespaces/watch/configmaps?watch=true&resourceVersion=0")
                .body(Vec::new())
                .expect("request");
        let stream = client.request_stream(req).await.expect("watch");
        handles.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let mut lines = stream.lines();
            let mut seen = 0;
            while seen < expect {
                let Some(Ok(line)) = lines.next().await else {
                    break;
                };
                let received = now_ns();
                // The stamp is `"t":"<ns>"` in the data; find it without decoding the event.
                if let Some(i) = line.find("\"t\":\"") {
                    let rest = &line[i + 5..];
                    if let Some(sent) = rest.split('"').next().and_then(|v| v.parse::<u128>().ok())
                    {
                        h.record(received.saturating_sub(sent).max(1) as u64)
                            .expect("record");
                        seen += 1;
                    }
                }
            }
            h
        }));
    }
    handles
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let p = plan();
    let server = Server::start();
    let client = client(&server).await;
    for ns in ["bench", "list", "watch"] {
        create_namespace(&client, ns).await;
    }
    let mut t = Table::new(
        "minik API server (release build, HTTPS on 127.0.0.1, SQLite with fsync) driven by kube-rs; 1 KiB configmaps",
        &["minik", "target"],
    );
    let bench: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let start = Instant::now();
    let n = create_many(&bench, "c", 16, Some(start + p.run), usize::MAX).await;
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    t.row(
        "durable creates/s, 16 clients",
        vec![rate(per_sec), ">= 1500".into()],
    );

    let names: Vec<String> = bench
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names.len(), n);
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for i in 0..p.gets {
        let name = &names[(i * 7919) % names.len()];
        let t0 = Instant::now();
        bench.get(name).await.expect("get");
        h.record(t0.elapsed().as_micros() as u64).expect("record");
    }
    t.row(
        "get p50 / p99 (ms)",
        vec![p50_p99_ms(&h, 1e3), "p99 < 5".into()],
    );

    let list: Api<ConfigMap> = Api::namespaced(client.clone(), "list");
    create_many(&list, "l", 64, None, p.list_keys).await;
    for (label, params) in [
        ("list (consistent read)", ListParams::default()),
        (
            "list (resourceVersion=0, watch cache)",
            ListParams::default().match_any(),
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            let got = list.list(&params).await.expect("list");
            assert_eq!(got.items.len(), p.list_keys);
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        t.row(
            format!("{label} of {} configmaps (ms, median of 5)", p.list_keys),
            vec![ms(times[2]), "< 200".into()],
        );
    }

    let writes = p.watch_rate * p.watch_run.as_secs();
    let handles = watch_fanout(&client, p.watchers, writes).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let watch: Api<ConfigMap> = Api::namespaced(client.clone(), "watch");
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / p.watch_rate));
    let mut writers = Vec::new();
    for i in 0..writes {
        tick.tick().await;
        let api = watch.clone();
        writers.push(tokio::spawn(async move {
            api.create(&PostParams::default(), &cm(&format!("w{i}")))
                .await
                .expect("create");
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for h in handles {
        if let Ok(Ok(h)) = tokio::time::timeout(Duration::from_secs(60), h).await {
            all.add(h).expect("merge");
        }
    }
    t.row(
        format!(
            "watch delivery p50 / p99 (ms), {} watchers, {} writes/s",
            p.watchers, p.watch_rate
        ),
        vec![p50_p99_ms(&all, 1e6), "p99 < 50".into()],
    );
    t.row(
        "watch events delivered / expected",
        vec![
            format!("{} / {}", all.len(), writes * p.watchers as u64),
            String::new(),
        ],
    );
    println!("{}", t.render());
}
